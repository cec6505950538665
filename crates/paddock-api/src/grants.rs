//! Grants (capability `grants`): credentials the daemon keeps encrypted and the egress
//! proxy injects on the way out of a sandbox.
//!
//! - `PUT /v1/grants/{name}` with [`PutGrant`] → [`PutGrantResponse`] (201 when created,
//!   200 when an existing grant was replaced);
//! - `GET /v1/grants` → [`GrantList`];
//! - `GET /v1/grants/{name}` → [`GrantInfo`];
//! - `DELETE /v1/grants/{name}` → [`RevokedGrant`].
//!
//! A value travels only in the body of `PUT` (over the 0600 socket): never in a URL, and
//! never in an answer. Answers carry a masked preview (`ghp_…abcd`) at most.

use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientError, enc};

/// Body of `PUT /v1/grants/{name}`.
///
/// `Debug` never shows [`PutGrant::value`].
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutGrant {
    /// `github`, `anthropic`, `openai` or `http`.
    pub kind: String,
    /// `http` only: host patterns (`api.example.com`, `*.example.com`), at least one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// `http` only: the header that carries the credential (e.g. `X-Api-Key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `http` only: how the value is written into the header, with `{}` once (default
    /// `{}`, e.g. `Bearer {}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `http` only: environment variables that receive the placeholder in the sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `http` only: where else, on the grant's hosts, a placeholder is replaced by the
    /// value: any of `url` (path and query), `headers` (every header value) and `body`
    /// (request bodies up to 1 MiB, uncompressed). Empty: only in the grant's own header.
    /// Additive: a daemon that predates it ignores it, so a client checks `substitute` in
    /// the answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub substitute: Vec<String>,
    /// The credential itself.
    pub value: String,
}

impl std::fmt::Debug for PutGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutGrant")
            .field("kind", &self.kind)
            .field("hosts", &self.hosts)
            .field("header", &self.header)
            .field("format", &self.format)
            .field("env", &self.env)
            .field("substitute", &self.substitute)
            .field(
                "value",
                &format_args!("<redacted, {} bytes>", self.value.len()),
            )
            .finish()
    }
}

/// Where a grant's credential goes: requests to `host` get `header: format(value)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRule {
    pub host: String,
    /// Lower-case header name.
    pub header: String,
    /// `Bearer {}`, `{}`, `Basic base64(x-access-token:{})`, …
    pub format: String,
}

/// A grant without its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    pub name: String,
    /// `github`, `anthropic`, `openai` or `http`.
    pub kind: String,
    /// Masked preview of the value: the issuer prefix (when known) and the last characters,
    /// e.g. `ghp_…abcd`.
    pub preview: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Where the credential is injected.
    #[serde(default)]
    pub rules: Vec<GrantRule>,
    /// Environment variables that receive a placeholder inside the sandbox.
    #[serde(default)]
    pub env: Vec<String>,
    /// Where else a placeholder is replaced by the value on the grant's hosts (`url`,
    /// `headers`, `body`); empty: only in the grant's own header.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub substitute: Vec<String>,
}

/// `GET /v1/grants`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GrantList {
    /// Sorted by name.
    pub grants: Vec<GrantInfo>,
}

/// Answer of `PUT /v1/grants/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutGrantResponse {
    pub grant: GrantInfo,
    /// A grant of that name existed and was replaced.
    #[serde(default)]
    pub replaced: bool,
}

/// Answer of `DELETE /v1/grants/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedGrant {
    pub name: String,
    /// The grant that was removed; absent when its file was unreadable (it is removed all
    /// the same).
    #[serde(default)]
    pub grant: Option<GrantInfo>,
}

impl Client {
    /// Creates or replaces a grant. The value goes in the request body only.
    pub async fn put_grant(
        &self,
        name: &str,
        req: &PutGrant,
    ) -> Result<PutGrantResponse, ClientError> {
        self.call(
            hyper::Method::PUT,
            &format!("/v1/grants/{}", enc(name)),
            Some(req),
        )
        .await
    }

    pub async fn list_grants(&self) -> Result<GrantList, ClientError> {
        self.call(hyper::Method::GET, "/v1/grants", None::<&()>)
            .await
    }

    pub async fn get_grant(&self, name: &str) -> Result<GrantInfo, ClientError> {
        self.call(
            hyper::Method::GET,
            &format!("/v1/grants/{}", enc(name)),
            None::<&()>,
        )
        .await
    }

    pub async fn revoke_grant(&self, name: &str) -> Result<RevokedGrant, ClientError> {
        self.call(
            hyper::Method::DELETE,
            &format!("/v1/grants/{}", enc(name)),
            None::<&()>,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let req = PutGrant {
            kind: "github".into(),
            value: "ghp_THISISTHEVALUE0123456789".into(),
            ..PutGrant::default()
        };
        let d = format!("{req:?} {req:#?}");
        assert!(!d.contains("THISISTHEVALUE"), "{d}");
        assert!(d.contains("redacted"));
    }

    #[test]
    fn put_grant_tolerates_missing_optional_fields() {
        let r: PutGrant =
            serde_json::from_str(r#"{"kind":"openai","value":"sk-x","new":1}"#).unwrap();
        assert_eq!(r.kind, "openai");
        assert!(r.hosts.is_empty() && r.header.is_none());
    }
}
