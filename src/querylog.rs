//! querylog (work in progress).
