//! What users see: errors with a cause chain and a hint, colours (off under NO_COLOR or
//! when not a terminal), tables and ages.

use std::io::IsTerminal;

use paddock_api::ClientError;

/// An error with a suggestion of what to do about it.
#[derive(Debug)]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

impl Hinted {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Hinted {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn from_daemon(e: paddock_daemon::DaemonError) -> anyhow::Error {
        let hint = e.hint().unwrap_or_default();
        anyhow::anyhow!(Hinted::new(e.to_string(), hint))
    }
}

impl std::fmt::Display for Hinted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hinted {}

/// A usage error (exit code 2), e.g. a malformed flag value.
#[derive(Debug)]
pub struct Usage(pub Hinted);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Usage {}

pub fn color_enabled(stream_is_tty: bool) -> bool {
    stream_is_tty
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").ok().as_deref() != Some("dumb")
}

pub fn stderr_color() -> bool {
    color_enabled(std::io::stderr().is_terminal())
}

pub fn stdout_color() -> bool {
    color_enabled(std::io::stdout().is_terminal())
}

pub fn paint(enabled: bool, code: &str, text: &str) -> String {
    if enabled {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Print an error the way users should see it: message, causes, hint. Returns the exit code.
pub fn report(err: &anyhow::Error) -> i32 {
    let color = stderr_color();
    let mut hint: Option<String> = None;
    let mut code = 1;
    for cause in err.chain() {
        if let Some(h) = cause.downcast_ref::<Hinted>() {
            hint.get_or_insert_with(|| h.hint.clone());
        } else if let Some(u) = cause.downcast_ref::<Usage>() {
            hint.get_or_insert_with(|| u.0.hint.clone());
            code = 2;
        } else if let Some(c) = cause.downcast_ref::<ClientError>() {
            if let Some(h) = c.hint() {
                hint.get_or_insert(h);
            }
        } else if let Some(c) = cause.downcast_ref::<paddock_config::ConfigError>() {
            if let Some(h) = c.hint() {
                hint.get_or_insert(h.to_string());
            }
            code = 2;
        }
    }
    eprintln!("{} {err}", paint(color, "1;31", "error:"));
    for cause in err.chain().skip(1) {
        eprintln!("  {} {cause}", paint(color, "2", "caused by:"));
    }
    if let Some(h) = hint.filter(|h| !h.is_empty()) {
        eprintln!("{} {h}", paint(color, "1;36", "hint:"));
    }
    code
}

/// Render rows as aligned columns (the last column is not padded).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cols {
                out.push_str(c);
            } else {
                out.push_str(c);
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// "3s", "5m", "2h", "4d" since an RFC 3339 time.
pub fn age(rfc3339: &str) -> String {
    let Ok(t) =
        time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
    else {
        return "?".into();
    };
    let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Shorten to `max` characters with an ellipsis.
pub fn truncate(s: &str, max: usize) -> String {
    let s = &printable(s);
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// `s` for one table cell: control characters (newlines, escape sequences a command line
/// may carry) shown as spaces, so a cell neither breaks the table nor drives the terminal.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Write command output to stdout (behind [`out!`] and [`outln!`]). A broken pipe exits
/// with 141 and no message; any other write error is reported and exits 1.
pub fn write_out(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let result = stdout
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                stdout.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| stdout.flush());
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            std::process::exit(1);
        }
    }
}

/// Print `v` as pretty JSON on stdout (`--json`).
pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A usage error (exit code 2) with a hint.
pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::anyhow!(Usage(Hinted::new(message, hint)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["ID", "NAME"],
            &[
                vec!["run_1".into(), "a".into()],
                vec!["r".into(), "bb".into()],
            ],
        );
        assert_eq!(t, "ID     NAME\nrun_1  a\nr      bb\n");
    }

    #[test]
    fn no_color_disables_paint() {
        assert_eq!(paint(false, "31", "x"), "x");
    }
}
