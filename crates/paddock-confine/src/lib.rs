//! paddock-confine: what the agent process is confined by, applied just before exec, and
//! probes of what this kernel supports.
//!
//! Owns: the seccomp filter (as data: a deny list with a reason per syscall), the Landlock
//! ruleset, capability dropping and no_new_privs, and kernel feature probes used by
//! `paddock doctor`.
//!
//! Never: creates namespaces or mounts (that is paddock-sandbox), or reads config files.
