//! Policies (SPEC §3, §4): fields, the expression language, and evaluation.

pub mod expr;
pub mod fields;
