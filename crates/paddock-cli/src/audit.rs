//! `paddock audit …`: show a log, export it, verify a bundle offline, prove inclusion and
//! consistency, print the signing key.
//!
//! Owns: the readable view of entries, the verify report, writing a bundle atomically, and
//! checking every proof the daemon hands out locally (paddock-audit) before saying it holds.
//! Never: opens an audit log or the signing key (everything comes through the API);
//! starts a daemon for `verify` (it needs none).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use paddock_api::{AuditEntries, AuditEntry, AuditLog, Client};
use paddock_audit::{
    Checkpoint, ConsistencyProof, Entry, InclusionProof, Location, PinnedKey, PublicKeyInfo,
    VerifyOptions, verify_bundle_json, verify_checkpoint_consistency, verify_entry_inclusion,
};
use paddock_daemon::{AuditOptions, Home};

use crate::cli::{
    AuditAction, AuditArgs, AuditConsistencyArgs, AuditExportArgs, AuditProveArgs, AuditShowArgs,
    AuditTarget, AuditVerifyArgs, JsonFlag,
};
use crate::ensure::ensure_running;
use crate::ui::{Hinted, Usage, paint, print_json, stdout_color, table, truncate};

pub async fn dispatch(home: &Home, args: AuditArgs) -> Result<i32> {
    let Some(action) = args.action else {
        return show(home, args.show).await;
    };
    match action {
        AuditAction::Show(a) => show(home, a).await,
        AuditAction::Export(a) => export(home, a).await,
        AuditAction::Verify(a) => verify(a),
        AuditAction::Prove(a) => prove(home, a).await,
        AuditAction::Consistency(a) => consistency(home, a).await,
        AuditAction::Key(j) => key(home, j).await,
    }
}

fn log_of(t: &AuditTarget) -> AuditLog<'_> {
    match (&t.run, t.daemon) {
        (Some(r), false) => AuditLog::Run(r),
        _ => AuditLog::Daemon,
    }
}

async fn client(home: &Home) -> Result<Client> {
    crate::ensure::require(ensure_running(home).await?, "audit", "has no audit log").await
}

/// The checkpoint schedule for `paddock daemon`, from `audit:` in the user config.
pub fn daemon_options(audit: &paddock_config::AuditConfig) -> AuditOptions {
    let mut opts = AuditOptions::default();
    if let Some(n) = audit.checkpoint_every {
        opts.checkpoint_every = n;
    }
    if let Some(t) = audit.checkpoint_interval {
        opts.checkpoint_interval = t;
    }
    opts
}

fn time_of(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
    );
    t.format(&f).unwrap_or_else(|_| ms.to_string())
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(16)]
}

/// One line saying what an entry records.
pub fn summary(e: &AuditEntry) -> String {
    let d = &e.data;
    let s = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let text = match e.kind.as_str() {
        "run.state" => {
            let mut t = match d.get("from").and_then(|v| v.as_str()) {
                Some(from) => format!("{from} → {}", s("to")),
                None => s("to").to_string(),
            };
            if let Some(c) = d.get("exit_code").and_then(|v| v.as_i64()) {
                t.push_str(&format!(" (exit code {c})"));
            }
            if let Some(r) = d.get("reason").and_then(|v| v.as_str()) {
                t.push_str(&format!(": {r}"));
            }
            t
        }
        "run.created" => {
            let cmd: Vec<&str> = d
                .get("command")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            format!(
                "{}: `{}` in {} ({})",
                s("name"),
                cmd.join(" "),
                s("workspace"),
                s("workspace_mode")
            )
        }
        "init.step" => format!(
            "step {}/{}: {}",
            d.get("index").and_then(|v| v.as_u64()).unwrap_or(0),
            d.get("total").and_then(|v| v.as_u64()).unwrap_or(0),
            s("description")
        ),
        "run.started" => format!(
            "command started, pid {}",
            d.get("pid").and_then(|v| v.as_u64()).unwrap_or(0)
        ),
        "run.exit" => {
            if d.get("oom_killed").and_then(|v| v.as_bool()) == Some(true) {
                "killed: out of memory".to_string()
            } else if let Some(sig) = d.get("signal").and_then(|v| v.as_i64()) {
                format!("killed by signal {sig}")
            } else {
                format!(
                    "exit code {}",
                    d.get("exit_code")
                        .and_then(|v| v.as_i64())
                        .map_or("?".into(), |c| c.to_string())
                )
            }
        }
        "layer.diffed" | "layer.applied" if d.get("summary").is_some() => {
            s("summary").lines().collect::<Vec<_>>().join("; ")
        }
        "layer.applied" if d.get("applied").is_some() => {
            let a = &d["applied"];
            format!(
                "applied: {} added, {} modified, {} deleted",
                a["added"], a["modified"], a["deleted"]
            )
        }
        "docker.call" => {
            let mut t = format!(
                "{} {} → {} {}",
                s("method"),
                s("path"),
                d.get("status").and_then(|v| v.as_u64()).unwrap_or(0),
                s("decision")
            );
            if let Some(r) = d.get("rule").and_then(|v| v.as_str()) {
                t.push_str(&format!(" (rule: {r})"));
            }
            t
        }
        "run.removed" => {
            let cp = d.get("audit_checkpoint");
            let size = cp.and_then(|c| c.get("tree_size")).and_then(|v| v.as_u64());
            let root = cp
                .and_then(|c| c.get("root_hash"))
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            match size {
                Some(n) => format!(
                    "{} ({}) removed; its log ended at {n} entries, root {}",
                    s("run_id"),
                    s("name"),
                    short(root)
                ),
                None => format!("{} ({}) removed", s("run_id"), s("name")),
            }
        }
        "run.exec" => {
            let cmd: Vec<&str> = d
                .get("command")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            let names: Vec<&str> = d
                .get("env_names")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            let mut t = format!("{}: `{}`", s("exec_id"), cmd.join(" "));
            if d.get("tty").and_then(|v| v.as_bool()) == Some(true) {
                t.push_str(" (tty)");
            }
            if !names.is_empty() {
                t.push_str(&format!(" with {}", names.join(", ")));
            }
            t
        }
        "run.exec.exit" => {
            let end = match (
                d.get("exit_code").and_then(|v| v.as_i64()),
                d.get("signal").and_then(|v| v.as_i64()),
            ) {
                (_, Some(sig)) => format!("killed by signal {sig}"),
                (Some(c), None) => format!("exit code {c}"),
                (None, None) => "ended, status unknown".to_string(),
            };
            match d.get("reason").and_then(|v| v.as_str()) {
                Some(r) => format!("{}: {end} ({r})", s("exec_id")),
                None => format!("{}: {end}", s("exec_id")),
            }
        }
        "daemon.start" => format!("pid {}, version {}", d["pid"], s("version")),
        "daemon.stop" => match d.get("error").and_then(|v| v.as_str()) {
            Some(e) => format!("pid {}, on an error: {e}", d["pid"]),
            None => format!("pid {}", d["pid"]),
        },
        "grant.added" | "grant.updated" | "grant.revoked" => {
            format!(
                "{} ({})",
                s("name"),
                d["kind"].as_str().unwrap_or("unknown kind")
            )
        }
        "net.request" | "net.denied" => crate::trace::describe(d),
        "grant.used" => format!(
            "{} → {} {}{}",
            s("grant"),
            s("method"),
            s("host"),
            s("path")
        ),
        _ => serde_json::to_string(d).unwrap_or_default(),
    };
    truncate(&text, 160)
}

async fn show(home: &Home, a: AuditShowArgs) -> Result<i32> {
    let client = client(home).await?;
    let list: AuditEntries = client
        .audit_entries(
            log_of(&a.target),
            a.kind.as_deref(),
            a.since.as_deref(),
            a.limit,
        )
        .await?;
    if a.json.json {
        print_json(&list)?;
        return Ok(0);
    }
    let color = stdout_color();
    outln!(
        "{}",
        paint(
            color,
            "1",
            &format!(
                "audit log {}: {} entries, {} signed ({} checkpoints)",
                list.log_id, list.size, list.signed_size, list.checkpoints
            )
        )
    );
    if list.entries.is_empty() {
        eprintln!("no entries match");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .entries
        .iter()
        .map(|e| vec![e.seq.to_string(), time_of(e.ts), e.kind.clone(), summary(e)])
        .collect();
    out!(
        "{}",
        table(&["SEQ", "TIME (UTC)", "TYPE", "SUMMARY"], &rows)
    );
    if (list.entries.len() as u64) < list.matched {
        eprintln!(
            "(the newest {} of {} matching entries)",
            list.entries.len(),
            list.matched
        );
    }
    Ok(0)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        anyhow!(Usage(Hinted::new(
            format!("{} is not a file name", path.display()),
            "e.g. -o bundle.json"
        )))
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.with_context(|| format!("writing {}", path.display()))
}

async fn export(home: &Home, a: AuditExportArgs) -> Result<i32> {
    let client = client(home).await?;
    let bytes = client.audit_export(log_of(&a.target)).await?;
    match a.output.as_deref() {
        None => {
            std::io::stdout().write_all(&bytes)?;
            outln!();
        }
        Some(p) if p == Path::new("-") => {
            std::io::stdout().write_all(&bytes)?;
            outln!();
        }
        Some(p) => {
            write_atomic(p, &bytes)?;
            let b: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let n = |k: &str| b[k].as_array().map_or(0, Vec::len);
            eprintln!(
                "wrote {}: log {}, {} entries, {} checkpoints (verify with `paddock audit verify {}`)",
                p.display(),
                b["log_id"].as_str().unwrap_or("?"),
                n("entries"),
                n("checkpoints"),
                p.display()
            );
        }
    }
    Ok(0)
}

fn parse_pin(raw: &str) -> Result<PinnedKey> {
    let bad = |why: String| {
        anyhow!(Usage(Hinted::new(
            format!("invalid --key {raw:?}: {why}"),
            "pass ed25519:<64 hex>, sha256:<64 hex>, or a file written by `paddock audit key --json`",
        )))
    };
    let text = if raw.starts_with("ed25519:") || raw.starts_with("sha256:") || raw.starts_with('{')
    {
        raw.to_string()
    } else {
        std::fs::read_to_string(raw)
            .map_err(|e| bad(format!("not a key, and not a readable file: {e}")))?
    };
    PinnedKey::parse(&text).map_err(|e| bad(e.to_string()))
}

/// The checkpoint in a `--known-checkpoint` file: a checkpoint object, or one wrapped the
/// way paddock prints it (bundle: the last of `checkpoints`; `prove --json`: `checkpoint`;
/// `consistency --json`: `new`; a `run.removed` entry's data: `audit_checkpoint`).
fn parse_known_checkpoint(path: &Path) -> Result<Checkpoint> {
    let bad = |why: String| {
        anyhow!(Usage(Hinted::new(
            format!("invalid --known-checkpoint {}: {why}", path.display()),
            "pass a file holding one checkpoint's JSON ({\"log_id\", \"tree_size\", \"root_hash\", \"time\", \"key_id\", \"signature\"}), e.g. `jq '.checkpoints[-1]' old-bundle.json`",
        )))
    };
    let text = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let cp = if v.get("signature").is_some() {
        v
    } else if let Some(list) = v.get("checkpoints").and_then(|c| c.as_array()) {
        list.last()
            .cloned()
            .ok_or_else(|| bad("the bundle has no checkpoint".into()))?
    } else if let Some(c) = ["checkpoint", "new", "audit_checkpoint"]
        .iter()
        .find_map(|k| v.get(*k))
    {
        c.clone()
    } else {
        return Err(bad("no checkpoint in it".into()));
    };
    serde_json::from_value(cp).map_err(|e| bad(format!("not a checkpoint: {e}")))
}

fn verify(a: AuditVerifyArgs) -> Result<i32> {
    let pinned_key = a.key.as_deref().map(parse_pin).transpose()?;
    let known_checkpoint = a
        .known_checkpoint
        .as_deref()
        .map(parse_known_checkpoint)
        .transpose()?;
    let bytes = std::fs::read(&a.bundle).map_err(|e| {
        anyhow!(Hinted::new(
            format!("cannot read {}: {e}", a.bundle.display()),
            "export a bundle with `paddock audit export RUN -o bundle.json`",
        ))
    })?;
    let opts = VerifyOptions {
        pinned_key,
        allow_uncovered: a.allow_uncovered,
        known_checkpoint,
    };
    match verify_bundle_json(&bytes, &opts) {
        Ok(r) => {
            if a.json.json {
                print_json(&serde_json::json!({ "ok": true, "report": r }))?;
                return Ok(0);
            }
            let color = stdout_color();
            outln!(
                "{} audit log {}: {} entries, {} checkpoints, signed up to {}",
                paint(color, "1;32", "verified:"),
                r.log_id,
                r.entries,
                r.checkpoints,
                r.signed_size
            );
            if let Some(root) = r.signed_root {
                outln!("  root     {}", root.to_hex());
            }
            outln!(
                "  key      sha256:{} ({})",
                r.key_id.to_hex(),
                if r.pinned {
                    "matches the pinned key"
                } else {
                    "NOT pinned: the bundle's own key; pass --key to detect a re-signed log"
                }
            );
            if let Some(k) = &opts.known_checkpoint {
                outln!(
                    "  extends  the known checkpoint at tree size {} (root {})",
                    k.tree_size,
                    k.root_hash.to_hex()
                );
            }
            if let Some(u) = &r.uncovered {
                outln!(
                    "  {} entries {}..{} are not covered by a signed checkpoint",
                    paint(color, "33", "warning:"),
                    u.start,
                    u.end
                );
            }
            for n in &r.notes {
                outln!("  note: {n}");
            }
            Ok(0)
        }
        Err(e) => {
            let (where_, index) = match e.location() {
                Location::Bundle => ("bundle".to_string(), serde_json::Value::Null),
                Location::Checkpoint(i) => (format!("checkpoint {i}"), serde_json::json!(i)),
                Location::Entry(i) => (format!("entry {i}"), serde_json::json!(i)),
            };
            if a.json.json {
                print_json(&serde_json::json!({
                    "ok": false,
                    "check": e.check(),
                    "location": e.location(),
                    "index": index,
                    "message": e.to_string(),
                    "hint": e.hint(),
                }))?;
                return Ok(1);
            }
            let color = crate::ui::stderr_color();
            eprintln!(
                "{} {}: {e}",
                paint(color, "1;31", "verification FAILED:"),
                a.bundle.display()
            );
            eprintln!("  check: {}, at {where_}", e.check());
            eprintln!("{} {}", paint(color, "1;36", "hint:"), e.hint());
            Ok(1)
        }
    }
}

fn from_value<T: serde::de::DeserializeOwned>(v: &serde_json::Value, what: &str) -> Result<T> {
    serde_json::from_value(v.clone())
        .with_context(|| format!("the daemon's answer has no valid {what}"))
}

fn proof_failed(what: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!(Hinted::new(
        format!("the {what} from the daemon does NOT verify: {e}"),
        "do not trust this log; export it and run `paddock audit verify` to locate the damage",
    ))
}

async fn prove(home: &Home, a: AuditProveArgs) -> Result<i32> {
    let client = client(home).await?;
    let v = client
        .audit_prove(log_of(&a.target), a.entry, a.size)
        .await?;
    let entry: Entry = from_value(&v["entry"], "entry")?;
    let proof: InclusionProof = from_value(&v["proof"], "inclusion proof")?;
    let cp: Checkpoint = from_value(&v["checkpoint"], "checkpoint")?;
    let key: PublicKeyInfo = from_value(&v["public_key"], "public key")?;
    verify_entry_inclusion(&entry, &proof, &cp, &key)
        .map_err(|e| proof_failed("inclusion proof", e))?;
    if a.json.json {
        let mut out = v.clone();
        out["verified"] = serde_json::Value::Bool(true);
        print_json(&out)?;
        return Ok(0);
    }
    let color = stdout_color();
    outln!(
        "{} entry {} ({}) is in log {} at tree size {}",
        paint(color, "1;32", "verified:"),
        entry.seq,
        entry.kind,
        cp.log_id,
        cp.tree_size
    );
    outln!("  leaf     {}", proof.leaf_hash.to_hex());
    outln!(
        "  root     {} (signed checkpoint, time {})",
        cp.root_hash.to_hex(),
        time_of(cp.time)
    );
    outln!("  path     {} hashes", proof.path.len());
    outln!("  key      sha256:{}", key.key_id.to_hex());
    Ok(0)
}

async fn consistency(home: &Home, a: AuditConsistencyArgs) -> Result<i32> {
    let client = client(home).await?;
    let v = client
        .audit_consistency(log_of(&a.target), a.from, a.to)
        .await?;
    let proof: ConsistencyProof = from_value(&v["proof"], "consistency proof")?;
    let old: Checkpoint = from_value(&v["old"], "older checkpoint")?;
    let new: Checkpoint = from_value(&v["new"], "newer checkpoint")?;
    let key: PublicKeyInfo = from_value(&v["public_key"], "public key")?;
    verify_checkpoint_consistency(&proof, &old, &new, &key)
        .map_err(|e| proof_failed("consistency proof", e))?;
    if a.json.json {
        let mut out = v.clone();
        out["verified"] = serde_json::Value::Bool(true);
        print_json(&out)?;
        return Ok(0);
    }
    let color = stdout_color();
    outln!(
        "{} log {} at tree size {} extends tree size {} (nothing signed earlier was changed)",
        paint(color, "1;32", "verified:"),
        new.log_id,
        new.tree_size,
        old.tree_size
    );
    outln!("  old root {}", old.root_hash.to_hex());
    outln!("  new root {}", new.root_hash.to_hex());
    outln!("  path     {} hashes", proof.path.len());
    Ok(0)
}

async fn key(home: &Home, j: JsonFlag) -> Result<i32> {
    let client = client(home).await?;
    let k = client.audit_key().await?;
    if j.json {
        print_json(&k)?;
        return Ok(0);
    }
    outln!("{}", k.pin);
    eprintln!(
        "key id sha256:{} (pin it: `paddock audit verify BUNDLE --key {}`)",
        k.key_id, k.pin
    );
    Ok(0)
}
