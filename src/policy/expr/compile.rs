//! Type checking and lowering: [`Ast`] → [`Node`].
//!
//! Everything that can be decided once is decided here, so evaluation only compares:
//! field names become direct accessors, literals are normalised for their field (or
//! replaced by canonical e-mails), sets become sorted ranges or hash sets, regexes are
//! built, lists are resolved to `Arc`s and checked against the field, and the `any()`
//! shapes that have a cheaper equivalent are rewritten (see [`quantify`]).
//!
//! Errors are collected rather than returned at the first one, so `dnsgate check` shows
//! every type error of an expression at once; a node with an error compiles to a
//! placeholder and the caller discards the tree.

use std::sync::Arc;

use regex::{Regex, RegexBuilder};

use super::ast::{Ast, AstKind, CmpOp, Lit, Operand, PredOp, Predicate, Span, Value};
use super::eval::{ArrSrc, CodeSrc, CodeTest, IntTest, IpSrc, IpTest, Node, StrSrc, StrTest};
use super::names::{array_hint, list_hint, unknown_field, unknown_list};
use super::sets::{IpRanges, Ranges, StrSet};
use super::{CompileEnv, ExprError};
use crate::geoip::Code;
use crate::identity::canonical_email;
use crate::lists::{List, ListKind};
use crate::policy::fields::{self, Field, FieldType, Normalize, Scalar};

/// Walks an [`Ast`], collecting errors and the fields it uses.
pub(super) struct Compiler<'e, 'l> {
    env: &'e CompileEnv<'l>,
    /// Every problem found so far.
    pub(super) errors: Vec<ExprError>,
    /// Bit `f as u32` is set when field `f` is referenced.
    pub(super) used: u32,
}

/// Inside `any()`/`all()`: the array its `[*]` references name (the first one seen).
#[derive(Default)]
pub(super) struct Scope {
    arr: Option<(Field, Option<String>, String)>,
}

/// A checked operand.
struct Resolved {
    field: Field,
    /// As written, without `lower()`: `dns.domains[*]`, for messages.
    text: String,
    kind: Kind,
    lower: bool,
    span: Span,
}

#[derive(Clone, Copy)]
enum Kind {
    Str(StrSrc),
    Ip(IpSrc),
    Int,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Str(_) => "string",
            Self::Ip(_) => "ip",
            Self::Int => "integer",
        }
    }
}

impl Resolved {
    fn describe(&self) -> String {
        format!("{} field `{}`", self.kind.name(), self.text)
    }

    fn norm(&self) -> Normalize {
        self.field.normalize()
    }

    /// `lower()` of a field whose values are not lowercase already must lowercase at
    /// evaluation; on name and e-mail fields it changes nothing.
    fn fold(&self) -> bool {
        self.lower && matches!(self.norm(), Normalize::Upper | Normalize::Exact)
    }

    /// A literal compared with this operand, normalised as the values are. Under
    /// `lower()` the values are lowercase, so the literal is lowercased too.
    fn literal(&self, s: &str) -> String {
        match (self.lower, self.norm()) {
            (_, Normalize::Name) => fields::normalize(Normalize::Name, s),
            (true, _) => s.to_ascii_lowercase(),
            (false, n) => fields::normalize(n, s),
        }
    }

    /// A `contains` needle: the case is normalised, but a trailing dot is part of a
    /// substring (`contains "example."` must not match `example-x.net`).
    fn needle(&self, s: &str) -> String {
        match (self.lower, self.norm()) {
            (true, _) | (_, Normalize::Name | Normalize::Lower) => s.to_ascii_lowercase(),
            (false, n) => fields::normalize(n, s),
        }
    }
}

fn scalar_src(field: Field) -> Option<StrSrc> {
    Some(match field {
        Field::Fqdn => StrSrc::Fqdn,
        Field::QueryRtype => StrSrc::Rtype,
        Field::Location => StrSrc::Location,
        Field::IdentityEmail => StrSrc::Email,
        Field::IdentityName => StrSrc::Name,
        Field::DeviceId => StrSrc::DeviceId,
        Field::SrcGeoCountry => StrSrc::SrcCountry,
        Field::SrcGeoContinent => StrSrc::SrcContinent,
        _ => return None,
    })
}

fn code_src(field: Field) -> Option<CodeSrc> {
    match field {
        Field::SrcGeoCountry => Some(CodeSrc::SrcCountry),
        Field::SrcGeoContinent => Some(CodeSrc::SrcContinent),
        Field::DstGeoCountry | Field::DstGeoContinent => Some(CodeSrc::Elem),
        _ => None,
    }
}

fn array_src(field: Field, key: Option<String>) -> Option<ArrSrc> {
    Some(match field {
        Field::Domains => ArrSrc::Domains,
        Field::ContentCategory => ArrSrc::ContentCategory,
        Field::SecurityCategory => ArrSrc::SecurityCategory,
        Field::GroupsName => ArrSrc::GroupsName,
        Field::GroupsId => ArrSrc::GroupsId,
        Field::GroupsEmail => ArrSrc::GroupsEmail,
        Field::SamlAttributes => ArrSrc::Saml(Box::new(key?)),
        Field::ResolvedIps => ArrSrc::ResolvedIps,
        Field::DstGeoCountry => ArrSrc::DstCountry,
        Field::DstGeoContinent => ArrSrc::DstContinent,
        Field::ResponseCname => ArrSrc::Cname,
        Field::ResponseMx => ArrSrc::Mx,
        Field::ResponseTxt => ArrSrc::Txt,
        Field::ResponsePtr => ArrSrc::Ptr,
        _ => return None,
    })
}

/// Builds `any`/`all` of `body` over `arr`, rewritten where a cheaper form means the same:
/// `any(a or b)` is `any(a) or any(b)` and `all(a and b)` is `all(a) and all(b)` (exactly,
/// empty arrays included), which exposes the one-call shapes `any(dns.domains[*] == "x")`
/// and `any(dns.domains[*] in $list)` inside larger conditions.
fn quantify(all: bool, arr: &ArrSrc, body: Node) -> Node {
    let spread =
        |kids: Box<[Node]>| kids.into_vec().into_iter().map(|k| quantify(all, arr, k)).collect();
    match (all, body) {
        (false, Node::Or(kids)) => Node::Or(spread(kids)),
        (true, Node::And(kids)) => Node::And(spread(kids)),
        (false, Node::Str { src: StrSrc::Elem, fold: false, test: StrTest::Eq(x) })
            if *arr == ArrSrc::Domains =>
        {
            Node::DomainsEq(x)
        }
        (false, Node::Str { src: StrSrc::Elem, fold: false, test: StrTest::DomainList(l) })
            if *arr == ArrSrc::Domains =>
        {
            Node::DomainsInList(l)
        }
        (false, Node::Str { src: StrSrc::Elem, fold: false, test: StrTest::In(set) })
            if *arr == ArrSrc::Domains =>
        {
            Node::DomainsIn(set)
        }
        (all, Node::Int(test))
            if matches!(arr, ArrSrc::ContentCategory | ArrSrc::SecurityCategory) =>
        {
            Node::Categories { security: *arr == ArrSrc::SecurityCategory, all, test }
        }
        (all, Node::Str { src: StrSrc::Elem, fold: false, test }) => {
            Node::QuantStr { all, arr: arr.clone(), test: Box::new(test) }
        }
        (all, body) => Node::Quant { all, arr: arr.clone(), body: Box::new(body) },
    }
}

impl<'e, 'l> Compiler<'e, 'l> {
    pub(super) fn new(env: &'e CompileEnv<'l>) -> Self {
        Self { env, errors: Vec::new(), used: 0 }
    }

    fn err(&mut self, offset: usize, message: impl Into<String>) {
        self.errors.push(ExprError { offset, message: message.into() });
    }

    /// Compiles a node; `scope` is `Some` inside `any()`/`all()`.
    pub(super) fn node(&mut self, ast: &Ast, scope: &mut Option<Scope>) -> Node {
        let mut many =
            |v: &[Ast]| -> Box<[Node]> { v.iter().map(|a| self.node(a, scope)).collect() };
        match &ast.kind {
            AstKind::And(v) => Node::And(many(v)),
            AstKind::Or(v) => Node::Or(many(v)),
            AstKind::Xor(v) => Node::Xor(many(v)),
            AstKind::Not(a) => Node::Not(Box::new(self.node(a, scope))),
            AstKind::Any(body) => self.quant(false, body, ast.span),
            AstKind::All(body) => self.quant(true, body, ast.span),
            AstKind::Pred(p) => self.pred(p, scope),
        }
    }

    fn quant(&mut self, all: bool, body: &Ast, span: Span) -> Node {
        let before = self.errors.len();
        let mut inner = Some(Scope::default());
        let body = self.node(body, &mut inner);
        let bound = inner.and_then(|s| s.arr).and_then(|(f, key, _)| array_src(f, key));
        match bound {
            Some(arr) => quantify(all, &arr, body),
            None => {
                if self.errors.len() == before {
                    let name = if all { "all" } else { "any" };
                    let message = format!(
                        "{name}() needs an array element such as `dns.domains[*]` in its condition"
                    );
                    self.err(span.start, message);
                }
                Node::Const(false)
            }
        }
    }

    /// Resolves the field side of `p`, reporting why it cannot be used.
    fn operand(&mut self, p: &Predicate, scope: &mut Option<Scope>) -> Option<Resolved> {
        let op = &p.lhs;
        let Some(field) = Field::from_name(&op.field) else {
            self.err(op.field_span.start, unknown_field(&op.field));
            return None;
        };
        self.used |= 1 << field as u32;
        let text = Operand { lower: false, ..op.clone() }.to_string();
        let name = field.name();
        if field.needs_geoip() && !self.env.has_geoip {
            self.err(op.field_span.start, format!("`{name}` needs a [geoip] database"));
            return None;
        }
        let at = op.span.start;
        let is_map = field.ty() == FieldType::Map;
        if op.key.is_some() && !is_map {
            self.err(at, format!("`{name}` is not a map: it takes no [\"key\"]"));
            return None;
        }
        let kind = match (field.ty(), op.star) {
            (FieldType::String | FieldType::Ip | FieldType::Int, true) => {
                return self.fail(at, format!("`{name}` is not an array: use it without [*]"));
            }
            (FieldType::String, false) => match scalar_src(field) {
                Some(src) => Kind::Str(src),
                None => return self.fail(at, format!("`{name}` is not supported in expressions")),
            },
            (FieldType::Ip, false) => Kind::Ip(IpSrc::SrcIp),
            (FieldType::Int, false) => {
                return self.fail(
                    at,
                    format!("`{name}` is a scalar integer, which expressions do not support"),
                );
            }
            (FieldType::Map, _) if op.key.is_none() => {
                let message =
                    format!("`{name}` is a map: use any({name}[\"attribute\"][*] == ...)");
                return self.fail(at, message);
            }
            (FieldType::Array(_) | FieldType::Map, false) => {
                return self.fail(at, format!("`{text}` is an array: use {}", array_hint(p)));
            }
            (FieldType::Array(Scalar::String) | FieldType::Map, true) => Kind::Str(StrSrc::Elem),
            (FieldType::Array(Scalar::Int), true) => Kind::Int,
            (FieldType::Array(Scalar::Ip), true) => Kind::Ip(IpSrc::Elem),
        };
        if op.star {
            self.bind(scope, field, op, &text)?;
        }
        if op.lower && !matches!(kind, Kind::Str(_)) {
            self.err(
                at,
                format!("lower() needs a string field; `{text}` is an {} field", kind.name()),
            );
            return None;
        }
        Some(Resolved { field, text, kind, lower: op.lower, span: op.span })
    }

    /// Records that `[*]` of `field` is used in the current `any()`/`all()`.
    fn bind(
        &mut self,
        scope: &mut Option<Scope>,
        field: Field,
        op: &Operand,
        text: &str,
    ) -> Option<()> {
        let Some(scope) = scope else {
            self.err(op.span.start, format!("`{text}` is only allowed inside any() or all()"));
            return None;
        };
        match &scope.arr {
            None => scope.arr = Some((field, op.key.clone(), text.to_owned())),
            Some((f, key, _)) if *f == field && *key == op.key => {}
            Some((_, _, first)) => {
                let message = format!(
                    "`{text}` and `{first}` are different arrays: one any() or all() ranges over one array"
                );
                self.err(op.span.start, message);
                return None;
            }
        }
        Some(())
    }

    fn pred(&mut self, p: &Predicate, scope: &mut Option<Scope>) -> Node {
        let Some(r) = self.operand(p, scope) else {
            // Still report problems on the right-hand side that do not depend on the field.
            match &p.op {
                PredOp::InList(name, span) => drop(self.list(name, *span)),
                PredOp::Matches(re, span) => drop(self.regex(re, *span, false)),
                _ => {}
            }
            return Node::Const(false);
        };
        let node = match r.kind {
            Kind::Str(src) => self.str_pred(&r, src, &p.op),
            Kind::Ip(src) => self.ip_pred(&r, src, &p.op),
            Kind::Int => self.int_pred(&r, &p.op),
        };
        node.unwrap_or(Node::Const(false))
    }

    fn str_pred(&mut self, r: &Resolved, src: StrSrc, op: &PredOp) -> Option<Node> {
        let fold = r.fold();
        // Extended e-mails (SPEC §5): equality and sets compare canonical forms.
        let variants = r.field == Field::IdentityEmail && self.env.email_variants;
        let canon = |s: String| if variants { canonical_email(&s) } else { s };
        let eq_src = if variants { StrSrc::EmailCanonical } else { src };
        if let (Some(code_src), false) = (code_src(r.field), fold) {
            if let Some(node) = self.code_pred(r, code_src, op) {
                return node;
            }
        }
        let test = match op {
            PredOp::Cmp(cmp, lit) => {
                let s = self.str_lit(r, lit)?;
                let test = match cmp {
                    CmpOp::Eq | CmpOp::Ne => StrTest::Eq(canon(s).into()),
                    ord => StrTest::Order(*ord, s.into()),
                };
                let src = if cmp.is_ordering() { src } else { eq_src };
                let node = Node::Str { src, fold, test };
                return Some(if *cmp == CmpOp::Ne { Node::Not(Box::new(node)) } else { node });
            }
            PredOp::InSet(items) => {
                let vals: Vec<_> = items.iter().filter_map(|l| self.str_lit(r, l)).collect();
                if vals.len() < items.len() {
                    return None;
                }
                let set = StrSet::new(vals.into_iter().map(canon));
                return Some(Node::Str { src: eq_src, fold, test: StrTest::In(set) });
            }
            PredOp::InList(name, span) => {
                let list = self.list(name, *span)?;
                match list.kind() {
                    ListKind::Domain if r.norm() == Normalize::Name => StrTest::DomainList(list),
                    ListKind::Email
                        if matches!(r.field, Field::IdentityEmail | Field::GroupsEmail) =>
                    {
                        StrTest::EmailList(list, variants)
                    }
                    ListKind::String => StrTest::StringList(list),
                    kind => return self.list_mismatch(r, name, kind, *span),
                }
            }
            PredOp::Matches(re, span) => {
                // Case-normalised fields match case-insensitively, like their `==`.
                let ci = !r.lower && r.norm() != Normalize::Exact;
                StrTest::Matches(Box::new(self.regex(re, *span, ci)?))
            }
            PredOp::Contains(s, _) => StrTest::Contains(r.needle(s).into()),
        };
        Some(Node::Str { src, fold, test })
    }

    /// `==`, `!=` and `in {}` on a GeoIP code field, compared as `Code`s; `None` when the
    /// operator needs the string form.
    fn code_pred(&mut self, r: &Resolved, src: CodeSrc, op: &PredOp) -> Option<Option<Node>> {
        // "" is the unknown code; anything else that is not two letters never matches.
        let code = |s: &str| if s.is_empty() { Some(None) } else { Code::new(s).map(Some) };
        let node = match op {
            PredOp::Cmp(cmp @ (CmpOp::Eq | CmpOp::Ne), lit) => {
                let Some(s) = self.str_lit(r, lit) else { return Some(None) };
                let eq = match code(&s) {
                    Some(c) => Node::Code { src, test: CodeTest::Eq(c) },
                    None => Node::Const(false),
                };
                if *cmp == CmpOp::Ne { Node::Not(Box::new(eq)) } else { eq }
            }
            PredOp::InSet(items) => {
                let vals: Vec<_> = items.iter().filter_map(|l| self.str_lit(r, l)).collect();
                if vals.len() < items.len() {
                    return Some(None);
                }
                let set = vals.iter().filter_map(|s| code(s)).collect();
                Node::Code { src, test: CodeTest::In(set) }
            }
            _ => return None,
        };
        Some(Some(node))
    }

    fn ip_pred(&mut self, r: &Resolved, src: IpSrc, op: &PredOp) -> Option<Node> {
        let test = match op {
            PredOp::Cmp(cmp, _) if cmp.is_ordering() => {
                let sym = cmp.symbol();
                return self
                    .fail(r.span.start, format!("`{sym}` does not apply to {}", r.describe()));
            }
            PredOp::Cmp(cmp, lit) => {
                let ip = match &lit.value {
                    Value::Ip(ip) => ip.to_canonical(),
                    Value::Cidr(net) => {
                        let message = format!(
                            "cannot compare {} with a network: use `{} in {{{net}}}`",
                            r.describe(),
                            r.text
                        );
                        return self.fail(lit.span.start, message);
                    }
                    other => return self.mismatch(r, lit, other),
                };
                let node = Node::Ip { src, test: IpTest::Eq(ip) };
                return Some(if *cmp == CmpOp::Ne { Node::Not(Box::new(node)) } else { node });
            }
            PredOp::InSet(items) => {
                let mut nets = Vec::with_capacity(items.len());
                for lit in items {
                    match &lit.value {
                        Value::Ip(ip) => nets.push((*ip).into()),
                        Value::Cidr(net) => nets.push(*net),
                        other => drop(self.mismatch(r, lit, other)),
                    }
                }
                if nets.len() < items.len() {
                    return None;
                }
                IpTest::In(Box::new(IpRanges::new(nets)))
            }
            PredOp::InList(name, span) => {
                let list = self.list(name, *span)?;
                match list.kind() {
                    ListKind::Ip => IpTest::List(list),
                    kind => return self.list_mismatch(r, name, kind, *span),
                }
            }
            PredOp::Matches(..) | PredOp::Contains(..) => return self.not_string(r, op),
        };
        Some(Node::Ip { src, test })
    }

    fn int_pred(&mut self, r: &Resolved, op: &PredOp) -> Option<Node> {
        let test = match op {
            PredOp::Cmp(cmp, lit) => match &lit.value {
                Value::Int(n) => IntTest::Cmp(*cmp, *n),
                other => return self.mismatch(r, lit, other),
            },
            PredOp::InSet(items) => {
                let mut ranges = Vec::with_capacity(items.len());
                for lit in items {
                    match &lit.value {
                        Value::Int(n) => ranges.push((*n, *n)),
                        Value::Range(lo, hi) => ranges.push((*lo, *hi)),
                        other => drop(self.mismatch(r, lit, other)),
                    }
                }
                if ranges.len() < items.len() {
                    return None;
                }
                IntTest::In(Ranges::new(ranges))
            }
            PredOp::InList(name, span) => {
                let list = self.list(name, *span)?;
                return self.list_mismatch(r, name, list.kind(), *span);
            }
            PredOp::Matches(..) | PredOp::Contains(..) => return self.not_string(r, op),
        };
        Some(Node::Int(test))
    }

    fn fail<T>(&mut self, offset: usize, message: String) -> Option<T> {
        self.err(offset, message);
        None
    }

    /// A string literal for a string operand, normalised; else a type error.
    fn str_lit(&mut self, r: &Resolved, lit: &Lit) -> Option<String> {
        match &lit.value {
            Value::Str(s) => Some(r.literal(s)),
            other => {
                let message = format!(
                    "cannot compare {} with {} (strings are quoted: \"{other}\")",
                    r.describe(),
                    other.describe()
                );
                self.fail(lit.span.start, message)
            }
        }
    }

    fn mismatch(&mut self, r: &Resolved, lit: &Lit, value: &Value) -> Option<Node> {
        self.fail(
            lit.span.start,
            format!("cannot compare {} with {}", r.describe(), value.describe()),
        )
    }

    fn not_string(&mut self, r: &Resolved, op: &PredOp) -> Option<Node> {
        let word = if matches!(op, PredOp::Matches(..)) { "matches" } else { "contains" };
        self.fail(
            r.span.start,
            format!("`{word}` applies to string fields, not to {}", r.describe()),
        )
    }

    fn list_mismatch(
        &mut self,
        r: &Resolved,
        name: &str,
        kind: ListKind,
        span: Span,
    ) -> Option<Node> {
        let (what, hint) = list_hint(kind);
        let message = format!(
            "list `${name}` is {what} list and cannot be used with {}: {hint}",
            r.describe()
        );
        self.fail(span.start, message)
    }

    fn list(&mut self, name: &str, span: Span) -> Option<Arc<List>> {
        let found = self.env.lists.get(name).cloned();
        if found.is_none() {
            self.err(span.start, unknown_list(name, self.env.lists.keys().map(String::as_str)));
        }
        found
    }

    fn regex(&mut self, pattern: &str, span: Span, case_insensitive: bool) -> Option<Regex> {
        let built = RegexBuilder::new(pattern)
            .case_insensitive(case_insensitive)
            .size_limit(self.env.limits.regex_size)
            .build();
        match built {
            Ok(re) => Some(re),
            Err(regex::Error::CompiledTooBig(limit)) => {
                let message = format!("regex is too big: it compiles to more than {limit} bytes");
                self.fail(span.start, message)
            }
            Err(e) => {
                // The syntax error text is a multi-line diagram; keep its last line.
                let text = e.to_string();
                let why =
                    text.lines().rev().find_map(|l| l.strip_prefix("error: ")).unwrap_or(&text);
                self.fail(span.start, format!("invalid regex: {why}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{alice, env, errors, errors_in, kind_lists, ok, query};
    use super::super::{Limits, compile};
    use super::*;
    use crate::policy::fields::Phase;

    fn one(src: &str) -> (usize, String) {
        let mut e = errors(src);
        assert_eq!(e.len(), 1, "{src}: {e:?}");
        e.remove(0)
    }

    #[test]
    fn name_errors_point_at_the_name() {
        assert_eq!(
            one(r#"dns.fqdnn == "a""#),
            (0, "unknown field `dns.fqdnn` (did you mean `dns.fqdn`?)".to_owned())
        );
        assert_eq!(one(r#"lower( dns.nme) == "a""#), (7, "unknown field `dns.nme`".to_owned()));
        assert_eq!(
            one("dns.fqdn in $adz"),
            (12, "unknown list `$adz` (did you mean `$ads`?)".to_owned())
        );
        // The right-hand side is still checked when the field is unknown.
        assert_eq!(
            errors("x in $nope"),
            [(0, "unknown field `x`".to_owned()), (5, "unknown list `$nope`".to_owned())]
        );
    }

    #[test]
    fn type_errors_point_at_the_literal_or_operand() {
        for (src, offset, message) in [
            (
                r#"dns.src_ip == "1.2.3.4""#,
                14,
                "cannot compare ip field `dns.src_ip` with a string",
            ),
            (
                "dns.fqdn == 1",
                12,
                "cannot compare string field `dns.fqdn` with an integer (strings are quoted: \"1\")",
            ),
            (
                r#"any(dns.content_category[*] == "1")"#,
                31,
                "cannot compare integer field `dns.content_category[*]` with a string",
            ),
            (
                "dns.src_ip == 10.0.0.0/8",
                14,
                "cannot compare ip field `dns.src_ip` with a network: use `dns.src_ip in {10.0.0.0/8}`",
            ),
            ("dns.src_ip < 10.0.0.1", 0, "`<` does not apply to ip field `dns.src_ip`"),
            (
                r#"dns.src_ip matches "1""#,
                0,
                "`matches` applies to string fields, not to ip field `dns.src_ip`",
            ),
            (
                r#"any(dns.content_category[*] contains "1")"#,
                4,
                "`contains` applies to string fields, not to integer field `dns.content_category[*]`",
            ),
            (
                r#"dns.src_ip in {10.0.0.0/8 "x"}"#,
                26,
                "cannot compare ip field `dns.src_ip` with a string",
            ),
            (
                "any(dns.content_category[*] in {1 10.0.0.1})",
                34,
                "cannot compare integer field `dns.content_category[*]` with an ip address",
            ),
            (
                "lower(dns.src_ip) == 1.2.3.4",
                0,
                "lower() needs a string field; `dns.src_ip` is an ip field",
            ),
        ] {
            assert_eq!(one(src), (offset, message.to_owned()), "{src}");
        }
    }

    #[test]
    fn arrays_need_any_or_all() {
        for (src, offset, message) in [
            (
                r#"dns.domains == "x""#,
                0,
                r#"`dns.domains` is an array: use any(dns.domains[*] == "x")"#,
            ),
            (
                r#"not lower(dns.response.cname) in {"a" "b"}"#,
                4,
                r#"`dns.response.cname` is an array: use any(lower(dns.response.cname[*]) in {"a" "b"})"#,
            ),
            (
                r#"identity.saml_attributes == "x""#,
                0,
                r#"`identity.saml_attributes` is a map: use any(identity.saml_attributes["attribute"][*] == ...)"#,
            ),
            (
                r#"identity.saml_attributes["d"] == "x""#,
                0,
                r#"`identity.saml_attributes["d"]` is an array: use any(identity.saml_attributes["d"][*] == "x")"#,
            ),
            (
                r#"dns.domains[*] == "x""#,
                0,
                "`dns.domains[*]` is only allowed inside any() or all()",
            ),
            (r#"any(dns.fqdn[*] == "x")"#, 4, "`dns.fqdn` is not an array: use it without [*]"),
            (
                r#"any(dns.domains["k"][*] == "x")"#,
                4,
                r#"`dns.domains` is not a map: it takes no ["key"]"#,
            ),
            (
                r#"any(dns.fqdn == "x")"#,
                0,
                "any() needs an array element such as `dns.domains[*]` in its condition",
            ),
            (
                r#"all(dns.domains[*] == "x" or dns.response.cname[*] == "x")"#,
                29,
                "`dns.response.cname[*]` and `dns.domains[*]` are different arrays: one any() or all() ranges over one array",
            ),
        ] {
            assert_eq!(one(src), (offset, message.to_owned()), "{src}");
        }
        let long = format!("dns.domains in {{{}}}", ["\"example.com\""; 10].join(" "));
        assert_eq!(one(&long).1, "`dns.domains` is an array: use any(dns.domains[*] in ...)");
    }

    #[test]
    fn nested_quantifiers_each_bind_their_own_array() {
        let e = ok(r#"any(dns.domains[*] == "com" and any(dns.content_category[*] == 7))"#);
        let id = alice();
        assert!(e.eval(&query(Some(&id), None)));
        let e = ok(r#"any(dns.domains[*] == "com" and all(dns.content_category[*] == 7))"#);
        assert!(!e.eval(&query(Some(&id), None)));
    }

    #[test]
    fn every_type_error_is_reported_at_once() {
        let src =
            r#"dns.src_ip == "a" and dns.fqdn == 1 or dns.nope == "x" and dns.domains == "y""#;
        let offsets: Vec<_> = errors(src).into_iter().map(|(o, _)| o).collect();
        assert_eq!(offsets, [14, 34, 39, 59]);
    }

    #[test]
    fn lists_go_with_fields_of_their_kind() {
        for src in [
            "dns.fqdn in $ads",
            "any(dns.domains[*] in $ads)",
            "all(dns.domains[*] in $ads)",
            "any(dns.response.cname[*] in $ads)",
            "any(dns.response.mx[*] in $ads)",
            "any(dns.response.ptr[*] in $ads)",
            "dns.src_ip in $bad_ips",
            "any(dns.resolved_ips[*] in $bad_ips)",
            "identity.email in $vips",
            "any(identity.groups.email[*] in $vips)",
            "dns.fqdn in $words",
            "identity.name in $words",
            "any(identity.saml_attributes[\"d\"][*] in $words)",
            "dns.query_rtype in $words",
        ] {
            ok(src);
        }
        let domain_hint =
            "domain lists go with dns.fqdn, dns.domains[*] and dns.response.cname/mx/ptr[*]";
        for (src, offset, message) in [
            ("identity.name in $ads", 17, format!("list `$ads` is a domain list and cannot be used with string field `identity.name`: {domain_hint}")),
            ("any(dns.response.txt[*] in $ads)", 27, format!("list `$ads` is a domain list and cannot be used with string field `dns.response.txt[*]`: {domain_hint}")),
            ("dns.src_ip in $ads", 14, format!("list `$ads` is a domain list and cannot be used with ip field `dns.src_ip`: {domain_hint}")),
            ("dns.fqdn in $bad_ips", 12, "list `$bad_ips` is an ip list and cannot be used with string field `dns.fqdn`: ip lists go with dns.src_ip and dns.resolved_ips[*]".to_owned()),
            ("dns.fqdn in $vips", 12, "list `$vips` is an e-mail list and cannot be used with string field `dns.fqdn`: e-mail lists go with identity.email and identity.groups.email[*]".to_owned()),
            ("dns.src_ip in $words", 14, "list `$words` is a string list and cannot be used with ip field `dns.src_ip`: string lists go with string fields".to_owned()),
            ("any(dns.content_category[*] in $words)", 31, "list `$words` is a string list and cannot be used with integer field `dns.content_category[*]`: string lists go with string fields".to_owned()),
        ] {
            assert_eq!(one(src), (offset, message), "{src}");
        }
    }

    #[test]
    fn regexes_are_checked_and_limited() {
        let (offset, message) = one(r#"dns.fqdn matches "(abc""#);
        assert_eq!((offset, message.as_str()), (17, "invalid regex: unclosed group"));
        let lists = kind_lists();
        let mut small = env(&lists, false);
        small.limits = Limits { regex_size: 1000, ..Limits::default() };
        let e = errors_in(r#"dns.fqdn matches "\w{1000}""#, &small);
        assert_eq!(e, [(17, "regex is too big: it compiles to more than 1000 bytes".to_owned())]);
    }

    #[test]
    fn geo_fields_need_a_database() {
        let lists = kind_lists();
        let mut no_geo = env(&lists, false);
        no_geo.has_geoip = false;
        let e = errors_in(
            r#"dns.src.geo.country == "PT" or any(dns.dst.geo.continent[*] == "EU")"#,
            &no_geo,
        );
        assert_eq!(
            e,
            [
                (0, "`dns.src.geo.country` needs a [geoip] database".to_owned()),
                (35, "`dns.dst.geo.continent` needs a [geoip] database".to_owned()),
            ]
        );
        assert!(compile(r#"dns.fqdn == "a""#, &no_geo).is_ok());
    }

    #[test]
    fn extended_emails_compare_canonical_forms_when_asked() {
        let lists = kind_lists();
        let id = alice();
        let facts = query(Some(&id), None);
        for (src, exact, variants) in [
            (r#"identity.email == "alicesmith@example.com""#, false, true),
            (r#"identity.email == "Alice.Smith+other@example.com""#, false, true),
            (r#"identity.email == "alice.smith+dev@example.com""#, true, true),
            (r#"identity.email != "alicesmith@example.com""#, true, false),
            (r#"identity.email in {"a@b.c" "alicesmith@example.com"}"#, false, true),
            (r#"identity.email == "alicesmith@other.com""#, false, false),
            // Regexes see the address itself.
            (r#"identity.email matches "^alicesmith@""#, false, false),
        ] {
            let plain = compile(src, &env(&lists, false)).map(|e| e.eval(&facts));
            let wide = compile(src, &env(&lists, true)).map(|e| e.eval(&facts));
            assert_eq!((plain, wide), (Ok(exact), Ok(variants)), "{src}");
        }
    }

    #[test]
    fn phase_and_uses_follow_the_fields() {
        let e = ok(r#"dns.fqdn == "a" and any(dns.resolved_ips[*] in {10.0.0.0/8})"#);
        assert_eq!(e.phase(), Phase::Post);
        assert!(e.uses(Field::Fqdn) && e.uses(Field::ResolvedIps) && !e.uses(Field::Domains));
        let e = ok(r#"any(dns.domains[*] == "a") or identity.email == "x""#);
        assert_eq!(e.phase(), Phase::Pre);
        assert!(e.uses(Field::Domains) && e.uses(Field::IdentityEmail));
        assert_eq!(ok("").phase(), Phase::Pre);
        assert!(Field::ALL.iter().all(|&f| !ok(" ").uses(f)));
    }

    #[test]
    fn domain_suffix_shapes_compile_to_one_call() {
        assert!(matches!(ok(r#"any(dns.domains[*] == "a.com")"#).root, Node::DomainsEq(_)));
        assert!(matches!(ok("any(dns.domains[*] in $ads)").root, Node::DomainsInList(_)));
        let e = ok(r#"any(dns.domains[*] in $ads or dns.domains[*] == "x.com")"#);
        assert!(
            matches!(&e.root, Node::Or(k) if matches!(&k[..], [Node::DomainsInList(_), Node::DomainsEq(_)]))
        );
        assert!(matches!(
            ok(r#"any(dns.domains[*] in {"a.com" "b.com"})"#).root,
            Node::DomainsIn(_)
        ));
        assert!(matches!(
            ok("any(dns.content_category[*] in {1 2})").root,
            Node::Categories { .. }
        ));
        assert!(matches!(
            ok("all(dns.security_category[*] > 2)").root,
            Node::Categories { all: true, .. }
        ));
        assert!(matches!(ok(r#"dns.src.geo.country in {"PT"}"#).root, Node::Code { .. }));
        let e = ok(r#"any(dns.dst.geo.continent[*] != "EU")"#);
        assert!(matches!(&e.root, Node::Quant { body, .. } if matches!(&**body, Node::Not(_))));
        let e = ok(r#"any(identity.groups.name[*] in {"a" "b"})"#);
        assert!(matches!(e.root, Node::QuantStr { all: false, .. }));
        // all() tests each element exactly.
        assert!(matches!(ok("all(dns.domains[*] in $ads)").root, Node::QuantStr { all: true, .. }));
        let e = ok(r#"any(lower(identity.groups.name[*]) == "x")"#);
        assert!(matches!(e.root, Node::Quant { all: false, .. }));
        let e = ok(r#"all(dns.domains[*] contains "a" and dns.domains[*] contains "b")"#);
        assert!(matches!(&e.root, Node::And(k) if k.len() == 2));
    }
}
