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

pub fn diff(upper: &Path, workspace: &Path, with_patch: bool) -> Result<DiffOutput, DaemonError> {
    if empty_upper(upper) {
        return Ok(DiffOutput {
            changes: serde_json::json!([]),
            summary: "no changes\n".into(),
            patch: String::new(),
        });
    }
    let changes = paddock_layer::scan(upper, workspace).map_err(layer_error)?;
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

pub fn apply(
    upper: &Path,
    workspace: &Path,
    run_started_ms: i64,
    force: bool,
) -> Result<ApplyOutput, DaemonError> {
    if empty_upper(upper) {
        return Ok(ApplyOutput {
            report: serde_json::json!({}),
            summary: "no changes\n".into(),
        });
    }
    let changes = paddock_layer::scan(upper, workspace).map_err(layer_error)?;
    let started = UNIX_EPOCH + Duration::from_millis(run_started_ms.max(0) as u64);
    let report = paddock_layer::apply(&changes, started, force).map_err(layer_error)?;
    Ok(ApplyOutput {
        summary: report.applied.render(),
        report: serde_json::to_value(&report).unwrap_or_default(),
    })
}
