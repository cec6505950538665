//! Grant management: the daemon's [`SecretStore`] (`$PADDOCK_HOME/secrets`), the
//! `/v1/grants` API, and the per-run lookup [`Grants::for_run`] (through
//! [`crate::runs::RunManager::grants_for_run`]).
//!
//! The HTTP routes are in `grants_api.rs`; this module knows nothing of HTTP.
//!
//! - `PUT /v1/grants/{name}` ([`PutGrant`]): create or replace; the value arrives in the
//!   body only, is wrapped in a [`SecretValue`] at once (zeroized on drop) and stored
//!   encrypted. Events `grant.added` / `grant.updated`.
//! - `GET /v1/grants`, `GET /v1/grants/{name}`: metadata and a masked preview, never the
//!   value (listing does not even decrypt).
//! - `DELETE /v1/grants/{name}`: revoke (event `grant.revoked`). Runs that already hold
//!   the grant learn about it from that event on the bus.
//!
//! Every store operation runs on a blocking thread: files are fsynced, and the first one
//! may ask the OS keyring for the data key.
//!
//! Never: puts a value, or even its masked preview, in an event, a log line (tracing) or
//! an error; reads a value from a URL.

use std::path::Path;

use paddock_api::{GrantInfo, GrantList, GrantRule, PutGrant, PutGrantResponse, RevokedGrant};
use paddock_secrets::{
    Grant, GrantKind, GrantSpec, HttpSpec, KINDS, Login, SecretStore, SecretValue, SecretsError,
    Substitution,
};

use crate::DaemonError;
use crate::bus::EventBus;

/// The daemon's grants: the secret store, and the bus that records changes to it.
pub struct Grants {
    store: SecretStore,
    bus: EventBus,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Grants {
    /// Opens the store at `dir` (0700, created if missing). Cheap: the data key is loaded
    /// on first use.
    pub fn open(dir: &Path, bus: EventBus) -> Result<Self, DaemonError> {
        Ok(Self::with_store(
            SecretStore::open(dir).map_err(from_secrets)?,
            bus,
        ))
    }

    pub fn with_store(store: SecretStore, bus: EventBus) -> Self {
        Grants { store, bus }
    }

    /// Creates or replaces the grant `name`. Blocking.
    pub fn put(&self, name: &str, mut req: PutGrant) -> Result<PutGrantResponse, DaemonError> {
        let raw = zeroize::Zeroizing::new(std::mem::take(&mut req.value));
        paddock_secrets::validate_name(name).map_err(from_secrets)?;
        let spec = spec_of(&req)?;
        // A login arrives as its CLI's file; it is kept in paddock's own form.
        let value = match spec.kind().login() {
            Some(row) => {
                let login = Login::import(row, raw.as_bytes()).map_err(from_secrets)?;
                SecretValue::new(login.to_value())
            }
            None => SecretValue::new(raw.as_str()),
        }
        .map_err(from_secrets)?;
        let replaced = match self.store.info(name) {
            Ok(_) => true,
            Err(SecretsError::NotFound { .. }) => false,
            // An unreadable old file is replaced like any other.
            Err(_) => true,
        };
        let info = self.store.put(name, spec, &value).map_err(from_secrets)?;
        let kind = info.kind().name();
        let event = if replaced {
            "grant.updated"
        } else {
            "grant.added"
        };
        tracing::info!(grant = %name, kind, replaced, "grant stored");
        self.record(event, name, Some(kind));
        Ok(PutGrantResponse {
            grant: to_api(&info),
            replaced,
        })
    }

    /// Every grant's metadata, sorted by name. Blocking.
    pub fn list(&self) -> Result<GrantList, DaemonError> {
        let grants = self.store.list().map_err(from_secrets)?;
        Ok(GrantList {
            grants: grants.iter().map(to_api).collect(),
        })
    }

    /// One grant's metadata. Blocking.
    pub fn info(&self, name: &str) -> Result<GrantInfo, DaemonError> {
        match self.store.info(name) {
            Ok(info) => Ok(to_api(&info)),
            Err(e) => Err(self.not_found_or(e)),
        }
    }

    /// Replaces the stored login of grant `name` after a refresh (same spec). Blocking.
    pub fn store_login(&self, name: &str, login: &Login) -> Result<(), DaemonError> {
        let info = self.store.info(name).map_err(|e| self.not_found_or(e))?;
        let value = SecretValue::new(login.to_value()).map_err(from_secrets)?;
        let kind = info.kind_name();
        self.store
            .put(name, info.spec, &value)
            .map_err(from_secrets)?;
        self.record("grant.refreshed", name, Some(kind));
        Ok(())
    }

    /// Removes the grant `name`. Blocking.
    pub fn revoke(&self, name: &str) -> Result<RevokedGrant, DaemonError> {
        let info = match self.store.revoke(name) {
            Ok(info) => info,
            Err(e) => return Err(self.not_found_or(e)),
        };
        let kind = info.as_ref().map(|i| i.kind().name());
        tracing::info!(grant = %name, kind = kind.unwrap_or("unknown"), "grant revoked");
        self.record("grant.revoked", name, kind);
        Ok(RevokedGrant {
            name: name.to_string(),
            grant: info.as_ref().map(to_api),
        })
    }

    /// The grants a run asked for, decrypted, in the order asked (duplicates once). An
    /// unknown name is a 404 naming it, with a hint saying how to add it and which grants
    /// exist. Blocking (file reads; the first call may ask the OS keyring for the key).
    pub fn for_run(&self, names: &[String]) -> Result<Vec<Grant>, DaemonError> {
        let mut out: Vec<Grant> = Vec::with_capacity(names.len());
        for name in names {
            if out.iter().any(|g| &g.info.name == name) {
                continue;
            }
            match self.store.get(name) {
                Ok(g) => out.push(g),
                Err(e) => return Err(self.not_found_or(e)),
            }
        }
        Ok(out)
    }

    fn not_found_or(&self, e: SecretsError) -> DaemonError {
        match e {
            SecretsError::NotFound { name } => DaemonError::GrantNotFound {
                name,
                existing: self
                    .store
                    .list()
                    .map(|l| l.into_iter().map(|g| g.name).collect())
                    .unwrap_or_default(),
            },
            other => from_secrets(other),
        }
    }

    /// Records a change durably in the daemon's audit log: name and kind, nothing else.
    fn record(&self, event: &str, name: &str, kind: Option<&str>) {
        let data = serde_json::json!({ "name": name, "kind": kind });
        if self.bus.audit().is_none() {
            self.bus.publish(None, event, data);
        } else if !self.bus.publish_recorded(None, event, data) {
            tracing::warn!(grant = %name, event, "the grant change could not be recorded in the audit log");
        }
    }
}

fn from_secrets(e: SecretsError) -> DaemonError {
    DaemonError::Secrets(e)
}

/// The spec a request describes; flags of `http` grants are refused on built-in kinds.
fn spec_of(req: &PutGrant) -> Result<GrantSpec, DaemonError> {
    let kinds = || KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ");
    let Some(kind) = GrantKind::from_name(&req.kind) else {
        // The kind is not echoed: a confused client could have put anything there.
        return Err(DaemonError::bad_request(
            "unknown grant kind",
            format!("the kind is one of: {}", kinds()),
        ));
    };
    if let Some(spec) = GrantSpec::builtin(kind) {
        if !req.hosts.is_empty()
            || req.header.is_some()
            || req.format.is_some()
            || !req.env.is_empty()
        {
            return Err(DaemonError::bad_request(
                format!("`{kind}` grants have fixed hosts, header and format"),
                "hosts, header, format and env are for `http` grants: `paddock grant http NAME --host H --header X`",
            ));
        }
        if !req.substitute.is_empty() {
            return Err(DaemonError::bad_request(
                format!("`{kind}` grants replace placeholders only in their own header"),
                "substituting in URLs, other headers or bodies would let the upstream store the real value where the agent can read or publish it; for that, add an `http` grant with --substitute",
            ));
        }
        return Ok(spec);
    }
    let Some(header) = req.header.as_deref() else {
        return Err(DaemonError::bad_request(
            "an `http` grant needs a header",
            "e.g. `paddock grant http NAME --host api.example.com --header Authorization --format 'Bearer {}'`",
        ));
    };
    let hosts: Vec<&str> = req.hosts.iter().map(String::as_str).collect();
    let env: Vec<&str> = req.env.iter().map(String::as_str).collect();
    let substitute = substitution_of(&req.substitute)?;
    let spec = HttpSpec::new(&hosts, header, req.format.as_deref())
        .and_then(|s| s.with_env(&env))
        .map_err(from_secrets)?
        .with_substitution(substitute);
    Ok(GrantSpec::Http(spec))
}

/// [`PutGrant::substitute`] as a [`Substitution`]: `url`, `headers`, `body`.
fn substitution_of(places: &[String]) -> Result<Substitution, DaemonError> {
    let mut s = Substitution::OWN_HEADER;
    for p in places {
        match p.as_str() {
            "url" => s.url = true,
            "headers" => s.headers = true,
            "body" => s.body = true,
            _ => {
                return Err(DaemonError::bad_request(
                    "unknown place to substitute a placeholder",
                    "`substitute` takes url, headers and body",
                ));
            }
        }
    }
    Ok(s)
}

/// Where a grant substitutes besides its own header, as in [`PutGrant::substitute`].
fn substitution_names(s: Substitution) -> Vec<String> {
    [(s.url, "url"), (s.headers, "headers"), (s.body, "body")]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| n.to_string())
        .collect()
}

fn to_api(info: &paddock_secrets::GrantInfo) -> GrantInfo {
    GrantInfo {
        name: info.name.clone(),
        kind: info.kind().name().to_string(),
        preview: info.preview.clone(),
        created_at: info.created_at.clone(),
        updated_at: info.updated_at.clone(),
        rules: info
            .rules()
            .into_iter()
            .map(|r| GrantRule {
                host: r.host.to_string(),
                header: r.header.clone(),
                format: r.format.to_string(),
            })
            .collect(),
        env: info.env(),
        substitute: substitution_names(info.spec.substitution()),
    }
}

/// HTTP status of a secret store error.
pub(crate) fn secrets_status(e: &SecretsError) -> u16 {
    use SecretsError as E;
    match e {
        E::NotFound { .. } => 404,
        E::KeyringUnavailable { .. } => 503,
        E::KeyMismatch { .. }
        | E::Tampered { .. }
        | E::Swapped { .. }
        | E::Corrupt { .. }
        | E::InsecurePermissions { .. }
        | E::Io { .. } => 500,
        _ => 400,
    }
}

/// Envelope code of a secret store error.
pub(crate) fn secrets_code(e: &SecretsError) -> &'static str {
    use SecretsError as E;
    match e {
        E::NotFound { .. } => "grant_not_found",
        E::KeyringUnavailable { .. } => "keyring_unavailable",
        E::KeyMismatch { .. }
        | E::Tampered { .. }
        | E::Swapped { .. }
        | E::Corrupt { .. }
        | E::InsecurePermissions { .. } => "secret_store",
        E::Io { .. } => "internal",
        _ => "invalid_grant",
    }
}

/// The hint of [`DaemonError::GrantNotFound`].
pub(crate) fn not_found_hint(name: &str, existing: &[String]) -> String {
    let add = match GrantKind::from_name(name) {
        Some(kind) if kind.login().is_some() => format!(
            "import it with `paddock grant {} --from-login`",
            kind.login().map_or(name, |l| l.cli)
        ),
        Some(kind) if kind != GrantKind::Http => format!("add it with `paddock grant {name}`"),
        _ => format!(
            "add it with `paddock grant <kind> --name {name}` (github, anthropic, openai) or `paddock grant http {name} --host H --header X`"
        ),
    };
    if existing.is_empty() {
        format!("{add}; there are no grants yet")
    } else {
        format!("{add}; existing grants: {}", existing.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_secrets::KeyBackend;

    const TOKEN: &str = "ghp_UnitTestTokenValue0123456789abcdefXYZ";

    fn grants() -> (tempfile::TempDir, Grants, EventBus) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SecretStore::open_with(dir.path().join("secrets"), KeyBackend::FileOnly).unwrap();
        let bus = EventBus::new();
        (dir, Grants::with_store(store, bus.clone()), bus)
    }

    fn put(kind: &str, value: &str) -> PutGrant {
        PutGrant {
            kind: kind.into(),
            value: value.into(),
            ..PutGrant::default()
        }
    }

    fn tree_contains(dir: &Path, needle: &[u8]) -> bool {
        std::fs::read_dir(dir).unwrap().flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                tree_contains(&p, needle)
            } else {
                std::fs::read(&p)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
            }
        })
    }

    #[tokio::test]
    async fn put_list_show_revoke_and_events_carry_no_value() {
        let (dir, g, bus) = grants();
        let mut sub = bus.subscribe(None);
        let out = g.put("github", put("github", TOKEN)).unwrap();
        assert!(!out.replaced);
        assert_eq!(out.grant.kind, "github");
        assert_eq!(out.grant.preview, "ghp_…fXYZ");
        assert_eq!(out.grant.rules.len(), 2);
        assert_eq!(out.grant.rules[0].host, "api.github.com");
        assert_eq!(out.grant.rules[0].format, "Bearer {}");
        assert!(g.put("github", put("github", TOKEN)).unwrap().replaced);

        let list = g.list().unwrap();
        assert_eq!(list.grants.len(), 1);
        assert_eq!(
            g.info("github").unwrap().env,
            vec!["GH_TOKEN", "GITHUB_TOKEN"]
        );

        let got = g.for_run(&["github".into(), "github".into()]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].value.expose(), TOKEN);

        let r = g.revoke("github").unwrap();
        assert_eq!(r.grant.unwrap().kind, "github");
        assert!(matches!(
            g.info("github").unwrap_err(),
            DaemonError::GrantNotFound { .. }
        ));

        let mut kinds = Vec::new();
        for _ in 0..3 {
            let ev = sub.recv().await.unwrap();
            let text = serde_json::to_string(&*ev).unwrap();
            assert!(
                !text.contains("UnitTestToken") && !text.contains("…"),
                "{text}"
            );
            assert_eq!(ev.data["name"], "github");
            assert_eq!(ev.data["kind"], "github");
            assert_eq!(ev.data.as_object().unwrap().len(), 2, "{text}");
            kinds.push(ev.kind.clone());
        }
        assert_eq!(kinds, ["grant.added", "grant.updated", "grant.revoked"]);
        assert!(!tree_contains(dir.path(), TOKEN.as_bytes()));
    }

    #[test]
    fn unknown_grants_for_a_run_name_the_grant_and_list_the_others() {
        let (_dir, g, _) = grants();
        let e = g.for_run(&["github".into()]).unwrap_err();
        assert_eq!(e.status(), 404);
        assert_eq!(e.code(), "grant_not_found");
        assert!(e.to_string().contains("`github`"), "{e}");
        let hint = e.hint().unwrap();
        assert!(
            hint.contains("add it with `paddock grant github`"),
            "{hint}"
        );
        assert!(hint.contains("no grants yet"), "{hint}");

        g.put(
            "anthropic",
            put("anthropic", "sk-ant-api03-abcdefghijklmnop"),
        )
        .unwrap();
        g.put(
            "work-openai",
            put("openai", "sk-proj-abcdefghijklmnopqrstu"),
        )
        .unwrap();
        let e = g
            .for_run(&["anthropic".into(), "deploy".into()])
            .unwrap_err();
        assert!(e.to_string().contains("`deploy`"), "{e}");
        let hint = e.hint().unwrap();
        assert!(
            hint.contains("paddock grant <kind> --name deploy"),
            "{hint}"
        );
        assert!(
            hint.contains("existing grants: anthropic, work-openai"),
            "{hint}"
        );

        let e = g.for_run(&["Bad Name".into()]).unwrap_err();
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn bad_requests_are_400_with_hints_and_never_echo_the_value() {
        let (_dir, g, _) = grants();
        let value = "sekrit-VALUE-0123456789";
        let cases = [
            ("BadName", put("github", value)),
            ("ok", put("nosuchkind", value)),
            ("ok", put("github", "short")),
            ("ok", put("github", "new\nline-value")),
            (
                "ok",
                PutGrant {
                    hosts: vec!["api.example.com".into()],
                    ..put("github", value)
                },
            ),
            (
                "ok",
                PutGrant {
                    hosts: vec!["api.example.com".into()],
                    ..put("http", value)
                },
            ),
            (
                "ok",
                PutGrant {
                    hosts: vec!["api.example.com".into()],
                    header: Some("bad header".into()),
                    ..put("http", value)
                },
            ),
            (
                "ok",
                PutGrant {
                    hosts: vec!["api.example.com".into()],
                    header: Some("authorization".into()),
                    format: Some("Bearer".into()),
                    ..put("http", value)
                },
            ),
            (
                "ok",
                PutGrant {
                    hosts: vec!["*.com".into()],
                    header: Some("authorization".into()),
                    ..put("http", value)
                },
            ),
            (
                "ok",
                PutGrant {
                    substitute: vec!["body".into()],
                    ..put("github", value)
                },
            ),
            (
                "ok",
                PutGrant {
                    hosts: vec!["api.example.com".into()],
                    header: Some("authorization".into()),
                    substitute: vec!["everywhere".into()],
                    ..put("http", value)
                },
            ),
        ];
        for (name, req) in cases {
            let e = g.put(name, req).unwrap_err();
            assert_eq!(e.status(), 400, "{e}");
            assert!(e.hint().is_some_and(|h| !h.is_empty()), "{e}");
            let shown = format!("{e} {e:?} {}", e.hint().unwrap());
            assert!(!shown.contains("sekrit"), "{shown}");
        }
        assert!(g.list().unwrap().grants.is_empty());
    }

    #[test]
    fn http_grants_keep_their_rules() {
        let (_dir, g, _) = grants();
        let out = g
            .put(
                "internal",
                PutGrant {
                    hosts: vec!["api.example.com".into(), "*.example.org".into()],
                    header: Some("X-Api-Key".into()),
                    format: Some("Token {}".into()),
                    env: vec!["EXAMPLE_TOKEN".into()],
                    ..put("http", "tok-0123456789abcdef")
                },
            )
            .unwrap();
        let rules: Vec<String> = out
            .grant
            .rules
            .iter()
            .map(|r| format!("{} {} {}", r.host, r.header, r.format))
            .collect();
        assert_eq!(
            rules,
            [
                "api.example.com x-api-key Token {}",
                "*.example.org x-api-key Token {}"
            ]
        );
        assert_eq!(out.grant.env, ["EXAMPLE_TOKEN"]);
    }

    #[test]
    fn http_grants_substitute_where_asked_and_say_so() {
        let (_dir, g, _) = grants();
        let out = g
            .put(
                "subst",
                PutGrant {
                    hosts: vec!["api.example.com".into()],
                    header: Some("X-Api-Key".into()),
                    substitute: vec!["url".into(), "body".into()],
                    ..put("http", "tok-0123456789abcdef")
                },
            )
            .unwrap();
        assert_eq!(out.grant.substitute, ["url", "body"]);
        let loaded = g.for_run(&["subst".into()]).unwrap();
        let s = loaded[0].info.spec.substitution();
        assert!(s.url && s.body && !s.headers, "{s:?}");
        // Built-in kinds and plain http grants: the own header only.
        g.put("github", put("github", TOKEN)).unwrap();
        assert!(g.info("github").unwrap().substitute.is_empty());
    }
}
