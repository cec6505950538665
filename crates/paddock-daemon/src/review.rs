//! Review of overlay runs: glue between the run manager's layout and paddock-layer.
//! Runs on a blocking thread (it walks the filesystem).

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use paddock_layer::LayerError;

use crate::DaemonError;

pub struct DiffOutput {
    pub changes: serde_json::Value,
    pub summary: String,
    pub patch: String,
}

pub struct ApplyOutput {
    pub report: serde_json::Value,
    pub summary: String,
}

fn layer_error(e: LayerError) -> DaemonError {
    let hint = e
        .hint()
        .unwrap_or("review the changes with `paddock diff`")
        .to_string();
    match e {
        LayerError::Conflicts { .. } => DaemonError::Conflict {
            message: e.to_string(),
            hint,
        },
        LayerError::Io { .. } => DaemonError::Conflict {
            message: e.to_string(),
            hint,
        },
        other => DaemonError::BadRequest {
            message: other.to_string(),
            hint,
        },
    }
}

/// A run that never wrote anything has no upper directory: that is "no changes".
fn empty_upper(upper: &Path) -> bool {
    !upper.exists()
}

/// The run's extra auto-run patterns, from the config it was created with
/// (`review.autorun`).
pub fn autorun_of(run: &paddock_api::Run) -> Vec<String> {
    run.config["review"]["autorun"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The layer's changes, with those `apply` holds back marked (see [`paddock_layer::Protection`]).
/// With `since`, the changes since that snapshot instead of since the workspace.
fn scan(
    upper: &Path,
    workspace: &Path,
    autorun: &[String],
    since: Option<&Path>,
) -> Result<paddock_layer::Changes, DaemonError> {
    let mut changes = match since {
        Some(snapshot) => paddock_layer::changes_since(snapshot, upper, workspace),
        None => paddock_layer::scan(upper, workspace),
    }
    .map_err(layer_error)?;
    paddock_layer::Protection::new(autorun).mark(&mut changes);
    Ok(changes)
}

pub fn diff(
    upper: &Path,
    workspace: &Path,
    with_patch: bool,
    autorun: &[String],
    since: Option<&Path>,
) -> Result<DiffOutput, DaemonError> {
    if empty_upper(upper) && since.is_none() {
        return Ok(DiffOutput {
            changes: serde_json::json!([]),
            summary: "no changes\n".into(),
            patch: String::new(),
        });
    }
    let changes = scan(upper, workspace, autorun, since)?;
    let summary = paddock_layer::summary(&changes);
    let patch = if with_patch {
        let diffs = paddock_layer::diff(&changes, &paddock_layer::DiffOptions::default())
            .map_err(layer_error)?;
        paddock_layer::render_diff(&diffs)
    } else {
        String::new()
    };
    Ok(DiffOutput {
        changes: serde_json::to_value(&summary).unwrap_or_default(),
        summary: summary.render(),
        patch,
    })
}

/// What an apply may do beyond the default.
#[derive(Debug, Clone, Default)]
pub struct ApplyFlags {
    pub force: bool,
    pub include_git: bool,
    pub include_autorun: bool,
}

pub fn apply(
    upper: &Path,
    workspace: &Path,
    run_started_ms: i64,
    flags: &ApplyFlags,
    autorun: &[String],
) -> Result<ApplyOutput, DaemonError> {
    if empty_upper(upper) {
        return Ok(ApplyOutput {
            report: serde_json::json!({}),
            summary: "no changes\n".into(),
        });
    }
    let changes = scan(upper, workspace, autorun, None)?;
    let started = UNIX_EPOCH + Duration::from_millis(run_started_ms.max(0) as u64);
    let mut opts = paddock_layer::ApplyOptions::new(started);
    opts.force = flags.force;
    opts.include_git = flags.include_git;
    opts.include_autorun = flags.include_autorun;
    let report = paddock_layer::apply_with(&changes, &opts).map_err(layer_error)?;
    let mut summary = report.applied.render();
    if report.held.total() > 0 {
        summary.push_str(&report.held.render());
    }
    Ok(ApplyOutput {
        summary,
        report: serde_json::to_value(&report).unwrap_or_default(),
    })
}
