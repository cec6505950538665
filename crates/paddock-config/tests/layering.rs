//! Layering of the user config and the project config, and finding the project file.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use paddock_config::{
    ConfigLayer, ErrorKind, HostPattern, Loader, NetworkPolicy, Origin, RuntimeKind, WorkspaceMode,
    find_project_config, load_layers,
};

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        Fixture { _dir: dir, root }
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p
    }

    fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.root.join(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn user_path(&self) -> PathBuf {
        self.root.join("home/.config/paddock/config.yaml")
    }

    fn loader(&self) -> Loader {
        Loader::new()
            .user_config(Some(self.user_path()))
            .home(Some(self.root.join("home")))
    }
}

fn layers(
    user: &str,
    project: &str,
) -> Result<paddock_config::Config, paddock_config::ConfigError> {
    let home = Some(PathBuf::from("/home/u"));
    load_layers(&[
        (
            user.as_bytes(),
            Origin::user("/home/u/.config/paddock/config.yaml").with_home(home.clone()),
        ),
        (
            project.as_bytes(),
            Origin::project("/repo/paddock.yaml").with_home(home),
        ),
    ])
}

#[test]
fn user_only() {
    let f = Fixture::new();
    f.write(
        "home/.config/paddock/config.yaml",
        "runtime: docker\ngrants: [github]\n",
    );
    let ws = f.mkdir("repo");
    let loaded = f.loader().load(&ws).unwrap();
    assert_eq!(loaded.sources, vec![f.user_path()]);
    assert_eq!(loaded.config.runtime, RuntimeKind::Docker);
    assert_eq!(loaded.config.grants, ["github"]);
}

#[test]
fn project_only() {
    let f = Fixture::new();
    f.mkdir("repo/.git");
    let p = f.write("repo/paddock.yaml", "name: proj\n");
    let loaded = f.loader().load(&f.root.join("repo")).unwrap();
    assert_eq!(loaded.sources, vec![p]);
    assert_eq!(loaded.config.name.as_deref(), Some("proj"));
}

#[test]
fn neither_file() {
    let f = Fixture::new();
    let ws = f.mkdir("repo/.git");
    let loaded = f.loader().load(ws.parent().unwrap()).unwrap();
    assert!(loaded.sources.is_empty());
    assert_eq!(loaded.config, paddock_config::Config::default());
}

#[test]
fn both_scalars_project_wins() {
    let c = layers(
        "name: user\nruntime: docker\nworkspace: {mode: bind}\nlimits: {memory: 1G, pids: 100}\nnetwork: {policy: strict}\ncommand: [user, cmd]\nupstream: {extra_ca: ca.pem}\n",
        "name: proj\nlimits: {memory: 2G}\ncommand: make\n",
    )
    .unwrap();
    assert_eq!(c.name.as_deref(), Some("proj"));
    assert_eq!(
        c.runtime,
        RuntimeKind::Docker,
        "unset in project: user's value stays"
    );
    assert_eq!(c.workspace.mode, WorkspaceMode::Bind);
    assert_eq!(c.limits.memory_bytes, Some(2 << 30), "project wins");
    assert_eq!(c.limits.pids, Some(100), "nested keys merge one by one");
    assert_eq!(c.network.policy, NetworkPolicy::Strict);
    assert_eq!(
        c.command,
        Some(vec!["make".to_string()]),
        "command is replaced whole"
    );
    assert_eq!(
        c.upstream.extra_ca,
        Some(PathBuf::from("/home/u/.config/paddock/ca.pem")),
        "relative to the user config's directory"
    );

    let c = layers(
        "runtime: docker\n",
        "runtime: native\nworkspace: {mode: overlay}\n",
    )
    .unwrap();
    assert_eq!(
        c.runtime,
        RuntimeKind::Native,
        "an explicit default still overrides"
    );
}

#[test]
fn lists_concatenate_user_first() {
    let c = layers(
        "mounts: [\"~/a:/a\"]\ngrants: [github, npm]\nnetwork:\n  rules: [{host: user.example}]\n  passthrough: [bank.example]\n",
        "mounts: [\"./b:/b:ro\"]\ngrants: [npm, pypi]\nnetwork:\n  rules: [{host: proj.example, action: deny}]\n  passthrough: [bank.example, \"*.pin.example\"]\n",
    )
    .unwrap();
    let targets: Vec<_> = c.mounts.iter().map(|m| m.target.clone()).collect();
    assert_eq!(targets, [PathBuf::from("/a"), PathBuf::from("/b")]);
    assert_eq!(c.mounts[0].source, PathBuf::from("/home/u/a"));
    assert_eq!(
        c.mounts[1].source,
        PathBuf::from("/repo/b"),
        "relative to the project file"
    );
    assert_eq!(
        c.grants,
        ["github", "npm", "pypi"],
        "sets keep one copy, first place"
    );
    let hosts: Vec<String> = c.network.rules.iter().map(|r| r.host.to_string()).collect();
    assert_eq!(hosts, ["user.example", "proj.example"]);
    assert_eq!(
        c.network.passthrough,
        [
            HostPattern::Exact("bank.example".into()),
            HostPattern::Subdomains("pin.example".into())
        ]
    );
}

#[test]
fn header_edits_concatenate_user_first() {
    let c = layers(
        "network:\n  headers:\n    - {host: api.github.com, set: {X-Team: user, X-User: '1'}}\n",
        "network:\n  headers:\n    - {host: api.github.com, set: {X-Team: project}, remove: [User-Agent]}\n    - {host: '*.example.com', remove: [Cookie]}\n",
    )
    .unwrap();
    let h = &c.network.headers;
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].set["x-team"], "user");
    assert_eq!(h[0].set["x-user"], "1");
    // Applied in order: the project's value for the same header wins.
    assert_eq!(h[1].set["x-team"], "project");
    assert_eq!(h[1].remove, ["user-agent"]);
    assert_eq!(h[2].host, HostPattern::Subdomains("example.com".into()));
    // A project may set headers (it is not a user-only key).
    let p = layers("", "network: {headers: [{host: a.com, set: {X-A: b}}]}\n").unwrap();
    assert_eq!(p.network.headers.len(), 1);
}

#[test]
fn same_mount_target_in_both_layers_is_an_error() {
    let e = layers(
        "mounts: [\"/x:/data\"]\n",
        "name: p\nmounts:\n  - /y:/data:ro\n",
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Value);
    assert_eq!(e.path(), Path::new("/repo/paddock.yaml"));
    assert_eq!(e.position(), Some((3, 5)));
    assert!(
        e.message()
            .contains("/home/u/.config/paddock/config.yaml:1:10"),
        "names the other entry: {e}"
    );
}

#[test]
fn maps_merge_by_key_project_wins() {
    let c = layers(
        "env: {A: user, B: user}\nports: {web: 3000, api: 8080}\nupstream:\n  resolve: {a.example: \"10.0.0.1:443\", b.example: \"10.0.0.2:443\"}\n",
        "env: {B: proj, C: proj}\nports: {api: 9090}\n",
    )
    .unwrap();
    let env: Vec<(&str, &str)> = c
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, [("A", "user"), ("B", "proj"), ("C", "proj")]);
    let ports: Vec<(&str, u16)> = c.ports.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(ports, [("api", 9090), ("web", 3000)]);
    assert_eq!(c.upstream.resolve["a.example"].to_string(), "10.0.0.1:443");
    assert_eq!(c.upstream.resolve["b.example"].to_string(), "10.0.0.2:443");
}

/// `upstream:` decides where credentials go: a project file (which an agent may edit)
/// can never set it.
#[test]
fn upstream_is_user_only() {
    for project in [
        "upstream:\n  resolve: {api.github.com: \"10.0.0.3:443\"}\n",
        "upstream: {extra_ca: evil.pem}\n",
    ] {
        let e = layers("", project).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UserOnlyKey, "{e}");
        assert_eq!(e.path(), Path::new("/repo/paddock.yaml"));
    }
}

#[test]
fn user_only_keys() {
    let user = "router: {port: 8080}\ndaemon: {idle_timeout: 10m}\naudit: {checkpoint_every: 500, checkpoint_interval: 30s}\n";
    let c = layers(user, "name: p\n").unwrap();
    assert_eq!(c.router.port, Some(8080));
    assert_eq!(c.daemon.idle_timeout, Some(Duration::from_secs(600)));
    assert_eq!(c.audit.checkpoint_every, Some(500));
    assert_eq!(c.audit.checkpoint_interval, Some(Duration::from_secs(30)));

    let e = layers(user, "name: p\ndaemon:\n  idle_timeout: 1h\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UserOnlyKey);
    assert_eq!(e.path(), Path::new("/repo/paddock.yaml"));
    assert_eq!(e.position(), Some((3, 17)));
}

#[test]
fn errors_name_the_file_they_are_in() {
    let e = layers("nmae: x\n", "").unwrap_err();
    assert_eq!(e.path(), Path::new("/home/u/.config/paddock/config.yaml"));
    let e = layers("", "\nnmae: x\n").unwrap_err();
    assert_eq!(e.to_string(), "/repo/paddock.yaml:2:1: unknown key `nmae`",);
}

#[test]
fn walks_up_to_the_repo_root() {
    let f = Fixture::new();
    f.mkdir("repo/.git");
    let p = f.write("repo/paddock.yaml", "name: root\n");
    let deep = f.mkdir("repo/a/b/c");
    assert_eq!(find_project_config(&deep), Some(p.clone()));

    // A nearer paddock.yaml wins.
    let nearer = f.write("repo/a/paddock.yaml", "name: nearer\n");
    assert_eq!(find_project_config(&deep), Some(nearer));
    let loaded = f.loader().load(&deep).unwrap();
    assert_eq!(loaded.config.name.as_deref(), Some("nearer"));

    // A directory named paddock.yaml is not a config file.
    let g = Fixture::new();
    g.mkdir("r/.git");
    g.mkdir("r/sub/paddock.yaml");
    let p = g.write("r/paddock.yaml", "name: r\n");
    assert_eq!(find_project_config(&g.root.join("r/sub")), Some(p));
}

#[test]
fn walk_stops_at_the_repo_root() {
    let f = Fixture::new();
    // A paddock.yaml above the repository root is not the project's.
    f.write("paddock.yaml", "name: outside\n");
    f.mkdir("repo/.git");
    let ws = f.mkdir("repo/src");
    assert_eq!(find_project_config(&ws), None);
    assert!(f.loader().load(&ws).unwrap().sources.is_empty());

    // `.git` may be a file (worktrees, submodules).
    let g = Fixture::new();
    g.write("paddock.yaml", "name: outside\n");
    g.write("wt/.git", "gitdir: /elsewhere\n");
    let ws = g.mkdir("wt/x");
    assert_eq!(find_project_config(&ws), None);
}

#[test]
fn walk_without_repo_goes_to_the_top() {
    let f = Fixture::new();
    let p = f.write("paddock.yaml", "name: top\n");
    let ws = f.mkdir("a/b/c/d");
    // No .git anywhere below the temp dir: the walk continues upwards and finds ours
    // (unless something above the temp dir has a .git, which a temp dir should not).
    assert_eq!(find_project_config(&ws), Some(p));
}

#[test]
fn load_reports_file_errors_with_temp_path_filtered() {
    let f = Fixture::new();
    f.mkdir("repo/.git");
    f.write("repo/paddock.yaml", "name: ok\nlimits:\n  memory: 12XB\n");
    let e = f.loader().load(&f.root.join("repo")).unwrap_err();
    let root = f.root.display().to_string();
    insta::with_settings!({filters => vec![(root.as_str(), "[TMP]")]}, {
        insta::assert_snapshot!("file_error", e.display_with_hint());
    });
}

#[test]
fn non_utf8_and_oversized_files() {
    let f = Fixture::new();
    f.mkdir("repo/.git");
    let p = f.root.join("repo/paddock.yaml");
    fs::write(&p, b"name: ok\nenv:\n  A: caf\xe9\n").unwrap();
    let e = f.loader().load(&f.root.join("repo")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotUtf8);
    assert_eq!(e.position(), Some((3, 9)));
    assert!(
        e.to_string()
            .ends_with("file is not valid UTF-8 (byte 0xe9 at offset 22)"),
        "{e}"
    );

    let big = format!("name: x\n{}", "# padding\n".repeat(200_000));
    fs::write(&p, big).unwrap();
    let e = f.loader().load(&f.root.join("repo")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Limit);
    assert_eq!(e.position(), None);
}

#[test]
fn unreadable_user_config_is_an_error_missing_is_not() {
    let f = Fixture::new();
    let ws = f.mkdir("repo/.git");
    // A directory where the file should be: reading fails.
    f.mkdir("home/.config/paddock/config.yaml");
    let e = f.loader().load(ws.parent().unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    assert!(
        e.to_string()
            .starts_with(&f.user_path().display().to_string())
    );

    let loaded = Loader::new()
        .user_config(Some(f.root.join("nope/config.yaml")))
        .load(ws.parent().unwrap())
        .unwrap();
    assert!(loaded.sources.is_empty());
}

#[test]
fn layer_kind_of_origin() {
    assert_eq!(Origin::user("/x").layer, ConfigLayer::User);
    assert_eq!(Origin::project("/x").layer, ConfigLayer::Project);
}
