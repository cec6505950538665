//! `paddock-router-bench PORT BACKEND_PORT`: a router on 127.0.0.1:PORT with one run
//! ("bench", endpoint "web" → BACKEND_PORT) reached over plain loopback TCP, so
//! bench/router.sh measures the router itself. Runs until killed.

use std::sync::Arc;

use paddock_router::{LoopbackDialer, RouteState, Router, RouterConfig, RunRoute};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(port), Some(backend)) = (
        args.get(1).and_then(|a| a.parse::<u16>().ok()),
        args.get(2).and_then(|a| a.parse::<u16>().ok()),
    ) else {
        eprintln!("usage: paddock-router-bench PORT BACKEND_PORT");
        std::process::exit(2);
    };
    let router = Router::new(Arc::new(LoopbackDialer));
    router
        .upsert_run(RunRoute {
            name: "bench".into(),
            run_id: "run_bench".into(),
            endpoints: [("web".to_string(), backend)].into(),
            state: RouteState::Running,
        })
        .expect("route");
    let mut config = RouterConfig::new(port);
    // For experiments only: the daemon always uses the default.
    if let Some(n) = std::env::var("PADDOCK_ROUTER_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.workers = n;
    }
    let handle = match router.serve(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(h) = e.hint() {
                eprintln!("hint: {h}");
            }
            std::process::exit(1);
        }
    };
    eprintln!("router on {}", handle.local_addr());
    let _ = tokio::signal::ctrl_c().await;
    handle.shutdown().await;
}
