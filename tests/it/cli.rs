//! The binary: check, explain, run with SIGHUP and metrics.
