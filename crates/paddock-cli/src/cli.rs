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
  paddock exec -it fix-bug -- bash      a shell inside a running run's sandbox
  paddock ps                            list live runs
  paddock diff fix-bug                  review what the run changed
  paddock apply fix-bug                 copy its changes into your workspace
  paddock audit fix-bug                 what the run did, from its tamper-evident log
  paddock run -d --name app -p web=3000 -- npm run dev   → http://web.app.localhost:8080
  paddock router status                 the hostname router's port and routes
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
  paddock run -d --name myapp -p web=3000 -- npm run dev   → http://web.myapp.localhost:8080
  paddock run -it -- bash")]
    Run(RunArgs),

    /// Run Claude Code in a sandbox: `paddock run --agent claude -- claude ARGS`.
    ///
    /// ARGS go to claude untouched (`paddock claude -p "fix the bug"`, or no ARGS for its
    /// terminal UI). paddock's own options come first and are long ones (`--wt BRANCH`,
    /// `--name`, `--detach`, `--grant`, …: every long option of `paddock run`); the first
    /// other argument, or `--`, starts claude's. The CLI comes from your PATH, else it is
    /// installed from npm into a read-only tool layer on first use. Log in once with
    /// `paddock grant claude --from-login` (your Claude login; the sandbox only ever holds
    /// placeholders) or `paddock grant anthropic` (an API key). Only the hosts claude needs
    /// are reachable; its history and settings persist per workspace.
    #[command(
        disable_help_flag = true,
        disable_version_flag = true,
        after_help = "\
Examples:
  paddock claude                                   the interactive UI, in a sandbox
  paddock claude -p 'explain this repo'            one non-interactive turn
  paddock claude --wt fix-login -- --dangerously-skip-permissions
                                                   on its own worktree and branch"
    )]
    Claude(AgentCmdArgs),

    /// Run Codex in a sandbox: `paddock run --agent codex -- codex ARGS` (see `paddock
    /// help claude` for how options split; log in with `paddock grant codex --from-login`
    /// or `paddock grant openai`).
    #[command(
        disable_help_flag = true,
        disable_version_flag = true,
        after_help = "\
Examples:
  paddock codex
  paddock codex exec 'add a test for parse()'
  paddock codex --wt refactor -- exec --full-auto 'split main.rs'"
    )]
    Codex(AgentCmdArgs),

    /// Run the Gemini CLI in a sandbox: `paddock run --agent gemini -- gemini ARGS` (see
    /// `paddock help claude`; log in with `paddock grant gemini --from-login` or an API
    /// key with `paddock grant gemini`).
    #[command(
        disable_help_flag = true,
        disable_version_flag = true,
        after_help = "\
Examples:
  paddock gemini
  paddock gemini -p 'summarise the open TODOs'"
    )]
    Gemini(AgentCmdArgs),

    /// Agent presets and their tool layers: list, update to the latest release, remove.
    #[command(after_help = "\
Examples:
  paddock agents ls                   presets, where each CLI comes from, installed layers
  paddock agents update claude        install claude's @latest and use it from now on
  paddock agents rm --all             free the tool cache")]
    Agents(AgentsArgs),

    /// Run another command inside a running run's sandbox.
    ///
    /// The command is exactly as confined as the run's own: same namespaces (it sees the
    /// run's workspace layer, /tmp and processes, and has the same network: only the
    /// run's proxy), same unprivileged user, no capabilities, no_new_privs, seccomp and
    /// Landlock. It gets the run's environment (proxy and CA settings, grant placeholders),
    /// with -e variables over it. The run's audit log records `run.exec` (the command and
    /// the *names* of -e variables, never their values) before it starts, and
    /// `run.exec.exit` when it ends. paddock exec exits with the command's status (127:
    /// not found, 128+N: killed by signal N); Ctrl-C is delivered to the command.
    #[command(after_help = "\
Examples:
  paddock exec fix-bug -- git status
  paddock exec -it fix-bug -- bash           a shell next to the agent
  paddock exec -e DEBUG=1 fix-bug -- npm test
  echo data | paddock exec -i fix-bug -- sh -c 'cat > /tmp/input'")]
    Exec(ExecArgs),

    /// List runs (live ones; -a for all).
    #[command(visible_alias = "list")]
    Ps(PsArgs),

    /// Show a run's output.
    Logs(LogsArgs),

    /// Show a run's network log: every request, connection and DNS query, its policy
    /// decision and rule, and the grants injected (names only).
    #[command(after_help = "\
Examples:
  paddock trace fix-bug            everything so far
  paddock trace fix-bug -f         and keep following until the run ends
  paddock trace fix-bug --json     one JSON record per line (type, host, path, status, decision, rule, grants, …)")]
    Trace(TraceArgs),

    /// Follow the daemon's event stream: run lifecycle, start-up steps, network requests and
    /// denials, grant uses (names only, never values), snapshots, diff and apply.
    #[command(after_help = "\
Examples:
  paddock events                      everything, as it happens
  paddock events --run fix-bug -t net.   one run's network records
  paddock events -t run.state -t run.exit --json   lifecycle only, one JSON event per line
  paddock events --after 120          resume after event 120 (from the daemon's recent history)

Kinds: run.created run.state run.exit run.removed init.step net.request net.denied
grant.used layer.diffed layer.applied snapshot.taken … and `dropped` when the stream lost
events (the count is in its data).")]
    Events(EventsArgs),

    /// Open the web dashboard: runs, live logs and traffic, audit, diff review.
    #[command(after_help = "\
Examples:
  paddock ui                 open the dashboard in your browser (or print its login link)
  paddock ui --url           print a one-time login link (valid 5 minutes, once)
  paddock ui --token         print the bearer token for scripts and Prometheus:
                             curl -H \"Authorization: Bearer $(paddock ui --token)\" http://127.0.0.1:7780/metrics

The dashboard listens on 127.0.0.1 only (`ui: {port: 7780}` in ~/.config/paddock/config.yaml,
or PADDOCK_UI_PORT), from the first `paddock ui` until the daemon stops. The browser is
`ui.browser`, else $BROWSER, else xdg-open on a desktop.")]
    Ui(UiArgs),

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

    /// Take a snapshot of an overlay run's changes (live or ended); prints its id.
    ///
    /// A snapshot costs what the run changed, not the workspace, and shares files that did
    /// not change since the snapshot before. paddock also takes one before each `exec`,
    /// and every `review.snapshot_every` (default 10m) during agent runs.
    #[command(after_help = "\
Examples:
  paddock snapshot fix-bug -m \"tests pass\"     take one, print its id (s3)
  paddock snapshots fix-bug                      list them
  paddock diff fix-bug --from s3                 what changed since
  paddock rollback fix-bug s3                    back to it, inside the running sandbox
  paddock rollback fix-bug s3 src/lib.rs         only that file")]
    Snapshot(SnapshotArgs),

    /// List an overlay run's snapshots.
    Snapshots(SnapshotsArgs),

    /// Roll a run's changes back to a snapshot, whole or per path; a running sandbox sees
    /// the restored files at once.
    Rollback(RollbackArgs),

    /// Throw a run's unapplied changes away, whole or per path; a running sandbox sees the
    /// workspace as it was at once.
    #[command(after_help = "\
Examples:
  paddock discard fix-bug              every change the run made
  paddock discard fix-bug src/gen/     only what is under src/gen/")]
    Discard(DiscardArgs),

    /// Show, export and verify the tamper-evident audit log of a run (or of the daemon).
    ///
    /// Every lifecycle transition, the command a run was created with, its setup steps,
    /// commands exec'd into it (`run.exec`, `run.exec.exit`), its network requests and DNS
    /// queries with their policy decisions (`net.request`, `net.denied`), credential uses
    /// (`grant.used`, names only), its exit, diff/apply and removal are appended by the
    /// daemon to a Merkle log with Ed25519-signed checkpoints. `paddock audit RUN` is short for `paddock audit show RUN`
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

    /// Give runs credentials that never enter the sandbox; list, show and revoke them.
    ///
    /// A grant is a credential kept encrypted by the daemon. A run that uses it
    /// (`paddock run -g NAME`) sees only a placeholder; the egress proxy puts the real value
    /// into requests to the grant's hosts on the way out. The value is read from an
    /// environment variable, standard input or a CLI such as `gh auth token`: never from
    /// the command line, where `ps` and your shell history would see it.
    #[command(after_help = GRANT_HELP)]
    Grant(GrantArgs),
    /// The hostname router: http://ENDPOINT.NAME.localhost:PORT reaches a run's services.
    ///
    /// The daemon listens on 127.0.0.1 only, on `router.port` of
    /// ~/.config/paddock/config.yaml or PADDOCK_ROUTER_PORT (default 8080), with HTTPS on
    /// the same port (trust `paddock ca export`). The port is fixed when the daemon starts:
    /// after changing it, the next command restarts an idle daemon; with active runs, use
    /// `paddock daemon restart` when they are done. A port held by another program is
    /// reported here and taken as soon as it is free; paddock never picks another one.
    Router(RouterArgs),

    /// The local certificate authority (HTTPS through the router).
    #[command(after_help = "\
Examples:
  paddock ca export -o paddock-ca.pem
  curl --cacert paddock-ca.pem https://web.myapp.localhost:8080/")]
    Ca(CaArgs),

    /// Run or manage the paddock daemon (`paddock daemon` alone runs it in the foreground).
    Daemon(DaemonArgs),

    /// Check what the sandbox needs on this machine, and how to fix what is missing.
    Doctor(DoctorArgs),

    /// Images of the container runtimes: paddock's base (built from Debian packages, no
    /// registry) and `dependencies:` images on top of it, tagged by a hash of what they hold.
    #[command(after_help = "\
Examples:
  paddock image build                       the base image (once; needs debootstrap)
  paddock image build apt:jq pip:requests   an image with these dependencies
  paddock image ls
  paddock image prune                       remove dependency images (keeps the base)
  paddock image deps                        the dependency catalog")]
    Image(ImageArgs),

    /// Show the versions of this CLI and of the running daemon.
    Version(JsonFlag),

    /// PID 1 inside a sandbox (internal).
    #[command(hide = true)]
    Init,
}

const GRANT_HELP: &str = "\
Examples:
  paddock grant github                          GitHub token from `gh auth token`
  paddock grant github --from-env GH_TOKEN      …or from an environment variable
  paddock grant anthropic --from-env ANTHROPIC_API_KEY
  pass show openai | paddock grant openai --stdin
  paddock grant openai --name openai-work --stdin    a second key under another name
  paddock grant http internal --host api.example.com --header Authorization \\
      --format 'Bearer {}' --from-env INTERNAL_TOKEN
  paddock grant list
  paddock grant show github                     masked value and where it is injected
  paddock grant revoke github
  paddock run -g github -g anthropic -- claude  use grants in a run";

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

    /// Work in a git worktree of the repository around the workspace, on BRANCH (made
    /// from the current HEAD when it does not exist), under $PADDOCK_HOME/worktrees/.
    /// Commits in the run land on BRANCH in the repository; the repository's config,
    /// hooks, other branches and checkout stay out of reach. `paddock rm` removes the
    /// worktree (not the branch); a later --wt BRANCH resumes it.
    #[arg(long = "wt", value_name = "BRANCH", allow_hyphen_values = true)]
    pub worktree: Option<String>,

    /// Extra mount: SRC:DST[:ro]. Repeatable.
    #[arg(short = 'm', long = "mount", value_name = "SRC:DST[:ro]")]
    pub mounts: Vec<String>,

    /// Inject a stored credential (see `paddock grant list`) on the way out; repeatable.
    /// The sandbox only ever sees a placeholder.
    #[arg(short = 'g', long = "grant", value_name = "NAME")]
    pub grants: Vec<String>,

    /// Environment variable for the command: KEY=VALUE. Repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// A service inside the run, reached at http://ENDPOINT.NAME.localhost:8080 (the router's
    /// port): ENDPOINT=PORT, the port it listens on (127.0.0.1 is enough). Repeatable;
    /// overrides `ports:` entries of the same endpoint. Not 53, 80, 443, 3128 nor a port of
    /// `network.rules`: paddock's DNS stub, egress capture and proxy hold those in every
    /// sandbox.
    #[arg(short = 'p', long = "port", value_name = "ENDPOINT=PORT")]
    pub ports: Vec<String>,

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

    /// Sandbox runtime: native (default; no container engine), docker, or gvisor (Docker
    /// with runsc). `paddock doctor` shows which are usable here.
    #[arg(long, value_name = "RUNTIME", env = "PADDOCK_RUNTIME", value_parser = ["native", "docker", "gvisor"])]
    pub runtime: Option<String>,

    /// Run on this image from the Docker engine (container runtimes' default: paddock's
    /// base image, built with `paddock image build`). Without --runtime, an image run uses
    /// gvisor where the engine has it, else docker; with `--runtime native` the image's
    /// /usr, /etc, … replace the host's (unpacked once, then as fast as any native run).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,

    /// Add a dependency, as `dependencies:` spells it (repeatable): a tool built into the
    /// run's image (`node`, `apt:jq`, …); `docker:host`: the host's Docker engine behind
    /// paddock's policy proxy (DOCKER_HOST points at it; the run sees only the containers it
    /// made, which get the run's network and policy and go with the run); or `docker:dind`: a
    /// private engine in a sidecar, behind the same policy.
    #[arg(long = "dep", value_name = "DEP")]
    pub deps: Vec<String>,

    /// With -d: print the run as JSON.
    #[arg(long)]
    pub json: bool,

    /// Don't show setup progress.
    #[arg(short, long)]
    pub quiet: bool,

    /// Set the run up as agent NAME (see `paddock agents ls`): its network allow-list, its
    /// login, its CLI on PATH, its per-workspace state. Without CMD, the agent's own command.
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,

    /// `paddock <agent> ARGS`: the arguments for the agent's command.
    #[arg(skip)]
    pub agent_args: Vec<String>,

    /// The command and its arguments (default: from paddock.yaml, else /bin/sh).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `paddock claude|codex|gemini ARGS`.
#[derive(Debug, Args)]
pub struct AgentCmdArgs {
    /// paddock's long options, then the agent's arguments (passed untouched).
    #[arg(num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    pub action: AgentsAction,
}

#[derive(Debug, Subcommand)]
pub enum AgentsAction {
    /// The agent presets, where each one's CLI comes from, and the installed tool layers.
    #[command(visible_alias = "list")]
    Ls(JsonFlag),
    /// Install the latest release of agents' CLIs from npm and use it from now on (all
    /// agents with a package when none is named).
    Update(AgentNames),
    /// Remove agents' tool layers (they are installed again on next use).
    Rm(AgentRm),
}

#[derive(Debug, Args)]
pub struct AgentNames {
    #[arg(value_name = "AGENT")]
    pub agents: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AgentRm {
    #[arg(value_name = "AGENT")]
    pub agents: Vec<String>,
    /// Every tool layer.
    #[arg(long, conflicts_with = "agents")]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open and forward it to the command (without -i it reads end of file).
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Give the command a terminal (use with -i for a shell).
    #[arg(short = 't', long)]
    pub tty: bool,

    /// Environment variable for the command, over the run's own: KEY=VALUE. Repeatable.
    /// Only the name is recorded in the audit log.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Run id, id prefix or name (the run must be running).
    #[arg(value_name = "RUN")]
    pub run: String,

    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
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
pub struct TraceArgs {
    /// Run id, id prefix or name.
    pub run: String,
    /// Keep printing new records until the run ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the newest N records of the history.
    #[arg(short = 'n', long = "limit", value_name = "N")]
    pub limit: Option<usize>,
    /// One JSON object per record.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this run's events (id, id prefix or name).
    #[arg(long)]
    pub run: Option<String>,
    /// Only kinds starting with this prefix (`net.`, `run.state`); repeat or comma-separate.
    #[arg(
        short = 't',
        long = "type",
        value_name = "PREFIX",
        value_delimiter = ','
    )]
    pub kinds: Vec<String>,
    /// Resume after this event id (the daemon keeps the last few thousand).
    #[arg(long, value_name = "ID")]
    pub after: Option<u64>,
    /// Exit after N events.
    #[arg(short = 'n', long = "count", value_name = "N")]
    pub count: Option<u64>,
    /// One JSON event per line (`seq`, `ts`, `run_id`, `kind`, `data`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UiArgs {
    /// Print the login link instead of opening a browser.
    #[arg(long, conflicts_with = "token")]
    pub url: bool,
    /// Print the dashboard's bearer token (for `/metrics` and the API over HTTP).
    #[arg(long)]
    pub token: bool,
    /// The answer as JSON (`url`, `base_url`, `expires_in_s`; or `token`, `base_url`).
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
    /// The changes since this snapshot (`paddock snapshots RUN`), not since the workspace.
    #[arg(long, value_name = "SNAPSHOT")]
    pub from: Option<String>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Run id, id prefix or name.
    pub run: String,
    /// What the snapshot is for.
    #[arg(short, long)]
    pub message: Option<String>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Run id, id prefix or name.
    pub run: String,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Run id, id prefix or name.
    pub run: String,
    /// The snapshot (`s3`; `paddock snapshots RUN` lists them).
    pub snapshot: String,
    /// Only these paths (relative to the workspace, or absolute inside it); all without.
    pub paths: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct DiscardArgs {
    /// Run id, id prefix or name.
    pub run: String,
    /// Only these paths (relative to the workspace, or absolute inside it); all without.
    pub paths: Vec<std::path::PathBuf>,
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
    /// Also apply changes under `.git/` (hooks, config, attributes: code git runs on the
    /// host). Held back otherwise; `paddock diff` lists them apart.
    #[arg(long)]
    pub include_git: bool,
    /// Also apply auto-run files (`paddock.yaml`, `.envrc`, `.vscode/tasks.json`, `.husky/`,
    /// … and `review.autorun` in config): files tools run or obey by themselves.
    #[arg(long)]
    pub include_autorun: bool,
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
    /// Stop the daemon and start a new one (e.g. after upgrading paddock, or to apply a new
    /// `router.port`/PADDOCK_ROUTER_PORT while runs are active).
    Restart(JsonFlag),
}

#[derive(Debug, Args)]
pub struct RouterArgs {
    #[command(subcommand)]
    pub action: RouterAction,
}

#[derive(Debug, Subcommand)]
pub enum RouterAction {
    /// The router's port, whether it listens, and every route.
    Status(JsonFlag),
}

#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(subcommand)]
    pub action: CaAction,
}

#[derive(Debug, Subcommand)]
pub enum CaAction {
    /// Print the CA certificate (PEM; never the key), to trust HTTPS through the router.
    Export(CaExportArgs),
}

#[derive(Debug, Args)]
pub struct CaExportArgs {
    /// Write it to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub action: ImageAction,
}

#[derive(Debug, Subcommand)]
pub enum ImageAction {
    /// Build the base image, or an image with DEPENDENCIES on it (built once, then reused).
    Build(ImageBuildArgs),
    /// List paddock's images.
    Ls(JsonFlag),
    /// Remove paddock images by tag.
    Rm(ImageRmArgs),
    /// Remove every paddock image but the current base (`--all`: that too).
    Prune(ImagePruneArgs),
    /// Show the dependency catalog.
    Deps,
}

#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// Dependencies, as in `dependencies:` (`node`, `apt:jq`, `npm:PKG@V`, `pip:PKG==V`).
    #[arg(value_name = "DEPENDENCY")]
    pub dependencies: Vec<String>,
    /// Build on this image instead of paddock's base.
    #[arg(long, value_name = "IMAGE")]
    pub from: Option<String>,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Debug, Args)]
pub struct ImageRmArgs {
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImagePruneArgs {
    /// Remove the base image too.
    #[arg(long)]
    pub all: bool,
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
    #[command(after_help = "\
Examples:
  paddock audit verify bundle.json --key key.json
  paddock audit verify today.json --known-checkpoint yesterday.json   must extend yesterday's export
  jq '.checkpoints[-1]' bundle.json > cp.json                        keep just the newest checkpoint")]
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
    /// A signed checkpoint of this log you saw earlier: the bundle must extend it (same
    /// root at its tree size, signed at least as far), which detects an older, genuinely
    /// signed copy presented as current (a rollback) or a second history. FILE holds the
    /// checkpoint's JSON — `{"log_id", "tree_size", "root_hash", "time", "key_id",
    /// "signature"}` — as found in `paddock audit export` (the last of `checkpoints`; a
    /// whole earlier bundle is accepted too), in `paddock audit prove --json`
    /// (`checkpoint`), `paddock audit consistency --json` (`new`) and the daemon log's
    /// `run.removed` entries (`audit_checkpoint`).
    #[arg(long, value_name = "FILE")]
    pub known_checkpoint: Option<PathBuf>,
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

#[derive(Debug, Args)]
pub struct GrantArgs {
    #[command(subcommand)]
    pub action: GrantAction,
}

#[derive(Debug, Subcommand)]
pub enum GrantAction {
    /// A GitHub token: Bearer on api.github.com, Basic x-access-token on github.com (git
    /// over HTTPS). Default source: `gh auth token`.
    #[command(after_help = "\
Examples:
  paddock grant github                        from `gh auth token` (GitHub CLI, logged in)
  paddock grant github --from-env GH_TOKEN
  paddock grant github --name gh-bot --stdin < token.txt")]
    Github(BuiltinGrantArgs),

    /// An Anthropic API key: x-api-key on api.anthropic.com. Default source:
    /// $ANTHROPIC_API_KEY when it is set.
    #[command(after_help = "\
Examples:
  paddock grant anthropic --from-env ANTHROPIC_API_KEY
  paddock grant anthropic --stdin               paste it (not echoed), then Enter")]
    Anthropic(BuiltinGrantArgs),

    /// An OpenAI API key: Bearer on api.openai.com. Default source: $OPENAI_API_KEY when
    /// it is set.
    #[command(after_help = "\
Examples:
  paddock grant openai --from-env OPENAI_API_KEY
  pass show openai | paddock grant openai --stdin")]
    Openai(BuiltinGrantArgs),

    /// A Gemini API key: x-goog-api-key on generativelanguage.googleapis.com (default
    /// source: $GEMINI_API_KEY when it is set); or, with --from-login, the Gemini CLI's
    /// Google login (grant `gemini-login`).
    #[command(after_help = "\
Examples:
  paddock grant gemini --from-env GEMINI_API_KEY
  paddock grant gemini --from-login             import ~/.gemini/oauth_creds.json")]
    Gemini(GeminiGrantArgs),

    /// Claude Code's login (your Claude subscription), imported with --from-login from
    /// ~/.claude/.credentials.json ($CLAUDE_CONFIG_DIR/.credentials.json). The sandbox
    /// gets a credentials file with placeholders; the daemon keeps and refreshes the real
    /// tokens. For an API key, use `paddock grant anthropic`.
    #[command(after_help = "\
Examples:
  paddock grant claude --from-login
  paddock grant claude --from-login ./other/.credentials.json --name claude-work")]
    Claude(LoginGrantArgs),

    /// Codex's ChatGPT login, imported with --from-login from ~/.codex/auth.json
    /// ($CODEX_HOME/auth.json). The sandbox gets an auth.json with placeholders; the
    /// daemon keeps and refreshes the real tokens. For an API key, use `paddock grant openai`.
    #[command(after_help = "\
Examples:
  paddock grant codex --from-login")]
    Codex(LoginGrantArgs),

    /// A generic credential: one header on the hosts you name.
    #[command(after_help = "\
Examples:
  paddock grant http internal --host api.example.com --header Authorization \\
      --format 'Bearer {}' --from-env INTERNAL_TOKEN
  paddock grant http sentry --host sentry.io --host '*.sentry.io' \\
      --header Authorization --format 'Bearer {}' --env SENTRY_AUTH_TOKEN --stdin
  paddock grant http metrics --host metrics.example.com --header X-Api-Key --stdin
  paddock grant http hooks --host hooks.example.com --header X-Key --env HOOK_TOKEN \\
      --substitute url,body --from-env HOOK_TOKEN
                                  the sandbox's $HOOK_TOKEN placeholder also works in
                                  https://hooks.example.com/t/$HOOK_TOKEN and JSON bodies")]
    Http(HttpGrantArgs),

    /// List grants (values masked).
    #[command(visible_alias = "ls")]
    List(JsonFlag),

    /// Show one grant: its masked value, where it is injected, which variables get a
    /// placeholder.
    Show(GrantNameArgs),

    /// Delete a grant (runs started later can no longer use it).
    #[command(visible_alias = "rm")]
    Revoke(GrantNameArgs),
}

/// Where `paddock grant` reads the value. There is deliberately no flag for the value
/// itself.
#[derive(Debug, Args, Clone)]
pub struct ValueSourceArgs {
    /// Read the value from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "stdin")]
    pub from_env: Option<String>,
    /// Read the value from standard input (from a terminal: typed or pasted, not echoed).
    #[arg(long)]
    pub stdin: bool,
}

#[derive(Debug, Args)]
pub struct BuiltinGrantArgs {
    /// The grant's name (default: the kind, e.g. `github`). Lower-case letters, digits,
    /// '-' and '_'.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub source: ValueSourceArgs,
    #[command(flatten)]
    pub json: JsonFlag,
    /// Anything else on the command line: refused (a value in argv is visible to `ps`
    /// and kept in shell history), and never echoed.
    #[arg(hide = true, num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true)]
    pub refused: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoginGrantArgs {
    /// Import the CLI's login from its file (default: where the CLI keeps it).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "")]
    pub from_login: Option<PathBuf>,
    /// The grant's name (default: the CLI's, e.g. `claude`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub json: JsonFlag,
    /// Anything else: refused, never echoed.
    #[arg(hide = true, num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true)]
    pub refused: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GeminiGrantArgs {
    /// Import the Gemini CLI's Google login instead of an API key (default file:
    /// ~/.gemini/oauth_creds.json).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "")]
    pub from_login: Option<PathBuf>,
    #[command(flatten)]
    pub key: BuiltinGrantArgs,
}

#[derive(Debug, Args)]
pub struct HttpGrantArgs {
    /// The grant's name. Lower-case letters, digits, '-' and '_'.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// A host the credential is sent to: exact (api.example.com) or a wildcard
    /// (*.example.com). Repeatable; at least one.
    #[arg(long = "host", value_name = "HOST", required = true)]
    pub hosts: Vec<String>,
    /// The header that carries it, e.g. Authorization or X-Api-Key.
    #[arg(long, value_name = "HEADER")]
    pub header: String,
    /// How the value is written into the header: `{}` stands for the value.
    #[arg(long, value_name = "FORMAT", default_value = "{}")]
    pub format: String,
    /// An environment variable that gets a placeholder inside the sandbox. Repeatable.
    #[arg(long = "env", value_name = "VAR")]
    pub env: Vec<String>,
    /// Also replace the placeholder by the value, on these hosts only, in: `url` (path and
    /// query), `headers` (every header value), `body` (request bodies up to 1 MiB,
    /// uncompressed). Comma-separated or repeated. Default: only in HEADER. Each place is
    /// one more way for the upstream to store the real value where the agent could read it
    /// back; add only what the API needs (e.g. a token in the URL path).
    #[arg(
        long = "substitute",
        value_name = "WHERE",
        value_enum,
        value_delimiter = ','
    )]
    pub substitute: Vec<SubstitutePlace>,
    #[command(flatten)]
    pub source: ValueSourceArgs,
    #[command(flatten)]
    pub json: JsonFlag,
    /// See [`BuiltinGrantArgs::refused`].
    #[arg(hide = true, num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true)]
    pub refused: Vec<String>,
}

/// Where `--substitute` lets a generic grant replace its placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SubstitutePlace {
    /// The URL path and query.
    Url,
    /// Every request header value.
    Headers,
    /// Request bodies up to 1 MiB (not compressed ones).
    Body,
}

impl SubstitutePlace {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Url => "url",
            Self::Headers => "headers",
            Self::Body => "body",
        }
    }
}

#[derive(Debug, Args)]
pub struct GrantNameArgs {
    /// The grant's name (see `paddock grant list`).
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub json: JsonFlag,
    /// See [`BuiltinGrantArgs::refused`].
    #[arg(hide = true, num_args = 0.., allow_hyphen_values = true, trailing_var_arg = true)]
    pub refused: Vec<String>,
}
