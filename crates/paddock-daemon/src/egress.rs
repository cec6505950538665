//! A run's network: what its sandbox is given (proxy variables, resolv.conf, the CA bundle,
//! credential placeholders), the run's [`RunEgress`] (listeners inside its netns), and the
//! adapter from paddock-secrets' [`RunSecrets`] to the proxy's [`Injector`] seam.
//!
//! Order for one run: [`Egress::prepare`] at create (returns the run's [`NetPlan`], which the
//! daemon keeps in the run's row of state.db: the `network:` section, grant names and their
//! placeholders; no grant value), the sandbox is started
//! *held*, [`Egress::start`] places the listeners, then the runtime releases the command.
//! After a daemon restart [`Egress::start`] runs again for every live run from the same
//! plan, so the placeholders the sandbox holds keep working. (Runs created by earlier
//! daemons have it in `runs/<id>/egress.json`.)
//!
//! `network.headers` become paddock-secrets' header edits: applied to every request the
//! proxy intercepts for a matching host, with or without grants.
//!
//! Never: writes a credential value anywhere (values are read from the secret store when
//! the run's egress starts and live only in the proxy's memory); logs a `network.headers`
//! value (the user's own config may hold tokens there); lets a run's command start before
//! its listeners exist.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use paddock_config::NetworkConfig;
use paddock_egress::{
    BodyRewriter, Dest, EgressShared, GrantUse, ImpliedHost, Injector, NetRecord, RecordKind,
    RunEgress, RunPolicy,
};
use paddock_sandbox::{InjectedFile, NetnsCapability, Runtime, SandboxHandle};
use paddock_secrets::{
    BodyPlan, HeaderEdit, LoginPlaceholders, LoginRow, RunSecrets, StreamRewrite, Target,
};
use serde::{Deserialize, Serialize};

use crate::DaemonError;
use crate::bus::EventBus;
use crate::grants::Grants;
use crate::logins::{HeldLogin, Logins, now_ms};

/// What a run's egress is built from, kept with the run in state.db (as JSON). Holds no
/// secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetPlan {
    pub network: NetworkConfig,
    /// (grant, placeholder), one per grant in the order asked for: what the sandbox's
    /// environment holds.
    pub placeholders: Vec<(String, String)>,
    /// The login grants' other placeholders (refresh and id tokens), what the sandbox's
    /// credential files hold.
    #[serde(default)]
    pub logins: Vec<LoginPlan>,
}

impl NetPlan {
    /// A plan as state.db's `net_plan` holds it.
    pub fn parse(json: &str) -> Result<NetPlan, DaemonError> {
        serde_json::from_str(json).map_err(|e| DaemonError::Network {
            message: format!("the run's network plan (in state.db) is unreadable: {e}"),
            hint: "remove the run and start a new one".into(),
        })
    }
}

/// One login grant's placeholders beyond its access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginPlan {
    pub grant: String,
    pub refresh: String,
    #[serde(default)]
    pub id_token: Option<String>,
}

/// What [`Egress::prepare`] adds to a sandbox spec, and the run's plan.
pub struct SandboxAdditions {
    pub env: Vec<(String, String)>,
    pub files: Vec<InjectedFile>,
    /// The [`NetPlan`] as JSON, for the daemon to keep with the run and hand back to
    /// [`Egress::start`].
    pub plan: String,
    /// Login grants' credential files (sandbox path, contents with placeholders), in the
    /// shape their CLI reads.
    pub login_files: Vec<(PathBuf, Vec<u8>)>,
}

/// The daemon's egress: shared CA and upstream, the grants, live runs' listeners.
pub struct Egress {
    shared: EgressShared,
    grants: Arc<Grants>,
    /// What every sandbox gets (proxy variables, resolv.conf, the CA bundle): built once,
    /// so a create never re-reads the system bundle.
    net: paddock_egress::SandboxNet,
    live: Mutex<HashMap<String, RunEgress>>,
    /// docker:dind sidecars' network namespaces, by run: [`Egress::start`] gives each the
    /// run's listeners and policy too.
    sidecars: Mutex<HashMap<String, Arc<dyn NetnsCapability>>>,
    sidecars_live: Mutex<HashMap<String, RunEgress>>,
    /// Live runs' injectors, to hand them a refreshed login.
    injectors: Mutex<HashMap<String, Arc<SecretsInjector>>>,
    logins: Logins,
}

/// Where daemons before the plan moved to state.db kept it.
fn legacy_plan_path(run_dir: &Path) -> PathBuf {
    run_dir.join("egress.json")
}

impl Egress {
    pub fn new(shared: EgressShared, grants: Arc<Grants>) -> Self {
        Egress {
            net: paddock_egress::sandbox_net(shared.ca.cert_pem()),
            logins: Logins::new(grants.clone(), shared.upstream.clone()),
            shared,
            grants,
            live: Mutex::new(HashMap::new()),
            sidecars: Mutex::new(HashMap::new()),
            sidecars_live: Mutex::new(HashMap::new()),
            injectors: Mutex::new(HashMap::new()),
        }
    }

    /// What every sandbox gets for egress (proxy variables, resolv.conf, the CA bundle).
    pub fn sandbox_net(&self) -> &paddock_egress::SandboxNet {
        &self.net
    }

    /// Give the next [`Egress::start`] of `run_id` a second namespace to govern: its
    /// docker:dind sidecar's, under the same policy, grants and audit log.
    pub fn set_sidecar(&self, run_id: &str, netns: Arc<dyn NetnsCapability>) {
        self.sidecars
            .lock()
            .expect("egress lock poisoned")
            .insert(run_id.to_string(), netns);
    }

    /// For a new run: check its grants, draw their placeholders, and return what its
    /// sandbox needs (environment and files) and its plan, for [`Egress::start`].
    pub fn prepare(
        &self,
        network: NetworkConfig,
        grants: &[String],
    ) -> Result<SandboxAdditions, DaemonError> {
        // Checked here so that a bad `network.headers` refuses the create, not the start.
        header_edits(&network).map_err(|message| {
            DaemonError::bad_request(
                message,
                "fix `network.headers` in paddock.yaml or the user config (`paddock run` checks it)",
            )
        })?;
        let mut env = self.net.env.clone();
        let mut logins = Vec::new();
        let mut login_files = Vec::new();
        // Without grants there is nothing to draw (and no scrubber worth building).
        let placeholders = if grants.is_empty() {
            Vec::new()
        } else {
            // `for_run` keeps the order asked for and drops repeated names.
            let (loaded, held) = self.fresh_grants(grants)?;
            let mut rng = rand::rng();
            let secrets = RunSecrets::new(loaded, &mut rng).map_err(secrets_error)?;
            env.extend(secrets.placeholder_env());
            for h in &held {
                let access = secrets
                    .placeholder(&h.grant)
                    .unwrap_or_default()
                    .to_string();
                let ph = h.login.draw_placeholders(h.row, access, &mut rng);
                let path = Path::new(paddock_config::SANDBOX_HOME).join(h.row.file);
                login_files.push((path, h.login.sandbox_file(h.row, &ph, now_ms())));
                logins.push(LoginPlan {
                    grant: h.grant.clone(),
                    refresh: ph.refresh,
                    id_token: ph.id_token,
                });
            }
            secrets.placeholders()
        };
        let plan = NetPlan {
            network,
            placeholders,
            logins,
        };
        Ok(SandboxAdditions {
            env,
            files: self.net.files.clone(),
            plan: serde_json::to_string(&plan).expect("a plan serialises"),
            login_files,
        })
    }

    /// A new run's grants, logins refreshed first when they are about to expire. Blocking
    /// (called off the async threads); a refresh that fails is an error only when the
    /// access token has already expired.
    fn fresh_grants(
        &self,
        names: &[String],
    ) -> Result<(Vec<paddock_secrets::Grant>, Vec<HeldLogin>), DaemonError> {
        let (loaded, held) = Logins::split(self.grants.for_run(names)?)?;
        let due: Vec<&HeldLogin> = held
            .iter()
            .filter(|h| h.login.needs_refresh(h.row, now_ms()))
            .collect();
        if due.is_empty() {
            return Ok((loaded, held));
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Ok((loaded, held));
        };
        for h in due {
            if let Err(e) = handle.block_on(self.logins.refresh_if_due(&h.grant, false)) {
                let expired = h.login.expires_at_ms.is_some_and(|at| at <= now_ms());
                if expired {
                    return Err(e);
                }
                tracing::warn!(grant = %h.grant, error = %e, "login refresh failed; the access token is still valid");
            }
        }
        Logins::split(self.grants.for_run(names)?)
    }

    /// Place the run's listeners in its netns (the sandbox is running, its command held or
    /// already going), from the plan [`Egress::prepare`] returned (`None`: a run created by
    /// an earlier daemon, whose plan is in its directory). Records go to the bus (and so to
    /// the run's audit log).
    pub fn start(
        &self,
        runtime: &dyn Runtime,
        handle: &SandboxHandle,
        plan: Option<&str>,
        run_dir: &Path,
        bus: &EventBus,
    ) -> Result<(), DaemonError> {
        let unreadable = |what: String, e: serde_json::Error| DaemonError::Network {
            message: format!("the run's network plan ({what}) is unreadable: {e}"),
            hint: "remove the run and start a new one".into(),
        };
        let plan: NetPlan = match plan {
            Some(json) => NetPlan::parse(json)?,
            None => {
                let path = legacy_plan_path(run_dir);
                match std::fs::read(&path) {
                    Ok(b) => serde_json::from_slice(&b)
                        .map_err(|e| unreadable(path.display().to_string(), e))?,
                    // Runs created before egress existed: no plan means no network at all.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(DaemonError::io("read", &path, e)),
                }
            }
        };
        let netns = runtime.as_netns().ok_or_else(|| DaemonError::Network {
            message: format!(
                "the {} runtime cannot place listeners in a sandbox's network",
                runtime.kind().as_str()
            ),
            hint: "use the native runtime".into(),
        })?;
        let edits = header_edits(&plan.network).map_err(|message| DaemonError::Network {
            message,
            hint: "remove the run and start a new one with a valid `network.headers`".into(),
        })?;
        let names: Vec<String> = plan.placeholders.iter().map(|(g, _)| g.clone()).collect();
        let (grants, held) = Logins::split(self.grants.for_run(&names)?)?;
        let secrets = Arc::new(
            RunSecrets::with_placeholders(grants, &plan.placeholders, &mut rand::rng())
                .map_err(secrets_error)?
                .with_header_edits(edits.clone()),
        );
        let logins: Vec<RunLogin> = held
            .iter()
            .filter_map(|h| {
                let p = plan.logins.iter().find(|p| p.grant == h.grant)?;
                Some(RunLogin {
                    grant: h.grant.clone(),
                    row: h.row,
                    scope: h
                        .login
                        .extra
                        .get("scope")
                        .and_then(|s| s.as_str())
                        .map(str::to_string),
                    placeholders: LoginPlaceholders {
                        access: secrets.placeholder(&h.grant)?.to_string(),
                        refresh: p.refresh.clone(),
                        id_token: p.id_token.clone(),
                    },
                })
            })
            .collect();
        let implied: Vec<ImpliedHost> = secrets
            .hosts()
            .into_iter()
            .filter_map(|(grant, host)| {
                host.to_string()
                    .parse::<paddock_config::HostPattern>()
                    .ok()
                    .map(|host| ImpliedHost {
                        grant: grant.to_string(),
                        host,
                    })
            })
            .collect();
        let extra_ports: Vec<u16> = plan.network.rules.iter().filter_map(|r| r.port).collect();
        let injector = Arc::new(SecretsInjector {
            secrets: std::sync::RwLock::new(secrets),
            names,
            placeholders: plan.placeholders.clone(),
            edits,
            logins,
        });
        let policy = |injector: Arc<SecretsInjector>| RunPolicy {
            network: plan.network.clone(),
            implied: implied.clone(),
            extra_ports: extra_ports.clone(),
            injector,
        };
        let sink_bus = bus.clone();
        let sink: paddock_egress::RecordSink = Arc::new(move |r: NetRecord| publish(&sink_bus, r));
        let network_err = |e: paddock_egress::EgressError| DaemonError::Network {
            message: e.to_string(),
            hint: e.hint(),
        };
        let sidecar = self
            .sidecars
            .lock()
            .expect("egress lock poisoned")
            .get(&handle.run_id)
            .cloned();
        if let Some(ns) = sidecar {
            let side = RunEgress::start(
                ns.as_ref(),
                handle,
                &self.shared,
                policy(injector.clone()),
                sink.clone(),
            )
            .map_err(network_err)?;
            self.sidecars_live
                .lock()
                .expect("egress lock poisoned")
                .insert(handle.run_id.clone(), side);
        }
        let run = RunEgress::start(netns, handle, &self.shared, policy(injector.clone()), sink)
            .map_err(network_err)?;
        self.live
            .lock()
            .expect("egress lock poisoned")
            .insert(handle.run_id.clone(), run);
        self.injectors
            .lock()
            .expect("egress lock poisoned")
            .insert(handle.run_id.clone(), injector);
        Ok(())
    }

    /// Wait (at most `limit`) until the records of a run's network so far are on the bus
    /// and queued for its audit log: its end is then recorded after them, and they do not
    /// reach a log that was already closed.
    pub async fn drain(&self, run_id: &str, limit: std::time::Duration) {
        let recorder = self
            .live
            .lock()
            .expect("egress lock poisoned")
            .get(run_id)
            .map(|r| r.recorder());
        if let Some(r) = recorder
            && tokio::time::timeout(limit, r.flushed()).await.is_err()
        {
            tracing::warn!(
                run = run_id,
                "the run's network records took too long to record"
            );
        }
    }

    /// Close a run's listeners (connections in flight finish on their own).
    pub fn stop(&self, run_id: &str) {
        let run = self
            .live
            .lock()
            .expect("egress lock poisoned")
            .remove(run_id);
        drop(run);
        drop(
            self.sidecars_live
                .lock()
                .expect("egress lock poisoned")
                .remove(run_id),
        );
        self.sidecars
            .lock()
            .expect("egress lock poisoned")
            .remove(run_id);
        self.injectors
            .lock()
            .expect("egress lock poisoned")
            .remove(run_id);
    }

    /// Refresh every login a live run uses that is about to expire, and hand the new
    /// access token to those runs. The daemon calls this periodically.
    pub async fn refresh_logins(&self) {
        let mut used: Vec<String> = Vec::new();
        for inj in self
            .injectors
            .lock()
            .expect("egress lock poisoned")
            .values()
        {
            for l in &inj.logins {
                if !used.contains(&l.grant) {
                    used.push(l.grant.clone());
                }
            }
        }
        for grant in used {
            match self.logins.refresh_if_due(&grant, false).await {
                Ok(true) => self.reload_login(&grant).await,
                Ok(false) => {}
                Err(e) => tracing::warn!(grant = %grant, error = %e, "login refresh failed"),
            }
        }
    }

    /// Rebuild the secrets of every live run holding `grant` from the store (same
    /// placeholders, so the sandbox notices nothing).
    async fn reload_login(&self, grant: &str) {
        let holders: Vec<Arc<SecretsInjector>> = self
            .injectors
            .lock()
            .expect("egress lock poisoned")
            .values()
            .filter(|i| i.names.iter().any(|n| n == grant))
            .cloned()
            .collect();
        for inj in holders {
            let grants = self.grants.clone();
            let names = inj.names.clone();
            let loaded = tokio::task::spawn_blocking(move || grants.for_run(&names)).await;
            let rebuilt = match loaded {
                Ok(Ok(g)) => Logins::split(g).and_then(|(g, _)| {
                    RunSecrets::with_placeholders(g, &inj.placeholders, &mut rand::rng())
                        .map_err(secrets_error)
                }),
                Ok(Err(e)) => Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "login reload task failed");
                    continue;
                }
            };
            match rebuilt {
                Ok(s) => {
                    let s = Arc::new(s.with_header_edits(inj.edits.clone()));
                    *inj.secrets.write().unwrap_or_else(|e| e.into_inner()) = s;
                }
                Err(e) => {
                    tracing::warn!(grant, error = %e, "a refreshed login could not be handed to a run")
                }
            }
        }
    }
}

/// `network.headers` as paddock-secrets' [`HeaderEdit`]s, in order (user config's entries
/// first, so on the same header the project's value wins). The CLI's config loader checked
/// them, but they crossed the API: names, values and the managed (framing, hop-by-hop)
/// headers are checked again. Values are marked sensitive and never appear in a message:
/// they may be tokens.
fn header_edits(network: &NetworkConfig) -> Result<Vec<HeaderEdit>, String> {
    network
        .headers
        .iter()
        .map(|h| {
            let bad = |what: String| format!("network.headers for `{}`: {what}", h.host);
            let host = paddock_secrets::HostPattern::parse(&h.host.to_string())
                .map_err(|e| bad(e.to_string()))?;
            let name = |n: &str| {
                paddock_config::parse_header_name(n)
                    .ok()
                    .and_then(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "`{}` is not a header that may be edited",
                            n.escape_debug()
                        ))
                    })
            };
            let mut set = Vec::with_capacity(h.set.len());
            for (n, v) in &h.set {
                let mut value = http::HeaderValue::from_str(v).map_err(|_| {
                    bad(format!(
                        "the value of `{}` is not a valid header value",
                        n.escape_debug()
                    ))
                })?;
                value.set_sensitive(true);
                set.push((name(n)?, value));
            }
            let remove = h.remove.iter().map(|n| name(n)).collect::<Result<_, _>>()?;
            Ok(HeaderEdit { host, set, remove })
        })
        .collect()
}

fn secrets_error(e: paddock_secrets::SecretsError) -> DaemonError {
    DaemonError::Network {
        hint: e
            .hint()
            .unwrap_or_else(|| "check the run's grants with `paddock grant list`".into()),
        message: e.to_string(),
    }
}

/// One network record as an event: `net.request` for everything allowed, `net.denied` for
/// refusals (DNS included: `kind: dns`); a grant use (emitted by the proxy before the
/// request goes upstream) as one `grant.used` per injected grant, names only.
///
/// Runs on the run's record thread (paddock-egress' `Recorder`), never on a tokio worker:
/// `publish` blocks while the audit queue is full, so that no entry is dropped.
fn publish(bus: &EventBus, r: NetRecord) {
    let run = r.run_id.clone();
    if r.kind == RecordKind::GrantUse {
        for g in &r.grants {
            bus.publish(
                Some(&run),
                "grant.used",
                serde_json::json!({
                    "grant": g, "host": r.host, "port": r.port, "method": r.method, "path": r.path,
                }),
            );
        }
        return;
    }
    // One prefix for all of them: `paddock trace` and `audit --type net.` read `net.*`.
    let kind = if r.decision.allowed {
        "net.request"
    } else {
        "net.denied"
    };
    let mut data = serde_json::to_value(&r).unwrap_or_default();
    if let Some(o) = data.as_object_mut() {
        o.remove("run_id");
        // The deciding rule as the user wrote it (`network.rules[2] (…)`, `grant github …`).
        o.insert("rule".into(), r.decision.rule.to_string().into());
    }
    bus.publish(Some(&run), kind, data);
}

/// [`RunSecrets`] behind the proxy's [`Injector`] seam, replaced whole when a login is
/// refreshed; and the run's logins, whose refreshes from inside the sandbox it answers.
struct SecretsInjector {
    secrets: std::sync::RwLock<Arc<RunSecrets>>,
    /// What the secrets are rebuilt from.
    names: Vec<String>,
    placeholders: Vec<(String, String)>,
    edits: Vec<HeaderEdit>,
    logins: Vec<RunLogin>,
}

/// A login grant of one run: its provider and the placeholders the sandbox holds.
struct RunLogin {
    grant: String,
    row: &'static LoginRow,
    placeholders: LoginPlaceholders,
    /// The login's scope, for a token-information answer.
    scope: Option<String>,
}

impl SecretsInjector {
    fn current(&self) -> Arc<RunSecrets> {
        self.secrets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The run's login whose token or token-information endpoint this request is.
    fn login_for(&self, dest: &Dest<'_>, parts: &http::request::Parts) -> Option<&RunLogin> {
        let path = parts.uri.path();
        self.logins.iter().find(|l| {
            (parts.method == http::Method::POST && l.row.is_token_endpoint(dest.host, path))
                || l.row.is_info_endpoint(dest.host, path)
        })
    }
}

fn target<'a>(d: &Dest<'a>) -> Target<'a> {
    Target {
        host: d.host,
        tls: d.tls,
    }
}

impl Injector for SecretsInjector {
    fn on_request(&self, dest: Dest<'_>, parts: &mut http::request::Parts) -> Vec<GrantUse> {
        let inj = self.current().inject_request(target(&dest), parts);
        inj.grants_used
            .into_iter()
            .map(|grant| GrantUse { grant })
            .collect()
    }

    fn request_body(
        &self,
        dest: Dest<'_>,
        headers: &http::HeaderMap,
        _uses: &[GrantUse],
    ) -> Option<Box<dyn BodyRewriter>> {
        match self.current().request_body(target(&dest), headers) {
            BodyPlan::Substitute(s) => Some(Box::new(Rewrite(s))),
            BodyPlan::Skipped(why) => {
                tracing::debug!(
                    host = dest.host,
                    ?why,
                    "request body not searched for placeholders"
                );
                None
            }
            BodyPlan::PassThrough => None,
        }
    }

    fn on_response(&self, _dest: Dest<'_>, _uses: &[GrantUse], parts: &mut http::response::Parts) {
        self.current().scrub_response_headers(&mut parts.headers);
    }

    fn response_body(&self, _dest: Dest<'_>, _uses: &[GrantUse]) -> Option<Box<dyn BodyRewriter>> {
        let secrets = self.current();
        let scrubber = secrets.scrubber();
        (!scrubber.is_empty())
            .then(|| Box::new(Rewrite(scrubber.stream())) as Box<dyn BodyRewriter>)
    }

    fn answers(&self, dest: Dest<'_>, parts: &http::request::Parts) -> bool {
        self.login_for(&dest, parts).is_some()
    }

    fn answer(
        &self,
        dest: Dest<'_>,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Option<(u16, &'static str, Vec<u8>)> {
        let l = self.login_for(&dest, parts)?;
        let answer = if l.row.is_info_endpoint(dest.host, parts.uri.path()) {
            let auth = parts
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            paddock_secrets::login::sandbox_info_answer(
                l.row,
                &l.placeholders,
                l.scope.as_deref(),
                auth,
                parts.uri.query(),
                body,
            )?
        } else {
            paddock_secrets::login::sandbox_refresh_answer(l.row, &l.placeholders, body)?
        };
        tracing::info!(grant = %l.grant, host = dest.host, "answered a login refresh from the sandbox with placeholders");
        Some((200, "application/json", answer))
    }
}

/// Either streaming rewriter of paddock-secrets as the proxy's [`BodyRewriter`].
struct Rewrite<T: StreamRewrite>(T);

impl<T: StreamRewrite> BodyRewriter for Rewrite<T> {
    fn chunk(&mut self, data: Bytes) -> Bytes {
        Bytes::from(self.0.push(&data))
    }

    fn finish(&mut self) -> Bytes {
        Bytes::from(self.0.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(json: serde_json::Value) -> NetworkConfig {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn header_edits_from_the_plan() {
        let n = network(serde_json::json!({"headers": [
            {"host": "api.github.com", "set": {"x-team": "blue"}, "remove": ["user-agent"]},
            {"host": "*.example.com", "set": {"authorization": "Bearer t"}},
        ]}));
        let edits = header_edits(&n).unwrap();
        assert_eq!(edits.len(), 2);
        assert!(edits[0].host.matches("api.github.com:443"));
        assert_eq!(edits[0].set[0].0, "x-team");
        assert_eq!(edits[0].set[0].1, "blue");
        assert!(edits[0].set[0].1.is_sensitive());
        assert_eq!(edits[0].remove, ["user-agent"]);
        assert!(edits[1].host.matches("a.example.com"));
        assert!(header_edits(&NetworkConfig::default()).unwrap().is_empty());
    }

    #[test]
    fn header_edits_are_checked_again_and_never_echo_values() {
        for bad in [
            serde_json::json!({"headers": [{"host": "a.com", "set": {"x-t": "SeKrEt\nx"}}]}),
            serde_json::json!({"headers": [{"host": "a.com", "set": {"host": "SeKrEt"}}]}),
            serde_json::json!({"headers": [{"host": "a.com", "set": {"bad name": "SeKrEt"}}]}),
            serde_json::json!({"headers": [{"host": "a.com", "remove": ["transfer-encoding"]}]}),
            serde_json::json!({"headers": [{"host": "a.com", "remove": ["proxy-authorization"]}]}),
        ] {
            let e = header_edits(&network(bad.clone())).expect_err(&bad.to_string());
            assert!(e.starts_with("network.headers for `a.com`: "), "{e}");
            assert!(!e.contains("SeKrEt"), "{e}");
        }
    }
}
