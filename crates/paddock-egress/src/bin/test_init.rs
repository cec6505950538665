//! Test-only stand-in for `paddock init` (used by this crate's integration tests to run
//! real native sandboxes): `paddock-egress-test-init init`.

fn main() {
    let code = match std::env::args().nth(1).as_deref() {
        Some("init") => paddock_sandbox::native::init_main(),
        _ => {
            eprintln!("usage: paddock-egress-test-init init (started by the native runtime)");
            2
        }
    };
    std::process::exit(code);
}
