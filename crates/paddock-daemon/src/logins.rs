//! Agent logins (the OAuth grants `claude`, `codex`, `gemini-login`): the daemon holds the
//! real access and refresh tokens (in the secret store), refreshes an access token before
//! it expires with the real refresh token, and hands the egress proxy the current access
//! token for the run's model API hosts.
//!
//! A refresh is one HTTPS POST to the provider's token endpoint (paddock-secrets'
//! [`LoginRow`]), made through the same [`Upstream`] as the proxy's requests (so
//! `upstream.resolve` and `upstream.extra_ca` apply), one at a time (providers rotate
//! refresh tokens: two refreshes racing with one token would log the user out). Its
//! result is stored, recorded (`grant.refreshed`, name and kind only) and pushed to the
//! live runs that use the grant.
//!
//! Never: sends the refresh token anywhere but the body of that POST; puts a token in an
//! error, event or log line.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use paddock_egress::upstream::Upstream;
use paddock_secrets::{Grant, Login, LoginRow, SecretValue};

use crate::DaemonError;
use crate::grants::Grants;

/// How long a refresh may take.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(20);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A run's view of one login grant: its row and the login as it is now.
pub struct HeldLogin {
    pub grant: String,
    pub row: &'static LoginRow,
    pub login: Login,
}

/// The daemon's logins.
pub struct Logins {
    grants: Arc<Grants>,
    upstream: Arc<Upstream>,
    /// One refresh at a time, across all grants.
    refreshing: tokio::sync::Mutex<()>,
}

impl Logins {
    pub fn new(grants: Arc<Grants>, upstream: Arc<Upstream>) -> Self {
        Logins {
            grants,
            upstream,
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Split a run's grants: a login's value (paddock's JSON) becomes its access token,
    /// which is what the proxy injects; the logins themselves are returned beside.
    pub fn split(grants: Vec<Grant>) -> Result<(Vec<Grant>, Vec<HeldLogin>), DaemonError> {
        let mut out = Vec::with_capacity(grants.len());
        let mut logins = Vec::new();
        for g in grants {
            let Some(row) = g.info.kind().login() else {
                out.push(g);
                continue;
            };
            let login = Login::from_value(g.value.expose()).map_err(DaemonError::Secrets)?;
            let value =
                SecretValue::new(login.access_token.as_str()).map_err(DaemonError::Secrets)?;
            logins.push(HeldLogin {
                grant: g.info.name.clone(),
                row,
                login,
            });
            out.push(Grant {
                info: g.info,
                value,
            });
        }
        Ok((out, logins))
    }

    /// Refresh grant `name` if its access token expires within the provider's margin (or
    /// always, with `force`). Returns whether it was refreshed. The stored login is read
    /// again under the lock: another run may just have refreshed it.
    pub async fn refresh_if_due(&self, name: &str, force: bool) -> Result<bool, DaemonError> {
        let _one = self.refreshing.lock().await;
        let grants = self.grants.clone();
        let n = name.to_string();
        let mut held = tokio::task::spawn_blocking(move || {
            let g = grants.for_run(std::slice::from_ref(&n))?;
            Ok::<_, DaemonError>(Self::split(g)?.1)
        })
        .await
        .map_err(task_failed)??;
        let Some(mut h) = held.pop() else {
            return Ok(false);
        };
        if !force && !h.login.needs_refresh(h.row, now_ms()) {
            return Ok(false);
        }
        let (content_type, body) = h.login.refresh_request(h.row);
        let failed = |message: String| DaemonError::Network {
            message,
            hint: format!(
                "log in again with `{}` on the host, then `paddock grant {} --from-login`",
                h.row.cli, h.row.cli
            ),
        };
        let (status, answer) = self
            .upstream
            .post_https(
                h.row.token_host,
                h.row.token_path,
                content_type,
                body,
                REFRESH_TIMEOUT,
            )
            .await
            .map_err(|e| failed(format!("refreshing the `{name}` login failed: {e}")))?;
        if status != 200 {
            return Err(failed(format!(
                "refreshing the `{name}` login failed: {} answered HTTP {status}",
                h.row.token_host
            )));
        }
        h.login
            .apply_refresh(&answer, now_ms())
            .map_err(|e| failed(format!("refreshing the `{name}` login failed: {e}")))?;
        let grants = self.grants.clone();
        let n = name.to_string();
        tokio::task::spawn_blocking(move || grants.store_login(&n, &h.login))
            .await
            .map_err(task_failed)??;
        tracing::info!(grant = %name, "login refreshed");
        Ok(true)
    }
}

fn task_failed(e: tokio::task::JoinError) -> DaemonError {
    DaemonError::Network {
        message: format!("a login task failed: {e}"),
        hint: "see $PADDOCK_HOME/daemon.log".into(),
    }
}
