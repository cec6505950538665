//! `paddock router status` and `paddock ca export`: the daemon's hostname router and the
//! certificate that makes its HTTPS trusted. Both only ask the daemon.

use std::io::Write;

use anyhow::{Context, Result, anyhow};
use paddock_daemon::Home;

use crate::cli::{CaAction, CaArgs, RouterAction, RouterArgs};
use crate::ensure::ensure_running;
use crate::ui::{Hinted, paint, print_json, stdout_color, table};

pub async fn router(home: &Home, args: RouterArgs) -> Result<i32> {
    match args.action {
        RouterAction::Status(json) => status(home, json.json).await,
    }
}

async fn status(home: &Home, json: bool) -> Result<i32> {
    let client = ensure_running(home).await?;
    let st = client.router_status().await?;
    if json {
        print_json(&st)?;
        return Ok(0);
    }
    let color = stdout_color();
    if st.listening {
        outln!(
            "router: listening on {} (http, h2c and https{})",
            st.listen,
            if st.tls {
                "; trust it with `paddock ca export`"
            } else {
                ""
            }
        );
    } else {
        outln!(
            "router: {} on {}: {}",
            paint(color, "1;31", "NOT listening"),
            st.listen,
            st.error.as_deref().unwrap_or("not started")
        );
        if let Some(h) = &st.hint {
            outln!("hint: {h}");
        }
    }
    if st.routes.is_empty() {
        outln!("no routes (start a run with `-p ENDPOINT=PORT` or `ports:` in paddock.yaml)");
        return Ok(0);
    }
    let mut rows = Vec::new();
    for r in &st.routes {
        for (endpoint, port) in &r.endpoints {
            rows.push(vec![
                r.urls.get(endpoint).cloned().unwrap_or_default(),
                r.name.clone(),
                r.state.clone(),
                format!("127.0.0.1:{port}"),
                r.run_id.clone(),
            ]);
        }
    }
    outln!();
    out!(
        "{}",
        table(&["URL", "RUN", "STATE", "IN SANDBOX", "RUN ID"], &rows)
    );
    Ok(0)
}

pub async fn ca(home: &Home, args: CaArgs) -> Result<i32> {
    match args.action {
        CaAction::Export(a) => {
            let client = ensure_running(home).await?;
            let pem = client.ca_certificate().await?.pem;
            if !pem.starts_with("-----BEGIN CERTIFICATE-----") {
                return Err(anyhow!(Hinted::new(
                    "the daemon sent something that is not a PEM certificate",
                    "restart it with `paddock daemon restart`",
                )));
            }
            match a.output.as_deref() {
                None => {
                    let mut out = std::io::stdout();
                    out.write_all(pem.as_bytes())?;
                    out.flush()?;
                }
                Some(p) if p.as_os_str() == "-" => {
                    let mut out = std::io::stdout();
                    out.write_all(pem.as_bytes())?;
                    out.flush()?;
                }
                Some(p) => {
                    std::fs::write(p, pem.as_bytes())
                        .with_context(|| format!("writing {}", p.display()))?;
                }
            }
            Ok(0)
        }
    }
}
