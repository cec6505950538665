//! Who may use the dashboard: one-time login codes, session cookies with their CSRF
//! tokens, the persistent bearer token, and the checks every request passes (Host,
//! Origin, `Sec-Fetch-Site`, CSRF header).
//!
//! Never: accepts a request on the strength of where it comes from alone (every local user
//! and every page in the user's browser can reach 127.0.0.1); compares a secret in a way
//! whose time depends on where it differs; keeps a used login code.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, header};
use rand::RngCore;

use crate::DaemonError;

/// How long a login URL is good for.
pub const CODE_TTL: Duration = Duration::from_secs(300);
/// How long a session lasts without being used.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);
/// Login codes outstanding at once (each `paddock ui` mints one; the oldest goes first).
const MAX_CODES: usize = 16;
/// Sessions at once (each login makes one; the least recently used goes first).
const MAX_SESSIONS: usize = 64;
/// The header a state-changing request must carry, with the session's CSRF token.
pub const CSRF_HEADER: &str = "x-paddock-csrf";

/// A fresh secret: 32 random bytes, hex.
fn secret() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Equality whose time does not depend on where the strings differ.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Session {
    csrf: String,
    last_used: Instant,
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authn {
    /// The session cookie; the session's CSRF token.
    Session { csrf: String },
    /// `Authorization: Bearer <ui token>` (scripts, Prometheus): not ambient, so no CSRF.
    Bearer,
}

pub struct Auth {
    /// The listener's port.
    port: u16,
    token: String,
    cookie_name: String,
    codes: Mutex<Vec<(String, Instant)>>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Auth {
    /// The token is read from (or made in) `token_file`, mode 0600.
    pub fn open(token_file: &Path, port: u16) -> Result<Auth, DaemonError> {
        Ok(Auth {
            port,
            token: load_or_make_token(token_file)?,
            cookie_name: format!("paddock_session_{port}"),
            codes: Mutex::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// A new one-time login code.
    pub fn mint_code(&self) -> String {
        let code = secret();
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        codes.retain(|(_, at)| at.elapsed() < CODE_TTL);
        if codes.len() >= MAX_CODES {
            codes.remove(0);
        }
        codes.push((code.clone(), Instant::now()));
        code
    }

    /// Trade a login code (once) for a session: the `Set-Cookie` value.
    pub fn redeem(&self, code: &str) -> Option<String> {
        {
            let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
            codes.retain(|(_, at)| at.elapsed() < CODE_TTL);
            let i = codes.iter().position(|(c, _)| same(c, code))?;
            codes.remove(i);
        }
        let id = secret();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.last_used.elapsed() < SESSION_IDLE);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf: secret(),
                last_used: Instant::now(),
            },
        );
        Some(format!(
            "{}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            self.cookie_name,
            SESSION_IDLE.as_secs()
        ))
    }

    pub fn sessions(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Who sent this request, if anyone we know.
    pub fn authenticate(&self, headers: &HeaderMap) -> Option<Authn> {
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            let ok = v
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|t| same(t.trim(), &self.token));
            // A wrong bearer token is a failure, not a fall-back to the cookie.
            return ok.then_some(Authn::Bearer);
        }
        let id = cookie(headers, &self.cookie_name)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let key = sessions.keys().find(|k| same(k, id))?.clone();
        let s = sessions.get_mut(&key)?;
        if s.last_used.elapsed() >= SESSION_IDLE {
            sessions.remove(&key);
            return None;
        }
        s.last_used = Instant::now();
        Some(Authn::Session {
            csrf: s.csrf.clone(),
        })
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

fn load_or_make_token(path: &Path) -> Result<String, DaemonError> {
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().len() >= 32 => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DaemonError::io("read", path, e)),
    }
    let token = secret();
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| DaemonError::io("create", &tmp, e))?;
    f.write_all(token.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| DaemonError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DaemonError::io("rename", path, e))?;
    Ok(token)
}

/// The names this listener answers to (anything else may be a DNS-rebinding page).
pub fn host_allowed(host: &str, port: u16) -> bool {
    let Some((name, p)) = host.rsplit_once(':') else {
        return false;
    };
    p.parse::<u16>().ok() == Some(port)
        && (name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost") || name == "[::1]")
}

/// The request's Host (HTTP/1.1 `Host`, or the authority of an absolute URI).
pub fn request_host(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
}

pub fn forbidden(message: impl Into<String>, hint: impl Into<String>) -> DaemonError {
    DaemonError::Forbidden {
        message: message.into(),
        hint: hint.into(),
    }
}

/// What a request from a session must also show to change anything: that the page making
/// it is the dashboard's own (Origin, `Sec-Fetch-Site`) and knows the CSRF token.
/// Any request from another site (even a same-site one, such as an agent's dev server on
/// `*.localhost`) is refused, reading included.
pub fn check_session_request(
    method: &Method,
    headers: &HeaderMap,
    host: &str,
    csrf: &str,
) -> Result<(), DaemonError> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        return Err(forbidden(
            format!("refused a {site} request to the dashboard"),
            "open the dashboard itself (`paddock ui`); other pages cannot use its session",
        ));
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let want = format!("http://{host}");
        if origin.to_str().ok() != Some(want.as_str()) {
            return Err(forbidden(
                "refused a cross-origin request to the dashboard",
                "state-changing requests must come from the dashboard's own pages",
            ));
        }
    }
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !sent.is_some_and(|t| same(t, csrf)) {
        return Err(forbidden(
            "the request lacks the dashboard's CSRF token",
            "send the `X-Paddock-CSRF` header with the token from GET /ui/session, or use `Authorization: Bearer` (`paddock ui --token`)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth() -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let a = Auth::open(&dir.path().join("ui-token"), 7780).unwrap();
        (dir, a)
    }

    fn with_cookie(set_cookie: &str) -> HeaderMap {
        let pair = set_cookie.split(';').next().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {pair}")).unwrap(),
        );
        h
    }

    #[test]
    fn a_code_logs_in_once() {
        let (_d, a) = auth();
        let code = a.mint_code();
        let set = a.redeem(&code).expect("first use");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(a.redeem(&code).is_none(), "a code works once");
        assert!(a.redeem("nonsense").is_none());
        assert!(matches!(
            a.authenticate(&with_cookie(&set)),
            Some(Authn::Session { .. })
        ));
        assert_eq!(
            a.authenticate(&with_cookie("paddock_session_7780=guess")),
            None
        );
        assert_eq!(a.authenticate(&HeaderMap::new()), None);
    }

    #[test]
    fn the_token_is_kept_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ui-token");
        let t1 = Auth::open(&path, 1).unwrap().token().to_string();
        let t2 = Auth::open(&path, 2).unwrap().token().to_string();
        assert_eq!(t1, t2);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let a = Auth::open(&path, 1).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t1}")).unwrap(),
        );
        assert_eq!(a.authenticate(&h), Some(Authn::Bearer));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert_eq!(a.authenticate(&h), None);
    }

    #[test]
    fn hosts() {
        assert!(host_allowed("127.0.0.1:7780", 7780));
        assert!(host_allowed("localhost:7780", 7780));
        assert!(host_allowed("LOCALHOST:7780", 7780));
        assert!(!host_allowed("127.0.0.1:7781", 7780));
        assert!(!host_allowed("evil.example:7780", 7780));
        assert!(!host_allowed("myapp.localhost:7780", 7780));
        assert!(!host_allowed("127.0.0.1", 7780));
        assert!(!host_allowed("", 7780));
    }

    #[test]
    fn session_requests() {
        let host = "127.0.0.1:7780";
        let mut h = HeaderMap::new();
        assert!(check_session_request(&Method::GET, &h, host, "t").is_ok());
        assert!(check_session_request(&Method::POST, &h, host, "t").is_err());
        h.insert(CSRF_HEADER, HeaderValue::from_static("t"));
        assert!(check_session_request(&Method::POST, &h, host, "t").is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://web.app.localhost:8080"),
        );
        assert!(check_session_request(&Method::POST, &h, host, "t").is_err());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7780"),
        );
        assert!(check_session_request(&Method::POST, &h, host, "t").is_ok());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(check_session_request(&Method::GET, &h, host, "t").is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        h.insert(CSRF_HEADER, HeaderValue::from_static("u"));
        assert!(check_session_request(&Method::POST, &h, host, "t").is_err());
    }
}
