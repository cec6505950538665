mod common;
use common::*;
#[tokio::test]
async fn debug_shell() {
    let script = std::env::var("DBG").unwrap_or_else(|_| "true".into());
    let env = Env::new();
    let rt = runtime();
    let o = run_spec(&rt, &sh(&env, &script), false).await;
    eprintln!(
        "exit={:?}\nstdout:\n{}\nstderr:\n{}",
        o.exit, o.stdout, o.stderr
    );
}
