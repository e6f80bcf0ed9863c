//! The syntax tree: what the source says, before any field, type or list is checked.
//!
//! Parsing knows no schema, so a tree can be built and printed for any expression that is
//! well-formed; `compile` then resolves names and types. `Display` prints canonical source
//! (symbols for comparisons, words for logic, parentheses only where needed), which parses
//! back to an equal tree: that is what lets `explain` and tests show a normalised rule.
//!
//! Spans never take part in equality: two trees are equal when they say the same thing,
//! wherever it was written.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// A byte range of the expression source.
#[derive(Debug, Clone, Copy, Default, Eq)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end`.
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }
}

impl PartialEq for Span {
    /// Always true: positions are not part of a tree's meaning.
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

/// A node with the span of source it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    /// What the node is.
    pub kind: AstKind,
    /// Where it was written.
    pub span: Span,
}

/// The kinds of node. `and`, `or` and `xor` chains are n-ary (a chain of 10,000 clauses
/// is one node, not a 10,000-deep tree), so depth only grows with parentheses, `not` and
/// functions, which the parser limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AstKind {
    /// `a and b and ...` (two or more operands).
    And(Vec<Ast>),
    /// `a or b or ...`.
    Or(Vec<Ast>),
    /// `a xor b xor ...` (true when an odd number of operands are).
    Xor(Vec<Ast>),
    /// `not a`.
    Not(Box<Ast>),
    /// `any(...)`: the condition holds for some element of the array it names.
    Any(Box<Ast>),
    /// `all(...)`: the condition holds for every element.
    All(Box<Ast>),
    /// A comparison of a field with a value, set, list, regex or substring.
    Pred(Predicate),
}

/// `operand OP value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predicate {
    /// The field side.
    pub lhs: Operand,
    /// The operator and its right-hand side.
    pub op: PredOp,
}

/// A field reference, perhaps indexed and wrapped in `lower()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operand {
    /// The field name as written (checked by `compile`).
    pub field: String,
    /// `["key"]`: a map key (`identity.saml_attributes["department"]`).
    pub key: Option<String>,
    /// `[*]`: the current element inside `any()` / `all()`.
    pub star: bool,
    /// `[N]`: the array's element N (from 0); a comparison with an element the array does
    /// not have is false (and `!=` true), as in wirefilter.
    pub index: Option<u32>,
    /// Wrapped in `lower(...)`.
    pub lower: bool,
    /// The whole operand, including `lower(` and `)`.
    pub span: Span,
    /// Just the field name.
    pub field_span: Span,
}

/// The operator of a predicate with its right-hand side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PredOp {
    /// `== != < <= > >=` and their word forms.
    Cmp(CmpOp, Lit),
    /// `in {v1 v2 ...}`.
    InSet(Vec<Lit>),
    /// `in $name`.
    InList(String, Span),
    /// `matches "regex"` or `~ "regex"`.
    Matches(String, Span),
    /// `contains "s"`.
    Contains(String, Span),
    /// `wildcard "*.example.com"` (ASCII case-insensitive) or, with `strict`,
    /// `strict wildcard "..."` (case-sensitive): `*` matches any run of characters.
    Wildcard {
        /// The pattern, escapes decoded.
        pattern: String,
        /// Where the pattern was written.
        span: Span,
        /// `strict wildcard`.
        strict: bool,
    },
    /// `& N` / `bitwise_and N`: some bit of N is set in the value.
    BitAnd(Lit),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// The canonical symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }

    /// Whether this is an ordering (not an equality) operator.
    pub fn is_ordering(self) -> bool {
        !matches!(self, Self::Eq | Self::Ne)
    }
}

/// A literal with its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lit {
    /// The value.
    pub value: Value,
    /// Where it was written.
    pub span: Span,
}

/// A literal value. Unquoted words are classified by shape: digits are integers, `a..b`
/// a range, anything that parses as an address or network an IP or CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `"..."`, escapes decoded.
    Str(String),
    /// `42`, `-1`, `0x2a`, `052` (octal, as in wirefilter).
    Int(i64),
    /// `192.0.2.1`, `2001:db8::1`.
    Ip(IpAddr),
    /// `10.0.0.0/8` (host bits kept as written).
    Cidr(IpNet),
    /// `1..5` (inclusive, only inside sets).
    Range(i64, i64),
    /// `10.0.0.0..10.0.255.255` (inclusive, one family, only inside sets).
    IpRange(IpAddr, IpAddr),
}

impl Value {
    /// What kind of value this is, for error messages ("a string", "an ip address").
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Str(_) => "a string",
            Self::Int(_) => "an integer",
            Self::Ip(_) => "an ip address",
            Self::Cidr(_) => "a network",
            Self::Range(..) => "an integer range",
            Self::IpRange(..) => "an ip range",
        }
    }
}

/// Binding strength, for printing parentheses exactly where the parser needs them.
fn level(kind: &AstKind) -> u8 {
    match kind {
        AstKind::Or(_) => 1,
        AstKind::Xor(_) => 2,
        AstKind::And(_) => 3,
        AstKind::Not(_) => 4,
        AstKind::Any(_) | AstKind::All(_) | AstKind::Pred(_) => 5,
    }
}

/// Writes a string literal with `"` and `\` escaped.
pub(super) fn write_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

/// Writes a regex as a raw string (`r"..."`, `r#"..."#`, ...), which reads back as written
/// whatever backslashes and quotes it holds.
fn write_raw(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    let mut hashes = 0;
    while s.contains(&format!("\"{}", "#".repeat(hashes))) {
        hashes += 1;
    }
    let h = "#".repeat(hashes);
    write!(f, "r{h}\"{s}\"{h}")
}

impl fmt::Display for Ast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (items, word) = match &self.kind {
            AstKind::And(v) => (v, " and "),
            AstKind::Or(v) => (v, " or "),
            AstKind::Xor(v) => (v, " xor "),
            AstKind::Not(inner) => {
                f.write_str("not ")?;
                return write_child(f, inner, level(&self.kind) - 1);
            }
            AstKind::Any(body) => return write!(f, "any({body})"),
            AstKind::All(body) => return write!(f, "all({body})"),
            AstKind::Pred(p) => return write!(f, "{p}"),
        };
        // A nested chain of the same operator keeps its parentheses: it is a distinct node.
        let min = level(&self.kind);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                f.write_str(word)?;
            }
            write_child(f, item, min)?;
        }
        Ok(())
    }
}

/// Writes `node`, in parentheses unless it binds more tightly than `min`.
fn write_child(f: &mut fmt::Formatter<'_>, node: &Ast, min: u8) -> fmt::Result {
    if level(&node.kind) > min {
        write!(f, "{node}")
    } else {
        write!(f, "({node})")
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lower {
            f.write_str("lower(")?;
        }
        f.write_str(&self.field)?;
        if let Some(key) = &self.key {
            f.write_str("[")?;
            write_str(f, key)?;
            f.write_str("]")?;
        }
        if let Some(i) = self.index {
            write!(f, "[{i}]")?;
        }
        if self.star {
            f.write_str("[*]")?;
        }
        if self.lower {
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => write_str(f, s),
            Self::Int(n) => write!(f, "{n}"),
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Cidr(net) => write!(f, "{net}"),
            Self::Range(lo, hi) => write!(f, "{lo}..{hi}"),
            Self::IpRange(lo, hi) => write!(f, "{lo}..{hi}"),
        }
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.lhs)?;
        match &self.op {
            PredOp::Cmp(op, lit) => write!(f, "{} {}", op.symbol(), lit.value),
            PredOp::InSet(items) => {
                f.write_str("in {")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{}", item.value)?;
                }
                f.write_str("}")
            }
            PredOp::InList(name, _) => write!(f, "in ${name}"),
            PredOp::Matches(re, _) => {
                f.write_str("matches ")?;
                write_raw(f, re)
            }
            PredOp::Wildcard {
                pattern, strict, ..
            } => {
                f.write_str(if *strict {
                    "strict wildcard "
                } else {
                    "wildcard "
                })?;
                write_str(f, pattern)
            }
            PredOp::BitAnd(lit) => write!(f, "& {}", lit.value),
            PredOp::Contains(s, _) => {
                f.write_str("contains ")?;
                write_str(f, s)
            }
        }
    }
}
