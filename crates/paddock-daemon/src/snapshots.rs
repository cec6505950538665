//! Snapshots of a run's copy-on-write layer, and rollback to one: on a live run through its
//! own sandbox (a tar stream extracted by an exec, so the change goes through the run's
//! overlay and the command sees it at once), on a stopped run in its layer directly.
//!
//! Layout: `runs/<id>/snapshots/s<N>/` = paddock-layer's snapshot (`upper/`, `manifest.json`)
//! plus `meta.json` (the API's `Snapshot`). Ids count up per run; the directory's creation
//! is what reserves an id.
//!
//! Owns: `runs/<id>/snapshots`. Never: writes into a snapshot after it is taken, or changes
//! a live run's layer behind its overlay's back.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paddock_api::{
    DiscardRequest, DiscardResponse, RollbackRequest, RollbackResponse, RunState, Snapshot,
    WorkspaceMode,
};

use crate::runs::RunManager;
use crate::{DaemonError, store};

fn snapshots_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("snapshots")
}

fn number(id: &str) -> Option<u64> {
    id.strip_prefix('s')?.parse().ok()
}

/// The run's snapshots, oldest first.
pub fn list(run_dir: &Path) -> Vec<Snapshot> {
    let mut out: Vec<Snapshot> = std::fs::read_dir(snapshots_dir(run_dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let meta = std::fs::read(e.path().join("meta.json")).ok()?;
            serde_json::from_slice(&meta).ok()
        })
        .collect();
    out.sort_by_key(|s| number(&s.id).unwrap_or(0));
    out
}

fn joined(what: &'static str, e: tokio::task::JoinError) -> DaemonError {
    DaemonError::io(what, Path::new("the layer"), std::io::Error::other(e))
}

fn layer_error(e: paddock_layer::LayerError) -> DaemonError {
    let hint = e.hint().unwrap_or("see the daemon log").to_string();
    DaemonError::Conflict {
        message: e.to_string(),
        hint,
    }
}

fn overlay_run(runs: &RunManager, reference: &str) -> Result<crate::store::RunRecord, DaemonError> {
    let rec = runs.resolve(reference)?;
    if rec.run.workspace_mode != WorkspaceMode::Overlay {
        return Err(DaemonError::Conflict {
            message: format!(
                "run {} writes its workspace directly (bind mode): it has no layer to snapshot",
                rec.run.name
            ),
            hint: "snapshots are for overlay runs (the default workspace mode)".into(),
        });
    }
    Ok(rec)
}

/// Take a snapshot of run `reference`'s layer (live or stopped).
pub async fn take(
    runs: &Arc<RunManager>,
    reference: &str,
    message: Option<String>,
    auto: bool,
) -> Result<Snapshot, DaemonError> {
    let rec = overlay_run(runs, reference)?;
    if let Some(m) = &message
        && (m.len() > 1000 || m.chars().any(|c| c.is_control() && c != '\t'))
    {
        return Err(DaemonError::bad_request(
            "a snapshot message must be one line of at most 1000 characters",
            "write a short message, e.g. -m \"before the refactor\"",
        ));
    }
    let run_id = rec.run.id.clone();
    let run_dir = runs.home().run_dir(&run_id);
    let snap = tokio::task::spawn_blocking(move || -> Result<Snapshot, DaemonError> {
        let dir = snapshots_dir(&run_dir);
        std::fs::create_dir_all(&dir).map_err(|e| DaemonError::io("create", &dir, e))?;
        let existing = list(&run_dir);
        let prev = existing.last().map(|s| dir.join(&s.id));
        let mut n = existing.last().and_then(|s| number(&s.id)).unwrap_or(0) + 1;
        let upper = crate::runs::layer_upper(&run_dir);
        let t0 = Instant::now();
        let (id, stats) = loop {
            let id = format!("s{n}");
            match paddock_layer::snapshot(&upper, &dir.join(&id), prev.as_deref()) {
                Ok(stats) => break (id, stats),
                // Taken by a concurrent snapshot: the next number.
                Err(paddock_layer::LayerError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists && n < 1_000_000 =>
                {
                    n += 1;
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(dir.join(&id));
                    return Err(layer_error(e));
                }
            }
        };
        let snap = Snapshot {
            id: id.clone(),
            message,
            created_at: store::now_rfc3339(),
            auto,
            files: stats.files as u64,
            shared: stats.shared as u64,
            copied_bytes: stats.copied_bytes,
            took_ms: t0.elapsed().as_secs_f64() * 1000.0,
        };
        let meta = serde_json::to_vec_pretty(&snap).expect("a snapshot serialises");
        let path = dir.join(&id).join("meta.json");
        std::fs::write(&path, meta).map_err(|e| DaemonError::io("write", &path, e))?;
        Ok(snap)
    })
    .await
    .map_err(|e| joined("snapshot", e))??;
    runs.bus().publish(
        Some(&run_id),
        "layer.snapshot",
        serde_json::to_value(&snap).unwrap_or_default(),
    );
    Ok(snap)
}

/// Workspace-relative, plain paths (an absolute path inside the workspace is made relative).
fn check_paths(paths: &[PathBuf], workspace: &Path) -> Result<Vec<PathBuf>, DaemonError> {
    paths
        .iter()
        .map(|p| {
            let rel = if p.is_absolute() {
                p.strip_prefix(workspace)
                    .map(Path::to_path_buf)
                    .map_err(|_| {
                        DaemonError::bad_request(
                            format!(
                                "{} is outside the run's workspace {}",
                                p.display(),
                                workspace.display()
                            ),
                            "give paths inside the workspace, relative to it or absolute",
                        )
                    })?
            } else {
                p.clone()
            };
            if rel.as_os_str().is_empty()
                || !rel.components().all(|c| matches!(c, Component::Normal(_)))
            {
                return Err(DaemonError::bad_request(
                    format!("{} is not a plain path in the workspace", p.display()),
                    "write paths like src/main.rs, without `..`",
                ));
            }
            Ok(rel)
        })
        .collect()
}

/// In the sandbox: remove what the plan deletes, then extract its writes from stdin.
const RESTORE: &str = r#"set -e
cd "$1"; shift
command -v tar >/dev/null 2>&1 || { echo "paddock: the sandbox has no tar to restore files with" >&2; exit 127; }
if [ "$#" -gt 0 ]; then rm -rf -- "$@"; fi
tar -x -p -f - --no-same-owner"#;

/// The directory of snapshot `id` of a run, or a 404 naming it.
pub fn path_of(run_dir: &Path, run_name: &str, id: &str) -> Result<PathBuf, DaemonError> {
    let p = snapshots_dir(run_dir).join(id);
    if number(id).is_none() || !p.join("meta.json").exists() {
        return Err(DaemonError::NotFound {
            message: format!("run {run_name} has no snapshot {}", id.escape_default()),
            hint: format!("`paddock snapshots {run_name}` lists them"),
        });
    }
    Ok(p)
}

/// Roll run `reference` back to a snapshot (whole, or `paths`).
pub async fn rollback(
    runs: &Arc<RunManager>,
    reference: &str,
    req: RollbackRequest,
) -> Result<RollbackResponse, DaemonError> {
    let rec = overlay_run(runs, reference)?;
    let run = rec.run;
    let run_dir = runs.home().run_dir(&run.id);
    let snap = path_of(&run_dir, &run.name, &req.snapshot)?;
    let paths = check_paths(&req.paths, &run.workspace)?;
    let (live, deleted, written) = restore(runs, &run, &run_dir, snap, paths).await?;
    let resp = RollbackResponse {
        run_id: run.id.clone(),
        snapshot: req.snapshot.clone(),
        live,
        deleted,
        written,
    };
    runs.bus().publish(
        Some(&run.id),
        "layer.rollback",
        serde_json::json!({
            "snapshot": req.snapshot,
            "paths": req.paths,
            "live": live,
            "deleted": deleted,
            "written": written,
        }),
    );
    Ok(resp)
}

/// Throw away run `reference`'s unapplied changes (all, or under `paths`): a rollback to
/// the state before the run changed anything, live or not.
pub async fn discard(
    runs: &Arc<RunManager>,
    reference: &str,
    req: DiscardRequest,
) -> Result<DiscardResponse, DaemonError> {
    let rec = overlay_run(runs, reference)?;
    let run = rec.run;
    let run_dir = runs.home().run_dir(&run.id);
    let paths = check_paths(&req.paths, &run.workspace)?;
    // The empty snapshot: a layer with nothing in it (no meta.json: never listed).
    let empty = snapshots_dir(&run_dir).join(".empty");
    let tree = paddock_layer::snapshot_tree(&empty);
    std::fs::create_dir_all(&tree).map_err(|e| DaemonError::io("create", &tree, e))?;
    let (live, deleted, written) = restore(runs, &run, &run_dir, empty, paths).await?;
    let resp = DiscardResponse {
        run_id: run.id.clone(),
        live,
        discarded: deleted + written,
    };
    runs.bus().publish(
        Some(&run.id),
        "layer.discarded",
        serde_json::json!({ "paths": req.paths, "live": live, "discarded": resp.discarded }),
    );
    Ok(resp)
}

/// Make the run's layer what `snap` holds (under `paths`, or all): inside the running
/// sandbox, or in an ended run's layer. Returns (live, paths removed, entries written).
async fn restore(
    runs: &Arc<RunManager>,
    run: &paddock_api::Run,
    run_dir: &Path,
    snap: PathBuf,
    paths: Vec<PathBuf>,
) -> Result<(bool, u64, u64), DaemonError> {
    let upper = crate::runs::layer_upper(run_dir);
    let workspace = run.workspace.clone();
    let (s, u, w, p) = (
        snap.clone(),
        upper.clone(),
        workspace.clone(),
        paths.clone(),
    );
    let plan = tokio::task::spawn_blocking(move || paddock_layer::plan_rollback(&u, &s, &w, &p))
        .await
        .map_err(|e| joined("rollback", e))?
        .map_err(layer_error)?;
    let (deleted, written) = (plan.delete.len() as u64, plan.write.len() as u64);
    let live = match run.state {
        RunState::Running => {
            if !plan.is_empty() {
                let tar = paddock_layer::write_tar(&plan).map_err(layer_error)?;
                let mut command = vec![
                    "sh".to_string(),
                    "-c".into(),
                    RESTORE.into(),
                    "paddock-rollback".into(),
                    workspace.to_string_lossy().into_owned(),
                ];
                command.extend(plan.delete.iter().map(|p| p.to_string_lossy().into_owned()));
                let (result, output) =
                    crate::exec::run_with_input(runs, &run.id, command, tar).await?;
                if result.exit_code != Some(0) {
                    return Err(DaemonError::Conflict {
                        message: format!(
                            "restoring the files inside run {} failed ({}): {}",
                            run.name,
                            result
                                .exit_code
                                .map_or_else(|| "killed".to_string(), |c| format!("exit code {c}")),
                            String::from_utf8_lossy(&output).trim()
                        ),
                        hint: "the run's sandbox needs `sh`, `rm` and `tar`; or stop the run and roll back again".into(),
                    });
                }
            }
            true
        }
        s if s.is_terminal() => {
            let work = run_dir.join("layer/work");
            tokio::task::spawn_blocking(move || {
                paddock_layer::restore_offline(&snap, &upper, &work, &workspace, &paths)
            })
            .await
            .map_err(|e| joined("rollback", e))?
            .map_err(layer_error)?;
            false
        }
        s => {
            return Err(DaemonError::Conflict {
                message: format!("run {} is {s}", run.name),
                hint: "roll back a running or an ended run; try again in a moment".into(),
            });
        }
    };
    Ok((live, deleted, written))
}

/// For an agent run: an automatic snapshot every `every` while it runs.
pub fn schedule(runs: Arc<RunManager>, id: String, every: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match runs.store().get(&id) {
                Ok(Some(rec)) if rec.run.state == RunState::Running => {}
                _ => return,
            }
            if let Err(e) = take(&runs, &id, Some("every few minutes".into()), true).await {
                tracing::warn!(run = %id, error = %e, "automatic snapshot failed");
            }
        }
    });
}
