//! Grant kinds as data: [`KINDS`] has one row per built-in kind (where its credential goes,
//! in which header and format, which environment variables hold its placeholder, how the
//! placeholder looks, which CLI can supply the value). The generic `http` kind is described
//! by the user ([`GrantSpec::Http`]) and validated here.

use http::HeaderName;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SecretsError};
use crate::host::HostPattern;

/// How the credential is written into its header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ValueFormat {
    /// A template with exactly one `{}`, e.g. `Bearer {}` or `{}`.
    Template { template: String },
    /// HTTP Basic: `Basic base64(username ":" value)` (git smart-HTTP on github.com uses
    /// username `x-access-token`).
    Basic { username: String },
}

impl ValueFormat {
    /// A validated template.
    pub fn template(template: &str) -> Result<Self> {
        let bad = |reason| {
            Err(SecretsError::InvalidFormat {
                format: template.to_string(),
                reason,
            })
        };
        if template.matches("{}").count() != 1 {
            return bad("it must contain `{}` exactly once");
        }
        if template.bytes().any(|b| !(0x20..=0x7e).contains(&b)) {
            return bad("it must be printable ASCII");
        }
        if template.replace("{}", "").contains(['{', '}']) {
            return bad("only `{}` may use braces");
        }
        Ok(Self::Template {
            template: template.to_string(),
        })
    }

    /// The header value for `value`.
    pub fn render(&self, value: &str) -> String {
        match self {
            Self::Template { template } => template.replacen("{}", value, 1),
            Self::Basic { username } => {
                use base64::Engine;
                let raw = zeroize::Zeroizing::new(format!("{username}:{value}"));
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
                )
            }
        }
    }
}

impl std::fmt::Display for ValueFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Template { template } => f.write_str(template),
            Self::Basic { username } => write!(f, "Basic base64({username}:{{}})"),
        }
    }
}

/// One place a credential goes: requests to `host` get `header: format(value)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectRule {
    pub host: HostPattern,
    /// Lower-case header name.
    pub header: String,
    pub format: ValueFormat,
}

impl std::fmt::Display for InjectRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} → {}: {}", self.host, self.header, self.format)
    }
}

impl InjectRule {
    /// The header as an [`http::HeaderName`] (validated when the rule was made).
    pub fn header_name(&self) -> HeaderName {
        HeaderName::from_bytes(self.header.as_bytes()).unwrap_or(http::header::AUTHORIZATION)
    }
}

/// Where placeholders may be swapped for the real value, besides the rule's own header
/// (which is always set or substituted on the grant's hosts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Substitution {
    /// In every request header value (including inside `Basic` credentials).
    pub headers: bool,
    /// In the URL path and query.
    pub url: bool,
    /// In request bodies up to [`crate::inject::BODY_LIMIT`].
    pub body: bool,
}

impl Substitution {
    /// Only the grant's own header (set, or its placeholder replaced there): the default,
    /// and what every built-in kind uses. Substituting elsewhere would let an agent make
    /// the upstream store the real value where it can read it back or publish it (a file
    /// name in a URL, a gist or issue body, a prompt), so the rest is opt-in per grant.
    pub const OWN_HEADER: Self = Self {
        headers: false,
        url: false,
        body: false,
    };
    /// Every request header value too (including inside `Basic` credentials).
    pub const HEADERS: Self = Self {
        headers: true,
        url: false,
        body: false,
    };
    /// Everywhere.
    pub const ALL: Self = Self {
        headers: true,
        url: true,
        body: true,
    };
}

impl Default for Substitution {
    fn default() -> Self {
        Self::OWN_HEADER
    }
}

/// The shape of the fake value handed to the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaceholderStyle {
    /// `ghp_` (or the real token's own `gh?_` prefix) + 30 base62 + 6-character CRC32
    /// checksum; `github_pat_` tokens get a `github_pat_` placeholder of the same shape.
    Github,
    /// `sk-ant-api03-` + 93 characters of `[A-Za-z0-9_-]` + `AA`.
    Anthropic,
    /// `sk-proj-` + 74 + `T3BlbkFJ` + 74 characters of `[A-Za-z0-9_-]`.
    Openai,
    /// The real value's shape: its issuer prefix kept, every other character replaced by
    /// a random one of the same class (digit, lower, upper; `-_.` kept).
    Generic,
    /// `AIza` + 35 characters of `[A-Za-z0-9_-]` (a Google API key).
    Google,
    /// `sk-ant-oat01-` + 93 characters of `[A-Za-z0-9_-]` + `AA` (a Claude login's access
    /// token).
    ClaudeOauth,
    /// `ya29.` + 150 characters of `[A-Za-z0-9_-]` (a Google OAuth access token).
    GoogleOauth,
    /// The real JWT's header and claims with a random signature (Codex reads the claims).
    Jwt,
}

/// The built-in kinds plus the generic one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantKind {
    Github,
    Anthropic,
    Openai,
    Gemini,
    /// Claude Code's login (OAuth).
    Claude,
    /// Codex's ChatGPT login (OAuth).
    Codex,
    /// Gemini CLI's Google login (OAuth).
    #[serde(rename = "gemini-login")]
    GeminiLogin,
    Http,
}

/// One rule of a built-in kind.
#[derive(Debug)]
pub struct RuleRow {
    pub host: &'static str,
    pub header: &'static str,
    pub format: FormatRow,
}

/// A [`ValueFormat`] in a static table.
#[derive(Debug)]
pub enum FormatRow {
    Template(&'static str),
    Basic(&'static str),
}

/// One row of the kinds table.
#[derive(Debug)]
pub struct KindRow {
    pub kind: GrantKind,
    /// The name on the command line (`paddock grant github`) and the default grant name.
    pub name: &'static str,
    pub description: &'static str,
    pub rules: &'static [RuleRow],
    /// Environment variables that receive the placeholder inside the sandbox.
    pub env: &'static [&'static str],
    pub placeholder: PlaceholderStyle,
    /// A CLI that prints the value (`gh auth token`), tried when no other source is given.
    pub cli: Option<&'static [&'static str]>,
}

/// The built-in grant kinds: one row per kind. `http` has no fixed rules.
pub const KINDS: &[KindRow] = &[
    KindRow {
        kind: GrantKind::Github,
        name: "github",
        description: "GitHub token: Bearer on api.github.com, Basic x-access-token on github.com (git over HTTPS)",
        rules: &[
            RuleRow {
                host: "api.github.com",
                header: "authorization",
                format: FormatRow::Template("Bearer {}"),
            },
            RuleRow {
                host: "github.com",
                header: "authorization",
                format: FormatRow::Basic("x-access-token"),
            },
        ],
        env: &["GH_TOKEN", "GITHUB_TOKEN"],
        placeholder: PlaceholderStyle::Github,
        cli: Some(&["gh", "auth", "token"]),
    },
    KindRow {
        kind: GrantKind::Anthropic,
        name: "anthropic",
        description: "Anthropic API key: x-api-key on api.anthropic.com",
        rules: &[RuleRow {
            host: "api.anthropic.com",
            header: "x-api-key",
            format: FormatRow::Template("{}"),
        }],
        env: &["ANTHROPIC_API_KEY"],
        placeholder: PlaceholderStyle::Anthropic,
        cli: None,
    },
    KindRow {
        kind: GrantKind::Openai,
        name: "openai",
        description: "OpenAI API key: Bearer on api.openai.com",
        rules: &[RuleRow {
            host: "api.openai.com",
            header: "authorization",
            format: FormatRow::Template("Bearer {}"),
        }],
        env: &["OPENAI_API_KEY"],
        placeholder: PlaceholderStyle::Openai,
        cli: None,
    },
    KindRow {
        kind: GrantKind::Gemini,
        name: "gemini",
        description: "Gemini API key: x-goog-api-key on generativelanguage.googleapis.com",
        rules: &[RuleRow {
            host: "generativelanguage.googleapis.com",
            header: "x-goog-api-key",
            format: FormatRow::Template("{}"),
        }],
        env: &["GEMINI_API_KEY"],
        placeholder: PlaceholderStyle::Google,
        cli: None,
    },
    KindRow {
        kind: GrantKind::Claude,
        name: "claude",
        description: "Claude Code login (OAuth, from ~/.claude/.credentials.json): Bearer on api.anthropic.com; paddock refreshes it",
        rules: &[RuleRow {
            host: "api.anthropic.com",
            header: "authorization",
            format: FormatRow::Template("Bearer {}"),
        }],
        env: &[],
        placeholder: PlaceholderStyle::ClaudeOauth,
        cli: None,
    },
    KindRow {
        kind: GrantKind::Codex,
        name: "codex",
        description: "Codex ChatGPT login (OAuth, from ~/.codex/auth.json): Bearer on chatgpt.com; paddock refreshes it",
        rules: &[RuleRow {
            host: "chatgpt.com",
            header: "authorization",
            format: FormatRow::Template("Bearer {}"),
        }],
        env: &[],
        placeholder: PlaceholderStyle::Jwt,
        cli: None,
    },
    KindRow {
        kind: GrantKind::GeminiLogin,
        name: "gemini-login",
        description: "Gemini CLI Google login (OAuth, from ~/.gemini/oauth_creds.json): Bearer on cloudcode-pa.googleapis.com; paddock refreshes it",
        rules: &[RuleRow {
            host: "cloudcode-pa.googleapis.com",
            header: "authorization",
            format: FormatRow::Template("Bearer {}"),
        }],
        env: &[],
        placeholder: PlaceholderStyle::GoogleOauth,
        cli: None,
    },
    KindRow {
        kind: GrantKind::Http,
        name: "http",
        description: "Generic HTTP credential: a header on the hosts you name",
        rules: &[],
        env: &[],
        placeholder: PlaceholderStyle::Generic,
        cli: None,
    },
];

impl GrantKind {
    /// This kind's row in [`KINDS`].
    pub fn row(self) -> &'static KindRow {
        KINDS
            .iter()
            .find(|r| r.kind == self)
            .unwrap_or(&KINDS[KINDS.len() - 1])
    }

    /// The kind named `name` on the command line.
    pub fn from_name(name: &str) -> Option<Self> {
        KINDS.iter().find(|r| r.name == name).map(|r| r.kind)
    }

    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// This kind's login row, when it is a CLI's login (OAuth) rather than a key.
    pub fn login(self) -> Option<&'static crate::login::LoginRow> {
        crate::login::LoginRow::of(self)
    }
}

impl std::fmt::Display for GrantKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a grant is: a built-in kind, or a generic HTTP header grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum GrantSpec {
    Github,
    Anthropic,
    Openai,
    Gemini,
    Claude,
    Codex,
    #[serde(rename = "gemini-login")]
    GeminiLogin,
    Http(HttpSpec),
}

/// A generic grant: `paddock grant http NAME --host H --header X [--format 'Bearer {}']`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSpec {
    pub hosts: Vec<HostPattern>,
    /// Lower-case header name.
    pub header: String,
    pub format: ValueFormat,
    /// Environment variables that receive the placeholder.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub substitute: Substitution,
    /// Inject over plain `http://` too (local development only).
    #[serde(default)]
    pub allow_plain_http: bool,
}

impl HttpSpec {
    /// Validates a generic grant; `format` defaults to `{}` (the bare value).
    pub fn new(hosts: &[&str], header: &str, format: Option<&str>) -> Result<Self> {
        if hosts.is_empty() {
            return Err(SecretsError::InvalidHost {
                pattern: String::new(),
                reason: "a generic grant needs at least one --host",
            });
        }
        let hosts = hosts
            .iter()
            .map(|h| HostPattern::parse(h))
            .collect::<Result<Vec<_>>>()?;
        let name =
            HeaderName::from_bytes(header.as_bytes()).map_err(|_| SecretsError::InvalidHeader {
                header: header.to_string(),
            })?;
        if matches!(
            name.as_str(),
            "host"
                | "content-length"
                | "transfer-encoding"
                | "connection"
                | "upgrade"
                | "te"
                | "trailer"
                | "keep-alive"
                | "proxy-authorization"
                | "proxy-connection"
        ) {
            return Err(SecretsError::InvalidHeader {
                header: header.to_string(),
            });
        }
        Ok(Self {
            hosts,
            header: name.as_str().to_string(),
            format: ValueFormat::template(format.unwrap_or("{}"))?,
            env: Vec::new(),
            substitute: Substitution::OWN_HEADER,
            allow_plain_http: false,
        })
    }

    /// Sets the environment variables that receive the placeholder.
    pub fn with_env(mut self, vars: &[&str]) -> Result<Self> {
        for v in vars {
            validate_env_name(v)?;
        }
        self.env = vars.iter().map(|v| v.to_string()).collect();
        Ok(self)
    }

    pub fn with_substitution(mut self, s: Substitution) -> Self {
        self.substitute = s;
        self
    }
}

pub(crate) fn validate_env_name(v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && !v.as_bytes()[0].is_ascii_digit()
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SecretsError::InvalidEnvName {
            name: v.to_string(),
        })
    }
}

impl GrantSpec {
    pub fn kind(&self) -> GrantKind {
        match self {
            Self::Github => GrantKind::Github,
            Self::Anthropic => GrantKind::Anthropic,
            Self::Openai => GrantKind::Openai,
            Self::Gemini => GrantKind::Gemini,
            Self::Claude => GrantKind::Claude,
            Self::Codex => GrantKind::Codex,
            Self::GeminiLogin => GrantKind::GeminiLogin,
            Self::Http(_) => GrantKind::Http,
        }
    }

    /// The built-in spec of `kind` (`None` for `http`, which needs an [`HttpSpec`]).
    pub fn builtin(kind: GrantKind) -> Option<Self> {
        match kind {
            GrantKind::Github => Some(Self::Github),
            GrantKind::Anthropic => Some(Self::Anthropic),
            GrantKind::Openai => Some(Self::Openai),
            GrantKind::Gemini => Some(Self::Gemini),
            GrantKind::Claude => Some(Self::Claude),
            GrantKind::Codex => Some(Self::Codex),
            GrantKind::GeminiLogin => Some(Self::GeminiLogin),
            GrantKind::Http => None,
        }
    }

    /// Re-checks a spec built by hand (the fields of [`HttpSpec`] are public).
    pub fn validate(&self) -> Result<()> {
        let Self::Http(h) = self else {
            return Ok(());
        };
        let hosts: Vec<String> = h.hosts.iter().map(|p| p.to_string()).collect();
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let template = match &h.format {
            ValueFormat::Template { template } => template.clone(),
            ValueFormat::Basic { username } => {
                if username.contains(':') || username.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
                    return Err(SecretsError::InvalidFormat {
                        format: h.format.to_string(),
                        reason: "a Basic username is printable ASCII without ':'",
                    });
                }
                "{}".into()
            }
        };
        let checked = HttpSpec::new(&hosts, &h.header, Some(&template))?;
        if checked.header != h.header {
            return Err(SecretsError::InvalidHeader {
                header: h.header.clone(),
            });
        }
        for v in &h.env {
            validate_env_name(v)?;
        }
        Ok(())
    }

    /// Where the credential goes.
    pub fn rules(&self) -> Vec<InjectRule> {
        match self {
            Self::Http(h) => h
                .hosts
                .iter()
                .map(|host| InjectRule {
                    host: host.clone(),
                    header: h.header.clone(),
                    format: h.format.clone(),
                })
                .collect(),
            _ => self
                .kind()
                .row()
                .rules
                .iter()
                .map(|r| InjectRule {
                    host: HostPattern::parse(r.host).expect("built-in hosts are valid"),
                    header: r.header.to_string(),
                    format: match r.format {
                        FormatRow::Template(t) => ValueFormat::Template {
                            template: t.to_string(),
                        },
                        FormatRow::Basic(u) => ValueFormat::Basic {
                            username: u.to_string(),
                        },
                    },
                })
                .collect(),
        }
    }

    /// The hosts this grant belongs to (what the egress policy implies for it).
    pub fn hosts(&self) -> Vec<HostPattern> {
        self.rules().into_iter().map(|r| r.host).collect()
    }

    /// Environment variables that receive the placeholder.
    pub fn env(&self) -> Vec<String> {
        match self {
            Self::Http(h) => h.env.clone(),
            _ => self
                .kind()
                .row()
                .env
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    pub fn substitution(&self) -> Substitution {
        match self {
            Self::Http(h) => h.substitute,
            _ => Substitution::OWN_HEADER,
        }
    }

    pub fn allow_plain_http(&self) -> bool {
        matches!(self, Self::Http(h) if h.allow_plain_http)
    }

    pub fn placeholder_style(&self) -> PlaceholderStyle {
        self.kind().row().placeholder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for row in KINDS {
            assert_eq!(GrantKind::from_name(row.name), Some(row.kind));
            for r in row.rules {
                HostPattern::parse(r.host).unwrap();
                HeaderName::from_static(r.header);
            }
            if let Some(spec) = GrantSpec::builtin(row.kind) {
                assert_eq!(spec.rules().len(), row.rules.len());
                // A key is handed over in the environment; a login in its CLI's file.
                assert_eq!(
                    spec.env().is_empty(),
                    row.kind.login().is_some(),
                    "{}",
                    row.name
                );
            }
        }
    }

    #[test]
    fn formats() {
        assert_eq!(
            ValueFormat::template("Bearer {}").unwrap().render("t"),
            "Bearer t"
        );
        for bad in ["Bearer", "{} {}", "Bearer {x}", "a\n{}", "{"] {
            assert!(ValueFormat::template(bad).is_err(), "{bad:?}");
        }
        let basic = ValueFormat::Basic {
            username: "x-access-token".into(),
        };
        // base64("x-access-token:abc")
        assert_eq!(basic.render("abc"), "Basic eC1hY2Nlc3MtdG9rZW46YWJj");
    }

    #[test]
    fn http_spec_validation() {
        let s = HttpSpec::new(&["api.example.com"], "X-Api-Key", Some("Token {}")).unwrap();
        assert_eq!(s.header, "x-api-key");
        assert!(HttpSpec::new(&[], "x", None).is_err());
        assert!(HttpSpec::new(&["api.example.com"], "bad header", None).is_err());
        assert!(HttpSpec::new(&["api.example.com"], "Host", None).is_err());
        assert!(HttpSpec::new(&["*.com"], "x", None).is_err());
        assert!(HttpSpec::new(&["a.example.com"], "x", Some("{}{}")).is_err());
        assert!(s.clone().with_env(&["1BAD"]).is_err());
        assert!(s.with_env(&["MY_TOKEN"]).is_ok());
    }
}
