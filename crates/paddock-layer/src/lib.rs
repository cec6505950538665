//! paddock-layer: review and apply the copy-on-write layer of an overlay run.
//!
//! Owns: reading an overlayfs upper directory (including whiteouts and opaque directories),
//! summarising and diffing it against the real workspace, and applying it all-or-nothing.
//!
//! Never: mounts anything, or touches a run's processes.
//!
//! Mount contract (what the sandbox must use so this crate reads the layer right):
//! `redirect_dir=off` (as root) or `redirect_dir=nofollow` (with `userxattr`, where the
//! kernel refuses `off`; nofollow creates no redirects either), `metacopy=off`, `index=off`.
//! A directory rename in the sandbox then falls back to copy + delete, which the scan sees
//! as additions plus a whiteout. A layer with redirect xattrs is refused.
//!
//! Flow: [`scan`] → [`summary`] / [`diff`] for review → [`apply`] with the reviewed
//! [`Changes`]; [`has_changes`] is the fast check for `paddock rm`.
//!
//! ```no_run
//! # fn main() -> Result<(), paddock_layer::LayerError> {
//! use std::path::Path;
//! let changes = paddock_layer::scan(Path::new("/runs/r1/layer/upper"), Path::new("/src/app"))?;
//! print!("{}", paddock_layer::summary(&changes).render());
//! let diffs = paddock_layer::diff(&changes, &paddock_layer::DiffOptions::default())?;
//! print!("{}", paddock_layer::render_diff(&diffs));
//! let started = std::time::SystemTime::now();
//! paddock_layer::apply(&changes, started, false)?;
//! # Ok(()) }
//! ```

mod apply;
mod diff;
mod error;
mod fsutil;
mod protect;
mod scan;
mod snapshot;

pub use apply::{
    ApplyOptions, ApplyReport, RecoverReport, STAGING_PREFIX, apply, apply_with, recover,
};
pub use diff::{
    DiffBody, DiffOptions, FileDiff, Summary, SummaryEntry, diff, escape_controls, escape_path,
    escape_str, render_diff, summary,
};
pub use error::LayerError;
pub use protect::{DEFAULT_AUTORUN, Held, Protection};
pub use scan::{Change, ChangeKind, Changes, Entry, FileKind, has_changes, scan};
pub use snapshot::{
    RollbackPlan, SnapshotStats, changes_since, plan_rollback, restore_offline, snapshot,
    snapshot_tree, write_tar,
};
