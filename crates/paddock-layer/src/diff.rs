//! Summaries (`git status --short` style) and unified diffs (`git diff` style) of a layer.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use similar::TextDiff;

use crate::error::LayerError;
use crate::protect::Held;
use crate::scan::{Change, ChangeKind, Changes, Entry, FileKind, ser_path};

/// A path as listings show it: printable UTF-8 as is; control characters (C0, DEL, C1),
/// bidirectional overrides and `\` escaped as `\u{…}` / `\\`; bytes that are not UTF-8
/// as `\xNN`. A hostile name cannot move the cursor, recolour, or hide text.
pub fn escape_path(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in p.as_os_str().as_bytes().utf8_chunks() {
        out.push_str(&escape_str(chunk.valid()));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// [`escape_path`] for text already known to be UTF-8 (symlink targets, header names).
pub fn escape_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || bidi {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` with its control characters (but tabs) and bidirectional overrides made visible as
/// `\u{…}`, and nothing else changed: for showing file content on a terminal.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| {
        (c.is_control() && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
    };
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// One line of a summary.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryEntry {
    /// 'A', 'M' or 'D'.
    pub status: char,
    /// Workspace-relative path (directories end in `/` when rendered).
    #[serde(serialize_with = "ser_path")]
    pub path: PathBuf,
    /// What the path is in the layer (or was, for deletions).
    pub kind: FileKind,
    /// Remarks: "mode 100644 -> 100755", "type changed", "setuid will be stripped", ...
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Held back from an apply without its flag (see [`crate::Protection`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
}

/// Counts and the list of changed paths.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Added paths.
    pub added: usize,
    /// Modified paths.
    pub modified: usize,
    /// Deleted paths.
    pub deleted: usize,
    /// Of those, paths held back (listed apart).
    #[serde(default)]
    pub held: usize,
    /// One entry per changed path, parents first.
    pub entries: Vec<SummaryEntry>,
}

impl Summary {
    /// Total number of changed paths.
    pub fn total(&self) -> usize {
        self.added + self.modified + self.deleted
    }

    /// Render like `git status --short`, followed by a count line.
    /// Names are escaped ([`escape_path`]); held paths are listed apart, after the rest.
    pub fn render(&self) -> String {
        let line = |e: &SummaryEntry| {
            let slash = if e.kind == FileKind::Dir { "/" } else { "" };
            let mut l = format!("{}  {}{}", e.status, escape_path(&e.path), slash);
            let mut notes = e.notes.clone();
            if let Some(h) = &e.held {
                notes.push(format!("{}; apply with {}", h.describe(), h.flag()));
            }
            if !notes.is_empty() {
                l.push_str(&format!("  ({})", notes.join(", ")));
            }
            l.push('\n');
            l
        };
        let mut out = String::new();
        for e in self.entries.iter().filter(|e| e.held.is_none()) {
            out.push_str(&line(e));
        }
        if self.held > 0 {
            out.push_str("held back (code that runs on the host; not applied without the flag):\n");
            for e in self.entries.iter().filter(|e| e.held.is_some()) {
                out.push_str(&line(e));
            }
        }
        if self.entries.is_empty() {
            out.push_str("no changes\n");
        } else {
            out.push_str(&format!(
                "{} added, {} modified, {} deleted",
                self.added, self.modified, self.deleted
            ));
            if self.held > 0 {
                out.push_str(&format!("; {} held back", self.held));
            }
            out.push('\n');
        }
        out
    }
}

/// Summarise a scan.
pub fn summary(changes: &Changes) -> Summary {
    let mut s = Summary::default();
    for c in &changes.changes {
        match c.kind {
            ChangeKind::Added => s.added += 1,
            ChangeKind::Modified => s.modified += 1,
            ChangeKind::Deleted => s.deleted += 1,
        }
        let kind = c
            .new
            .as_ref()
            .or(c.old.as_ref())
            .map_or(FileKind::File, |e| e.kind);
        if c.held.is_some() {
            s.held += 1;
        }
        s.entries.push(SummaryEntry {
            status: c.kind.letter(),
            path: c.path.clone(),
            kind,
            held: c.held.clone(),
            notes: notes(c),
        });
    }
    s
}

fn notes(c: &Change) -> Vec<String> {
    let mut n = Vec::new();
    if let (Some(o), Some(new)) = (&c.old, &c.new) {
        if c.type_changed {
            n.push(format!(
                "type changed: {} -> {}",
                o.kind.describe(),
                new.kind.describe()
            ));
        } else if c.mode_changed {
            n.push(format!(
                "mode {:06o} -> {:06o}",
                o.git_mode(),
                new.git_mode()
            ));
        }
    }
    if let Some(new) = &c.new {
        if new.kind.is_special() {
            n.push(format!("{}: will not be applied", new.kind.describe()));
        }
        if new.mode & 0o6000 != 0 && !new.kind.is_special() {
            n.push("setuid/setgid will be stripped".into());
        }
        if new.kind == FileKind::Symlink && symlink_escapes(&c.path, new) {
            n.push(format!(
                "symlink points outside the workspace: {}",
                escape_str(new.target.as_deref().unwrap_or(""))
            ));
        }
    }
    n
}

/// Does a symlink at `rel` with this target point outside the workspace (lexically)?
pub(crate) fn symlink_escapes(rel: &Path, e: &Entry) -> bool {
    let Some(t) = &e.target_raw else { return false };
    let t = Path::new(t);
    if t.is_absolute() {
        return true;
    }
    let mut depth: i64 = rel.components().count() as i64 - 1;
    for c in t.components() {
        match c {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

/// Limits for [`diff`].
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Files larger than this (either side) are not diffed line by line.
    pub max_bytes: u64,
    /// Lines of context around each hunk.
    pub context: usize,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            max_bytes: 1024 * 1024,
            context: 3,
        }
    }
}

/// The body of one file's diff.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DiffBody {
    /// No content change (mode-only change, directory).
    None,
    /// Unified diff text: `--- a/…`, `+++ b/…` and hunks.
    Text {
        /// The unified diff.
        unified: String,
    },
    /// At least one side is binary.
    Binary,
    /// At least one side is larger than the cap.
    TooLarge {
        /// Old size, if there is an old side.
        old_size: Option<u64>,
        /// New size, if there is a new side.
        new_size: Option<u64>,
        /// The cap in bytes.
        limit: u64,
    },
    /// A device node, fifo or socket: never applied.
    Special {
        /// What it is.
        kind: FileKind,
    },
}

/// The diff of one changed path (a type change yields two: a deletion and an addition).
#[derive(Debug, Clone, Serialize)]
pub struct FileDiff {
    /// Workspace-relative path.
    #[serde(serialize_with = "ser_path")]
    pub path: PathBuf,
    /// Added, modified or deleted.
    pub change: ChangeKind,
    /// What the path is (new side, else old side).
    pub kind: FileKind,
    /// Git-style old mode (e.g. `0o100644`), if there is an old side.
    pub old_mode: Option<u32>,
    /// Git-style new mode, if there is a new side.
    pub new_mode: Option<u32>,
    /// The content diff.
    pub body: DiffBody,
    /// Held back from an apply without its flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
}

/// Compute per-file diffs for a scan.
pub fn diff(changes: &Changes, opts: &DiffOptions) -> Result<Vec<FileDiff>, LayerError> {
    let mut out = Vec::new();
    for c in &changes.changes {
        let old_path = c
            .old_at
            .clone()
            .unwrap_or_else(|| changes.workspace.join(&c.path));
        let new_path = c
            .new_at
            .clone()
            .unwrap_or_else(|| changes.upper.join(&c.path));
        if c.type_changed {
            // Like git: a deletion of the old entry followed by an addition of the new one.
            let old = c.old.as_ref().expect("type change has an old side");
            let new = c.new.as_ref().expect("type change has a new side");
            out.push(file_diff(
                c,
                ChangeKind::Deleted,
                Some((old, &old_path)),
                None,
                opts,
            )?);
            out.push(file_diff(
                c,
                ChangeKind::Added,
                None,
                Some((new, &new_path)),
                opts,
            )?);
            continue;
        }
        let old = c.old.as_ref().map(|e| (e, old_path.as_path()));
        let new = c.new.as_ref().map(|e| (e, new_path.as_path()));
        out.push(file_diff(c, c.kind, old, new, opts)?);
    }
    Ok(out)
}

fn file_diff(
    c: &Change,
    change: ChangeKind,
    old: Option<(&Entry, &Path)>,
    new: Option<(&Entry, &Path)>,
    opts: &DiffOptions,
) -> Result<FileDiff, LayerError> {
    let kind = new.or(old).map_or(FileKind::File, |(e, _)| e.kind);
    let mut fd = FileDiff {
        path: c.path.clone(),
        change,
        kind,
        old_mode: old.map(|(e, _)| e.git_mode()),
        new_mode: new.map(|(e, _)| e.git_mode()),
        body: DiffBody::None,
        held: c.held.clone(),
    };
    if kind.is_special() {
        fd.body = DiffBody::Special { kind };
        return Ok(fd);
    }
    if kind == FileKind::Dir {
        return Ok(fd);
    }
    let content_changed = change != ChangeKind::Modified || c.content_changed;
    if !content_changed {
        return Ok(fd);
    }
    let too_big = |s: Option<(&Entry, &Path)>| s.is_some_and(|(e, _)| e.size > opts.max_bytes);
    if too_big(old) || too_big(new) {
        fd.body = DiffBody::TooLarge {
            old_size: old.map(|(e, _)| e.size),
            new_size: new.map(|(e, _)| e.size),
            limit: opts.max_bytes,
        };
        return Ok(fd);
    }
    let old_bytes = match old {
        Some((e, p)) => content(e, p, opts.max_bytes)?,
        None => Vec::new(),
    };
    let new_bytes = match new {
        Some((e, p)) => content(e, p, opts.max_bytes)?,
        None => Vec::new(),
    };
    let (Some(old_text), Some(new_text)) = (as_text(&old_bytes), as_text(&new_bytes)) else {
        fd.body = DiffBody::Binary;
        return Ok(fd);
    };
    let a = if old.is_some() {
        format!("a/{}", escape_path(&c.path))
    } else {
        "/dev/null".to_string()
    };
    let b = if new.is_some() {
        format!("b/{}", escape_path(&c.path))
    } else {
        "/dev/null".to_string()
    };
    let td = TextDiff::from_lines(old_text, new_text);
    let unified = td
        .unified_diff()
        .context_radius(opts.context)
        .header(&a, &b)
        .to_string();
    fd.body = DiffBody::Text { unified };
    Ok(fd)
}

/// File bytes, or a symlink's target without a trailing newline (as git shows it).
fn content(e: &Entry, p: &Path, cap: u64) -> Result<Vec<u8>, LayerError> {
    if e.kind == FileKind::Symlink {
        use std::os::unix::ffi::OsStrExt;
        return Ok(e
            .target_raw
            .as_ref()
            .map(|t| t.as_bytes().to_vec())
            .unwrap_or_default());
    }
    let mut f = File::open(p).map_err(|err| LayerError::io("open", p, err))?;
    let mut buf = Vec::new();
    f.by_ref()
        .take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|err| LayerError::io("read", p, err))?;
    Ok(buf)
}

/// Text if it has no NUL in the first 8000 bytes (git's rule) and is valid UTF-8.
fn as_text(b: &[u8]) -> Option<&str> {
    if b[..b.len().min(8000)].contains(&0) {
        return None;
    }
    std::str::from_utf8(b).ok()
}

/// Render diffs as `git diff` would.
pub fn render_diff(diffs: &[FileDiff]) -> String {
    let mut out = String::new();
    for d in diffs {
        let p = escape_path(&d.path);
        out.push_str(&format!("diff --git a/{p} b/{p}\n"));
        if let Some(h) = &d.held {
            out.push_str(&format!(
                "# held back: {}; apply with {}\n",
                h.describe(),
                h.flag()
            ));
        }
        let is_dir = d.kind == FileKind::Dir;
        match (d.change, d.old_mode, d.new_mode) {
            (ChangeKind::Added, _, Some(m)) => {
                let what = if is_dir { "directory" } else { "file" };
                out.push_str(&format!("new {what} mode {m:06o}\n"));
            }
            (ChangeKind::Deleted, Some(m), _) => {
                let what = if is_dir { "directory" } else { "file" };
                out.push_str(&format!("deleted {what} mode {m:06o}\n"));
            }
            (ChangeKind::Modified, Some(o), Some(n)) if o != n => {
                out.push_str(&format!("old mode {o:06o}\nnew mode {n:06o}\n"));
            }
            _ => {}
        }
        if d.new_mode.is_some_and(|m| m & 0o6000 != 0) {
            out.push_str("# setuid/setgid bits will be stripped on apply\n");
        }
        match &d.body {
            DiffBody::None => {}
            DiffBody::Text { unified } => {
                out.push_str(unified);
                if !unified.is_empty() && !unified.ends_with('\n') {
                    out.push('\n');
                }
            }
            DiffBody::Binary => {
                let a = if d.old_mode.is_some() {
                    format!("a/{p}")
                } else {
                    "/dev/null".into()
                };
                let b = if d.new_mode.is_some() {
                    format!("b/{p}")
                } else {
                    "/dev/null".into()
                };
                out.push_str(&format!("Binary files {a} and {b} differ\n"));
            }
            DiffBody::TooLarge {
                old_size,
                new_size,
                limit,
            } => {
                let sz = |s: &Option<u64>| s.map_or("none".to_string(), |s| format!("{s} bytes"));
                out.push_str(&format!(
                    "File too large to diff (old: {}, new: {}; limit {limit} bytes)\n",
                    sz(old_size),
                    sz(new_size)
                ));
            }
            DiffBody::Special { kind } => {
                out.push_str(&format!(
                    "# {} in the layer: it will not be applied\n",
                    kind.describe()
                ));
            }
        }
    }
    out
}
