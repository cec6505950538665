//! Core behaviour of a native sandbox: exit codes, output, init steps, filesystem views.

mod common;

use common::*;
use paddock_sandbox::*;

#[tokio::test]
async fn exit_code_and_output_streams() {
    let env = Env::new();
    let rt = runtime();
    let o = run_spec(&rt, &sh(&env, "echo out; echo err >&2; exit 7"), false).await;
    assert_eq!(
        o.exit.exit_code,
        Some(7),
        "{:?} stderr={}",
        o.exit,
        o.stderr
    );
    assert_eq!(o.stdout, "out\n");
    assert_eq!(o.stderr, "err\n");
}
