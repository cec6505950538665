//! Where a secret value comes from: an environment variable, stdin, or an existing CLI
//! (`gh auth token`). Never argv: a value on a command line is visible in `ps` and in shell
//! history, so there is deliberately no way to build a [`ValueSource`] from one.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::error::{Result, SecretsError};
use crate::kind::GrantKind;
use crate::value::{MAX_VALUE_LEN, SecretValue};

/// Default time allowed for a credential CLI.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(10);

/// A place to read a secret value from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueSource {
    /// The named environment variable (of the CLI's process).
    Env(String),
    /// Standard input, up to EOF; one trailing newline is removed.
    Stdin,
    /// A command that prints the value (`gh auth token`).
    Command { program: String, args: Vec<String> },
}

impl ValueSource {
    /// `gh auth token`.
    pub fn gh() -> Self {
        Self::Command {
            program: "gh".into(),
            args: vec!["auth".into(), "token".into()],
        }
    }

    /// Where `paddock grant KIND` reads the value when no source is named, in order: the
    /// kind's CLI (`gh auth token` for GitHub), else the first of the kind's environment
    /// variables that is set (`ANTHROPIC_API_KEY` …), else stdin.
    pub fn default_for(kind: GrantKind) -> Self {
        let row = kind.row();
        if let Some(cli) = row.cli {
            return Self::Command {
                program: cli[0].to_string(),
                args: cli[1..].iter().map(|a| a.to_string()).collect(),
            };
        }
        row.env
            .iter()
            .find(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
            .map(|v| Self::Env(v.to_string()))
            .unwrap_or(Self::Stdin)
    }

    /// Reads the value.
    pub fn read(&self) -> Result<SecretValue> {
        match self {
            Self::Env(var) => from_env(var),
            Self::Stdin => from_stdin(),
            Self::Command { program, args } => from_command(program, args, CLI_TIMEOUT),
        }
    }
}

/// Reads the value of environment variable `var`.
pub fn from_env(var: &str) -> Result<SecretValue> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => SecretValue::new(v),
        _ => Err(SecretsError::EnvMissing {
            var: var.to_string(),
        }),
    }
}

/// Reads the value from standard input.
pub fn from_stdin() -> Result<SecretValue> {
    from_reader(std::io::stdin().lock())
}

/// Reads the value from `r` (up to EOF, at most 16 KiB), removing one trailing newline
/// (`\n` or `\r\n`).
pub fn from_reader(r: impl Read) -> Result<SecretValue> {
    let mut buf = Zeroizing::new(Vec::new());
    r.take(MAX_VALUE_LEN as u64 + 3)
        .read_to_end(&mut buf)
        .map_err(|source| SecretsError::Read { source })?;
    from_output(&buf)
}

fn from_output(bytes: &[u8]) -> Result<SecretValue> {
    let mut end = bytes.len();
    if bytes[..end].ends_with(b"\n") {
        end -= 1;
        if bytes[..end].ends_with(b"\r") {
            end -= 1;
        }
    }
    let text = std::str::from_utf8(&bytes[..end]).map_err(|_| SecretsError::InvalidValue {
        reason: "it is not UTF-8",
    })?;
    SecretValue::new(text.to_string())
}

/// Runs `program args…` (stdin closed, no shell) and takes its standard output as the
/// value; kills it after `timeout`.
pub fn from_command(program: &str, args: &[String], timeout: Duration) -> Result<SecretValue> {
    let command = std::iter::once(program.to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SecretsError::CliMissing {
                program: program.to_string(),
            },
            _ => SecretsError::Read { source: e },
        })?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Zeroizing::new(Vec::new());
        if let Some(s) = stdout.as_mut() {
            let _ = s.take(MAX_VALUE_LEN as u64 + 3).read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(4096).read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SecretsError::CliTimeout {
                    command,
                    seconds: timeout.as_secs().max(1),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(SecretsError::Read { source: e }),
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        let stderr = String::from_utf8_lossy(&err);
        let first = stderr
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        return Err(SecretsError::CliFailed {
            command,
            status: status.to_string(),
            stderr: first,
        });
    }
    from_output(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_trims_one_newline() {
        assert_eq!(from_reader(&b"tok\n"[..]).unwrap().expose(), "tok");
        assert_eq!(from_reader(&b"tok\r\n"[..]).unwrap().expose(), "tok");
        assert!(from_reader(&b"tok\n\n"[..]).is_err());
        assert!(from_reader(&b""[..]).is_err());
        assert!(from_reader(&b"\n"[..]).is_err());
    }

    #[test]
    fn env_missing() {
        let e = from_env("PADDOCK_SECRETS_TEST_SURELY_UNSET").unwrap_err();
        assert!(matches!(e, SecretsError::EnvMissing { .. }));
        assert!(e.hint().unwrap().contains("export"));
    }

    #[test]
    fn command_sources() {
        let ok = from_command(
            "sh",
            &["-c".into(), "printf 'ghp_x123\\n'".into()],
            CLI_TIMEOUT,
        )
        .unwrap();
        assert_eq!(ok.expose(), "ghp_x123");

        let e = from_command("paddock-no-such-cli", &[], CLI_TIMEOUT).unwrap_err();
        assert!(matches!(e, SecretsError::CliMissing { .. }), "{e}");

        let e = from_command(
            "sh",
            &["-c".into(), "echo 'not logged in' >&2; exit 4".into()],
            CLI_TIMEOUT,
        )
        .unwrap_err();
        match &e {
            SecretsError::CliFailed { stderr, .. } => assert_eq!(stderr, "not logged in"),
            other => panic!("{other:?}"),
        }

        let start = Instant::now();
        let e = from_command("sleep", &["5".into()], Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, SecretsError::CliTimeout { .. }), "{e}");
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn defaults() {
        assert_eq!(
            ValueSource::default_for(GrantKind::Github),
            ValueSource::gh()
        );
        assert_eq!(
            ValueSource::default_for(GrantKind::Http),
            ValueSource::Stdin
        );
    }

    #[test]
    fn gh_missing_has_a_hint() {
        let e = SecretsError::CliMissing {
            program: "gh".into(),
        };
        assert!(e.hint().unwrap().contains("gh auth login"));
    }
}
