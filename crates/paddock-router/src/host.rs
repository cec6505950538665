//! Parsing of the `Host` header (or HTTP/2 `:authority`) into a routing target.
//!
//! Owns: the grammar `[endpoint.]run.localhost[.][:port]`, case-insensitively, and the DNS
//! label rules shared with route registration. Never looks at the route table.

use std::borrow::Cow;

/// What a request's host names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// Bare `localhost`: the index of all runs.
    Index,
    /// `run.localhost`.
    Run(Cow<'a, str>),
    /// `endpoint.run.localhost`.
    Endpoint {
        run: Cow<'a, str>,
        endpoint: Cow<'a, str>,
    },
}

/// Why a host cannot be routed (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the request has no Host header")]
    Missing,
    #[error("the Host header is not valid text")]
    NotText,
    #[error("\"{0}\" is not under .localhost")]
    NotLocalhost(String),
    #[error("\"{0}\" has an invalid port")]
    BadPort(String),
    #[error("\"{0}\" is not a valid DNS label")]
    BadLabel(String),
    #[error("\"{0}\" has too many labels: use endpoint.run.localhost")]
    TooDeep(String),
}

/// True when `s` is a DNS label as paddock uses them for run and endpoint names: 1–63
/// characters of `a-z`, `0-9` and `-`, neither starting nor ending with `-`. Upper case is
/// rejected here; hosts are lower-cased before they are checked.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Parse a Host value such as `Web.MyApp.localhost.:8080` into a [`Target`].
pub fn parse_host(raw: &str) -> Result<Target<'_>, HostError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(HostError::Missing);
    }
    // IPv6 literals ("[::1]:8080") and IP addresses in general are not names under
    // .localhost: refuse them explicitly rather than mis-splitting on ':'.
    if raw.starts_with('[') {
        return Err(HostError::NotLocalhost(raw.to_string()));
    }
    let host = match raw.rsplit_once(':') {
        Some((h, port)) => {
            if port.is_empty()
                || port.len() > 5
                || !port.bytes().all(|c| c.is_ascii_digit())
                || port.parse::<u32>().map_or(true, |p| p == 0 || p > 65535)
            {
                return Err(HostError::BadPort(raw.to_string()));
            }
            h
        }
        None => raw,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let host: Cow<'_, str> = if host.bytes().any(|c| c.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    let rest = if host == "localhost" {
        return Ok(Target::Index);
    } else if let Some(rest) = host.strip_suffix(".localhost") {
        rest
    } else {
        return Err(HostError::NotLocalhost(raw.to_string()));
    };
    let (first, second) = match rest.split_once('.') {
        None => (rest, None),
        Some((a, b)) => (a, Some(b)),
    };
    for label in [Some(first), second].into_iter().flatten() {
        if label.contains('.') {
            return Err(HostError::TooDeep(raw.to_string()));
        }
        if !is_dns_label(label) {
            return Err(HostError::BadLabel(label.to_string()));
        }
    }
    let own = |s: &str| -> Cow<'_, str> { Cow::Owned(s.to_string()) };
    Ok(match (&host, second) {
        (Cow::Borrowed(h), None) => Target::Run(Cow::Borrowed(&h[..first.len()])),
        (Cow::Borrowed(h), Some(run)) => Target::Endpoint {
            endpoint: Cow::Borrowed(&h[..first.len()]),
            run: Cow::Borrowed(&h[first.len() + 1..first.len() + 1 + run.len()]),
        },
        (Cow::Owned(_), None) => Target::Run(own(first)),
        (Cow::Owned(_), Some(run)) => Target::Endpoint {
            endpoint: own(first),
            run: own(run),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(e: &str, r: &str) -> Target<'static> {
        Target::Endpoint {
            run: Cow::Owned(r.into()),
            endpoint: Cow::Owned(e.into()),
        }
    }

    #[test]
    fn endpoint_run_and_index() {
        assert_eq!(
            parse_host("web.myapp.localhost:8080"),
            Ok(ep("web", "myapp"))
        );
        assert_eq!(parse_host("web.myapp.localhost"), Ok(ep("web", "myapp")));
        assert_eq!(
            parse_host("myapp.localhost:8080"),
            Ok(Target::Run("myapp".into()))
        );
        assert_eq!(parse_host("localhost:8080"), Ok(Target::Index));
        assert_eq!(parse_host("localhost"), Ok(Target::Index));
    }

    #[test]
    fn case_and_trailing_dot() {
        assert_eq!(
            parse_host("WEB.MyApp.LocalHost:8080"),
            Ok(ep("web", "myapp"))
        );
        assert_eq!(
            parse_host("web.myapp.localhost.:8080"),
            Ok(ep("web", "myapp"))
        );
        assert_eq!(parse_host("localhost."), Ok(Target::Index));
        assert_eq!(
            parse_host("My-App.localhost."),
            Ok(Target::Run("my-app".into()))
        );
    }

    #[test]
    fn ports() {
        assert!(matches!(
            parse_host("web.myapp.localhost:"),
            Err(HostError::BadPort(_))
        ));
        assert!(matches!(
            parse_host("web.myapp.localhost:0"),
            Err(HostError::BadPort(_))
        ));
        assert!(matches!(
            parse_host("web.myapp.localhost:65536"),
            Err(HostError::BadPort(_))
        ));
        assert!(matches!(
            parse_host("web.myapp.localhost:80a"),
            Err(HostError::BadPort(_))
        ));
        assert!(matches!(
            parse_host("web.myapp.localhost:123456"),
            Err(HostError::BadPort(_))
        ));
        assert_eq!(
            parse_host("web.myapp.localhost:65535"),
            Ok(ep("web", "myapp"))
        );
    }

    #[test]
    fn ip_literals_and_foreign_hosts() {
        for h in [
            "[::1]:8080",
            "[::1]",
            "[fe80::1%25lo]:80",
            "127.0.0.1:8080",
            "example.com",
            "localhost.example.com",
            "myapp.localhostx",
            "xlocalhost",
        ] {
            assert!(
                matches!(parse_host(h), Err(HostError::NotLocalhost(_))),
                "{h}: {:?}",
                parse_host(h)
            );
        }
        // "::1" splits at its last ':' into a port "1" and a host "::" that is not ours.
        assert!(parse_host("::1").is_err());
        assert_eq!(parse_host(""), Err(HostError::Missing));
    }

    #[test]
    fn invalid_labels() {
        for h in [
            ".localhost",
            "-a.localhost",
            "a-.localhost",
            "a_b.localhost",
            "web..localhost",
            "we b.myapp.localhost",
            "wéb.myapp.localhost",
            &format!("{}.localhost", "a".repeat(64)),
        ] {
            assert!(
                matches!(parse_host(h), Err(HostError::BadLabel(_))),
                "{h}: {:?}",
                parse_host(h)
            );
        }
        assert!(matches!(
            parse_host("a.b.c.localhost"),
            Err(HostError::TooDeep(_))
        ));
        assert!(is_dns_label(&"a".repeat(63)));
        assert!(!is_dns_label("A"));
    }
}
