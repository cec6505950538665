//! `paddock image …` (paddock's base image, built from Debian packages, and `dependencies:`
//! images on top of it, with progress), and what `paddock run` sends about a run's image.
//!
//! Images live in the Docker engine, not in paddock's home. A run's image is built by the
//! run's start in the daemon (its steps are the run's init steps); `paddock image build`
//! builds the same images ahead of time, with the same code
//! (`paddock_sandbox::docker::image::ensure`). Never: removes an image without paddock's
//! label.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Result, anyhow};
use paddock_api::CreateRun;
use paddock_config::Dependency;
use paddock_daemon::Home;
use paddock_sandbox::docker::image::{self, Progress};

use crate::cli::{ImageAction, ImageArgs};
use crate::ui;
use crate::ui::Hinted;

fn sandbox_err(e: paddock_sandbox::SandboxError) -> anyhow::Error {
    let hint = e
        .hint()
        .unwrap_or("`paddock doctor` shows what each runtime needs")
        .to_string();
    anyhow!(Hinted::new(e.to_string(), hint))
}

async fn engine() -> Result<bollard::Docker> {
    let rt = paddock_sandbox::docker::DockerRuntime::new(
        paddock_sandbox::docker::DockerConfig::new(paddock_sandbox::RuntimeKind::Docker),
    );
    rt.engine().await.cloned().map_err(sandbox_err)
}

/// A progress display: a bar with "step N of M" and the latest log line on a terminal,
/// step lines otherwise.
struct Shown {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl Shown {
    fn new(quiet: bool) -> Shown {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(1);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} step {pos}/{len} {prefix} {elapsed}\n  {wide_msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Shown { bar, quiet }
    }

    fn show(&self, p: Progress) {
        match (&self.bar, p) {
            (
                Some(b),
                Progress::Step {
                    index,
                    total,
                    description,
                },
            ) => {
                b.set_length(total as u64);
                b.set_position(index as u64);
                b.set_prefix(description);
            }
            (Some(b), Progress::Log(l)) => b.set_message(l),
            (
                None,
                Progress::Step {
                    index,
                    total,
                    description,
                },
            ) if !self.quiet => {
                eprintln!("paddock: image step {index} of {total}: {description}");
            }
            _ => {}
        }
    }

    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn scratch(home: &Home) -> std::path::PathBuf {
    home.root().join("cache").join("image-build")
}

/// Build (if missing) the image `deps` need on `base` (paddock's base when `None`).
async fn ensure(
    home: &Home,
    d: &bollard::Docker,
    base: Option<&str>,
    deps: &[Dependency],
    quiet: bool,
) -> Result<String> {
    if !quiet {
        let tag = image::tag_for(base, deps);
        if !image::exists(d, &tag).await.map_err(sandbox_err)? {
            let list: Vec<String> = deps.iter().map(Dependency::label).collect();
            eprintln!(
                "paddock: building {tag}{}{} (once)",
                if list.is_empty() { "" } else { " with " },
                list.join(", ")
            );
        }
    }
    let shown = Shown::new(quiet);
    let sink = |p: Progress| shown.show(p);
    let r = image::ensure(d, &scratch(home), base, deps, &sink).await;
    shown.done();
    r.map_err(sandbox_err)
}

/// Before an image run without `--runtime` is created: say so when it cannot have gVisor
/// (the daemon picks gvisor for image runs when the engine has it). The image itself is
/// built by the run's start (its steps are the run's init steps); no engine at all is the
/// daemon's error to give, with its hint.
pub async fn gvisor_notice(req: &CreateRun, quiet: bool) {
    let on_image = req.image.is_some()
        || req
            .dependencies
            .iter()
            .any(|d| !paddock_config::is_service(d));
    if req.runtime.is_some() || !on_image || quiet {
        return;
    }
    let Ok(d) = engine().await else {
        return;
    };
    let gvisor = d
        .info()
        .await
        .ok()
        .and_then(|i| i.runtimes)
        .is_some_and(|r| r.contains_key("runsc"));
    if !gvisor {
        eprintln!(
            "paddock: gVisor (runsc) is not registered with the Docker engine; this run uses the docker runtime (`paddock doctor` says how to add gVisor)"
        );
    }
}

/// `paddock image …`.
pub async fn dispatch(home: &Home, args: ImageArgs) -> Result<i32> {
    match args.action {
        ImageAction::Build(b) => {
            let deps = b
                .dependencies
                .iter()
                .map(|s| {
                    paddock_config::parse_dependency(s).map_err(|e| {
                        ui::usage(
                            format!("invalid dependency `{s}`: {}", e.message()),
                            e.hint().unwrap_or_default(),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let d = engine().await?;
            let tag = ensure(home, &d, b.from.as_deref(), &deps, b.quiet).await?;
            if b.json.json {
                outln!("{}", serde_json::json!({ "image": tag }));
            } else {
                outln!("{tag}");
            }
            Ok(0)
        }
        ImageAction::Ls(j) => {
            let d = engine().await?;
            let rows = image::list(&d).await.map_err(sandbox_err)?;
            if j.json {
                outln!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(0);
            }
            if rows.is_empty() {
                outln!("no paddock images yet; `paddock image build` makes the base");
                return Ok(0);
            }
            outln!("{:<28} {:<5} {:>9}  DEPENDENCIES", "IMAGE", "KIND", "SIZE");
            for r in rows {
                outln!(
                    "{:<28} {:<5} {:>8}M  {}",
                    r.tag,
                    r.kind,
                    r.size_bytes / (1024 * 1024),
                    r.dependencies.unwrap_or_default()
                );
            }
            Ok(0)
        }
        ImageAction::Rm(r) => {
            let d = engine().await?;
            for t in &r.images {
                image::remove(&d, t).await.map_err(sandbox_err)?;
                outln!("removed {t}");
            }
            Ok(0)
        }
        ImageAction::Prune(p) => {
            let d = engine().await?;
            let keep = image::base_tag();
            let mut removed = 0;
            for r in image::list(&d).await.map_err(sandbox_err)? {
                if r.tag == keep && !p.all {
                    continue;
                }
                match image::remove(&d, &r.tag).await {
                    Ok(()) => {
                        outln!("removed {}", r.tag);
                        removed += 1;
                    }
                    // In use by a container: kept.
                    Err(e) => eprintln!("kept {}: {e}", r.tag),
                }
            }
            outln!("{removed} image(s) removed");
            Ok(0)
        }
        ImageAction::Deps => {
            outln!("catalog (`dependencies: [NAME[@VERSION], …]`):");
            for r in image::CATALOG {
                outln!("  {:<16} {}", r.name, r.about);
            }
            outln!("  apt:PKG          a Debian package");
            outln!("  npm:PKG[@V]      an npm package, installed globally");
            outln!("  pip:PKG[==V]     a PyPI package");
            Ok(0)
        }
    }
}
