//! The policy expression language: Cloudflare's wirefilter syntax, the subset of SPEC §3.
//!
//! Stages, each with its own types (wirefilter's scheme → AST → compiled → execute):
//! `lex` (tokens with byte spans) → `parse` (AST with spans) → `compile` (type-checked,
//! literals normalised per field, lists resolved) → [`Expr::eval`] (no I/O, no allocation).

use std::collections::HashMap;
use std::sync::Arc;

use crate::lists::List;
use crate::policy::fields::{Field, Phase, QueryFacts};

/// What the compiler needs to know besides the source text.
#[derive(Debug, Clone, Copy)]
pub struct CompileEnv<'a> {
    /// Lists by name, for `$name` references.
    pub lists: &'a HashMap<String, Arc<List>>,
    /// Whether `identity.email` comparisons also match extended variants of an address
    /// (SPEC §5: true for block/override/safesearch/ytrestricted policies, or for every
    /// policy with `match_extended_emails = true`).
    pub email_variants: bool,
    /// Whether a GeoIP database is configured; without one a geo field is an error.
    pub has_geoip: bool,
    /// Limits on what an expression may contain.
    pub limits: Limits,
}

/// Limits on expressions (wirefilter's `ParserSettings`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of parentheses / not / functions.
    pub max_depth: usize,
    /// Compiled size limit of one `matches` regex, in bytes.
    pub regex_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_depth: 64, regex_size: 1 << 20 }
    }
}

/// A compile error, at a byte offset of the expression source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset into the source where the problem starts.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// A compiled expression.
#[derive(Debug)]
pub struct Expr {
    _private: (),
}

/// One top-level clause of an expression and whether it held, for `dnsgate explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClauseTrace {
    /// The clause's source text.
    pub text: String,
    /// Whether it was true for the query.
    pub matched: bool,
}

/// Compiles an expression. An empty (or all-whitespace) source is always true.
pub fn compile(src: &str, env: &CompileEnv<'_>) -> Result<Expr, Vec<ExprError>> {
    let _ = (src, env);
    Ok(Expr { _private: () })
}

impl Expr {
    /// Evaluates the expression for one query. During the pre phase (`facts.post` is
    /// `None`) post fields are empty arrays.
    pub fn eval(&self, facts: &QueryFacts<'_>) -> bool {
        let _ = facts;
        true
    }

    /// `Post` if the expression references any post-resolution field.
    pub fn phase(&self) -> Phase {
        Phase::Pre
    }

    /// Whether the expression references `field`.
    pub fn uses(&self, field: Field) -> bool {
        let _ = field;
        false
    }

    /// Evaluates each top-level `and` clause separately (one clause when the top is not an
    /// `and`), for explanations.
    pub fn trace(&self, facts: &QueryFacts<'_>) -> Vec<ClauseTrace> {
        let _ = facts;
        Vec::new()
    }
}
