//! Host patterns a grant belongs to: an exact name (`api.github.com`) or a wildcard over
//! the subdomains of a domain with at least two labels (`*.example.com`, which does not
//! match `example.com` itself). Matching ignores case, a trailing dot and any `:port`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SecretsError};

/// A validated host pattern.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern {
    /// Lower-case, no trailing dot; for a wildcard, the suffix after `*.`.
    name: String,
    wildcard: bool,
}

impl HostPattern {
    /// Parses and validates a pattern.
    pub fn parse(pattern: &str) -> Result<Self> {
        let bad = |reason| {
            Err(SecretsError::InvalidHost {
                pattern: pattern.to_string(),
                reason,
            })
        };
        // An IPv6 literal (bare or in brackets) is an exact pattern: `matches` compares
        // against `normalize_host`, which strips the brackets and port.
        let unbracketed = pattern
            .strip_prefix('[')
            .and_then(|p| p.strip_suffix(']'))
            .unwrap_or(pattern);
        if let Ok(ip) = unbracketed.parse::<std::net::Ipv6Addr>() {
            return Ok(Self {
                name: ip.to_string(),
                wildcard: false,
            });
        }
        let lower = pattern.trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower),
        };
        if name.is_empty() {
            return bad("it is empty");
        }
        if name.len() > 253 {
            return bad("it is longer than 253 characters");
        }
        if name.contains('*') {
            return bad("'*' is only allowed as the whole first label ('*.example.com')");
        }
        let labels: Vec<&str> = name.split('.').collect();
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return bad("every label must be 1-63 characters");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return bad(
                    "only letters, digits, '-', '_' and '.' are allowed (no scheme, port, path or user)",
                );
            }
            if label.starts_with('-') || label.ends_with('-') {
                return bad("a label cannot start or end with '-'");
            }
        }
        if wildcard && labels.len() < 2 {
            return bad(
                "a wildcard must cover a domain with at least two labels ('*.example.com', not '*.com')",
            );
        }
        if labels.len() == 1 && name != "localhost" {
            return bad("use a fully qualified name (a single label only for 'localhost')");
        }
        Ok(Self { name, wildcard })
    }

    /// Whether a request for `host` (which may carry `:port`, a trailing dot or capitals)
    /// belongs to this pattern.
    pub fn matches(&self, host: &str) -> bool {
        let host = normalize_host(host);
        if self.wildcard {
            host.len() > self.name.len() + 1
                && host.ends_with(&self.name)
                && host.as_bytes()[host.len() - self.name.len() - 1] == b'.'
        } else if let Ok(ip) = self.name.parse::<std::net::Ipv6Addr>() {
            host.parse::<std::net::Ipv6Addr>() == Ok(ip)
        } else {
            host == self.name
        }
    }

    /// Whether this is a `*.` wildcard.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Higher is more specific: exact names beat wildcards, longer suffixes beat shorter.
    pub fn specificity(&self) -> usize {
        if self.wildcard {
            self.name.len()
        } else {
            usize::MAX
        }
    }
}

/// Lower-cases `host`, strips an IPv6 literal's brackets, a `:port` and a trailing dot.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let host = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            write!(f, "*.{}", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

impl fmt::Debug for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostPattern({self})")
    }
}

impl TryFrom<String> for HostPattern {
    type Error = SecretsError;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<HostPattern> for String {
    fn from(p: HostPattern) -> String {
        p.to_string()
    }
}

impl std::str::FromStr for HostPattern {
    type Err = SecretsError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let p = HostPattern::parse("API.GitHub.com.").unwrap();
        assert_eq!(p.to_string(), "api.github.com");
        assert!(p.matches("api.github.com"));
        assert!(p.matches("API.GITHUB.COM:443"));
        assert!(p.matches("api.github.com."));
        assert!(!p.matches("github.com"));
        assert!(!p.matches("api.github.com.evil.com"));
        assert!(!p.matches("evilapi.github.com"));

        let w = HostPattern::parse("*.example.com").unwrap();
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com:8443"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("badexample.com"));
        assert!(w.specificity() < p.specificity());
    }

    #[test]
    fn rejects_bad_patterns() {
        for bad in [
            "",
            "*",
            "*.com",
            "a.*.com",
            "https://api.github.com",
            "api.github.com/path",
            "api.github.com:443",
            "user@host.com",
            "-a.com",
            "a..com",
            "com",
            "exa mple.com",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(HostPattern::parse("localhost").is_ok());
    }

    #[test]
    fn ip_literals_are_exact() {
        let v4 = HostPattern::parse("10.0.0.5").unwrap();
        assert!(v4.matches("10.0.0.5:443"));
        let v6 = HostPattern::parse("::1").unwrap();
        assert!(v6.matches("[::1]:443"));
        assert!(v6.matches("::1"));
        assert!(!v6.matches("::2"));
        let long = HostPattern::parse("[FD00:0:0::5]").unwrap();
        assert_eq!(long.to_string(), "fd00::5");
        assert!(long.matches("[fd00::5]:8443"));
        assert!(long.matches("[FD00:0:0::5]:8443"));
        assert!(HostPattern::parse("*.::1").is_err());
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize_host("[::1]:443"), "::1");
        assert_eq!(normalize_host("Example.COM:80"), "example.com");
        assert_eq!(normalize_host("::1"), "::1");
    }
}
