//! [`ConfigError`]: every way loading a config file can fail, always naming the file and,
//! whenever the problem is inside it, the line and column.

use std::path::{Path, PathBuf};

use serde_saphyr::MessageFormatter;

use crate::values::ValueError;

/// What kind of problem a [`ConfigError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// The file is not valid UTF-8.
    NotUtf8,
    /// The file is too large, too deeply nested, or expands too many aliases.
    Limit,
    /// Not well-formed YAML (including tabs used for indentation).
    Syntax,
    /// A key that the schema does not know.
    UnknownKey,
    /// The same key twice in one mapping.
    DuplicateKey,
    /// A value of the wrong shape: a list where a string belongs, text where a number belongs.
    Type,
    /// A value of the right shape that is not valid (a bad host pattern, a port out of range).
    Value,
    /// A key that only the user config may set, found in a project file.
    UserOnlyKey,
}

/// An error loading configuration. `Display` is `path:line:column: message` (or
/// `path: message` when the problem is not at one place in the file, such as a read error);
/// [`ConfigError::hint`] says how to fix it when there is something useful to say.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A problem at a place in a file.
    #[error("{}:{line}:{column}: {message}", path.display())]
    At {
        /// What kind of problem.
        kind: ErrorKind,
        /// The config file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// 1-based column, counted in characters.
        column: u64,
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: Option<String>,
    },
    /// A problem with a file as a whole.
    #[error("{}: {message}", path.display())]
    File {
        /// What kind of problem.
        kind: ErrorKind,
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: Option<String>,
        /// The underlying I/O error, if any.
        #[source]
        source: Option<std::io::Error>,
    },
}

impl ConfigError {
    /// How to fix the problem, when there is something useful to say.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ConfigError::At { hint, .. } | ConfigError::File { hint, .. } => hint.as_deref(),
        }
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ConfigError::At { kind, .. } | ConfigError::File { kind, .. } => *kind,
        }
    }

    /// The file the problem is in.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::At { path, .. } | ConfigError::File { path, .. } => path,
        }
    }

    /// `(line, column)`, both 1-based, when the problem is at one place in the file.
    pub fn position(&self) -> Option<(u64, u64)> {
        match self {
            ConfigError::At { line, column, .. } => Some((*line, *column)),
            ConfigError::File { .. } => None,
        }
    }

    /// The message without the location prefix.
    pub fn message(&self) -> &str {
        match self {
            ConfigError::At { message, .. } | ConfigError::File { message, .. } => message,
        }
    }

    /// The message followed by the hint on its own line, as a CLI would print it.
    pub fn display_with_hint(&self) -> String {
        match self.hint() {
            Some(h) => format!("{self}\n  hint: {h}"),
            None => self.to_string(),
        }
    }
}

/// A place in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pos {
    pub path: PathBuf,
    pub line: u64,
    pub column: u64,
}

impl Pos {
    pub(crate) fn error(
        &self,
        kind: ErrorKind,
        message: String,
        hint: Option<String>,
    ) -> ConfigError {
        if self.line == 0 {
            return ConfigError::File {
                kind,
                path: self.path.clone(),
                message,
                hint,
                source: None,
            };
        }
        ConfigError::At {
            kind,
            path: self.path.clone(),
            line: self.line,
            column: self.column,
            message,
            hint,
        }
    }

    /// A semantic error in the value at this place, for the key `key` (e.g. `limits.memory`).
    pub(crate) fn value_error(&self, key: &str, e: ValueError) -> ConfigError {
        let (message, hint) = e.into_parts();
        // "name `X` is …" already says which key; don't print "name: name `X` is …".
        let last = key.rsplit('.').next().unwrap_or(key);
        let message = if message.starts_with(&format!("{last} ")) {
            message
        } else {
            format!("{key}: {message}")
        };
        self.error(ErrorKind::Value, message, hint)
    }
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// Suggest the closest of `candidates` to `word`, if one is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word_l = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&word_l, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn key_hint(word: &str, expected: &[&str], what: &str) -> Option<String> {
    if let Some(s) = did_you_mean(word, expected) {
        return Some(format!("did you mean `{s}`?"));
    }
    if expected.is_empty() {
        return None;
    }
    let list: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
    Some(format!("valid {what} here: {}", list.join(", ")))
}

/// Turn a serde-saphyr error into a [`ConfigError`] for `path`, rewording the messages
/// written for Rust developers into ones for paddock users.
pub(crate) fn from_yaml(path: &Path, text: &str, err: &serde_saphyr::Error) -> ConfigError {
    use serde_saphyr::Error as E;
    let mut err = err.without_snippet();
    while let E::AliasError { error, .. } = err {
        err = error.without_snippet();
    }
    let show = crate::values::show;
    let (kind, message, hint): (ErrorKind, String, Option<String>) = match err {
        E::SerdeUnknownField {
            field, expected, ..
        } => (
            ErrorKind::UnknownKey,
            format!("unknown key {}", show(field)),
            key_hint(field, expected, "keys"),
        ),
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            let list: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
            (
                ErrorKind::Value,
                format!(
                    "unknown value {}; expected one of {}",
                    show(variant),
                    list.join(", ")
                ),
                did_you_mean(variant, expected).map(|s| format!("did you mean `{s}`?")),
            )
        }
        E::DuplicateMappingKey { key, .. } => (
            ErrorKind::DuplicateKey,
            match key {
                Some(k) => format!("duplicate key {}", show(k)),
                None => "duplicate key".to_string(),
            },
            Some("each key may appear only once in a mapping; remove one of them".to_string()),
        ),
        E::SerdeMissingField { field, .. } => (
            ErrorKind::Type,
            format!("missing required key `{field}`"),
            None,
        ),
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (
            ErrorKind::Type,
            format!("expected {expected}, found {unexpected}"),
            None,
        ),
        E::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => (
            ErrorKind::Type,
            format!("expected {expected}, found {unexpected}"),
            None,
        ),
        E::Unexpected { expected, .. } => (ErrorKind::Type, reword_expected(expected), None),
        E::NullIntoString { .. } => (
            ErrorKind::Type,
            "expected a string, found nothing (null)".to_string(),
            Some("quote the value, e.g. `\"\"` for an empty string".to_string()),
        ),
        E::InvalidBooleanStrict { .. } => (
            ErrorKind::Type,
            "expected `true` or `false`".to_string(),
            None,
        ),
        E::InvalidScalar { ty, .. } => {
            (ErrorKind::Type, format!("expected {}", type_name(ty)), None)
        }
        E::MultipleDocuments { .. } => (
            ErrorKind::Syntax,
            "more than one YAML document (`---`) in a config file".to_string(),
            Some("a config file holds a single document; remove the extra `---`".to_string()),
        ),
        E::Budget { breach, .. } => {
            use serde_saphyr::budget::BudgetBreach as B;
            let what = match breach {
                B::Depth { .. } => "it is nested too deeply",
                B::Events { .. } | B::Nodes { .. } => "it has too many values",
                B::Aliases { .. }
                | B::Anchors { .. }
                | B::AliasAnchorRatio { .. }
                | B::RecordedAnchorEvents { .. }
                | B::MergeKeys { .. } => "it uses too many anchors, aliases or merge keys",
                B::ScalarBytes { .. } | B::InputBytes { .. } => "it is too large",
                B::Documents { .. } => "it holds more than one YAML document",
                _ => "it is too complex",
            };
            (
                ErrorKind::Limit,
                format!("config file exceeds paddock's limits: {what}"),
                Some(
                    "config files are small, shallow and use few aliases; simplify this one"
                        .to_string(),
                ),
            )
        }
        E::ExternallyTaggedEnumExpectedScalarOrMapping { .. } => (
            ErrorKind::Type,
            "expected a single word, not a list".to_string(),
            None,
        ),
        E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => (
            ErrorKind::Limit,
            format!(
                "config file exceeds paddock's limits: {}",
                serde_saphyr::DefaultMessageFormatter.format_message(err)
            ),
            Some(
                "config files are small, shallow and use few aliases; simplify this one"
                    .to_string(),
            ),
        ),
        E::NonFiniteFloat { value, .. } => (
            ErrorKind::Value,
            format!("number {} is too large or not a finite number", show(value)),
            None,
        ),
        E::InvalidUtf8Input => (
            ErrorKind::NotUtf8,
            "file is not valid UTF-8".to_string(),
            None,
        ),
        other => {
            let msg = serde_saphyr::DefaultMessageFormatter
                .format_message(other)
                .into_owned();
            if msg.contains("limit") {
                (
                    ErrorKind::Limit,
                    format!("config file exceeds paddock's limits: {msg}"),
                    Some("config files are small and shallow; simplify this one".to_string()),
                )
            } else if msg.contains("tab") {
                if let Some((line, column)) = first_indent_tab(text, err.location()) {
                    let pos = Pos {
                        path: path.to_path_buf(),
                        line,
                        column,
                    };
                    return pos.error(
                        ErrorKind::Syntax,
                        "tab character in indentation".to_string(),
                        Some("YAML does not allow tabs for indentation; use spaces".to_string()),
                    );
                }
                let hint = "YAML does not allow tabs for indentation; use spaces".to_string();
                (ErrorKind::Syntax, msg, Some(hint))
            } else {
                (ErrorKind::Syntax, msg, None)
            }
        }
    };
    let (line, column) = err
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    Pos {
        path: path.to_path_buf(),
        line,
        column,
    }
    .error(kind, message, hint)
}

fn reword_expected(expected: &str) -> String {
    match expected {
        "string scalar" => "expected a string".to_string(),
        "mapping start" | "mapping" => "expected a mapping (`key: value` lines)".to_string(),
        "sequence start" | "sequence" => "expected a list".to_string(),
        other => format!("expected {other}"),
    }
}

fn type_name(ty: &str) -> String {
    match ty {
        "bool" => "`true` or `false`".to_string(),
        t if t.starts_with('u') || t.starts_with('i') => "an integer".to_string(),
        t if t.starts_with('f') => "a number".to_string(),
        t => format!("a value of type {t}"),
    }
}

/// The first tab in a line's leading whitespace, at or after the line where the parser
/// noticed it (the parser reports the start of the scalar it was reading).
fn first_indent_tab(text: &str, from: Option<serde_saphyr::Location>) -> Option<(u64, u64)> {
    let from_line = from.map_or(1, |l| l.line().max(1));
    text.lines()
        .enumerate()
        .skip(usize::try_from(from_line - 1).ok()?)
        .find_map(|(i, line)| {
            let indent: String = line
                .chars()
                .take_while(|c| *c == ' ' || *c == '\t')
                .collect();
            indent
                .chars()
                .position(|c| c == '\t')
                .map(|col| (i as u64 + 1, col as u64 + 1))
        })
}
