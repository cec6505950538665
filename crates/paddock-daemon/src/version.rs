//! What build this is: the crate version and the git commit (from build.rs).

/// The paddock version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit this binary was built from.
pub fn commit() -> String {
    // For tests of the restart-on-new-build logic: pretend to be another build.
    std::env::var("PADDOCK_COMMIT_OVERRIDE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| env!("PADDOCK_COMMIT").to_string())
}
