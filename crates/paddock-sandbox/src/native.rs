//! The native Linux backend (namespaces, overlayfs, cgroups, `paddock init` as PID 1).
//! Being written; see the Runtime trait in `runtime.rs`.

/// Entry point of `paddock init` (hidden subcommand of the `paddock` binary).
pub fn init_main() -> i32 {
    eprintln!("paddock init: the native runtime is not built yet");
    1
}
