//! Recursive-descent parser: tokens → [`Ast`], stopping at the first syntax error.
//!
//! Precedence is wirefilter's: `not` binds tightest, then `and`, `xor`, `or`; all are
//! left-associative (and associative, so chains become one n-ary node). Recursion only
//! happens for parentheses, `not` and `any`/`all`, and each of those counts against
//! `Limits::max_depth`, so no input can overflow the stack here or in the later stages.

use std::net::IpAddr;

use ipnet::IpNet;

use super::ast::{Ast, AstKind, CmpOp, Lit, Operand, PredOp, Predicate, Span, Value};
use super::lex::{Tok, Token, tokenize};
use super::{ExprError, Limits};

/// Words that cannot be field names.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "xor",
    "not",
    "in",
    "matches",
    "contains",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "any",
    "all",
    "lower",
    "wildcard",
    "strict",
    "bitwise_and",
];

/// Parses an expression. `Ok(None)` for an empty (or all-whitespace) source.
pub fn parse(src: &str, limits: Limits) -> Result<Option<Ast>, ExprError> {
    let mut p = Parser {
        src,
        toks: tokenize(src),
        pos: 0,
        depth: 0,
        max_depth: limits.max_depth,
    };
    if p.peek() == &Tok::Eof {
        return Ok(None);
    }
    let ast = p.or()?;
    match p.peek() {
        Tok::Eof => Ok(Some(ast)),
        Tok::Error(e) => Err(e.clone()),
        Tok::RParen => Err(p.err_here("unexpected `)` (unbalanced parentheses)")),
        other => {
            let found = other.describe();
            Err(p.err_here(format!(
                "expected `and`, `or`, `xor` or the end of the expression, found {found}"
            )))
        }
    }
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token<'s>>,
    pos: usize,
    depth: usize,
    max_depth: usize,
}

/// The binding levels of the logical operators, loosest first.
#[derive(Clone, Copy)]
enum Level {
    Or,
    Xor,
    And,
}

impl<'s> Parser<'s> {
    fn tok(&self) -> &Token<'s> {
        // `tokenize` always ends with Eof or Error and the parser never moves past them.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn peek(&self) -> &Tok<'s> {
        &self.tok().tok
    }

    fn peek2(&self) -> Option<&Tok<'s>> {
        self.toks.get(self.pos + 1).map(|t| &t.tok)
    }

    fn bump(&mut self) -> Token<'s> {
        let t = self.tok().clone();
        if !matches!(t.tok, Tok::Eof | Tok::Error(_)) {
            self.pos += 1;
        }
        t
    }

    /// End offset of the last consumed token.
    fn last_end(&self) -> usize {
        self.pos.checked_sub(1).map_or(0, |i| self.toks[i].end)
    }

    /// The source text of the last consumed token, for "after `==`" messages.
    fn last_text(&self) -> &'s str {
        self.pos
            .checked_sub(1)
            .map_or("", |i| &self.src[self.toks[i].start..self.toks[i].end])
    }

    fn err_here(&self, message: impl Into<String>) -> ExprError {
        match self.peek() {
            Tok::Error(e) => e.clone(),
            _ => ExprError {
                offset: self.tok().start,
                message: message.into(),
            },
        }
    }

    /// An error about the current token: the lexer's own if it is an error token,
    /// else `expected {what}` plus what was found.
    fn expected(&self, what: &str) -> ExprError {
        match self.peek() {
            Tok::Eof => self.err_here(format!("expected {what}")),
            other => self.err_here(format!("expected {what}, found {}", other.describe())),
        }
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(self.err_here(format!(
                "expression nests more than {} levels deep",
                self.max_depth
            )));
        }
        Ok(())
    }

    fn is_op(&self, level: Level) -> bool {
        matches!(
            (level, self.peek()),
            (Level::Or, Tok::OrOr | Tok::Word("or"))
                | (Level::Xor, Tok::XorXor | Tok::Word("xor"))
                | (Level::And, Tok::AndAnd | Tok::Word("and"))
        )
    }

    fn or(&mut self) -> Result<Ast, ExprError> {
        self.chain(Level::Or)
    }

    /// A chain of operands joined by this level's operator.
    fn chain(&mut self, level: Level) -> Result<Ast, ExprError> {
        let operand = |p: &mut Self| match level {
            Level::Or => p.chain(Level::Xor),
            Level::Xor => p.chain(Level::And),
            Level::And => p.unary(),
        };
        let first = operand(self)?;
        if !self.is_op(level) {
            return Ok(first);
        }
        let start = first.span.start;
        let mut items = vec![first];
        while self.is_op(level) {
            self.bump();
            items.push(operand(self)?);
        }
        let span = Span::new(start, self.last_end());
        let kind = match level {
            Level::Or => AstKind::Or(items),
            Level::Xor => AstKind::Xor(items),
            Level::And => AstKind::And(items),
        };
        Ok(Ast { kind, span })
    }

    fn unary(&mut self) -> Result<Ast, ExprError> {
        if !matches!(self.peek(), Tok::Bang | Tok::Word("not")) {
            return self.primary();
        }
        let start = self.tok().start;
        self.bump();
        self.enter()?;
        let inner = self.unary()?;
        self.depth -= 1;
        Ok(Ast {
            kind: AstKind::Not(Box::new(inner)),
            span: Span::new(start, self.last_end()),
        })
    }

    fn primary(&mut self) -> Result<Ast, ExprError> {
        let start = self.tok().start;
        match self.peek() {
            Tok::LParen => {
                self.bump();
                self.enter()?;
                let mut inner = self.or()?;
                self.close_paren(start)?;
                self.depth -= 1;
                inner.span = Span::new(start, self.last_end());
                Ok(inner)
            }
            Tok::Word(w @ ("any" | "all")) if self.peek2() == Some(&Tok::LParen) => {
                let is_any = *w == "any";
                self.bump();
                self.bump();
                self.enter()?;
                let body = Box::new(self.or()?);
                self.close_paren(start)?;
                self.depth -= 1;
                let kind = if is_any {
                    AstKind::Any(body)
                } else {
                    AstKind::All(body)
                };
                Ok(Ast {
                    kind,
                    span: Span::new(start, self.last_end()),
                })
            }
            Tok::Word(_) => {
                let lhs = self.operand()?;
                let op = self.pred_op(&lhs)?;
                let span = Span::new(start, self.last_end());
                Ok(Ast {
                    kind: AstKind::Pred(Predicate { lhs, op }),
                    span,
                })
            }
            _ if self.pos == 0 => Err(self.expected("a field, `not`, `any(` or `(`")),
            _ => {
                let after = self.last_text();
                Err(self.expected(&format!("an expression after `{after}`")))
            }
        }
    }

    /// Expects the `)` matching the `(` at `open`.
    fn close_paren(&mut self, open: usize) -> Result<(), ExprError> {
        match self.peek() {
            Tok::RParen => {
                self.bump();
                Ok(())
            }
            Tok::Eof => Err(ExprError {
                offset: open,
                message: "unbalanced parentheses: this `(` is never closed".to_owned(),
            }),
            _ => Err(self.expected("`)`, `and`, `or` or `xor`")),
        }
    }

    /// `field`, `field[*]`, `field["key"]`, `field["key"][*]`, or any of those in `lower()`.
    fn operand(&mut self) -> Result<Operand, ExprError> {
        let start = self.tok().start;
        let lower = matches!(self.peek(), Tok::Word("lower")) && self.peek2() == Some(&Tok::LParen);
        if lower {
            self.bump();
            self.bump();
        }
        let field = match self.peek() {
            Tok::Word(w) if is_ident(w) && !KEYWORDS.contains(w) => (*w).to_owned(),
            _ => return Err(self.expected("a field")),
        };
        let field_tok = self.bump();
        let field_span = Span::new(field_tok.start, field_tok.end);
        let mut key = None;
        let mut star = false;
        let mut index = None;
        while self.peek() == &Tok::LBracket && !star && index.is_none() {
            self.bump();
            match self.peek() {
                Tok::Star => star = true,
                Tok::Str(k) if key.is_none() => key = Some(k.clone()),
                Tok::Word(w) => match classify(w) {
                    Some(Ok(Value::Int(i))) if u32::try_from(i).is_ok() => {
                        index = u32::try_from(i).ok();
                    }
                    _ => {
                        let message = format!("invalid index `{w}`: expected 0 or more");
                        return Err(self.err_here(message));
                    }
                },
                _ => return Err(self.expected("`*`, an index or a quoted key after `[`")),
            }
            self.bump();
            if self.peek() != &Tok::RBracket {
                return Err(self.expected("`]`"));
            }
            self.bump();
        }
        if lower {
            if self.peek() != &Tok::RParen {
                return Err(self.expected("`)` to close `lower(`"));
            }
            self.bump();
        }
        Ok(Operand {
            field,
            key,
            star,
            index,
            lower,
            span: Span::new(start, self.last_end()),
            field_span,
        })
    }

    fn pred_op(&mut self, lhs: &Operand) -> Result<PredOp, ExprError> {
        let cmp = match self.peek() {
            Tok::EqEq | Tok::Word("eq") => Some(CmpOp::Eq),
            Tok::NotEq | Tok::Word("ne") => Some(CmpOp::Ne),
            Tok::Lt | Tok::Word("lt") => Some(CmpOp::Lt),
            Tok::Le | Tok::Word("le") => Some(CmpOp::Le),
            Tok::Gt | Tok::Word("gt") => Some(CmpOp::Gt),
            Tok::Ge | Tok::Word("ge") => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = cmp {
            self.bump();
            return Ok(PredOp::Cmp(op, self.value(false)?));
        }
        match self.peek() {
            Tok::Word("in") => {
                self.bump();
                let open = self.tok().start;
                match *self.peek() {
                    Tok::LBrace => {
                        self.bump();
                        self.set(open)
                    }
                    Tok::List(name) => {
                        self.bump();
                        Ok(PredOp::InList(
                            name.to_owned(),
                            Span::new(open, self.last_end()),
                        ))
                    }
                    _ => Err(self.expected("`{` or a `$list` after `in`")),
                }
            }
            Tok::Amp | Tok::Word("bitwise_and") => {
                self.bump();
                Ok(PredOp::BitAnd(self.value(false)?))
            }
            Tok::Word("wildcard") => {
                self.bump();
                self.wildcard(false)
            }
            Tok::Word("strict") if self.peek2() == Some(&Tok::Word("wildcard")) => {
                self.bump();
                self.bump();
                self.wildcard(true)
            }
            Tok::Word("matches") | Tok::Tilde | Tok::Word("contains") => {
                let is_contains = self.peek() == &Tok::Word("contains");
                let op = self.bump();
                let at = self.tok().start;
                let Tok::Str(s) = self.peek().clone() else {
                    let what = if is_contains {
                        "a string"
                    } else {
                        "a regex string"
                    };
                    let op = &self.src[op.start..op.end];
                    return Err(self.expected(&format!("{what} after `{op}`")));
                };
                self.bump();
                let span = Span::new(at, self.last_end());
                Ok(if is_contains {
                    PredOp::Contains(s, span)
                } else {
                    PredOp::Matches(s, span)
                })
            }
            _ => Err(self.expected(&format!("an operator after `{lhs}`"))),
        }
    }

    /// The pattern after `wildcard` or `strict wildcard`.
    fn wildcard(&mut self, strict: bool) -> Result<PredOp, ExprError> {
        let at = self.tok().start;
        let Tok::Str(pattern) = self.peek().clone() else {
            let op = if strict {
                "strict wildcard"
            } else {
                "wildcard"
            };
            return Err(self.expected(&format!("a string after `{op}`")));
        };
        self.bump();
        Ok(PredOp::Wildcard {
            pattern,
            span: Span::new(at, self.last_end()),
            strict,
        })
    }

    /// The members of `{ ... }` after the `{` at `open`.
    fn set(&mut self, open: usize) -> Result<PredOp, ExprError> {
        let mut items = Vec::new();
        let mut after_item = false;
        loop {
            match self.peek() {
                Tok::RBrace => {
                    self.bump();
                    return Ok(PredOp::InSet(items));
                }
                Tok::Comma if after_item => {
                    self.bump();
                    after_item = false;
                }
                Tok::Str(_) | Tok::Word(_) => {
                    items.push(self.value(true)?);
                    after_item = true;
                }
                Tok::Eof => {
                    let message = "unclosed `{`: expected `}`".to_owned();
                    return Err(ExprError {
                        offset: open,
                        message,
                    });
                }
                _ => return Err(self.expected("a value or `}`")),
            }
        }
    }

    /// A literal after the last token (an operator, `{` or `,`).
    fn value(&mut self, in_set: bool) -> Result<Lit, ExprError> {
        let after = self.last_text();
        let t = self.tok().clone();
        let span = Span::new(t.start, t.end);
        let value = match t.tok {
            Tok::Str(s) => Value::Str(s),
            Tok::Word(w) => match classify(w) {
                Some(Ok(Value::Range(..))) if !in_set => {
                    return Err(
                        self.err_here(format!("a range is only allowed in a set: `{{{w}}}`"))
                    );
                }
                Some(Ok(v)) => v,
                Some(Err(message)) => return Err(self.err_here(message)),
                None if is_ident(w) => {
                    let message = format!(
                        "expected a value after `{after}`, found `{w}` (strings are quoted: \"{w}\")"
                    );
                    return Err(self.err_here(message));
                }
                None => return Err(self.err_here(format!("invalid value `{w}`"))),
            },
            _ => return Err(self.expected(&format!("a value after `{after}`"))),
        };
        self.bump();
        Ok(Lit { value, span })
    }
}

fn is_ident(w: &str) -> bool {
    let mut bytes = w.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// Reads an integer as wirefilter does: `0x` starts hexadecimal, a leading `0` octal
/// (`010` is 8), anything else is decimal with an optional `-`. `None` when the word is
/// not shaped like an integer at all.
fn int(s: &str) -> Option<Result<i64, String>> {
    let (digits, radix) = if let Some(hex) = s.strip_prefix("0x") {
        (hex, 16)
    } else if s.starts_with('0') && s.len() > 1 {
        (s, 8)
    } else {
        (s, 10)
    };
    let body = digits
        .strip_prefix('-')
        .filter(|_| radix == 10)
        .unwrap_or(digits);
    let shaped = s.starts_with(|c: char| c.is_ascii_digit() || c == '-')
        && !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_hexdigit());
    if !shaped {
        return None;
    }
    let parsed = i64::from_str_radix(digits, radix).map_err(|e| {
        use std::num::IntErrorKind::{NegOverflow, PosOverflow};
        match (e.kind(), radix) {
            (PosOverflow | NegOverflow, _) => format!("integer `{s}` is out of range (64 bits)"),
            (_, 8) => format!(
                "invalid integer `{s}`: a leading 0 means octal (digits 0-7), as in wirefilter"
            ),
            _ => format!("invalid integer `{s}`"),
        }
    });
    Some(parsed)
}

/// Reads an unquoted word as a value: `Some(Ok)` for a value, `Some(Err)` for one that is
/// malformed, `None` for a word that is not shaped like a value at all.
fn classify(w: &str) -> Option<Result<Value, String>> {
    if let Some((lo, hi)) = w.split_once("..") {
        if let (Some(lo), Some(hi)) = (int(lo), int(hi)) {
            return Some(match (lo, hi) {
                (Ok(lo), Ok(hi)) if lo <= hi => Ok(Value::Range(lo, hi)),
                (Ok(_), Ok(_)) => Err(format!("empty range `{w}`: the start is above the end")),
                (Err(e), _) | (_, Err(e)) => Err(e),
            });
        }
        if let (Ok(lo), Ok(hi)) = (lo.parse::<IpAddr>(), hi.parse::<IpAddr>()) {
            return Some(match (lo, hi) {
                (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) if lo <= hi => {
                    Ok(Value::IpRange(lo, hi))
                }
                (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                    Err(format!("empty range `{w}`: the start is above the end"))
                }
                _ => Err(format!("range `{w}` mixes IPv4 and IPv6")),
            });
        }
    }
    if let Some(n) = int(w) {
        return Some(n.map(Value::Int));
    }
    if w.contains('/') {
        return Some(
            w.parse::<IpNet>()
                .map(Value::Cidr)
                .map_err(|_| format!("invalid network `{w}`")),
        );
    }
    if let Ok(ip) = w.parse::<IpAddr>() {
        return Some(Ok(Value::Ip(ip)));
    }
    if w.starts_with(|c: char| c.is_ascii_digit() || c == ':' || c == '-') {
        return Some(Err(format!("invalid value `{w}`")));
    }
    None
}

#[cfg(test)]
mod tests;
