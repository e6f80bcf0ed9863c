//! answer (work in progress).
