//! `paddock ui [--url | --token] [--json]`: the web dashboard. Asks the daemon for a
//! one-time login URL (starting the dashboard's listener on 127.0.0.1 if need be) and
//! opens it in a browser when one is configured, else prints it.
//!
//! Never: puts the bearer token in a URL or a browser's command line (only the one-time
//! code goes there).

use std::io::IsTerminal;

use anyhow::Result;
use paddock_daemon::Home;

use crate::cli::UiArgs;
use crate::ensure::ensure_running;

pub async fn ui(home: &Home, args: UiArgs) -> Result<i32> {
    let client = ensure_running(home).await?;
    if args.token {
        let t = client.ui_token().await?;
        if args.json {
            println!("{}", serde_json::to_string(&t)?);
        } else {
            println!("{}", t.token);
        }
        return Ok(0);
    }
    let login = client.ui_login().await?;
    if args.json {
        println!("{}", serde_json::to_string(&login)?);
        return Ok(0);
    }
    if args.url {
        println!("{}", login.url);
        return Ok(0);
    }
    let user = crate::commands::user_config()?;
    let opened = match browser(user.ui.browser.as_deref()) {
        Some(cmd) => open(&cmd, &login.url),
        None => false,
    };
    let mins = login.expires_in_s / 60;
    if opened {
        eprintln!(
            "Opened the dashboard at {} in your browser.",
            login.base_url
        );
    } else {
        println!("{}", login.url);
        if std::io::stderr().is_terminal() {
            eprintln!(
                "Open this link to log in to the dashboard (it works once, within {mins} minutes).\nTo open it yourself next time, set `ui: {{browser: firefox}}` in ~/.config/paddock/config.yaml or $BROWSER."
            );
        }
    }
    Ok(0)
}

/// The browser command: `ui.browser`, else `$BROWSER`, else `xdg-open` on a desktop.
fn browser(configured: Option<&str>) -> Option<String> {
    if let Some(b) = configured {
        return Some(b.to_string());
    }
    if let Some(b) = std::env::var_os("BROWSER").filter(|b| !b.is_empty()) {
        return Some(b.to_string_lossy().into_owned());
    }
    let desktop = std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty());
    let xdg = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("xdg-open").is_file()))
        .unwrap_or(false);
    (desktop && xdg).then(|| "xdg-open".to_string())
}

/// Start `cmd URL` (a command with arguments, split on whitespace), detached; whether it
/// started.
fn open(cmd: &str, url: &str) -> bool {
    let mut words = cmd.split_whitespace();
    let Some(program) = words.next() else {
        return false;
    };
    match std::process::Command::new(program)
        .args(words)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(_child) => true,
        Err(e) => {
            eprintln!("could not start the browser `{program}`: {e}");
            false
        }
    }
}
