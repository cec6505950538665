//! paddock-config: the `paddock.yaml` schema, layering and validation.
//!
//! Never: touches the filesystem beyond reading config files, or knows about the daemon.
