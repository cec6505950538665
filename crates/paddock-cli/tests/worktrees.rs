//! Worktree runs (`paddock run --wt BRANCH`) with the real git inside real sandboxes:
//! runs on two branches commit at the same time and their branches land in the
//! repository; the main checkout, the repository's `.git/config`, `.git/hooks` and other
//! branches' refs stay out of reach, whatever the run tries; `ps` shows the branch; `rm`
//! keeps a worktree with uncommitted changes unless forced, and never deletes the branch.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Env, wait_until};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository with one commit on `main`, a hook and a config the runs will go after.
fn repo(env: &Env) -> PathBuf {
    let repo = env.dir.path().join("project");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.email", "dev@example.com"]);
    git(&repo, &["config", "user.name", "dev"]);
    std::fs::write(repo.join("README"), "hello\n").unwrap();
    git(&repo, &["add", "README"]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    git(&repo, &["branch", "other"]);
    repo
}

fn paddock(env: &Env, dir: &Path, args: &[&str]) -> Output {
    env.cmd()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("paddock")
}

fn ok(env: &Env, dir: &Path, args: &[&str]) -> String {
    let out = paddock(env, dir, args);
    assert!(
        out.status.success(),
        "paddock {args:?}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_json(env: &Env, dir: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&ok(env, dir, &["inspect", "--json", name])).unwrap()
}

/// Everything under `dir` (names and contents), to compare before and after.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p.clone());
                out.push((p, Vec::new()));
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out
}

#[test]
fn two_worktree_runs_commit_in_parallel_and_the_main_checkout_stays() {
    let env = Env::new();
    let repo = repo(&env);
    let main_before = git(&repo, &["rev-parse", "main"]);
    let checkout_before: Vec<_> = snapshot(&repo)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(repo.join(".git")))
        .collect();

    // Each run waits for a `go` file in its own worktree, so both are live at once.
    let script = |b: &str| {
        format!(
            "while [ ! -e go ]; do sleep 0.05; done; rm go; echo {b} > {b}.txt; git add {b}.txt && \
             git -c user.email=agent@example.com -c user.name=agent commit -q -m 'work on {b}' && \
             git rev-parse HEAD"
        )
    };
    let mut names = Vec::new();
    for b in ["feat-a", "feat-b"] {
        let out = ok(
            &env,
            &repo,
            &["run", "-d", "--wt", b, "--", "/bin/sh", "-c", &script(b)],
        );
        names.push(out.trim().to_string());
    }
    let worktrees: Vec<PathBuf> = names
        .iter()
        .map(|n| {
            let v = run_json(&env, &repo, n);
            assert_eq!(v["state"], "running", "{v}");
            PathBuf::from(v["worktree"].as_str().expect("worktree path"))
        })
        .collect();
    assert_ne!(worktrees[0], worktrees[1]);
    for w in &worktrees {
        assert!(
            w.starts_with(&env.home),
            "{} outside PADDOCK_HOME",
            w.display()
        );
    }
    // Both live: ps lists both with their branches.
    let ps = ok(&env, &repo, &["ps"]);
    assert!(ps.contains("BRANCH"), "{ps}");
    assert!(ps.contains("feat-a") && ps.contains("feat-b"), "{ps}");
    for w in &worktrees {
        std::fs::write(w.join("go"), "").unwrap();
    }
    for n in &names {
        ok(&env, &repo, &["wait", n]);
        let v = run_json(&env, &repo, n);
        assert_eq!(v["exit_code"], 0, "{v}\n{}", ok(&env, &repo, &["logs", n]));
    }

    // The commits are in the repository, on their branches, each on top of main.
    for (b, n) in ["feat-a", "feat-b"].iter().zip(&names) {
        let logged = ok(&env, &repo, &["logs", n]);
        let head = git(&repo, &["rev-parse", &format!("refs/heads/{b}")]);
        assert!(logged.contains(&head), "{b}: {head} not in {logged}");
        assert_eq!(
            git(&repo, &["log", "-1", "--format=%s", b]),
            format!("work on {b}")
        );
        assert_eq!(git(&repo, &["rev-parse", &format!("{b}^")]), main_before);
        assert_eq!(
            git(&repo, &["show", &format!("{b}:{b}.txt")]),
            *b,
            "the commit's tree reached the repository's own object store"
        );
    }
    git(&repo, &["fsck", "--strict", "--no-dangling"]);
    // The main checkout and main are as they were.
    assert_eq!(git(&repo, &["rev-parse", "main"]), main_before);
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    let checkout_after: Vec<_> = snapshot(&repo)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(repo.join(".git")))
        .collect();
    assert_eq!(checkout_before, checkout_after);

    // A later run on the same branch resumes its worktree and sees the commit.
    let out = ok(
        &env,
        &repo,
        &["run", "-q", "--wt", "feat-a", "--", "cat", "feat-a.txt"],
    );
    assert_eq!(out.trim(), "feat-a");
}

#[test]
fn a_worktree_run_cannot_touch_the_repository_config_hooks_or_other_refs() {
    let env = Env::new();
    let repo = repo(&env);
    let git_dir = repo.join(".git");
    let refs_before = git(
        &repo,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    );
    let config_before = std::fs::read(git_dir.join("config")).unwrap();
    let hooks_before = snapshot(&git_dir.join("hooks"));
    // A second worktree run's files, which this one must not reach either.
    ok(
        &env,
        &repo,
        &["run", "-q", "--wt", "neighbour", "--", "true"],
    );
    let neighbour = env.home.join("worktrees");
    let neighbour_before = snapshot(&neighbour);

    let r = repo.display().to_string();
    let home = env.home.display().to_string();
    let attack = format!(
        r#"
R={r}; H={home}
try() {{ if sh -c "$1" 2>/dev/null; then echo "DID: $1"; fi; }}
try "echo 'touch /tmp/pwned' > $R/.git/hooks/post-checkout && chmod +x $R/.git/hooks/post-checkout"
try "echo '[core]' >> $R/.git/config"
try "printf '[core]\n\tfsmonitor = touch /tmp/pwned\n' > $(git rev-parse --git-common-dir)/config"
try "echo 'touch /tmp/pwned' > $(git rev-parse --git-common-dir)/hooks/post-commit"
try "echo /tmp > $(git rev-parse --git-common-dir)/objects/info/alternates"
try "echo /tmp > $(git rev-parse --git-dir)/commondir"
try "echo 'gitdir: /tmp' > .git"
# (The checkout is not in the sandbox; under /tmp this lands in the sandbox's own /tmp.)
echo pwned > $R/README 2>/dev/null
try "rm -rf $R/.git/refs/heads"
for w in $H/worktrees/*neighbour* $H/worktrees/.common/*neighbour*; do
  echo pwned > $w/README 2>/dev/null; echo pwned > $w/config 2>/dev/null
done
# Other refs, moved in every way git offers (they stay in this run's own ref store).
git update-ref refs/heads/main HEAD
git update-ref refs/heads/other HEAD
git branch -f neighbour HEAD
git tag -f v-evil HEAD
git update-ref -d refs/heads/other
# Its own branch, pointed at main by a symbolic ref, is not followed.
git -c user.email=a@b -c user.name=agent commit -q --allow-empty -m mine
git rev-parse HEAD
git config core.hooksPath /tmp 2>/dev/null && echo "DID: config"
true
"#
    );
    let out = paddock(
        &env,
        &repo,
        &["run", "--wt", "attacker", "--", "/bin/sh", "-c", &attack],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains("DID:"),
        "the run changed something:\n{stdout}"
    );

    // On the host: the repository's config and hooks are as they were, and only the run's
    // own branch is new.
    assert_eq!(
        std::fs::read(git_dir.join("config")).unwrap(),
        config_before
    );
    assert_eq!(snapshot(&git_dir.join("hooks")), hooks_before);
    assert_eq!(
        std::fs::read_to_string(repo.join("README")).unwrap(),
        "hello\n"
    );
    assert!(!Path::new("/tmp/pwned").exists());
    let mine = git(&repo, &["rev-parse", "refs/heads/attacker"]);
    assert!(stdout.contains(&mine), "{stdout}");
    let main = git(&repo, &["rev-parse", "main"]);
    let mut expected: std::collections::BTreeSet<String> =
        refs_before.lines().map(String::from).collect();
    expected.insert(format!("refs/heads/neighbour {main}"));
    let after: std::collections::BTreeSet<String> = git(
        &repo,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    )
    .lines()
    .filter(|l| !l.starts_with("refs/heads/attacker "))
    .map(String::from)
    .collect();
    assert_eq!(after, expected, "refs other than the run's branch changed");
    assert_eq!(
        snapshot(&neighbour)
            .into_iter()
            .filter(|(p, _)| p.to_string_lossy().contains("neighbour"))
            .collect::<Vec<_>>(),
        neighbour_before
            .into_iter()
            .filter(|(p, _)| p.to_string_lossy().contains("neighbour"))
            .collect::<Vec<_>>()
    );

    // A symbolic ref planted as the branch is refused, not followed to main.
    let out = paddock(
        &env,
        &repo,
        &[
            "run",
            "--wt",
            "attacker",
            "--",
            "/bin/sh",
            "-c",
            "echo 'ref: refs/heads/main' > $(git rev-parse --git-common-dir)/refs/heads/attacker",
        ],
    );
    assert!(out.status.success());
    assert_eq!(git(&repo, &["rev-parse", "refs/heads/attacker"]), mine);
    assert_eq!(
        git(&repo, &["rev-parse", "main"]),
        git(&repo, &["rev-parse", "attacker^"])
    );
    git(&repo, &["fsck", "--strict", "--no-dangling"]);
}

#[test]
fn rm_keeps_a_dirty_worktree_unless_forced_and_never_deletes_the_branch() {
    let env = Env::new();
    let repo = repo(&env);
    ok(
        &env,
        &repo,
        &[
            "run",
            "--wt",
            "wip",
            "--",
            "/bin/sh",
            "-c",
            "git -c user.email=a@b -c user.name=a commit -q --allow-empty -m saved; echo draft > notes.txt",
        ],
    );
    let name = {
        let list: serde_json::Value =
            serde_json::from_str(&ok(&env, &repo, &["ps", "-a", "--json"])).unwrap();
        let runs = list["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0]["branch"], "wip");
        runs[0]["name"].as_str().unwrap().to_string()
    };
    let wt = PathBuf::from(run_json(&env, &repo, &name)["worktree"].as_str().unwrap());
    assert!(wt.join("notes.txt").exists());

    let out = paddock(&env, &repo, &["rm", &name]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("uncommitted changes") && err.contains("--force"),
        "{err}"
    );
    assert!(wt.join("notes.txt").exists(), "a refused rm removed files");
    run_json(&env, &repo, &name);

    ok(&env, &repo, &["rm", "--force", &name]);
    assert!(!wt.exists(), "the worktree stays after rm --force");
    let list = git(&repo, &["worktree", "list", "--porcelain"]);
    assert!(!list.contains("wip"), "{list}");
    assert_eq!(git(&repo, &["log", "-1", "--format=%s", "wip"]), "saved");
    assert!(
        !env.home.join("worktrees/.common").exists()
            || std::fs::read_dir(env.home.join("worktrees/.common"))
                .unwrap()
                .next()
                .is_none(),
        "the shadow stays"
    );

    // A clean worktree goes without --force; the branch again stays.
    ok(&env, &repo, &["run", "-q", "--wt", "clean", "--", "true"]);
    let list: serde_json::Value =
        serde_json::from_str(&ok(&env, &repo, &["ps", "-a", "--json"])).unwrap();
    let name = list["runs"][0]["name"].as_str().unwrap().to_string();
    ok(&env, &repo, &["rm", &name]);
    git(&repo, &["rev-parse", "--verify", "refs/heads/clean"]);
}

#[test]
fn bad_worktree_requests_get_clear_errors() {
    let env = Env::new();
    let repo = repo(&env);
    let cases: &[(&[&str], &Path, &str)] = &[
        (
            &["run", "--wt", "a..b", "--", "true"],
            &repo,
            "invalid branch name",
        ),
        (
            &["run", "--wt", "-x", "--", "true"],
            &repo,
            "invalid branch name",
        ),
        (
            &["run", "--wt", "main", "--", "true"],
            &repo,
            "checked out at",
        ),
        (
            &["run", "--wt", "x", "--", "true"],
            env.dir.path(),
            "not inside a git repository",
        ),
    ];
    for (args, dir, want) in cases {
        let out = paddock(&env, dir, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(err.contains("hint:"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A branch in use by a live run is refused for a second run.
    let name = ok(
        &env,
        &repo,
        &[
            "run", "-d", "--name", "busy-run", "--wt", "busy", "--", "sleep", "30",
        ],
    );
    let out = paddock(&env, &repo, &["run", "--wt", "busy", "--", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("in use by run"), "{err}");
    // A create refused after its worktree was made (here: the name is taken) leaves the
    // branch free for the next run at once.
    let out = paddock(
        &env,
        &repo,
        &["run", "--wt", "later", "--name", "busy-run", "--", "true"],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("busy-run"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&env, &repo, &["run", "-q", "--wt", "later", "--", "true"]);
    ok(&env, &repo, &["stop", name.trim()]);
    wait_until(Duration::from_secs(10), || {
        let v = run_json(&env, &repo, name.trim());
        (v["state"] != "running").then_some(())
    })
    .expect("the run stops");
}
