//! Listeners (work in progress).
