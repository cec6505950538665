//! `paddock trace RUN [-f] [--json]`: a run's network log, one line per request,
//! connection or DNS query, with the policy decision, the rule that decided it and the
//! grants (names only) whose credentials were injected.
//!
//! The history comes from the run's audit log (`net.` entries), new records from the
//! event stream. Never prints a credential: records carry grant names only.

use std::collections::HashSet;
use std::io::Write;

use anyhow::Result;
use paddock_api::{AuditLog, RunStateChange};
use paddock_daemon::Home;
use serde_json::Value;

use crate::cli::TraceArgs;
use crate::ensure::ensure_running;
use crate::ui::{paint, stdout_color};

pub async fn trace(home: &Home, args: TraceArgs) -> Result<i32> {
    let client = ensure_running(home).await?;
    let run = client.get_run(&args.run).await?;
    // Subscribe before reading the history, so nothing falls between the two.
    let mut events = if args.follow && !run.state.is_terminal() {
        Some(client.events(Some(&run.id)).await?)
    } else {
        None
    };
    let history = client
        .audit_entries(AuditLog::Run(&run.id), Some("net."), None, args.limit)
        .await?;
    let color = stdout_color();
    let mut out = std::io::stdout();
    let mut seen: HashSet<String> = HashSet::new();
    for e in &history.entries {
        if events.is_some() {
            seen.insert(e.data.to_string());
        }
        print_record(&mut out, &e.kind, &e.data, args.json, color)?;
    }
    if history.entries.is_empty() && !args.json && events.is_none() {
        eprintln!("no network activity recorded for {} ({})", run.name, run.id);
    }
    let Some(stream) = events.as_mut() else {
        return Ok(0);
    };
    while let Some(ev) = stream.next().await? {
        if ev.kind.starts_with("net.") {
            if seen.remove(&ev.data.to_string()) {
                continue;
            }
            print_record(&mut out, &ev.kind, &ev.data, args.json, color)?;
        } else if ev.kind == "run.state"
            && serde_json::from_value::<RunStateChange>(ev.data).is_ok_and(|c| c.to.is_terminal())
        {
            break;
        }
    }
    Ok(0)
}

fn print_record(
    out: &mut impl Write,
    kind: &str,
    d: &Value,
    json: bool,
    color: bool,
) -> Result<()> {
    if json {
        let mut v = d.clone();
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), Value::String(kind.to_string()));
        }
        writeln!(out, "{v}")?;
        return Ok(());
    }
    let line = describe(d);
    let allowed = d["decision"]["allowed"].as_bool().unwrap_or(false);
    writeln!(
        out,
        "{}",
        if allowed {
            line
        } else {
            paint(color, "31", &line)
        }
    )?;
    Ok(())
}

/// One readable line for a network record.
pub fn describe(d: &Value) -> String {
    let s = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let time = d["time_ms"]
        .as_i64()
        .and_then(|ms| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        })
        .map(|t| {
            format!(
                "{:02}:{:02}:{:02}.{:03}",
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            )
        })
        .unwrap_or_default();
    let port = d["port"].as_u64();
    let what = match s("kind") {
        "dns" => format!("DNS {} {}", s("method"), s("host")),
        "http" => {
            let scheme = if port == Some(443) { "https" } else { "http" };
            let port = match port {
                Some(80) | Some(443) | None => String::new(),
                Some(p) => format!(":{p}"),
            };
            format!(
                "{} {scheme}://{}{port}{}",
                s("method"),
                s("host"),
                s("path")
            )
        }
        kind => format!(
            "{kind} {}{}",
            s("host"),
            port.map(|p| format!(":{p}")).unwrap_or_default()
        ),
    };
    let status = match (s("kind"), d["status"].as_u64()) {
        ("dns", Some(0)) => "NOERROR".to_string(),
        ("dns", Some(3)) => "NXDOMAIN".to_string(),
        ("dns", Some(c)) => format!("rcode {c}"),
        (_, Some(c)) => c.to_string(),
        (_, None) => "-".to_string(),
    };
    let decision = &d["decision"];
    let verdict = if decision["allowed"].as_bool().unwrap_or(false) {
        "allow"
    } else {
        "DENY"
    };
    // The daemon adds the rule as text; a raw record only has its structure.
    let rule = d["rule"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| decision["rule"].to_string());
    let mut line = format!(
        "{time}  {what}  {status}  {}↑ {}↓  {:.1} ms  {verdict} ({rule})",
        bytes(d["bytes_up"].as_u64().unwrap_or(0)),
        bytes(d["bytes_down"].as_u64().unwrap_or(0)),
        d["duration_us"].as_u64().unwrap_or(0) as f64 / 1000.0,
    );
    let grants: Vec<&str> = d["grants"]
        .as_array()
        .map(|a| a.iter().filter_map(|g| g.as_str()).collect())
        .unwrap_or_default();
    if !grants.is_empty() {
        line.push_str(&format!("  grants: {}", grants.join(", ")));
    }
    if let Some(detail) = d["detail"].as_str() {
        line.push_str(&format!("  ({detail})"));
    }
    line
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
