//! Test-only stand-in for `paddock init`: `paddock-router-test-init init` runs the native
//! runtime's init, so this crate's integration tests can start real sandboxes.

fn main() {
    let code = match std::env::args().nth(1).as_deref() {
        Some("init") => paddock_sandbox::native::init_main(),
        _ => {
            eprintln!("usage: paddock-router-test-init init (started by the native runtime)");
            2
        }
    };
    std::process::exit(code);
}
