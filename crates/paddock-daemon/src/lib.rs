//! paddock-daemon: the composition root.
