//! [`SecretValue`]: a credential in memory. Zeroized on drop, never printed: `Debug` shows
//! only its length, and [`SecretValue::masked`] a preview such as `ghp_…abcd`.

use secrecy::{ExposeSecret, SecretString};

use crate::error::{Result, SecretsError};

/// Longest value accepted (a credential, not a document).
pub const MAX_VALUE_LEN: usize = 16 * 1024;

/// A real credential. Cloning copies it (both copies are zeroized on drop).
#[derive(Clone)]
pub struct SecretValue(SecretString);

impl SecretValue {
    /// Wraps `value` after checking that it can travel in an HTTP header: printable ASCII
    /// (spaces allowed inside), no surrounding whitespace, 1..=16 KiB.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value: String = value.into();
        // Move into the secret wrapper first, so an invalid value is zeroized too.
        let secret = Self(SecretString::from(value));
        validate(secret.expose())?;
        Ok(secret)
    }

    /// The clear value. Call sites are the few places that must see it (encryption,
    /// injection, the scrubber's patterns); grep for `expose` to audit them.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// Always false for a validated value; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    /// A preview safe to print: see [`mask`].
    pub fn masked(&self) -> String {
        mask(self.expose())
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue(<redacted, {} bytes>)", self.len())
    }
}

fn validate(v: &str) -> Result<()> {
    let bad = |reason| Err(SecretsError::InvalidValue { reason });
    if v.is_empty() {
        return bad("it is empty");
    }
    if v.len() > MAX_VALUE_LEN {
        return bad("it is longer than 16 KiB");
    }
    if v.bytes().any(|b| !(0x20..=0x7e).contains(&b)) {
        return bad("it contains a control, newline or non-ASCII character");
    }
    if v.starts_with(' ') || v.ends_with(' ') {
        return bad("it starts or ends with a space");
    }
    Ok(())
}

/// Prefixes that identify a credential's issuer; they are not secret and are kept in
/// previews. Longest first.
const KNOWN_PREFIXES: &[&str] = &[
    "sk-ant-api03-",
    "github_pat_",
    "sk-svcacct-",
    "sk-admin-",
    "sk-proj-",
    "sk-ant-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "xoxb-",
    "xoxp-",
    "sk-",
];

/// A masked preview of a credential: its issuer prefix (when known), `…`, and its last
/// four characters; fewer characters for short values, none below 12 characters.
/// Examples: `ghp_…abcd`, `sk-ant-api03-…90AA`, `…wxyz`, `…`.
pub fn mask(value: &str) -> String {
    let prefix = KNOWN_PREFIXES
        .iter()
        .find(|p| value.len() >= p.len() + 16 && value.starts_with(**p))
        .copied()
        .unwrap_or("");
    let tail = match value.len() {
        0..12 => 0,
        12..20 => 2,
        _ => 4,
    };
    // Values are ASCII (validated), so byte slicing is on char boundaries; `get` keeps
    // this total for arbitrary input.
    let end = value.get(value.len() - tail..).unwrap_or("");
    format!("{prefix}…{end}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(
            mask("ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
            "ghp_…6789"
        );
        assert_eq!(mask("short"), "…");
        assert_eq!(mask("0123456789abcd"), "…cd");
        assert_eq!(mask("plainvalue0123456789xyz"), "…9xyz");
    }

    #[test]
    fn rejects_bad_values() {
        for v in ["", " lead", "trail ", "new\nline", "nul\0", "é"] {
            assert!(SecretValue::new(v).is_err(), "{v:?}");
        }
        assert!(SecretValue::new("a".repeat(MAX_VALUE_LEN + 1)).is_err());
        assert!(SecretValue::new("user pass").is_ok());
    }

    #[test]
    fn debug_is_redacted() {
        let v = SecretValue::new("ghp_supersecretvalue1234567890abcdefgh").unwrap();
        let d = format!("{v:?} {v:#?}");
        assert!(!d.contains("supersecret"), "{d}");
        assert!(d.contains("redacted"));
    }
}
