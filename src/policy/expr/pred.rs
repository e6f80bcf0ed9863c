//! Checking and lowering one predicate (`field OP value`) once its field is resolved.
//!
//! This is where a literal meets its field: type errors are found, literals are
//! normalised the way the facts are (or replaced by canonical e-mails, or by GeoIP
//! `Code`s), sets are built, lists are checked for kind and regexes are compiled, each
//! into the leaf node that tests exactly that.

use std::sync::Arc;

use regex::bytes::{Regex, RegexBuilder};

use super::eval::Pattern;

use super::ast::{CmpOp, Lit, PredOp, Predicate, Span, Value};
use super::compile::{Compiler, Scope};
use super::eval::{
    ArrSrc, CodeSrc, CodeTest, IntTest, IpSrc, IpTest, Node, StrSrc, StrTest, Wildcard,
};
use super::names::{list_hint, unknown_list};
use super::sets::{IpRanges, Ranges, StrSet};
use crate::geoip::Code;
use crate::identity::canonical_email;
use crate::lists::{List, ListKind};
use crate::policy::fields::{self, Field, Normalize};

/// A checked operand.
pub(super) struct Resolved {
    pub(super) field: Field,
    /// As written, without `lower()`: `dns.domains[*]`, for messages.
    pub(super) text: String,
    pub(super) kind: Kind,
    pub(super) lower: bool,
    pub(super) span: Span,
    /// `f[N]`: the array and the element compared.
    pub(super) index: Option<(ArrSrc, u32)>,
}

/// What an operand's values are, and where they come from.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Str(StrSrc),
    Ip(IpSrc),
    Int,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
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
    /// `lower()` the values are lowercase, so the literal is lowercased too. A name in
    /// Unicode becomes its ASCII (punycode) form, as query names are; `None` when it has
    /// none.
    fn literal(&self, s: &str) -> Option<String> {
        Some(match (self.lower, self.norm()) {
            (_, Normalize::Name) => fields::normalize_name(s).ok()?,
            (true, _) => s.to_ascii_lowercase(),
            (false, n) => fields::normalize(n, s),
        })
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

fn code_src(field: Field) -> Option<CodeSrc> {
    match field {
        Field::SrcGeoCountry => Some(CodeSrc::SrcCountry),
        Field::SrcGeoContinent => Some(CodeSrc::SrcContinent),
        Field::DstGeoCountry | Field::DstGeoContinent => Some(CodeSrc::Elem),
        _ => None,
    }
}

impl Compiler<'_, '_> {
    /// Compiles `p`; `scope` is `Some` inside `any()`/`all()`.
    pub(super) fn pred(&mut self, p: &Predicate, scope: &mut Option<Scope>) -> Node {
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
        let Some(node) = node else {
            return Node::Const(false);
        };
        match r.index {
            // `f[N] != x` is true when the array has no element N, as wirefilter's `!=` of
            // a missing value is; every other comparison is false.
            Some((arr, i)) => {
                let missing = matches!(p.op, PredOp::Cmp(CmpOp::Ne, _));
                Node::index(arr, i, node, missing)
            }
            None => node,
        }
    }

    fn str_pred(&mut self, r: &Resolved, src: StrSrc, op: &PredOp) -> Option<Node> {
        let fold = r.fold();
        // Extended e-mails (SPEC §5): equality and sets compare canonical forms.
        let variants = r.field == Field::IdentityEmail && self.env.email_variants;
        let canon = |s: String| if variants { canonical_email(&s) } else { s };
        let eq_src = if variants {
            StrSrc::EmailCanonical
        } else {
            src
        };
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
                return Some(if *cmp == CmpOp::Ne {
                    Node::Not(Box::new(node))
                } else {
                    node
                });
            }
            PredOp::InSet(items) => {
                let vals: Vec<_> = items.iter().filter_map(|l| self.str_lit(r, l)).collect();
                if vals.len() < items.len() {
                    return None;
                }
                let set = StrSet::new(vals.into_iter().map(canon));
                return Some(Node::Str {
                    src: eq_src,
                    fold,
                    test: StrTest::In(set),
                });
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
                StrTest::Matches(Box::new(Pattern::new(self.regex(re, *span, ci)?, ci)))
            }
            PredOp::Contains(s, span) if r.norm() == Normalize::Name && !s.is_ascii() => {
                // Names are held in punycode, and a piece of a Unicode label has no
                // punycode of its own: converting the needle would silently never match.
                let hint = fields::normalize_name(s)
                    .map(|a| format!(" (as a whole label it is `{a}`)"))
                    .unwrap_or_default();
                let message = format!(
                    "`contains` on {} needs an ASCII needle: names are held in punycode{hint}; \
                     compare whole names with `==`, `in {{}}` or a list, which take Unicode",
                    r.text
                );
                return self.fail(span.start, message);
            }
            PredOp::Contains(s, _) => StrTest::Contains(r.needle(s).into()),
            PredOp::Wildcard {
                pattern,
                span,
                strict,
            } => match Wildcard::new(pattern, !strict) {
                Ok(w) => StrTest::Wildcard(Box::new(w)),
                Err(why) => return self.fail(span.start, why),
            },
            PredOp::BitAnd(_) => return self.not_int(r),
        };
        Some(Node::Str { src, fold, test })
    }

    /// `==`, `!=` and `in {}` on a GeoIP code field, compared as `Code`s; `None` when the
    /// operator needs the string form.
    fn code_pred(&mut self, r: &Resolved, src: CodeSrc, op: &PredOp) -> Option<Option<Node>> {
        // "" is the unknown code; anything else that is not two letters never matches.
        let code = |s: &str| {
            if s.is_empty() {
                Some(None)
            } else {
                Code::new(s).map(Some)
            }
        };
        let node = match op {
            PredOp::Cmp(cmp @ (CmpOp::Eq | CmpOp::Ne), lit) => {
                let Some(s) = self.str_lit(r, lit) else {
                    return Some(None);
                };
                let eq = match code(&s) {
                    Some(c) => Node::Code {
                        src,
                        test: CodeTest::Eq(c),
                    },
                    None => Node::Const(false),
                };
                if *cmp == CmpOp::Ne {
                    Node::Not(Box::new(eq))
                } else {
                    eq
                }
            }
            PredOp::InSet(items) => {
                let vals: Vec<_> = items.iter().filter_map(|l| self.str_lit(r, l)).collect();
                if vals.len() < items.len() {
                    return Some(None);
                }
                let set = vals.iter().filter_map(|s| code(s)).collect();
                Node::Code {
                    src,
                    test: CodeTest::In(set),
                }
            }
            _ => return None,
        };
        Some(Some(node))
    }

    fn ip_pred(&mut self, r: &Resolved, src: IpSrc, op: &PredOp) -> Option<Node> {
        let test = match op {
            // Addresses order within their family (wirefilter): a folded IPv4-mapped
            // address is IPv4, and an IPv4 address is neither below nor above an IPv6 one.
            PredOp::Cmp(
                cmp,
                Lit {
                    value: Value::Ip(ip),
                    ..
                },
            ) if cmp.is_ordering() => IpTest::In(Box::new(IpRanges::ordering(*cmp, *ip))),
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
                let node = Node::Ip {
                    src,
                    test: IpTest::Eq(ip),
                };
                return Some(if *cmp == CmpOp::Ne {
                    Node::Not(Box::new(node))
                } else {
                    node
                });
            }
            PredOp::InSet(items) => {
                let mut nets = Vec::with_capacity(items.len());
                for lit in items {
                    match &lit.value {
                        Value::Ip(ip) => nets.push((*ip, *ip)),
                        Value::IpRange(lo, hi) => nets.push((*lo, *hi)),
                        Value::Cidr(net) => {
                            if net.addr() != net.network() {
                                // wirefilter refuses this; a warning keeps configurations
                                // that load today loading.
                                let message = format!(
                                    "`{net}` has host bits set: it is read as `{}` (Cloudflare refuses it)",
                                    net.trunc()
                                );
                                self.warn(lit.span.start, message);
                            }
                            nets.push((net.network(), net.broadcast()));
                        }
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
            PredOp::Matches(..) | PredOp::Contains(..) | PredOp::Wildcard { .. } => {
                return self.not_string(r, op);
            }
            PredOp::BitAnd(_) => return self.not_int(r),
        };
        Some(Node::Ip { src, test })
    }

    fn int_pred(&mut self, r: &Resolved, op: &PredOp) -> Option<Node> {
        let test = match op {
            PredOp::Cmp(cmp, lit) => match &lit.value {
                Value::Int(n) => IntTest::Cmp(*cmp, *n),
                other => return self.mismatch(r, lit, other),
            },
            PredOp::BitAnd(lit) => match &lit.value {
                Value::Int(n) => IntTest::BitAnd(*n),
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
                // Values are u32 (category ids): what lies outside can never match.
                let clamp = |n: i64| n.clamp(0, i64::from(u32::MAX)) as u32;
                let ranges = ranges
                    .into_iter()
                    .filter(|&(lo, hi)| hi >= 0 && lo <= i64::from(u32::MAX))
                    .map(|(lo, hi)| (clamp(lo), clamp(hi)))
                    .collect();
                IntTest::In(Ranges::new(ranges))
            }
            PredOp::InList(name, span) => {
                let list = self.list(name, *span)?;
                return self.list_mismatch(r, name, list.kind(), *span);
            }
            PredOp::Matches(..) | PredOp::Contains(..) | PredOp::Wildcard { .. } => {
                return self.not_string(r, op);
            }
        };
        Some(Node::Int(test))
    }

    pub(super) fn fail<T>(&mut self, offset: usize, message: String) -> Option<T> {
        self.err(offset, message);
        None
    }

    /// A string literal for a string operand, normalised; else a type error.
    fn str_lit(&mut self, r: &Resolved, lit: &Lit) -> Option<String> {
        match &lit.value {
            Value::Str(s) => match r.literal(s) {
                Some(v) => Some(v),
                None => {
                    let message = format!(
                        "`{s}` is not a valid internationalised name (IDNA): {} values are names in ASCII (punycode) form",
                        r.text
                    );
                    self.fail(lit.span.start, message)
                }
            },
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

    fn not_int(&mut self, r: &Resolved) -> Option<Node> {
        self.fail(
            r.span.start,
            format!("`&` applies to integer fields, not to {}", r.describe()),
        )
    }

    fn not_string(&mut self, r: &Resolved, op: &PredOp) -> Option<Node> {
        let word = match op {
            PredOp::Matches(..) => "matches",
            PredOp::Wildcard { strict: true, .. } => "strict wildcard",
            PredOp::Wildcard { .. } => "wildcard",
            _ => "contains",
        };
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
            self.err(
                span.start,
                unknown_list(name, self.env.lists.keys().map(String::as_str)),
            );
        }
        found
    }

    fn regex(&mut self, pattern: &str, span: Span, case_insensitive: bool) -> Option<Regex> {
        // wirefilter's dialect: ASCII classes and case folding, `.` any byte but `\n`.
        let built = RegexBuilder::new(pattern)
            .unicode(false)
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
                let why = text
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("error: "))
                    .unwrap_or(&text);
                self.fail(span.start, format!("invalid regex: {why}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{alice, env, errors, errors_in, kind_lists, ok, query};
    use super::super::{Limits, compile};

    fn one(src: &str) -> (usize, String) {
        let mut e = errors(src);
        assert_eq!(e.len(), 1, "{src}: {e:?}");
        e.remove(0)
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
            (
                "dns.src_ip & 1",
                0,
                "`&` applies to integer fields, not to ip field `dns.src_ip`",
            ),
            (
                r#"dns.src_ip wildcard "1*""#,
                0,
                "`wildcard` applies to string fields, not to ip field `dns.src_ip`",
            ),
            (
                r#"dns.fqdn wildcard "a**""#,
                18,
                "invalid wildcard: `**` (one `*` already matches any run)",
            ),
            (
                r#"any(dns.content_category[*] == 1.2.3.4)"#,
                31,
                "cannot compare integer field `dns.content_category[*]` with an ip address",
            ),
            (
                "dns.src_ip[0] == 1.2.3.4",
                0,
                "`dns.src_ip` is not an array: use it without an index",
            ),
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
    fn unicode_name_literals_compare_as_punycode() {
        let facts = |fqdn| super::super::QueryFacts {
            fqdn,
            ..query(None, None)
        };
        let e = ok(r#"dns.fqdn == "BÜCHER.example.""#);
        assert!(e.eval(&facts("xn--bcher-kva.example")));
        assert!(!e.eval(&facts("bucher.example")));
        let e = ok(r#"any(dns.domains[*] in {"a.test" "日本。example"})"#);
        assert!(e.eval(&facts("www.xn--wgv71a.example")));
        let e = ok(r#"dns.fqdn in {"bücher.日本.example"}"#);
        assert!(e.eval(&facts("xn--bcher-kva.xn--wgv71a.example")));
        // A literal with no ASCII form, and a piece of a Unicode label, are errors.
        let (at, message) = one(r#"dns.fqdn == "xn--ü.example""#);
        assert_eq!(at, 12);
        assert!(
            message.contains("not a valid internationalised name"),
            "{message}"
        );
        let (at, message) = one(r#"dns.fqdn contains "bücher""#);
        assert_eq!(at, 18);
        assert!(message.contains("`xn--bcher-kva`"), "{message}");
        ok(r#"dns.fqdn contains "xn--bcher-kva""#);
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
        assert_eq!(
            (offset, message.as_str()),
            (17, "invalid regex: unclosed group")
        );
        let lists = kind_lists();
        let mut small = env(&lists, false);
        small.limits = Limits {
            regex_size: 1000,
            ..Limits::default()
        };
        let e = errors_in(r#"dns.fqdn matches "\w{1000}""#, &small);
        assert_eq!(
            e,
            [(
                17,
                "regex is too big: it compiles to more than 1000 bytes".to_owned()
            )]
        );
    }

    #[test]
    fn extended_emails_compare_canonical_forms_when_asked() {
        let lists = kind_lists();
        let id = alice();
        let facts = query(Some(&id), None);
        for (src, exact, variants) in [
            (r#"identity.email == "alicesmith@example.com""#, false, true),
            (
                r#"identity.email == "Alice.Smith+other@example.com""#,
                false,
                true,
            ),
            (
                r#"identity.email == "alice.smith+dev@example.com""#,
                true,
                true,
            ),
            (r#"identity.email != "alicesmith@example.com""#, true, false),
            (
                r#"identity.email in {"a@b.c" "alicesmith@example.com"}"#,
                false,
                true,
            ),
            (r#"identity.email == "alicesmith@other.com""#, false, false),
            // Regexes see the address itself.
            (r#"identity.email matches "^alicesmith@""#, false, false),
        ] {
            let plain = compile(src, &env(&lists, false)).map(|e| e.eval(&facts));
            let wide = compile(src, &env(&lists, true)).map(|e| e.eval(&facts));
            assert_eq!((plain, wide), (Ok(exact), Ok(variants)), "{src}");
        }
    }
}
