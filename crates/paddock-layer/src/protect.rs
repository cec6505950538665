//! Paths whose changes are held back from an apply unless the user asks for them: git's
//! own directory (hooks, `config` with `core.hooksPath`/`core.fsmonitor`/filters/aliases,
//! `info/attributes` are code that runs on the host) and files that tools run by
//! themselves (direnv's `.envrc`, VS Code tasks and settings, git hook managers, paddock's
//! own `paddock.yaml`, which grants the next run its mounts and network).
//!
//! Patterns are deliberately small (no wildcards, so what a pattern holds is obvious): a
//! pattern without a `/` inside matches that name at any depth; one with a `/` inside
//! matches that path from the workspace root; a trailing `/` holds the directory and all
//! beneath it. `.git` is held at any depth, whether it is a directory or a `gitdir:` file.
//!
//! Owns: which changes are held and why. Never: reads the layer; walks more of the
//! workspace than a deleted directory's subtree (bounded).

use std::path::{Component, Path};

use serde::Serialize;

use crate::scan::{ChangeKind, Changes, FileKind};

/// Auto-run files held back by default (besides `.git`); config adds more.
pub const DEFAULT_AUTORUN: &[&str] = &[
    "paddock.yaml",
    ".envrc",
    ".env",
    ".vscode/tasks.json",
    ".vscode/settings.json",
    ".vscode/launch.json",
    ".vscode/extensions.json",
    ".devcontainer/",
    ".husky/",
    ".pre-commit-config.yaml",
    ".mise.toml",
    "mise.toml",
    ".tool-versions",
    ".idea/",
];

/// How many workspace entries under a deleted directory are checked for held paths; a
/// larger subtree is held as a whole (it cannot be shown to hold nothing).
const DELETED_WALK_LIMIT: usize = 50_000;

/// Why a change is held back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Held {
    /// Under (or is) a `.git`: applied only with `--include-git`.
    Git,
    /// Matches an auto-run pattern: applied only with `--include-autorun`.
    Autorun { pattern: String },
}

impl Held {
    /// What the user passes to apply it anyway.
    pub fn flag(&self) -> &'static str {
        match self {
            Held::Git => "--include-git",
            Held::Autorun { .. } => "--include-autorun",
        }
    }

    /// A short reason for listings.
    pub fn describe(&self) -> String {
        match self {
            Held::Git => "git's own files run code on the host".into(),
            Held::Autorun { pattern } => format!("auto-run file ({pattern})"),
        }
    }
}

/// The patterns a run's review uses: [`DEFAULT_AUTORUN`] and the config's additions.
#[derive(Debug, Clone)]
pub struct Protection {
    autorun: Vec<String>,
}

impl Default for Protection {
    fn default() -> Self {
        Protection::new(&[])
    }
}

impl Protection {
    /// The defaults plus `extra` (malformed patterns, empty or with `..`, are ignored).
    pub fn new(extra: &[String]) -> Self {
        let mut autorun: Vec<String> = DEFAULT_AUTORUN.iter().map(|s| s.to_string()).collect();
        for p in extra {
            let p = p.trim().trim_start_matches("./").to_string();
            let ok = !p.is_empty()
                && !p.starts_with('/')
                && !Path::new(&p)
                    .components()
                    .any(|c| matches!(c, Component::ParentDir | Component::CurDir));
            if ok && !autorun.contains(&p) {
                autorun.push(p);
            }
        }
        Protection { autorun }
    }

    /// Why `rel` (workspace-relative) is held, if it is.
    pub fn held(&self, rel: &Path) -> Option<Held> {
        if rel.components().any(|c| c.as_os_str() == ".git") {
            return Some(Held::Git);
        }
        self.autorun
            .iter()
            .find(|p| matches(p, rel))
            .map(|p| Held::Autorun { pattern: p.clone() })
    }

    /// Whether a held path lies strictly beneath `dir` (relative), or the subtree is too
    /// large to tell.
    fn held_beneath(&self, workspace: &Path, dir: &Path) -> Option<Held> {
        let mut seen = 0usize;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(workspace.join(&d)) else {
                continue;
            };
            for e in rd.flatten() {
                seen += 1;
                if seen > DELETED_WALK_LIMIT {
                    return Some(Held::Autorun {
                        pattern: format!("{} (too large to check)", dir.display()),
                    });
                }
                let rel = d.join(e.file_name());
                if let Some(h) = self.held(&rel) {
                    return Some(h);
                }
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(rel);
                }
            }
        }
        None
    }

    /// Mark every change of `changes` that is held: its path is protected, or it removes
    /// (deletes, or replaces with a non-directory) a workspace directory holding a
    /// protected path.
    pub fn mark(&self, changes: &mut Changes) {
        let workspace = changes.workspace.clone();
        for c in &mut changes.changes {
            c.held = self.held(&c.path).or_else(|| {
                let removes_dir = c.old.as_ref().is_some_and(|o| o.kind == FileKind::Dir)
                    && (c.kind == ChangeKind::Deleted || c.type_changed);
                removes_dir
                    .then(|| self.held_beneath(&workspace, &c.path))
                    .flatten()
            });
        }
    }
}

/// Does `pattern` hold `rel`? See the module doc for the pattern language.
fn matches(pattern: &str, rel: &Path) -> bool {
    let dir = pattern.ends_with('/');
    let p = Path::new(pattern.trim_end_matches('/'));
    let anchored = pattern.trim_end_matches('/').contains('/');
    let starts = |base: &Path| {
        if dir { base.starts_with(p) } else { base == p }
    };
    if anchored {
        return starts(rel);
    }
    // A bare name: at any depth.
    let comps: Vec<_> = rel.components().collect();
    (0..comps.len()).any(|i| {
        let tail: std::path::PathBuf = comps[i..].iter().collect();
        starts(&tail)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_is_held_at_any_depth_and_as_a_file() {
        let p = Protection::default();
        for rel in [
            ".git",
            ".git/hooks/pre-commit",
            ".git/config",
            "vendor/lib/.git",
            "vendor/lib/.git/info/attributes",
        ] {
            assert_eq!(p.held(Path::new(rel)), Some(Held::Git), "{rel}");
        }
        for rel in [
            "src/git.rs",
            ".gitignore",
            ".github/workflows/ci.yml",
            "a.git",
        ] {
            assert_eq!(p.held(Path::new(rel)), None, "{rel}");
        }
    }

    #[test]
    fn autorun_patterns_are_names_anchored_paths_or_directories() {
        let p = Protection::new(&["Makefile.local".into(), "tools/run/".into(), "../x".into()]);
        let held = |r: &str| p.held(Path::new(r)).is_some();
        assert!(held(".envrc") && held("sub/project/.envrc"));
        assert!(held(".vscode/tasks.json") && !held("docs/.vscode/tasks.json"));
        assert!(held(".husky") && held(".husky/pre-commit") && held("pkg/.husky/x"));
        assert!(held("paddock.yaml") && held("Makefile.local"));
        assert!(held("tools/run/a.sh") && !held("tools/runner.sh"));
        assert!(!held("src/main.rs") && !held(".envrc.sample"));
    }
}
