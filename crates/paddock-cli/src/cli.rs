//! Argument definitions. Every flag is documented where it is defined; `--help` is
//! generated from here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "Run AI coding agents in sandboxes: no secrets inside, no network but \
through policy, no writes outside the workspace unless you apply them.";

const AFTER_HELP: &str = "\
Examples:
  paddock run -- make test              run a command in a sandbox of the current directory
  paddock run --name fix-bug -- claude  a named run (names become URLs)
  paddock run -it -- bash               an interactive shell in a sandbox
  paddock ps                            list live runs
  paddock diff fix-bug                  review what the run changed
  paddock apply fix-bug                 copy its changes into your workspace
  paddock audit fix-bug                 what the run did, from its tamper-evident log
  paddock doctor                        check what this machine supports

The daemon starts on demand and exits after 5 idle minutes. State lives in $PADDOCK_HOME
(default: $XDG_DATA_HOME/paddock or ~/.local/share/paddock).";

#[derive(Debug, Parser)]
#[command(name = "paddock", version = crate::version_string(), about = ABOUT, after_help = AFTER_HELP)]
#[command(propagate_version = true, disable_help_subcommand = true)]
pub struct Cli {
    /// More output (-v: info, -vv: debug) on stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new sandbox.
    ///
    /// The workspace (default: the current directory) appears at the same path inside.
    /// By default it is copy-on-write: the run's writes land in its own layer, and you
    /// review them with `paddock diff` and bring them over with `paddock apply`.
    /// Settings come from paddock.yaml (found by walking up to the repository root),
    /// layered over ~/.config/paddock/config.yaml; flags override both.
    #[command(after_help = "\
Examples:
  paddock run -- npm test
  paddock run --name api -m ~/.cache/pip:/home/paddock/.cache/pip -- pip install -r req.txt
  paddock run --memory 2G --pids 512 --cpus 1.5 -- cargo build
  paddock run -d --name agent -- claude --dangerously-skip-permissions
  paddock run -it -- bash")]
    Run(RunArgs),

    /// List runs (live ones; -a for all).
    #[command(visible_alias = "list")]
    Ps(PsArgs),

    /// Show a run's output.
    Logs(LogsArgs),

    /// Stop runs: SIGTERM, then SIGKILL after the grace period.
    Stop(StopArgs),

    /// Remove runs and everything they left (their layer too).
    Rm(RmArgs),

    /// Show everything about a run.
    Inspect(InspectArgs),

    /// Wait for a run to end; exits with its exit code.
    Wait(WaitArgs),

    /// Show what an overlay run changed in its workspace.
    Diff(DiffArgs),

    /// Copy an overlay run's changes into the real workspace (all or nothing).
    Apply(ApplyArgs),

    /// Show, export and verify the tamper-evident audit log of a run (or of the daemon).
    ///
    /// Every lifecycle transition, the command a run was created with, its setup steps,
    /// its exit, diff/apply and removal are appended by the daemon to a Merkle log with
    /// Ed25519-signed checkpoints. `paddock audit RUN` is short for `paddock audit show RUN`
    /// (a run named like a subcommand needs the long form). `verify` works offline, with
    /// no daemon.
    #[command(after_help = "\
Examples:
  paddock audit fix-bug                      the run's entries (same as `audit show fix-bug`)
  paddock audit fix-bug --type run.state --since 10m
  paddock audit show --daemon                the daemon's own log (starts, stops, removals)
  paddock audit export fix-bug -o bundle.json
  paddock audit key --json > key.json        the public key, to pin when verifying
  paddock audit verify bundle.json --key key.json
  paddock audit prove fix-bug --entry 3      inclusion proof of entry 3 (checked locally)
  paddock audit consistency fix-bug --from 12")]
    Audit(AuditArgs),

    /// Run or manage the paddock daemon (`paddock daemon` alone runs it in the foreground).
    Daemon(DaemonArgs),

    /// Check what the sandbox needs on this machine, and how to fix what is missing.
    Doctor(DoctorArgs),

    /// Show the versions of this CLI and of the running daemon.
    Version(JsonFlag),

    /// PID 1 inside a sandbox (internal).
    #[command(hide = true)]
    Init,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct JsonFlag {
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Name of the run: a DNS label, unique among live runs (default: from paddock.yaml,
    /// else a random adjective-animal pair).
    #[arg(long)]
    pub name: Option<String>,

    /// The workspace directory (default: the current directory).
    #[arg(short = 'w', long = "workspace", value_name = "DIR")]
    pub workspace: Option<PathBuf>,

    /// Bind-mount the workspace read-write instead of copy-on-write.
    #[arg(long)]
    pub bind: bool,

    /// Extra mount: SRC:DST[:ro]. Repeatable.
    #[arg(short = 'm', long = "mount", value_name = "SRC:DST[:ro]")]
    pub mounts: Vec<String>,

    /// Environment variable for the command: KEY=VALUE. Repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Memory limit, e.g. 512M or 2G.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,

    /// Maximum number of processes and threads.
    #[arg(long, value_name = "N")]
    pub pids: Option<String>,

    /// CPU limit in CPUs, e.g. 1.5.
    #[arg(long, value_name = "CPUS")]
    pub cpus: Option<String>,

    /// Keep stdin open and forward it to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Give the command a terminal (use with -i for a shell).
    #[arg(short = 't', long)]
    pub tty: bool,

    /// Start the run in the background and print its id.
    #[arg(short = 'd', long)]
    pub detach: bool,

    /// Sandbox runtime (native is the only one in this build).
    #[arg(long, value_name = "RUNTIME")]
    pub runtime: Option<String>,

    /// With -d: print the run as JSON.
    #[arg(long)]
    pub json: bool,

    /// Don't show setup progress.
    #[arg(short, long)]
    pub quiet: bool,

    /// The command and its arguments (default: from paddock.yaml, else /bin/sh).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all runs, including ended ones.
    #[arg(short, long)]
    pub all: bool,
    /// Only print run ids.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Run id, id prefix or name.
    pub run: String,
    /// Keep printing new output until the run ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(short = 'n', long = "tail", value_name = "N")]
    pub tail: Option<usize>,
    /// Print one JSON object per chunk (ts_ms, stream, text|b64).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Run ids, id prefixes or names.
    #[arg(required = true)]
    pub runs: Vec<String>,
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(short = 't', long = "time", value_name = "SECS", default_value = "10")]
    pub grace: f64,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Run ids, id prefixes or names.
    #[arg(required = true)]
    pub runs: Vec<String>,
    /// Stop live runs first, and discard unapplied changes.
    #[arg(short, long)]
    pub force: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Run id, id prefix or name.
    pub run: String,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Run id, id prefix or name.
    pub run: String,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Run id, id prefix or name.
    pub run: String,
    /// Only the summary of changed paths, no patch.
    #[arg(long)]
    pub stat: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Run id, id prefix or name.
    pub run: String,
    /// Apply even where the host file changed since the run started (the run's version wins).
    #[arg(short, long)]
    pub force: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(subcommand)]
    pub action: Option<DaemonAction>,

    /// When running the daemon: exit after this long with no runs (e.g. 30s, 5m, 1h; 0 = never).
    /// Default: `daemon.idle_timeout` in the user config, else 5m.
    #[arg(long, value_name = "DURATION", env = "PADDOCK_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DaemonAction {
    /// Is the daemon running? Which version, how many runs?
    Status(JsonFlag),
    /// Stop the daemon (sandboxes keep running and are re-adopted by the next daemon).
    Stop(JsonFlag),
    /// Stop the daemon and start a new one (e.g. after upgrading paddock).
    Restart(JsonFlag),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: Option<AuditAction>,
    /// Without a subcommand: `show`.
    #[command(flatten)]
    pub show: AuditShowArgs,
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Show a log's entries: seq, time, type and a one-line summary.
    Show(AuditShowArgs),
    /// Write a log's bundle (entries, signed checkpoints, public key) for offline checks.
    Export(AuditExportArgs),
    /// Verify an exported bundle offline (no daemon): exits 1 and names the failed check
    /// and where (entry index or checkpoint) when it does not verify.
    Verify(AuditVerifyArgs),
    /// Prove that one entry is in the log, against a signed checkpoint (checked locally).
    Prove(AuditProveArgs),
    /// Prove that a newer signed checkpoint extends an older one (checked locally).
    Consistency(AuditConsistencyArgs),
    /// Print the public key that signs every checkpoint (pin it when verifying).
    Key(JsonFlag),
}

/// Which log: a run, or (`--daemon`) the daemon's own log.
#[derive(Debug, Args, Clone)]
pub struct AuditTarget {
    /// Run id, id prefix or name.
    #[arg(required_unless_present = "daemon", value_name = "RUN")]
    pub run: Option<String>,
    /// The daemon's own log (daemon start/stop, removed runs) instead of a run's.
    #[arg(long, conflicts_with = "run")]
    pub daemon: bool,
}

#[derive(Debug, Args)]
pub struct AuditShowArgs {
    #[command(flatten)]
    pub target: AuditTarget,
    /// Only entries of this type (e.g. run.state), or of a family with a trailing dot
    /// (e.g. `run.`).
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// Only entries since a time: a duration back from now (10m, 2h) or RFC 3339.
    #[arg(long, value_name = "10m|RFC3339")]
    pub since: Option<String>,
    /// Only the newest N matching entries.
    #[arg(short = 'n', long = "limit", value_name = "N")]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct AuditExportArgs {
    #[command(flatten)]
    pub target: AuditTarget,
    /// Write the bundle here (atomically); `-` or absent: standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// The bundle file (from `paddock audit export`).
    pub bundle: PathBuf,
    /// Require this signing key: `ed25519:<hex>` (public key), `sha256:<hex>` (key id), or
    /// a file holding either or the JSON of `paddock audit key --json`.
    #[arg(long, value_name = "KEY|FILE")]
    pub key: Option<String>,
    /// Accept entries after the last signed checkpoint (reported, not proven).
    #[arg(long, visible_alias = "allow-unsigned-tail")]
    pub allow_uncovered: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct AuditProveArgs {
    #[command(flatten)]
    pub target: AuditTarget,
    /// The entry's seq (from 0).
    #[arg(long, value_name = "N")]
    pub entry: u64,
    /// Against the signed checkpoint of this tree size (default: the latest).
    #[arg(long, value_name = "SIZE")]
    pub size: Option<u64>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct AuditConsistencyArgs {
    #[command(flatten)]
    pub target: AuditTarget,
    /// Tree size of the older signed checkpoint.
    #[arg(long, value_name = "SIZE")]
    pub from: u64,
    /// Tree size of the newer signed checkpoint (default: the latest).
    #[arg(long, value_name = "SIZE")]
    pub to: Option<u64>,
    #[command(flatten)]
    pub json: JsonFlag,
}
