//! `paddock events [--run R] [-t PREFIX]... [--after ID] [-n N] [--json]`: the daemon's
//! event stream (`GET /v1/events`), the same one the dashboard draws.
//!
//! Every field printed comes from the daemon; the sandbox controls some of it (hosts,
//! paths, names), so a line is shown with its control characters escaped.

use std::io::Write;

use anyhow::Result;
use paddock_api::Event;
use paddock_daemon::Home;
use serde_json::Value;

use crate::cli::EventsArgs;
use crate::ensure::ensure_running;
use crate::ui::{paint, stdout_color};

pub async fn events(home: &Home, args: EventsArgs) -> Result<i32> {
    let client = ensure_running(home).await?;
    let run = match &args.run {
        Some(r) => Some(client.get_run(r).await?.id),
        None => None,
    };
    let mut stream = client
        .events_filtered(run.as_deref(), &args.kinds, args.after)
        .await?;
    let color = stdout_color();
    let mut out = std::io::stdout();
    let mut seen = 0u64;
    while args.count.is_none_or(|n| seen < n) {
        let Some(ev) = stream.next().await? else {
            break;
        };
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&ev)?)?;
        } else {
            writeln!(out, "{}", line(&ev, color))?;
        }
        out.flush()?;
        seen += 1;
    }
    Ok(0)
}

/// `SEQ  TIME  RUN  KIND  summary`.
fn line(ev: &Event, color: bool) -> String {
    if ev.kind == "dropped" {
        let n = ev.data["dropped"].as_u64().unwrap_or(0);
        return paint(
            color,
            "33",
            &format!("… {n} events lost (the stream fell behind, or resumed from too far back)"),
        );
    }
    let time = ev.ts.get(11..23).unwrap_or(&ev.ts);
    let run = ev.run_id.as_deref().unwrap_or("daemon");
    let kind = match ev.kind.as_str() {
        "net.denied" => paint(color, "31", &ev.kind),
        k if k.starts_with("run.") => paint(color, "36", k),
        k => k.to_string(),
    };
    let text = format!("{:>6}  {time}  {run}  {kind}  {}", ev.seq, summary(ev));
    paddock_layer::escape_controls(&text).into_owned()
}

fn summary(ev: &Event) -> String {
    let d = &ev.data;
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default();
    match ev.kind.as_str() {
        k if k.starts_with("net.") => crate::trace::describe(d),
        "run.state" => {
            let mut t = match s("from") {
                "" => s("to").to_string(),
                from => format!("{from} → {}", s("to")),
            };
            if !s("reason").is_empty() {
                t.push_str(&format!(" ({})", s("reason")));
            }
            t
        }
        "grant.used" => format!(
            "{} on {} {}{}",
            s("grant"),
            s("method"),
            s("host"),
            s("path")
        ),
        _ if d.is_null() => String::new(),
        _ => d.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, data: Value) -> Event {
        Event {
            seq: 7,
            ts: "2026-12-07T10:11:12.345Z".into(),
            run_id: Some("run_1".into()),
            kind: kind.into(),
            data,
        }
    }

    #[test]
    fn lines_escape_what_the_sandbox_controls() {
        let l = line(
            &ev(
                "grant.used",
                serde_json::json!({"grant": "gh", "method": "GET", "host": "x\u{1b}]0;pwned\u{7}", "path": "/"}),
            ),
            false,
        );
        assert!(!l.contains('\u{1b}'), "{l}");
        assert!(
            l.contains("10:11:12.345  run_1  grant.used  gh on GET x"),
            "{l}"
        );
    }

    #[test]
    fn a_drop_says_how_many() {
        let l = line(&ev("dropped", serde_json::json!({"dropped": 12})), false);
        assert!(l.contains("12 events lost"), "{l}");
    }
}
