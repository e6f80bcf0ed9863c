//! The policy expression language: Cloudflare's wirefilter syntax, the subset of SPEC §3.
//!
//! Stages, each with its own types (wirefilter's scheme → AST → compiled → execute):
//! `lex` (tokens with byte spans) → `parse` (AST with spans) → `compile` (type-checked,
//! literals normalised per field, lists resolved) → [`Expr::eval`] (no I/O, no allocation).
//!
//! Semantics the SPEC leaves open, decided here (and tested in this module):
//! - Precedence is wirefilter's: `not` > `and` > `xor` > `or`, all left-associative.
//! - `any()` of an empty array is false and `all()` of an empty array is true, so during
//!   the pre phase `all(dns.resolved_ips[*] in {...})` holds and `any(...)` does not.
//! - The body of `any()`/`all()` may be any condition; all its `[*]` references must name
//!   the same array, and the body is evaluated once per element. They may nest: an inner
//!   `any()` ranges over its own array.
//! - `lower(f)` yields the field's value ASCII-lowercased, and literals compared with it are
//!   lowercased too (so `lower(dns.query_rtype) == "A"` holds for A queries, where
//!   wirefilter would compare with "A" as written and never match). On name and e-mail
//!   fields, whose values are lowercase already, it changes nothing.
//! - `matches` is case-insensitive on fields whose `==` is (names, codes, e-mails) and
//!   case-sensitive on the others and under `lower()`.
//! - `contains` lowercases (or uppercases, for code fields) its needle but keeps a
//!   trailing dot, which is part of a substring.
//! - In strings `\"` and `\\` are escapes and any other backslash is kept, so regexes
//!   such as `"\d+\.example\.com"` work as written.
//! - Sets take whitespace- or comma-separated items; `{}` is allowed and matches nothing.
//! - IPs compare canonically: `::ffff:192.0.2.1` equals `192.0.2.1`.
//! - Strings order by bytes (`<` on strings is allowed, as in wirefilter); IPs do not order.

pub mod ast;
mod compile;
mod eval;
mod lex;
mod names;
mod parse;
mod sets;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

pub use self::parse::parse;
use self::ast::AstKind;
use self::eval::{Elem, Node};
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

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExprError {}

/// A compiled expression.
#[derive(Debug)]
pub struct Expr {
    root: Node,
    /// Source text of each top-level `and` clause (one entry when the top is not an `and`,
    /// none for an empty expression).
    clauses: Box<[Box<str>]>,
    /// Bit `field as u32` for each referenced field.
    used: u32,
    source: Box<str>,
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
///
/// On failure the errors are sorted by offset: the first syntax error alone, or every
/// name and type error of a well-formed expression.
pub fn compile(src: &str, env: &CompileEnv<'_>) -> Result<Expr, Vec<ExprError>> {
    let Some(ast) = parse(src, env.limits).map_err(|e| vec![e])? else {
        let source = src.into();
        return Ok(Expr { root: Node::Const(true), clauses: Box::new([]), used: 0, source });
    };
    let mut compiler = compile::Compiler::new(env);
    let root = compiler.node(&ast, &mut None);
    if !compiler.errors.is_empty() {
        let mut errors = compiler.errors;
        errors.sort_by_key(|e| e.offset);
        return Err(errors);
    }
    let text = |a: &ast::Ast| src.get(a.span.start..a.span.end).unwrap_or_default().into();
    let clauses = match &ast.kind {
        AstKind::And(items) => items.iter().map(text).collect(),
        _ => Box::new([text(&ast)]) as Box<[_]>,
    };
    Ok(Expr { root, clauses, used: compiler.used, source: src.into() })
}

impl Expr {
    /// Evaluates the expression for one query. During the pre phase (`facts.post` is
    /// `None`) post fields are empty arrays.
    pub fn eval(&self, facts: &QueryFacts<'_>) -> bool {
        self.root.eval(facts, Elem::None)
    }

    /// `Post` if the expression references any post-resolution field.
    pub fn phase(&self) -> Phase {
        let post = Field::ALL.iter().any(|&f| self.uses(f) && f.phase() == Phase::Post);
        if post { Phase::Post } else { Phase::Pre }
    }

    /// Whether the expression references `field`.
    pub fn uses(&self, field: Field) -> bool {
        self.used & (1 << field as u32) != 0
    }

    /// The source text the expression was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression is empty, and so always true.
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// Evaluates each top-level `and` clause separately (one clause when the top is not an
    /// `and`, none for an empty expression), for explanations.
    pub fn trace(&self, facts: &QueryFacts<'_>) -> Vec<ClauseTrace> {
        let clause = |text: &str, node: &Node| ClauseTrace {
            text: text.to_owned(),
            matched: node.eval(facts, Elem::None),
        };
        match (&self.root, &*self.clauses) {
            (Node::And(kids), texts) if kids.len() == texts.len() => {
                texts.iter().zip(kids.iter()).map(|(t, n)| clause(t, n)).collect()
            }
            (root, texts) => texts.iter().map(|t| clause(t, root)).collect(),
        }
    }
}
