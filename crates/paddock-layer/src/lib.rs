//! paddock-layer: review and apply the copy-on-write layer of an overlay run.
//!
//! Owns: reading an overlayfs upper directory (including whiteouts and opaque directories),
//! summarising and diffing it against the real workspace, and applying it all-or-nothing.
//!
//! Never: mounts anything, or touches a run's processes.
