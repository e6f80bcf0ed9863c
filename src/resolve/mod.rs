//! Upstream resolution (work in progress).
