//! Logins of agent CLIs (OAuth): importing the file a CLI keeps its login in, the file of
//! the same shape a sandbox gets (placeholder tokens), the daemon's refresh request and
//! what it makes of the answer, and the answer paddock gives a refresh made inside a
//! sandbox (placeholders again).
//!
//! The formats, as the CLIs write them (`paddock grant <cli> --from-login` reads these):
//!
//! - Claude Code, `~/.claude/.credentials.json` (`$CLAUDE_CONFIG_DIR/.credentials.json`):
//!   `{"claudeAiOauth": {"accessToken": "sk-ant-oat01-…", "refreshToken": "sk-ant-ort01-…",
//!   "expiresAt": <ms since epoch>, "scopes": […], "subscriptionType": …, …}}`.
//!   Refreshed with a JSON POST `{grant_type, refresh_token, client_id}` to
//!   `console.anthropic.com/v1/oauth/token`; the access token goes in
//!   `Authorization: Bearer` on api.anthropic.com.
//! - Codex, `~/.codex/auth.json` (`$CODEX_HOME/auth.json`): `{"OPENAI_API_KEY": null,
//!   "tokens": {"id_token": <JWT>, "access_token": <JWT>, "refresh_token": "…",
//!   "account_id": "…"}, "last_refresh": <RFC 3339>}`. Refreshed with a JSON POST
//!   `{client_id, grant_type, refresh_token, scope}` to `auth.openai.com/oauth/token`; the
//!   access token goes in `Authorization: Bearer` on chatgpt.com (the Responses API of a
//!   ChatGPT login is `chatgpt.com/backend-api/codex/responses`).
//! - Gemini CLI, `~/.gemini/oauth_creds.json`: `{"access_token": "ya29.…",
//!   "refresh_token": "1//…", "scope": "…", "token_type": "Bearer", "id_token": <JWT>,
//!   "expiry_date": <ms since epoch>}`. Refreshed with a form POST `{client_id,
//!   client_secret, refresh_token, grant_type}` to `oauth2.googleapis.com/token`; the
//!   access token goes in `Authorization: Bearer` on cloudcode-pa.googleapis.com (Code
//!   Assist) and www.googleapis.com (account info).
//!
//! Never: puts a real token in anything it renders for a sandbox; sends the refresh token
//! anywhere but in the body of the provider's token request.

use std::collections::BTreeMap;

use base64::Engine;
use rand::{CryptoRng, Rng};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{Result, SecretsError};
use crate::kind::GrantKind;

/// How a token request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Json,
    Form,
}

/// Everything paddock needs to know about one CLI's login: data, one row per provider.
#[derive(Debug)]
pub struct LoginRow {
    pub kind: GrantKind,
    /// The CLI whose login this is (`paddock grant <cli> --from-login`).
    pub cli: &'static str,
    /// Where the CLI keeps its login, relative to the home directory (on the host, and
    /// in the sandbox under its home).
    pub file: &'static str,
    /// The provider's token endpoint.
    pub token_host: &'static str,
    pub token_path: &'static str,
    /// Other hosts whose token endpoint the CLI may use (older or newer releases).
    pub token_hosts_alt: &'static [&'static str],
    pub encoding: BodyEncoding,
    /// The CLI's public OAuth client (it is in the CLI's own code).
    pub client_id: &'static str,
    /// Google's installed-app clients have a "secret" that is public by design.
    pub client_secret: Option<&'static str>,
    /// `scope` sent with a refresh, when the provider wants one.
    pub scope: Option<&'static str>,
    /// Refresh this long before the access token expires.
    pub refresh_margin_ms: u64,
    /// The provider's token-information endpoint on `token_host`, which the CLI asks
    /// about its (placeholder) access token: answered by paddock too.
    pub info_path: Option<&'static str>,
}

/// The login rows. Facts from the CLIs' code; see the module docs.
pub const LOGINS: &[LoginRow] = &[
    LoginRow {
        kind: GrantKind::Claude,
        cli: "claude",
        file: ".claude/.credentials.json",
        token_host: "console.anthropic.com",
        token_path: "/v1/oauth/token",
        token_hosts_alt: &["platform.claude.com"],
        encoding: BodyEncoding::Json,
        client_id: "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
        client_secret: None,
        scope: None,
        refresh_margin_ms: 5 * 60 * 1000,
        info_path: None,
    },
    LoginRow {
        kind: GrantKind::Codex,
        cli: "codex",
        file: ".codex/auth.json",
        token_host: "auth.openai.com",
        token_path: "/oauth/token",
        token_hosts_alt: &[],
        encoding: BodyEncoding::Json,
        client_id: "app_EMoamEEZ73f0CkXaXp7hrann",
        client_secret: None,
        scope: Some("openid profile email"),
        refresh_margin_ms: 5 * 60 * 1000,
        info_path: None,
    },
    LoginRow {
        kind: GrantKind::GeminiLogin,
        cli: "gemini",
        file: ".gemini/oauth_creds.json",
        token_host: "oauth2.googleapis.com",
        token_path: "/token",
        token_hosts_alt: &[],
        encoding: BodyEncoding::Form,
        client_id: "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com",
        client_secret: Some("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"),
        scope: None,
        refresh_margin_ms: 5 * 60 * 1000,
        info_path: Some("/tokeninfo"),
    },
];

impl LoginRow {
    /// The login row of `kind`, if it is a login.
    pub fn of(kind: GrantKind) -> Option<&'static LoginRow> {
        LOGINS.iter().find(|r| r.kind == kind)
    }

    /// The login row for `paddock grant <cli> --from-login`.
    pub fn for_cli(cli: &str) -> Option<&'static LoginRow> {
        LOGINS.iter().find(|r| r.cli == cli)
    }

    /// Whether a request to `host` `path` is this provider's token-information endpoint.
    pub fn is_info_endpoint(&self, host: &str, path: &str) -> bool {
        let path = path.split('?').next().unwrap_or(path);
        host == self.token_host && self.info_path == Some(path)
    }

    /// Whether a request to `host` `path` is this provider's token endpoint.
    pub fn is_token_endpoint(&self, host: &str, path: &str) -> bool {
        let path = path.split('?').next().unwrap_or(path);
        (host == self.token_host || self.token_hosts_alt.contains(&host)) && path == self.token_path
    }
}

/// A login as paddock keeps it: the grant's value is this, as JSON (encrypted at rest
/// like every grant value). `extra` keeps the file's other fields (scopes, subscription,
/// account) so the sandbox's file has them too.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub access_token: String,
    pub refresh_token: String,
    /// When the access token expires (ms since the epoch), when known.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
    /// Codex and Gemini: the OpenID token (a JWT; its claims name the account).
    #[serde(default)]
    pub id_token: Option<String>,
    /// Non-secret fields of the CLI's file, kept as they were.
    #[serde(default)]
    pub extra: Map<String, Value>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.access_token.zeroize();
        self.refresh_token.zeroize();
        if let Some(t) = &mut self.id_token {
            t.zeroize();
        }
    }
}

/// What a sandbox holds instead of a login's tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginPlaceholders {
    pub access: String,
    pub refresh: String,
    #[serde(default)]
    pub id_token: Option<String>,
}

fn bad(what: impl Into<String>) -> SecretsError {
    SecretsError::InvalidLogin {
        reason: what.into(),
    }
}

fn str_field(o: &Map<String, Value>, key: &str, within: &str) -> Result<String> {
    match o.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(bad(format!("`{within}{key}` is not a non-empty string"))),
        None => Err(bad(format!("`{within}{key}` is missing"))),
    }
}

fn ms_field(o: &Map<String, Value>, key: &str) -> Option<u64> {
    o.get(key).and_then(|v| match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    })
}

/// The `exp` claim of a JWT, in ms since the epoch (unverified: it only schedules a
/// refresh).
pub fn jwt_expiry_ms(jwt: &str) -> Option<u64> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("exp")?.as_u64().map(|s| s * 1000)
}

impl Login {
    /// Read the file a CLI keeps its login in (`row.file`).
    pub fn import(row: &LoginRow, bytes: &[u8]) -> Result<Login> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("the file is not JSON ({e})")))?;
        let Value::Object(top) = v else {
            return Err(bad("the file is not a JSON object"));
        };
        match row.kind {
            GrantKind::Claude => {
                let Some(Value::Object(o)) = top.get("claudeAiOauth") else {
                    return Err(bad(
                        "`claudeAiOauth` is missing: is this Claude Code's login?",
                    ));
                };
                let mut extra = o.clone();
                for k in ["accessToken", "refreshToken", "expiresAt"] {
                    extra.remove(k);
                }
                Ok(Login {
                    access_token: str_field(o, "accessToken", "claudeAiOauth.")?,
                    refresh_token: str_field(o, "refreshToken", "claudeAiOauth.")?,
                    expires_at_ms: ms_field(o, "expiresAt"),
                    id_token: None,
                    extra,
                })
            }
            GrantKind::Codex => {
                let Some(Value::Object(t)) = top.get("tokens") else {
                    return Err(bad(
                        "`tokens` is missing: codex is logged in with an API key, not ChatGPT (use `paddock grant openai`)",
                    ));
                };
                let access = str_field(t, "access_token", "tokens.")?;
                let mut extra = Map::new();
                if let Some(a) = t.get("account_id").filter(|a| a.is_string()) {
                    extra.insert("account_id".into(), a.clone());
                }
                Ok(Login {
                    expires_at_ms: jwt_expiry_ms(&access),
                    access_token: access,
                    refresh_token: str_field(t, "refresh_token", "tokens.")?,
                    id_token: Some(str_field(t, "id_token", "tokens.")?),
                    extra,
                })
            }
            GrantKind::GeminiLogin => {
                let mut extra = top.clone();
                for k in ["access_token", "refresh_token", "expiry_date", "id_token"] {
                    extra.remove(k);
                }
                Ok(Login {
                    access_token: str_field(&top, "access_token", "")?,
                    refresh_token: str_field(&top, "refresh_token", "")?,
                    expires_at_ms: ms_field(&top, "expiry_date"),
                    id_token: top
                        .get("id_token")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    extra,
                })
            }
            _ => Err(bad("not a login kind")),
        }
    }

    /// The stored form (the grant's value): compact JSON in printable ASCII (a grant
    /// value must be), other characters as `\\u` escapes, which only strings hold.
    pub fn to_value(&self) -> String {
        let json = serde_json::to_string(self).expect("a login serialises");
        let mut out = String::with_capacity(json.len());
        for c in json.chars() {
            if c.is_ascii() && !c.is_ascii_control() {
                out.push(c);
            } else {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out
    }

    /// Parse the stored form.
    pub fn from_value(s: &str) -> Result<Login> {
        serde_json::from_str(s).map_err(|e| bad(format!("the stored login is unreadable ({e})")))
    }

    /// Whether the access token must be refreshed now.
    pub fn needs_refresh(&self, row: &LoginRow, now_ms: u64) -> bool {
        match self.expires_at_ms {
            Some(at) => at <= now_ms.saturating_add(row.refresh_margin_ms),
            None => false,
        }
    }

    /// Placeholders for one run: the CLI's own token shapes, fresh random parts.
    pub fn draw_placeholders<R: CryptoRng + ?Sized>(
        &self,
        row: &LoginRow,
        access: String,
        rng: &mut R,
    ) -> LoginPlaceholders {
        let refresh = match row.kind {
            GrantKind::Claude => format!("sk-ant-ort01-{}AA", random(rng, 93)),
            GrantKind::GeminiLogin => format!("1//0{}", random(rng, 99)),
            _ => format!("rt_{}", random(rng, 43)),
        };
        LoginPlaceholders {
            access,
            refresh,
            id_token: self.id_token.as_deref().map(|t| fake_jwt(t, rng)),
        }
    }

    /// The CLI's file with placeholders instead of tokens, as the sandbox gets it. The
    /// expiry it shows is a year away, so the CLI has no reason to refresh (the daemon
    /// does); if it refreshes anyway, paddock answers with placeholders.
    pub fn sandbox_file(&self, row: &LoginRow, ph: &LoginPlaceholders, now_ms: u64) -> Vec<u8> {
        let far = now_ms + 365 * 24 * 3600 * 1000;
        let v = match row.kind {
            GrantKind::Claude => {
                let mut o = self.extra.clone();
                o.insert("accessToken".into(), json!(ph.access));
                o.insert("refreshToken".into(), json!(ph.refresh));
                o.insert("expiresAt".into(), json!(far));
                json!({ "claudeAiOauth": o })
            }
            GrantKind::Codex => json!({
                "OPENAI_API_KEY": null,
                "tokens": {
                    "id_token": ph.id_token,
                    "access_token": ph.access,
                    "refresh_token": ph.refresh,
                    "account_id": self.extra.get("account_id"),
                },
                "last_refresh": rfc3339(now_ms),
            }),
            _ => {
                let mut o = self.extra.clone();
                o.insert("access_token".into(), json!(ph.access));
                o.insert("refresh_token".into(), json!(ph.refresh));
                o.insert("expiry_date".into(), json!(far));
                if let Some(id) = &ph.id_token {
                    o.insert("id_token".into(), json!(id));
                }
                o.entry("token_type").or_insert(json!("Bearer"));
                Value::Object(o)
            }
        };
        serde_json::to_vec_pretty(&v).expect("json serialises")
    }

    /// The daemon's refresh: (content type, body) of the POST to the token endpoint. The
    /// body holds the real refresh token: it goes to `row.token_host` only.
    pub fn refresh_request(&self, row: &LoginRow) -> (&'static str, Vec<u8>) {
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        fields.insert("grant_type", "refresh_token");
        fields.insert("refresh_token", &self.refresh_token);
        fields.insert("client_id", row.client_id);
        if let Some(s) = row.client_secret {
            fields.insert("client_secret", s);
        }
        if let Some(s) = row.scope {
            fields.insert("scope", s);
        }
        match row.encoding {
            BodyEncoding::Json => (
                "application/json",
                serde_json::to_vec(&fields).expect("json serialises"),
            ),
            BodyEncoding::Form => {
                let body = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", crate::inject::percent(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                ("application/x-www-form-urlencoded", body.into_bytes())
            }
        }
    }

    /// Take the token endpoint's answer: new access token, maybe a new refresh token
    /// (Anthropic and OpenAI rotate them), the new expiry.
    pub fn apply_refresh(&mut self, body: &[u8], now_ms: u64) -> Result<()> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| bad(format!("the token endpoint's answer is not JSON ({e})")))?;
        let Value::Object(o) = v else {
            return Err(bad("the token endpoint's answer is not a JSON object"));
        };
        let access = str_field(&o, "access_token", "")?;
        if let Ok(r) = str_field(&o, "refresh_token", "") {
            self.refresh_token = r;
        }
        if let Ok(id) = str_field(&o, "id_token", "") {
            self.id_token = Some(id);
        }
        self.expires_at_ms = match o.get("expires_in").and_then(Value::as_u64) {
            Some(s) => Some(now_ms + s * 1000),
            None => jwt_expiry_ms(&access),
        };
        self.access_token = access;
        Ok(())
    }
}

/// The answer to a refresh made inside a sandbox: `Some(json body)` when the request
/// presents this run's placeholder refresh token (anything else is not paddock's to
/// answer). Only placeholders are in it.
pub fn sandbox_refresh_answer(
    row: &LoginRow,
    ph: &LoginPlaceholders,
    body: &[u8],
) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let presented = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => o.get("refresh_token")?.as_str()?.to_string(),
        _ => form_value(text, "refresh_token")?,
    };
    if presented != ph.refresh {
        return None;
    }
    let year = 365 * 24 * 3600;
    let v = match row.kind {
        GrantKind::Claude => json!({
            "token_type": "Bearer",
            "access_token": ph.access,
            "refresh_token": ph.refresh,
            "expires_in": year,
        }),
        GrantKind::Codex => json!({
            "id_token": ph.id_token,
            "access_token": ph.access,
            "refresh_token": ph.refresh,
        }),
        _ => {
            let mut o = json!({
                "access_token": ph.access,
                "expires_in": 3599,
                "token_type": "Bearer",
            });
            if let Some(id) = &ph.id_token {
                o["id_token"] = json!(id);
            }
            o
        }
    };
    Some(serde_json::to_vec(&v).expect("json serialises"))
}

/// The answer to a token-information request about the sandbox's placeholder access token
/// (named in `authorization`, the query or the body): what Google's `tokeninfo` says of a
/// valid token, with nothing of the real one. `None` for any other token.
pub fn sandbox_info_answer(
    row: &LoginRow,
    ph: &LoginPlaceholders,
    scope: Option<&str>,
    authorization: Option<&str>,
    query: Option<&str>,
    body: &[u8],
) -> Option<Vec<u8>> {
    let presented = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| query.and_then(|q| form_value(q, "access_token")))
        .or_else(|| {
            std::str::from_utf8(body)
                .ok()
                .and_then(|b| form_value(b, "access_token"))
        })?;
    if presented != ph.access {
        return None;
    }
    let v = json!({
        "azp": row.client_id,
        "aud": row.client_id,
        "scope": scope.unwrap_or(""),
        "expires_in": 3599,
        "access_type": "offline",
    });
    Some(serde_json::to_vec(&v).expect("json serialises"))
}

fn form_value(text: &str, key: &str) -> Option<String> {
    text.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

const URLSAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn random<R: CryptoRng + ?Sized>(rng: &mut R, n: usize) -> String {
    (0..n)
        .map(|_| URLSAFE[rng.random_range(0..URLSAFE.len())] as char)
        .collect()
}

/// A JWT-shaped placeholder: the real token's header and claims (they name the account,
/// which the CLI reads), a random signature (the part that makes it a credential).
pub fn fake_jwt<R: CryptoRng + ?Sized>(real: &str, rng: &mut R) -> String {
    let mut parts = real.split('.');
    match (parts.next(), parts.next()) {
        (Some(h), Some(p)) if !h.is_empty() && !p.is_empty() => {
            format!("{h}.{p}.{}", random(rng, 86))
        }
        _ => {
            let b64 =
                |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "RS256", "typ": "JWT"})),
                b64(&json!({})),
                random(rng, 86)
            )
        }
    }
}

fn rfc3339(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn jwt(claims: Value) -> String {
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(&json!({"alg":"RS256"})),
            b64(&claims)
        )
    }

    #[test]
    fn claude_round_trip_never_shows_tokens() {
        let row = LoginRow::for_cli("claude").unwrap();
        let file = br#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-REALACCESS","refreshToken":"sk-ant-ort01-REALREFRESH","expiresAt":1000,"scopes":["user:inference"],"subscriptionType":"max"}}"#;
        let login = Login::import(row, file).unwrap();
        assert_eq!(login.expires_at_ms, Some(1000));
        assert!(login.needs_refresh(row, 0));
        let mut rng = StdRng::seed_from_u64(1);
        let ph = login.draw_placeholders(row, "sk-ant-oat01-PLACEHOLDER".into(), &mut rng);
        let out = String::from_utf8(login.sandbox_file(row, &ph, 5)).unwrap();
        assert!(!out.contains("REAL"), "{out}");
        assert!(out.contains("subscriptionType") && out.contains(&ph.refresh));
        let stored = Login::from_value(&login.to_value()).unwrap();
        assert!(stored == login);
        let (_, body) = login.refresh_request(row);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["refresh_token"], "sk-ant-ort01-REALREFRESH");
        assert_eq!(body["grant_type"], "refresh_token");
        // A refresh from the sandbox presents the placeholder and gets placeholders.
        let req = json!({"grant_type":"refresh_token","refresh_token": ph.refresh}).to_string();
        let ans =
            String::from_utf8(sandbox_refresh_answer(row, &ph, req.as_bytes()).unwrap()).unwrap();
        assert!(ans.contains(&ph.access) && !ans.contains("REAL"));
        assert!(sandbox_refresh_answer(row, &ph, br#"{"refresh_token":"other"}"#).is_none());
    }

    #[test]
    fn codex_expiry_from_the_access_token_and_fake_id_token() {
        let row = LoginRow::for_cli("codex").unwrap();
        let access = jwt(json!({"exp": 2_000_000_000u64}));
        let id = jwt(
            json!({"email":"a@b.c","https://api.openai.com/auth":{"chatgpt_account_id":"acc"}}),
        );
        let file = json!({"OPENAI_API_KEY": null, "tokens": {"id_token": id, "access_token": access, "refresh_token": "rt_REAL", "account_id": "acc"}, "last_refresh": "2026-01-01T00:00:00Z"});
        let login = Login::import(row, file.to_string().as_bytes()).unwrap();
        assert_eq!(login.expires_at_ms, Some(2_000_000_000_000));
        let mut rng = StdRng::seed_from_u64(2);
        let ph = login.draw_placeholders(row, "x".into(), &mut rng);
        let fake = ph.id_token.clone().unwrap();
        assert!(fake.starts_with(id.rsplit_once('.').unwrap().0));
        assert!(!fake.ends_with("c2lnbmF0dXJl"));
        let out = String::from_utf8(login.sandbox_file(row, &ph, 0)).unwrap();
        assert!(!out.contains("rt_REAL") && !out.contains(&access) && out.contains("\"acc\""));
    }

    #[test]
    fn gemini_refresh_is_a_form_and_keeps_the_refresh_token() {
        let row = LoginRow::for_cli("gemini").unwrap();
        let file = br#"{"access_token":"ya29.REAL","refresh_token":"1//0REAL","scope":"openid","token_type":"Bearer","expiry_date":5}"#;
        let mut login = Login::import(row, file).unwrap();
        let (ct, body) = login.refresh_request(row);
        assert_eq!(ct, "application/x-www-form-urlencoded");
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains("refresh_token=1%2F%2F0REAL") && body.contains("client_secret="));
        login
            .apply_refresh(br#"{"access_token":"ya29.NEW","expires_in":3600}"#, 1000)
            .unwrap();
        assert_eq!(login.access_token, "ya29.NEW");
        assert_eq!(login.refresh_token, "1//0REAL");
        assert_eq!(login.expires_at_ms, Some(3_601_000));
        let ph = LoginPlaceholders {
            access: "ya29.P".into(),
            refresh: "1//0P".into(),
            id_token: None,
        };
        assert!(
            sandbox_refresh_answer(
                row,
                &ph,
                b"grant_type=refresh_token&refresh_token=1%2F%2F0P"
            )
            .is_some()
        );
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        for cli in ["claude", "codex", "gemini"] {
            let row = LoginRow::for_cli(cli).unwrap();
            for f in [
                &b""[..],
                b"[]",
                b"{}",
                b"{\"claudeAiOauth\":1}",
                b"{\"tokens\":{}}",
                b"\xff",
            ] {
                assert!(Login::import(row, f).is_err(), "{cli} {f:?}");
            }
        }
        let mut l = Login::import(
            LoginRow::for_cli("gemini").unwrap(),
            br#"{"access_token":"a","refresh_token":"b"}"#,
        )
        .unwrap();
        assert!(l.apply_refresh(b"{}", 0).is_err());
        assert!(l.apply_refresh(b"nope", 0).is_err());
    }
}
