//! Policy behaviour end to end (SPEC §3–§5).
