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
//! - Literals are read as wirefilter 0.7.0 reads them (issue 14): strings take `\"`, `\\`,
//!   `\xHH` and `\OOO` and refuse any other escape; the string after `matches` keeps its
//!   backslashes for the regex engine (only `\"` loses one), so `"\d+\.example\.com"` is
//!   that regex and `"\\."` a backslash then any character; raw strings (`r"..."`,
//!   `r#"..."#`) are taken as written; integers are 64-bit, `0x` hex, `0`-prefixed octal or
//!   negative. Regexes are ASCII (Unicode off), as wirefilter's.
//! - Sets take whitespace- or comma-separated items; `{}` is allowed and matches nothing.
//! - IPv4-mapped addresses fold into IPv4 everywhere: `::ffff:192.0.2.1` equals
//!   `192.0.2.1`, and the part of an IPv6 set item inside `::ffff:0:0/96` covers the IPv4
//!   addresses it maps (`{::/0}` holds every IPv4 client). wirefilter does not fold.
//! - Strings order by bytes; IPs order within their family (an IPv4 address is neither
//!   below nor above an IPv6 one, as in wirefilter).
//! - `f[N]` compares element N of an array; with no such element the comparison is
//!   false, and `!=` true (wirefilter's default for a missing value).
//! - `wildcard` (ASCII case-insensitive) and `strict wildcard` match the whole value, `*`
//!   any run; `& N` tests bits of an integer.
//! - A network with host bits set (`10.1.2.3/8`) is read as its network with a warning
//!   ([`Expr::warnings`]); wirefilter refuses it, and refusing would break loading configs.
//! - A value the query does not have (no identity, no location, no GeoIP answer) is `""`:
//!   `identity.email == "x"` is false and `identity.email != "x"` true for an unknown
//!   client, and `dns.location == ""` means "at no known location". A GeoIP literal that is
//!   not two letters (`"PRT"`) never matches.
//! - `any(dns.domains[*] in $list)` — alone, or as a branch of an `or` inside `any()` —
//!   is one `DomainList::matches_suffix` call, so `@@` exceptions cover the whole name.
//!   Any other use of a domain list (`dns.fqdn in $l`, `all(...)`, a compound condition)
//!   tests each value with `matches_exact`.
//!
//! Errors carry byte offsets into the expression: the first syntax error alone, or every
//! name and type error of a well-formed expression. [`crate::diag::line_col`] turns them
//! into positions within a policy file.

pub mod ast;
mod compile;
mod eval;
mod lex;
mod names;
mod parse;
mod pred;
mod sets;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use self::ast::AstKind;
use self::eval::{Elem, Node};
pub use self::parse::parse;
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
        Self {
            max_depth: 64,
            regex_size: 1 << 20,
        }
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
    /// What compiled but deserves a word, at byte offsets of `source`.
    warnings: Box<[ExprError]>,
}

/// Adds to `out` names one of which `node` requires (see [`Expr::required_names`]);
/// false if it requires none. The root name (`""`) is never a gate: it has no labels to
/// probe with.
fn required<'a>(node: &'a Node, out: &mut Vec<(&'a str, bool)>) -> bool {
    use eval::{StrSrc, StrTest};
    match node {
        Node::Str {
            src: StrSrc::Fqdn,
            fold: false,
            test: StrTest::Eq(x),
        } if !x.is_empty() => {
            out.push((x, true));
            true
        }
        Node::Str {
            src: StrSrc::Fqdn,
            fold: false,
            test: StrTest::In(set),
        } if set.items().iter().all(|x| !x.is_empty()) => {
            out.extend(set.items().into_iter().map(|x| (x, true)));
            true
        }
        Node::DomainsEq(x) if !x.is_empty() => {
            out.push((x, false));
            true
        }
        Node::DomainsIn(set) if set.items().iter().all(|x| !x.is_empty()) => {
            out.extend(set.items().into_iter().map(|x| (x, false)));
            true
        }
        // One requiring clause is enough for the whole `and`; take the first.
        Node::And(v) => v.iter().any(|n| {
            let mark = out.len();
            required(n, out) || {
                out.truncate(mark);
                false
            }
        }),
        // Every branch of an `or` must require names.
        Node::Or(v) => {
            let mark = out.len();
            v.iter().all(|n| required(n, out)) || {
                out.truncate(mark);
                false
            }
        }
        _ => false,
    }
}

/// One top-level clause of an expression and whether it held, for `dnsgate explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClauseTrace {
    /// The clause's source text.
    pub text: String,
    /// Whether it was true for the query.
    pub matched: bool,
}

/// The lists an expression names (`$name`), each with its byte offset in `src`: for checks
/// made outside the compiler (a list's group scope, [`crate::policy::scope`]).
pub fn list_names(src: &str) -> Vec<(&str, usize)> {
    lex::tokenize(src)
        .into_iter()
        .filter_map(|t| match t.tok {
            lex::Tok::List(name) => Some((name, t.start)),
            _ => None,
        })
        .collect()
}

/// Compiles an expression. An empty (or all-whitespace) source is always true.
///
/// On failure the errors are sorted by offset: the first syntax error alone, or every
/// name and type error of a well-formed expression.
pub fn compile(src: &str, env: &CompileEnv<'_>) -> Result<Expr, Vec<ExprError>> {
    let Some(ast) = parse(src, env.limits).map_err(|e| vec![e])? else {
        let source = src.into();
        return Ok(Expr {
            root: Node::Const(true),
            clauses: Box::new([]),
            used: 0,
            source,
            warnings: Box::new([]),
        });
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
    Ok(Expr {
        root,
        clauses,
        used: compiler.used,
        source: src.into(),
        warnings: compiler.warnings.into(),
    })
}

impl Expr {
    /// Evaluates the expression for one query. During the pre phase (`facts.post` is
    /// `None`) post fields are empty arrays.
    #[inline]
    pub fn eval(&self, facts: &QueryFacts<'_>) -> bool {
        // Most policies leave `identity` (or `traffic`) empty: answer those without a call.
        match self.root {
            Node::Const(b) => b,
            ref root => root.eval(facts, &Elem::None),
        }
    }

    /// Names without one of which the expression cannot hold: `(name, exact)` means
    /// `dns.fqdn` must be `name` (exact) or `name` must be in `dns.domains` (it or a
    /// parent). `None` when the expression has no such requirement. The policy set indexes
    /// these so a query skips, after a few hash probes, the policies aimed at other names.
    pub fn required_names(&self) -> Option<Vec<(&str, bool)>> {
        let mut out = Vec::new();
        required(&self.root, &mut out).then_some(out)
    }

    /// `Post` if the expression references any post-resolution field.
    pub fn phase(&self) -> Phase {
        let post = Field::ALL
            .iter()
            .any(|&f| self.uses(f) && f.phase() == Phase::Post);
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

    /// What compiled but deserves a word (a network with host bits set), at byte offsets
    /// of the source; `dnsgate check` prints them.
    pub fn warnings(&self) -> &[ExprError] {
        &self.warnings
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
            matched: node.eval(facts, &Elem::None),
        };
        match (&self.root, &*self.clauses) {
            (Node::And(kids), texts) if kids.len() == texts.len() => texts
                .iter()
                .zip(kids.iter())
                .map(|(t, n)| clause(t, n))
                .collect(),
            (root, texts) => texts.iter().map(|t| clause(t, root)).collect(),
        }
    }
}

/// Shared test fixtures: a compile environment and the facts of one query, by hand.
#[cfg(test)]
mod fixtures {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::{CompileEnv, Expr, ExprError, Limits, compile};
    use crate::geoip::{Code, GeoInfo};
    use crate::identity::{Group, Identity, canonical_email};
    use crate::lists::{DomainList, EmailSet, IpSet, List, StringSet};
    use crate::policy::fields::{PostFacts, QueryFacts};

    /// One (empty) list of each kind: enough for the compiler's kind checks.
    pub(super) fn kind_lists() -> HashMap<String, Arc<List>> {
        let mut m = HashMap::new();
        m.insert(
            "ads".to_owned(),
            Arc::new(List::Domain(DomainList::default())),
        );
        m.insert("bad_ips".to_owned(), Arc::new(List::Ip(IpSet::default())));
        m.insert(
            "vips".to_owned(),
            Arc::new(List::Email(EmailSet::default())),
        );
        m.insert(
            "words".to_owned(),
            Arc::new(List::String(StringSet::default())),
        );
        m
    }

    pub(super) fn env(lists: &HashMap<String, Arc<List>>, email_variants: bool) -> CompileEnv<'_> {
        CompileEnv {
            lists,
            email_variants,
            has_geoip: true,
            limits: Limits::default(),
        }
    }

    pub(super) fn ok(src: &str) -> Expr {
        let lists = kind_lists();
        compile(src, &env(&lists, false)).unwrap_or_else(|e| panic!("{src}: {e:?}"))
    }

    pub(super) fn errors(src: &str) -> Vec<(usize, String)> {
        let lists = kind_lists();
        errors_in(src, &env(&lists, false))
    }

    pub(super) fn errors_in(src: &str, env: &CompileEnv<'_>) -> Vec<(usize, String)> {
        match compile(src, env) {
            Ok(_) => panic!("{src}: compiled"),
            Err(e) => e
                .into_iter()
                .map(|ExprError { offset, message }| (offset, message))
                .collect(),
        }
    }

    fn geo(country: &str, continent: &str) -> GeoInfo {
        GeoInfo {
            country: Code::new(country),
            continent: Code::new(continent),
        }
    }

    pub(super) fn alice() -> Identity {
        let group = |id: &str, name: &str, email: &str| Group {
            id: id.to_owned(),
            name: name.to_owned(),
            email: email.to_owned(),
        };
        let email = "alice.smith+dev@example.com".to_owned();
        Identity {
            device_id: "alice-laptop".to_owned(),
            email_canonical: canonical_email(&email),
            email,
            name: "Alice".to_owned(),
            groups: vec![
                group("grp-finance", "finance", "finance@example.com"),
                group("grp-all", "Everyone", "all@example.com"),
            ],
            saml_attributes: HashMap::from([(
                "department".to_owned(),
                vec!["Marketing".to_owned(), "Sales".to_owned()],
            )]),
            last_seen: Default::default(),
        }
    }

    pub(super) fn answers() -> PostFacts {
        let ips = ["192.0.2.1", "2001:db8::1"]
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        PostFacts {
            resolved_ips: ips,
            authoritative_ns_ips: vec!["198.51.100.53".parse().unwrap()],
            dst_geo: vec![geo("JP", "AS"), geo("DE", "EU")],
            cnames: vec!["cdn.example.net".to_owned()],
            mx: vec!["mx1.example.com".to_owned()],
            txt: vec!["v=spf1 -all".to_owned()],
            ptr: vec!["host.example.org".to_owned()],
        }
    }

    /// `www.ads.example.com AAAA` from 192.168.1.10 in Portugal, at the office.
    pub(super) fn query<'a>(
        id: Option<&'a Identity>,
        post: Option<&'a PostFacts>,
    ) -> QueryFacts<'a> {
        QueryFacts {
            fqdn: "www.ads.example.com",
            rtype: "AAAA",
            src_ip: [192, 168, 1, 10].into(),
            location: Some("office"),
            identity: id,
            content_categories: &[1, 7],
            security_categories: &[80],
            src_geo: geo("PT", "EU"),
            post,
            memo: Box::leak(Box::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::fixtures::{alice, answers, env, kind_lists, ok, query};
    use super::*;
    use crate::lists::{ListFormat, ListKind};

    #[test]
    fn empty_expressions_are_true_and_have_no_clauses() {
        let id = alice();
        let facts = query(Some(&id), None);
        for src in ["", "  \n "] {
            let e = ok(src);
            assert!(e.eval(&facts) && e.is_empty());
            assert_eq!(e.trace(&facts), []);
            assert_eq!(e.source(), src);
        }
    }

    #[test]
    fn trace_reports_each_top_level_clause() {
        let id = alice();
        let facts = query(Some(&id), None);
        let e = ok(
            r#"dns.fqdn == "x.com" and (dns.query_rtype == "A" or dns.query_rtype == "AAAA") && any(dns.domains[*] == "example.com")"#,
        );
        let t = e.trace(&facts);
        let want = [
            (r#"dns.fqdn == "x.com""#, false),
            (
                r#"(dns.query_rtype == "A" or dns.query_rtype == "AAAA")"#,
                true,
            ),
            (r#"any(dns.domains[*] == "example.com")"#, true),
        ];
        let got: Vec<_> = t.iter().map(|c| (c.text.as_str(), c.matched)).collect();
        assert_eq!(got, want);
        let t = ok(r#"  dns.fqdn == "x.com" or dns.query_rtype == "AAAA" "#).trace(&facts);
        assert_eq!(
            t,
            [ClauseTrace {
                text: r#"dns.fqdn == "x.com" or dns.query_rtype == "AAAA""#.to_owned(),
                matched: true
            }]
        );
    }

    #[test]
    fn compiled_expressions_are_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Expr>();
    }

    #[test]
    fn errors_display_their_message() {
        let lists = HashMap::new();
        let e = compile("dns.fqdn ==", &env(&lists, false)).unwrap_err();
        assert_eq!(e[0].to_string(), "expected a value after `==`");
    }

    fn list(kind: ListKind, format: ListFormat, text: &str) -> Arc<List> {
        Arc::new(List::parse(kind, format, text).0)
    }

    /// Needs the `lists` branch: until it lands, `List::parse` returns an empty string list.
    #[test]
    fn lists_match_exactly_or_by_suffix_as_the_field_says() {
        let mut lists = HashMap::new();
        let ads = "ads.example.com\ntracker.example.org\n";
        lists.insert(
            "ads".to_owned(),
            list(ListKind::Domain, ListFormat::Domains, ads),
        );
        let ab = "||example.net^\n@@||good.example.net^\n";
        lists.insert(
            "ab".to_owned(),
            list(ListKind::Domain, ListFormat::Adblock, ab),
        );
        let env = env(&lists, false);
        let exact = compile("dns.fqdn in $ads", &env).unwrap();
        let suffix = compile("any(dns.domains[*] in $ads)", &env).unwrap();
        let every = compile("all(dns.domains[*] in $ads)", &env).unwrap();
        let ab_suffix = compile("any(dns.domains[*] in $ab)", &env).unwrap();
        let ab_exact = compile("dns.fqdn in $ab", &env).unwrap();
        let mut facts = query(None, None);
        for (name, want_exact, want_suffix, want_ab_suffix, want_ab_exact) in [
            ("ads.example.com", true, true, false, false),
            ("www.ads.example.com", false, true, false, false),
            ("example.com", false, false, false, false),
            ("example.net", false, false, true, true),
            ("cdn.example.net", false, false, true, false),
            ("good.example.net", false, false, false, false),
            ("x.good.example.net", false, false, false, false),
        ] {
            facts.fqdn = name;
            let got = (
                exact.eval(&facts),
                suffix.eval(&facts),
                ab_suffix.eval(&facts),
                ab_exact.eval(&facts),
            );
            assert_eq!(
                got,
                (want_exact, want_suffix, want_ab_suffix, want_ab_exact),
                "{name}"
            );
            assert!(!every.eval(&facts), "{name}");
        }
    }

    /// Needs the `lists` branch.
    #[test]
    fn ip_email_and_string_lists() {
        let mut lists = HashMap::new();
        lists.insert(
            "nets".to_owned(),
            list(
                ListKind::Ip,
                ListFormat::Plain,
                "192.168.0.0/16\n2001:db8::1\n",
            ),
        );
        lists.insert(
            "vips".to_owned(),
            list(
                ListKind::Email,
                ListFormat::Plain,
                "AliceSmith@example.com\n",
            ),
        );
        lists.insert(
            "groups".to_owned(),
            list(ListKind::Email, ListFormat::Plain, "finance@example.com\n"),
        );
        lists.insert(
            "devices".to_owned(),
            list(ListKind::String, ListFormat::Plain, "alice-laptop\n"),
        );
        let id = alice();
        let post = answers();
        let facts = query(Some(&id), Some(&post));
        let check = |src: &str, variants: bool| {
            compile(src, &env(&lists, variants)).map(|e| e.eval(&facts))
        };
        assert_eq!(check("dns.src_ip in $nets", false), Ok(true));
        assert_eq!(check("any(dns.resolved_ips[*] in $nets)", false), Ok(true));
        assert_eq!(check("all(dns.resolved_ips[*] in $nets)", false), Ok(false));
        assert_eq!(check("identity.email in $vips", false), Ok(false));
        assert_eq!(check("identity.email in $vips", true), Ok(true));
        assert_eq!(
            check("any(identity.groups.email[*] in $groups)", true),
            Ok(true)
        );
        assert_eq!(check("identity.device_id in $devices", false), Ok(true));
    }

    fn arb_env_src() -> impl Strategy<Value = String> {
        let parts = proptest::sample::select(vec![
            "dns.fqdn",
            "dns.domains[*]",
            "dns.src_ip",
            "dns.content_category[*]",
            "identity.email",
            "identity.saml_attributes[\"d\"][*]",
            "dns.resolved_ips[*]",
            "dns.query_rtype",
            "any(",
            "all(",
            "lower(",
            "(",
            ")",
            "{",
            "}",
            ",",
            "\"x\"",
            "\"a.COM.\"",
            "\"(\"",
            "==",
            "!=",
            "<",
            ">=",
            "in",
            "$ads",
            "$bad_ips",
            "$vips",
            "$words",
            "$nope",
            "matches",
            "contains",
            "and",
            "or",
            "xor",
            "not",
            "1",
            "1..9",
            "192.0.2.0/24",
            "::1",
            "10.0.0.1",
        ]);
        proptest::collection::vec(parts, 0..16).prop_map(|p| p.join(" "))
    }

    proptest! {
        #[test]
        fn compiling_and_evaluating_arbitrary_text_never_panics(src in "\\PC{0,64}") {
            let lists = kind_lists();
            if let Ok(e) = compile(&src, &env(&lists, true)) {
                let id = alice();
                let post = answers();
                let _ = (e.eval(&query(Some(&id), Some(&post))), e.eval(&query(None, None)));
            }
        }

        #[test]
        fn compiling_and_evaluating_near_miss_expressions_never_panics(src in arb_env_src()) {
            let lists = kind_lists();
            for variants in [false, true] {
                match compile(&src, &env(&lists, variants)) {
                    Ok(e) => {
                        let id = alice();
                        let post = answers();
                        let full = query(Some(&id), Some(&post));
                        let _ = (e.eval(&full), e.eval(&query(None, None)), e.trace(&full), e.phase());
                    }
                    Err(errors) => {
                        prop_assert!(!errors.is_empty());
                        for e in errors {
                            prop_assert!(e.offset <= src.len() && !e.message.is_empty());
                        }
                    }
                }
            }
        }
    }
}
