//! Test-only stand-in for `paddock init`: `paddock-sandbox-init init` runs the native
//! runtime's init, exactly like the real `paddock` binary's hidden subcommand.

fn main() {
    let code = match std::env::args().nth(1).as_deref() {
        Some("init") => paddock_sandbox::native::init_main(),
        _ => {
            eprintln!("usage: paddock-sandbox-init init (started by the native runtime)");
            2
        }
    };
    std::process::exit(code);
}
