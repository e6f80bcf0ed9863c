//! The compiled tree and its evaluation: the per-query hot path.
//!
//! Every node is specialised at compile time for its field and operation, so evaluating
//! is a walk over enum nodes that reads facts by direct field access and compares bytes:
//! no allocation (bar `lower()` of values over 256 bytes), no normalisation, no lookups
//! by field name, no trait objects. Elements inside `any()`/`all()` travel as a small
//! `Copy` value ([`Elem`]) rather than through a closure per element.

use std::cmp::Ordering;
use std::net::IpAddr;
use std::sync::Arc;

use regex::Regex;

use super::ast::CmpOp;
use super::sets::{IpKey, IpRanges, Ranges, StrSet};
use crate::geoip::Code;
use crate::identity::Group;
use crate::lists::List;
use crate::policy::fields::{QueryFacts, domains};

/// A compiled expression node.
#[derive(Debug)]
pub(super) enum Node {
    /// A constant (the empty expression, or the placeholder for a node with errors).
    Const(bool),
    And(Box<[Self]>),
    Or(Box<[Self]>),
    /// True when an odd number of operands are.
    Xor(Box<[Self]>),
    Not(Box<Self>),
    /// A string test; with `fold`, the value is ASCII-lowercased first (`lower()` of a
    /// field whose values are not lowercase already).
    Str {
        src: StrSrc,
        fold: bool,
        test: StrTest,
    },
    /// An IP test; IPv4-mapped IPv6 addresses compare as IPv4.
    Ip {
        src: IpSrc,
        test: IpTest,
    },
    /// An integer test of the current element.
    Int(IntTest),
    /// `any()` (`all == false`) or `all()` of `body` over the elements of `arr`.
    Quant {
        all: bool,
        arr: ArrSrc,
        body: Box<Self>,
    },
    /// `any`/`all` whose condition is one test of the element's string: the test runs per
    /// element without a trip through `Node::eval`.
    QuantStr {
        all: bool,
        arr: ArrSrc,
        test: Box<StrTest>,
    },
    /// `any(dns.domains[*] == "x")`: the name is x or a subdomain — one suffix test.
    DomainsEq(Box<str>),
    /// `any(dns.domains[*] in $list)`: one `DomainList::matches_suffix` call, which is
    /// also how adblock `@@` exceptions cover the whole name.
    DomainsInList(Arc<List>),
    /// `any(dns.domains[*] in {...})`: a suffix test per member of a small set, or a probe
    /// per label of the name for a large one.
    DomainsIn(StrSet),
    /// `any`/`all` of an integer test over `dns.content_category` (or, with `security`,
    /// `dns.security_category`), looping over the slice directly.
    Categories {
        security: bool,
        all: bool,
        test: IntTest,
    },
    /// `==`, `!=` (as `Not`) and `in {}` on a GeoIP code, comparing the two-byte `Code`
    /// rather than its string.
    Code {
        src: CodeSrc,
        test: CodeTest,
    },
}

/// Where a GeoIP code comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CodeSrc {
    SrcCountry,
    SrcContinent,
    /// The current element of `any()`/`all()` over `dns.dst.geo.*`.
    Elem,
}

/// What is done with a GeoIP code; `None` is "unknown" and equals the literal `""`.
#[derive(Debug)]
pub(super) enum CodeTest {
    Eq(Option<Code>),
    In(Box<[Option<Code>]>),
}

/// Where a string value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StrSrc {
    Fqdn,
    Rtype,
    Location,
    Email,
    /// `Identity::email_canonical`, for extended e-mail matching (SPEC §5).
    EmailCanonical,
    Name,
    DeviceId,
    SrcCountry,
    SrcContinent,
    /// The current element of `any()`/`all()`.
    Elem,
}

/// What is done with a string value.
#[derive(Debug)]
pub(super) enum StrTest {
    Eq(Box<str>),
    /// `<`, `<=`, `>`, `>=` (byte order).
    Order(CmpOp, Box<str>),
    In(StrSet),
    Matches(Box<Pattern>),
    Contains(Box<str>),
    /// `DomainList::matches_exact`.
    DomainList(Arc<List>),
    /// `EmailSet::contains`, with or without variants.
    EmailList(Arc<List>, bool),
    StringList(Arc<List>),
}

/// A compiled `matches` pattern and, for one anchored at the start with a known literal
/// beginning (`^ad[0-9]+\.`), the literals a match must start with: most names fail on
/// the first bytes without entering the regex engine.
#[derive(Debug)]
pub(super) struct Pattern {
    re: Regex,
    prefixes: Option<Box<[Box<[u8]>]>>,
    /// The regex is case-insensitive: the start literals compare ignoring ASCII case.
    fold: bool,
}

impl Pattern {
    /// At most this many start literals are tried before the regex.
    const MAX_PREFIXES: usize = 16;

    /// `re` as compiled, with or without `case_insensitive` (the flag it was built with).
    pub(super) fn new(re: Regex, case_insensitive: bool) -> Self {
        use regex_syntax::hir::Look;
        use regex_syntax::hir::literal::Extractor;
        // The literals of the case-sensitive reading; for a case-insensitive regex they
        // are then compared ignoring ASCII case, which is exact as long as they are ASCII
        // without `k` and `s` (Unicode folds K to the Kelvin sign and s to the long s).
        let hir = regex_syntax::Parser::new().parse(re.as_str());
        let folds_beyond_ascii =
            |l: &[u8]| !l.is_ascii() || l.iter().any(|b| matches!(b, b'k' | b'K' | b's' | b'S'));
        let prefixes = hir.ok().and_then(|hir| {
            if !hir.properties().look_set_prefix().contains(Look::Start) {
                return None;
            }
            let seq = Extractor::new().extract(&hir);
            // One common start (`ad0`…`ad9` → `ad`) is one comparison.
            let lits: Box<[Box<[u8]>]> = match seq.longest_common_prefix() {
                Some(common) if !common.is_empty() => Box::new([common.into()]),
                _ => seq
                    .literals()?
                    .iter()
                    .map(|l| l.as_bytes().into())
                    .collect(),
            };
            let unusable = lits.is_empty()
                || lits.len() > Self::MAX_PREFIXES
                || lits.iter().any(|l| l.is_empty())
                || (case_insensitive && lits.iter().any(|l| folds_beyond_ascii(l)));
            (!unusable).then_some(lits)
        });
        Self {
            re,
            prefixes,
            fold: case_insensitive,
        }
    }

    #[inline]
    pub(super) fn is_match(&self, s: &str) -> bool {
        if let Some(p) = &self.prefixes {
            let s = s.as_bytes();
            let starts = |p: &[u8]| match s.get(..p.len()) {
                Some(head) if self.fold => head.eq_ignore_ascii_case(p),
                Some(head) => head == p,
                None => false,
            };
            if !p.iter().any(|p| starts(p)) {
                return false;
            }
        }
        self.re.is_match(s)
    }
}

/// Where an IP value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IpSrc {
    SrcIp,
    Elem,
}

/// What is done with an IP value.
#[derive(Debug)]
pub(super) enum IpTest {
    Eq(IpAddr),
    /// Boxed to keep compiled nodes small.
    In(Box<IpRanges>),
    List(Arc<List>),
}

/// What is done with an integer element.
#[derive(Debug)]
pub(super) enum IntTest {
    Cmp(CmpOp, u32),
    In(Ranges<u32>),
}

/// The arrays `any()`/`all()` range over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ArrSrc {
    Domains,
    ContentCategory,
    SecurityCategory,
    GroupsName,
    GroupsId,
    GroupsEmail,
    /// A thin pointer (`Box<str>` is two words) keeps `Node` at 32 bytes.
    #[allow(clippy::box_collection)]
    Saml(Box<String>),
    ResolvedIps,
    DstCountry,
    DstContinent,
    Cname,
    Mx,
    Txt,
    Ptr,
}

/// The current element of `any()`/`all()` (`None` outside them).
#[derive(Debug, Clone, Copy)]
pub(super) enum Elem<'a> {
    None,
    Str(&'a str),
    /// An element of `dns.dst.geo.*`.
    Code(&'a Option<Code>),
    Int(u32),
    Ip(IpAddr),
}

impl Node {
    pub(super) fn eval<'a>(&self, f: &QueryFacts<'a>, e: &Elem<'a>) -> bool {
        match self {
            Self::Const(b) => *b,
            Self::And(v) => v.iter().all(|n| n.eval(f, e)),
            Self::Or(v) => v.iter().any(|n| n.eval(f, e)),
            Self::Xor(v) => v.iter().fold(false, |acc, n| acc ^ n.eval(f, e)),
            Self::Not(n) => !n.eval(f, e),
            Self::Str { src, fold, test } => {
                let s = src.get(f, e);
                if *fold {
                    test.eval_lowered(s)
                } else {
                    test.eval(s)
                }
            }
            Self::Ip { src, test } => {
                let ip = match (src, e) {
                    (IpSrc::SrcIp, _) => f.src_ip,
                    (IpSrc::Elem, Elem::Ip(ip)) => *ip,
                    (IpSrc::Elem, _) => return false,
                };
                test.eval(ip)
            }
            Self::Int(test) => matches!(e, Elem::Int(n) if test.eval(*n)),
            Self::Quant { all, arr, body } => arr.scan(f, *all, |e| body.eval(f, &e)),
            Self::QuantStr { all, arr, test } => {
                arr.scan(f, *all, |e| test.eval(StrSrc::Elem.get(f, &e)))
            }
            Self::DomainsEq(x) => is_name_or_parent(f.fqdn, x),
            Self::DomainsIn(set) => domains_in(f.fqdn, set),
            Self::Categories {
                security,
                all,
                test,
            } => {
                let ids = if *security {
                    f.security_categories
                } else {
                    f.content_categories
                };
                test.quantify(ids, *all)
            }
            Self::Code { src, test } => {
                let c = match (src, e) {
                    (CodeSrc::SrcCountry, _) => f.src_geo.country,
                    (CodeSrc::SrcContinent, _) => f.src_geo.continent,
                    (CodeSrc::Elem, Elem::Code(c)) => **c,
                    (CodeSrc::Elem, _) => return false,
                };
                match test {
                    CodeTest::Eq(x) => c == *x,
                    CodeTest::In(set) => set.contains(&c),
                }
            }
            Self::DomainsInList(list) => {
                matches!(&**list, List::Domain(d) if f.memo.matches(d, f.fqdn))
            }
        }
    }
}

/// `any(dns.domains[*] in set)`.
#[inline(never)]
fn domains_in(fqdn: &str, set: &StrSet) -> bool {
    match set {
        StrSet::Scan(items) => items.iter().any(|x| is_name_or_parent(fqdn, x)),
        StrSet::Hash(_) => domains(fqdn).any(|d| set.contains(d)),
    }
}

/// Whether `x` is `fqdn` or one of its parents (an element of `domains(fqdn)`).
fn is_name_or_parent(fqdn: &str, x: &str) -> bool {
    let (fqdn, x) = (fqdn.as_bytes(), x.as_bytes());
    let Some(dot) = fqdn.len().checked_sub(x.len() + 1) else {
        return !x.is_empty() && fqdn == x;
    };
    // The label boundary first: it rejects most names without comparing the suffix.
    fqdn[dot] == b'.' && !x.is_empty() && fqdn[dot + 1..] == *x
}

fn code(c: &Option<Code>) -> &str {
    c.as_ref().map_or("", Code::as_str)
}

impl StrSrc {
    fn get<'f>(self, f: &'f QueryFacts<'_>, e: &Elem<'f>) -> &'f str {
        let id = f.identity;
        match self {
            Self::Fqdn => f.fqdn,
            Self::Rtype => f.rtype,
            Self::Location => f.location.unwrap_or(""),
            Self::Email => id.map_or("", |i| &i.email),
            Self::EmailCanonical => id.map_or("", |i| &i.email_canonical),
            Self::Name => id.map_or("", |i| &i.name),
            Self::DeviceId => id.map_or("", |i| &i.device_id),
            Self::SrcCountry => code(&f.src_geo.country),
            Self::SrcContinent => code(&f.src_geo.continent),
            Self::Elem => match e {
                Elem::Str(s) => s,
                Elem::Code(c) => code(c),
                _ => "",
            },
        }
    }
}

impl StrTest {
    /// Runs the test on the ASCII-lowercased `s`, on the stack unless `s` is long. Kept
    /// out of line so its buffer does not weigh on every `Node::eval` frame.
    #[inline(never)]
    fn eval_lowered(&self, s: &str) -> bool {
        if !s.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.eval(s);
        }
        let mut buf = [0u8; 256];
        match buf.get_mut(..s.len()) {
            Some(dst) => {
                dst.copy_from_slice(s.as_bytes());
                dst.make_ascii_lowercase();
                // ASCII lowercasing keeps UTF-8 valid.
                self.eval(std::str::from_utf8(dst).unwrap_or_default())
            }
            None => self.eval(&s.to_ascii_lowercase()),
        }
    }

    fn eval(&self, s: &str) -> bool {
        match self {
            Self::Eq(x) => s == &**x,
            Self::Order(op, x) => order(*op, s.cmp(x)),
            Self::In(set) => set.contains(s),
            Self::Matches(p) => p.is_match(s),
            Self::Contains(x) => s.contains(&**x),
            Self::DomainList(l) => matches!(&**l, List::Domain(d) if d.matches_exact(s)),
            Self::EmailList(l, variants) => {
                matches!(&**l, List::Email(m) if m.contains(s, *variants))
            }
            Self::StringList(l) => matches!(&**l, List::String(set) if set.contains(s)),
        }
    }
}

fn order(op: CmpOp, o: Ordering) -> bool {
    match op {
        CmpOp::Eq => o.is_eq(),
        CmpOp::Ne => o.is_ne(),
        CmpOp::Lt => o.is_lt(),
        CmpOp::Le => o.is_le(),
        CmpOp::Gt => o.is_gt(),
        CmpOp::Ge => o.is_ge(),
    }
}

impl IpTest {
    fn eval(&self, ip: IpAddr) -> bool {
        match self {
            Self::Eq(x) => IpKey::of(ip) == IpKey::of(*x),
            Self::In(set) => set.contains(IpKey::of(ip)),
            Self::List(l) => matches!(&**l, List::Ip(set) if set.contains(ip)),
        }
    }
}

impl IntTest {
    /// `any` (or `all`) of the test over `ids`.
    #[inline(never)]
    fn quantify(&self, ids: &[u32], all: bool) -> bool {
        if all {
            ids.iter().all(|&n| self.eval(n))
        } else {
            ids.iter().any(|&n| self.eval(n))
        }
    }

    fn eval(&self, n: u32) -> bool {
        match self {
            Self::Cmp(op, x) => order(*op, n.cmp(x)),
            Self::In(set) => set.contains(n),
        }
    }
}

/// `any` (`all == false`) or `all` of `p` over `it`: any() of nothing is false, all() of
/// nothing is true.
fn quantify<'a>(
    it: impl Iterator<Item = Elem<'a>>,
    all: bool,
    p: &mut impl FnMut(Elem<'a>) -> bool,
) -> bool {
    for e in it {
        if p(e) != all {
            return !all;
        }
    }
    all
}

impl ArrSrc {
    #[inline(never)]
    fn scan<'a>(&self, f: &QueryFacts<'a>, all: bool, mut p: impl FnMut(Elem<'a>) -> bool) -> bool {
        let groups = || f.identity.map_or(&[][..], |i| &i.groups[..]).iter();
        let group = |get: fn(&Group) -> &str| groups().map(move |g| Elem::Str(get(g)));
        let post = f.post;
        let strs = |get: fn(&crate::policy::fields::PostFacts) -> &Vec<String>| {
            post.map_or(&[][..], |p| &get(p)[..])
                .iter()
                .map(|s| Elem::Str(s))
        };
        let geo = post.map_or(&[][..], |p| &p.dst_geo[..]).iter();
        let p = &mut p;
        match self {
            Self::Domains => quantify(domains(f.fqdn).map(Elem::Str), all, p),
            Self::ContentCategory => {
                quantify(f.content_categories.iter().map(|&c| Elem::Int(c)), all, p)
            }
            Self::SecurityCategory => {
                quantify(f.security_categories.iter().map(|&c| Elem::Int(c)), all, p)
            }
            Self::GroupsName => quantify(group(|g| &g.name), all, p),
            Self::GroupsId => quantify(group(|g| &g.id), all, p),
            Self::GroupsEmail => quantify(group(|g| &g.email), all, p),
            Self::Saml(key) => {
                let values = f.identity.and_then(|i| i.saml_attributes.get(key.as_str()));
                quantify(
                    values
                        .map_or(&[][..], |v| &v[..])
                        .iter()
                        .map(|s| Elem::Str(s)),
                    all,
                    p,
                )
            }
            Self::ResolvedIps => {
                let ips = post.map_or(&[][..], |p| &p.resolved_ips[..]);
                quantify(ips.iter().map(|&ip| Elem::Ip(ip)), all, p)
            }
            Self::DstCountry => quantify(geo.map(|g| Elem::Code(&g.country)), all, p),
            Self::DstContinent => quantify(geo.map(|g| Elem::Code(&g.continent)), all, p),
            Self::Cname => quantify(strs(|p| &p.cnames), all, p),
            Self::Mx => quantify(strs(|p| &p.mx), all, p),
            Self::Txt => quantify(strs(|p| &p.txt), all, p),
            Self::Ptr => quantify(strs(|p| &p.ptr), all, p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_or_parent_is_a_label_suffix() {
        for (fqdn, x, want) in [
            ("a.example.com", "example.com", true),
            ("example.com", "example.com", true),
            ("badexample.com", "example.com", false),
            ("example.com", "a.example.com", false),
            ("example.com", "com", true),
            ("example.com", "", false),
            ("", "", false),
            ("a..b", ".b", true),
        ] {
            assert_eq!(is_name_or_parent(fqdn, x), want, "{fqdn} {x}");
            assert_eq!(
                domains(fqdn).any(|d| d == x),
                want,
                "{fqdn} {x} (reference)"
            );
        }
    }

    #[test]
    fn anchored_patterns_check_their_start_literals_first() {
        let p = |re: &str, ci: bool| {
            Pattern::new(
                regex::RegexBuilder::new(re)
                    .case_insensitive(ci)
                    .build()
                    .unwrap(),
                ci,
            )
        };
        let ad = p(r"^ad[0-9]+\.tracker\.", false);
        assert_eq!(ad.prefixes.as_deref().map(<[_]>::len), Some(1));
        assert!(ad.is_match("ad12.tracker.example"));
        assert!(!ad.is_match("www.ad12.tracker.example"));
        assert!(!ad.is_match("a"));
        let alt = p(r"^(cdn|img)\d*\.", false);
        assert_eq!(alt.prefixes.as_deref().map(<[_]>::len), Some(2));
        assert!(alt.is_match("img3.x") && alt.is_match("cdn.x") && !alt.is_match("css.x"));
        let ci = p(r"^Ad[0-9]*\.", true);
        assert!(ci.prefixes.is_some());
        assert!(ci.is_match("AD.x") && ci.is_match("ad7.x") && !ci.is_match("bd.x"));
        // (?i)k also matches the Kelvin sign: no ASCII shortcut there.
        let kelvin = p(r"^k", true);
        assert!(kelvin.prefixes.is_none() && kelvin.is_match("\u{212A}x"));
        // Nothing to check first: unanchored, multi-line, or a class at the start.
        for re in [r"ad[0-9]+", r"(?m)^ad", r"^[a-z]+\.com$", r"^"] {
            assert!(p(re, false).prefixes.is_none(), "{re}");
        }
    }

    #[test]
    fn lowering_uses_the_stack_and_handles_long_values() {
        let eq = |x: &str| StrTest::Eq(x.into());
        assert!(eq("mixed").eval_lowered("MiXeD"));
        assert!(eq("already").eval_lowered("already"));
        assert!(!eq("Upper").eval_lowered("Upper"));
        assert!(eq(&"a".repeat(300)).eval_lowered(&"A".repeat(300)));
        assert!(eq("Àb").eval_lowered("ÀB"));
    }
}

/// Every field of SPEC §3, through `compile`, in three situations.
#[cfg(test)]
mod field_tests {
    use super::super::fixtures::{alice, answers, ok, query};
    use crate::geoip::GeoInfo;

    /// (expression, with identity and answers, pre phase, anonymous client elsewhere)
    const CASES: &[(&str, bool, bool, bool)] = &[
        // dns.fqdn: names compare case-insensitively and without a trailing dot.
        (r#"dns.fqdn == "WWW.ads.Example.com.""#, true, true, true),
        (r#"dns.fqdn == "ads.example.com""#, false, false, false),
        (r#"dns.fqdn != "ads.example.com""#, true, true, true),
        (
            r#"dns.fqdn in {"x.com" "www.ads.example.com."}"#,
            true,
            true,
            true,
        ),
        (r#"dns.fqdn matches "^WWW\.ads""#, true, true, true),
        (r#"dns.fqdn contains "ADS.""#, true, true, true),
        (
            r#"dns.fqdn contains "ads.example.com.""#,
            false,
            false,
            false,
        ),
        (r#"dns.fqdn < "x" and dns.fqdn >= "www""#, true, true, true),
        // dns.domains: the name and its parents.
        (r#"any(dns.domains[*] == "example.com")"#, true, true, true),
        (r#"any(dns.domains[*] == "ample.com")"#, false, false, false),
        (
            r#"any(dns.domains[*] in {"a.com" "example.com"})"#,
            true,
            true,
            true,
        ),
        (
            r#"any(dns.domains[*] in {"ads.example.com" "b.c"})"#,
            true,
            true,
            true,
        ),
        (
            r#"any(dns.domains[*] in {"s.example.com" "xample.com" "www"})"#,
            false,
            false,
            false,
        ),
        (
            r#"any(dns.domains[*] in {"a1.com" "a2.com" "a3.com" "a4.com" "a5.com" "a6.com" "a7.com" "a8.com" "example.com"})"#,
            true,
            true,
            true,
        ),
        (
            r#"any(dns.domains[*] in {"a1.com" "a2.com" "a3.com" "a4.com" "a5.com" "a6.com" "a7.com" "a8.com" "xample.com"})"#,
            false,
            false,
            false,
        ),
        (
            r#"all(dns.domains[*] in {"com" "example.com" "ads.example.com" "www.ads.example.com"})"#,
            true,
            true,
            true,
        ),
        (
            r#"any(dns.domains[*] == "a.com" or dns.domains[*] == "Example.COM")"#,
            true,
            true,
            true,
        ),
        (
            r#"any(dns.domains[*] == "com" and dns.query_rtype == "A")"#,
            false,
            false,
            false,
        ),
        (r#"all(dns.domains[*] contains "com")"#, true, true, true),
        (
            r#"all(dns.domains[*] matches "example")"#,
            false,
            false,
            false,
        ),
        (
            r#"any(lower(dns.domains[*]) == "EXAMPLE.com")"#,
            true,
            true,
            true,
        ),
        // dns.query_rtype: codes are uppercase.
        (r#"dns.query_rtype == "aaaa""#, true, true, true),
        (r#"dns.query_rtype in {"A" "AAAA"}"#, true, true, true),
        (r#"lower(dns.query_rtype) == "aaaa""#, true, true, true),
        (r#"lower(dns.query_rtype) matches "^a+$""#, true, true, true),
        (
            r#"lower(dns.query_rtype) matches "^A+$""#,
            false,
            false,
            false,
        ),
        (r#"dns.query_rtype matches "^a+$""#, true, true, true),
        // dns.content_category / dns.security_category.
        ("any(dns.content_category[*] in {1})", true, true, true),
        (
            "any(dns.content_category[*] in {2..6 8})",
            false,
            false,
            false,
        ),
        ("any(dns.content_category[*] in {5..8})", true, true, true),
        ("all(dns.content_category[*] < 10)", true, true, true),
        ("any(dns.content_category[*] ge 7)", true, true, true),
        ("any(dns.content_category[*] != 1)", true, true, true),
        ("any(dns.security_category[*] == 80)", true, true, true),
        ("any(dns.security_category[*] > 80)", false, false, false),
        ("all(dns.content_category[*] in {1 7})", true, true, true),
        ("all(dns.content_category[*] == 1)", false, false, false),
        (
            "not any(dns.security_category[*] in {1..79 81..100})",
            true,
            true,
            true,
        ),
        // dns.src_ip.
        ("dns.src_ip == 192.168.1.10", true, true, true),
        ("dns.src_ip == ::ffff:192.168.1.10", true, true, true),
        ("dns.src_ip != 192.168.1.11", true, true, true),
        (
            "dns.src_ip in {10.0.0.0/8 192.168.0.0/16}",
            true,
            true,
            true,
        ),
        (
            "dns.src_ip in {10.0.0.0/8, ::1, 192.168.1.9}",
            false,
            false,
            false,
        ),
        ("dns.src_ip in {::ffff:192.168.1.0/120}", true, true, true),
        // dns.location (compared as written; none for the anonymous client).
        (r#"dns.location == "office""#, true, true, false),
        (r#"dns.location == "Office""#, false, false, false),
        (r#"lower(dns.location) == "Office""#, true, true, false),
        (r#"dns.location == """#, false, false, true),
        // identity.*: empty without a known device.
        (
            r#"identity.email == "Alice.Smith+dev@example.com""#,
            true,
            true,
            false,
        ),
        (
            r#"identity.email == "alicesmith@example.com""#,
            false,
            false,
            false,
        ),
        (
            r#"identity.email in {"bob@example.com" "alice.smith+dev@example.com"}"#,
            true,
            true,
            false,
        ),
        (
            r#"identity.email matches "@example\.COM$""#,
            true,
            true,
            false,
        ),
        (r#"identity.email != "x@example.com""#, true, true, true),
        (r#"identity.name == "Alice""#, true, true, false),
        (r#"identity.name == "alice""#, false, false, false),
        (r#"lower(identity.name) == "alice""#, true, true, false),
        (r#"identity.name contains "lic""#, true, true, false),
        (r#"identity.device_id == "alice-laptop""#, true, true, false),
        (
            r#"any(identity.groups.name[*] == "finance")"#,
            true,
            true,
            false,
        ),
        (
            r#"any(identity.groups.name[*] == "everyone")"#,
            false,
            false,
            false,
        ),
        (
            r#"any(identity.groups.id[*] in {"grp-all" "grp-x"})"#,
            true,
            true,
            false,
        ),
        (
            r#"any(identity.groups.email[*] == "FINANCE@example.com")"#,
            true,
            true,
            false,
        ),
        (
            r#"all(identity.groups.email[*] contains "@example.com")"#,
            true,
            true,
            true,
        ),
        (
            r#"any(identity.saml_attributes["department"][*] == "Marketing")"#,
            true,
            true,
            false,
        ),
        (
            r#"any(identity.saml_attributes["department"][*] == "marketing")"#,
            false,
            false,
            false,
        ),
        (
            r#"any(lower(identity.saml_attributes["department"][*]) == "marketing")"#,
            true,
            true,
            false,
        ),
        (
            r#"any(identity.saml_attributes["team"][*] == "x")"#,
            false,
            false,
            false,
        ),
        (
            r#"all(identity.saml_attributes["team"][*] == "x")"#,
            true,
            true,
            true,
        ),
        // Post fields: empty arrays before resolution.
        (
            "any(dns.resolved_ips[*] in {192.0.2.0/24})",
            true,
            false,
            false,
        ),
        (
            "any(dns.resolved_ips[*] == 2001:db8::1)",
            true,
            false,
            false,
        ),
        (
            "all(dns.resolved_ips[*] in {192.0.2.0/24})",
            false,
            true,
            true,
        ),
        (
            "all(dns.resolved_ips[*] in {192.0.2.0/24 2001:db8::/32})",
            true,
            true,
            true,
        ),
        (r#"any(dns.dst.geo.country[*] == "jp")"#, true, false, false),
        (
            r#"any(dns.dst.geo.country[*] in {"US" "PT"})"#,
            false,
            false,
            false,
        ),
        (
            r#"any(dns.dst.geo.continent[*] == "EU")"#,
            true,
            false,
            false,
        ),
        (
            r#"any(dns.response.cname[*] == "CDN.example.net.")"#,
            true,
            false,
            false,
        ),
        (
            r#"any(dns.response.mx[*] matches "^MX\d\.")"#,
            true,
            false,
            false,
        ),
        (
            r#"any(dns.response.txt[*] contains "spf1")"#,
            true,
            false,
            false,
        ),
        (
            r#"any(dns.response.txt[*] contains "SPF1")"#,
            false,
            false,
            false,
        ),
        (
            r#"any(dns.response.ptr[*] == "host.example.org")"#,
            true,
            false,
            false,
        ),
        // dns.src.geo.*: the client's.
        (r#"dns.src.geo.country == "pt""#, true, true, false),
        (r#"dns.src.geo.continent in {"EU" "NA"}"#, true, true, false),
        (r#"dns.src.geo.country == """#, false, false, true),
        (r#"dns.src.geo.country == "PRT""#, false, false, false),
        (r#"dns.src.geo.country != "PRT""#, true, true, true),
        (r#"dns.src.geo.country in {"" "US"}"#, false, false, true),
        (r#"dns.src.geo.continent matches "^e""#, true, true, false),
        (r#"lower(dns.src.geo.country) == "PT""#, true, true, false),
        (
            r#"any(dns.dst.geo.country[*] matches "^J")"#,
            true,
            false,
            false,
        ),
        (
            r#"any(lower(dns.dst.geo.country[*]) in {"de"})"#,
            true,
            false,
            false,
        ),
        (r#"any(dns.dst.geo.country[*] != "JP")"#, true, false, false),
        (
            r#"all(dns.dst.geo.continent[*] in {"AS" "EU"})"#,
            true,
            true,
            true,
        ),
        // Logic.
        (
            r#"dns.query_rtype == "A" xor dns.query_rtype == "AAAA""#,
            true,
            true,
            true,
        ),
        (
            r#"dns.query_rtype == "AAAA" ^^ dns.fqdn contains "ads""#,
            false,
            false,
            false,
        ),
        (
            r#"not dns.query_rtype == "A" && !(dns.fqdn == "x" || dns.fqdn == "y")"#,
            true,
            true,
            true,
        ),
        ("", true, true, true),
    ];

    #[test]
    fn every_field_evaluates_in_each_phase() {
        let id = alice();
        let post = answers();
        let full = query(Some(&id), Some(&post));
        let pre = query(Some(&id), None);
        let mut anon = query(None, None);
        anon.location = None;
        anon.src_geo = GeoInfo::default();
        for &(src, want_full, want_pre, want_anon) in CASES {
            let expr = ok(src);
            assert_eq!(expr.eval(&full), want_full, "{src} (full)");
            assert_eq!(expr.eval(&pre), want_pre, "{src} (pre)");
            assert_eq!(expr.eval(&anon), want_anon, "{src} (anonymous)");
        }
    }

    #[test]
    fn every_field_is_covered() {
        for f in crate::policy::fields::Field::ALL {
            assert!(
                CASES.iter().any(|(src, ..)| ok(src).uses(f)),
                "{} untested",
                f.name()
            );
        }
    }
}

#[cfg(test)]
mod layout_tests {
    /// Two nodes per cache line: the tree of a typical policy fits in one or two.
    #[test]
    fn nodes_stay_small() {
        assert!(
            size_of::<super::Node>() <= 32,
            "{}",
            size_of::<super::Node>()
        );
    }
}

/// The specialised nodes must agree with the general per-element path.
#[cfg(test)]
mod differential_tests {
    use proptest::prelude::*;

    use super::super::fixtures::{ok, query};
    use super::Pattern;
    use crate::policy::fields::domains;

    fn label() -> impl Strategy<Value = String> {
        proptest::sample::select(vec!["a", "b", "ab", "com", "x-y"]).prop_map(str::to_owned)
    }

    fn name() -> impl Strategy<Value = String> {
        proptest::collection::vec(label(), 0..5).prop_map(|l| l.join("."))
    }

    fn set(items: &[String]) -> String {
        let quoted: Vec<_> = items.iter().map(|s| format!("{s:?}")).collect();
        format!("{{{}}}", quoted.join(" "))
    }

    proptest! {
        #[test]
        fn prefiltered_patterns_agree_with_the_regex(
            re in "\\^(ad|x|ab|[a-c]{1,2})[0-9]*(\\.|-)?",
            hay in "[a-dx0-9.-]{0,8}",
            ci: bool,
        ) {
            let built = regex::RegexBuilder::new(&re).case_insensitive(ci).build().unwrap();
            let p = Pattern::new(built.clone(), ci);
            prop_assert_eq!(p.is_match(&hay), built.is_match(&hay));
            let upper = hay.to_ascii_uppercase();
            prop_assert_eq!(p.is_match(&upper), built.is_match(&upper));
        }

        #[test]
        fn domain_shapes_agree_with_the_element_loop(
            fqdn in name(),
            items in proptest::collection::vec(name(), 0..12),
        ) {
            let s = set(&items);
            let fast = ok(&format!("any(dns.domains[*] in {s})"));
            // `!= "-"` is always true but keeps the condition off the fast path.
            let slow = ok(&format!(r#"any(dns.domains[*] in {s} and dns.domains[*] != "-")"#));
            let general = matches!(slow.root, super::Node::Quant { .. });
            prop_assert!(general, "the slow form was specialised");
            let mut facts = query(None, None);
            facts.fqdn = &fqdn;
            let want = domains(&fqdn).any(|d| items.iter().any(|i| i == d));
            prop_assert_eq!(fast.eval(&facts), want);
            prop_assert_eq!(slow.eval(&facts), want);
            for item in &items {
                let eq = ok(&format!("any(dns.domains[*] == {item:?})"));
                prop_assert_eq!(eq.eval(&facts), domains(&fqdn).any(|d| d == item));
            }
        }

        #[test]
        fn category_shapes_agree_with_the_element_loop(
            ids in proptest::collection::vec(0u32..20, 0..6),
            wanted in proptest::collection::vec(0u32..20, 0..4),
            all in any::<bool>(),
        ) {
            let q = if all { "all" } else { "any" };
            let items: Vec<_> = wanted.iter().map(u32::to_string).collect();
            let s = items.join(" ");
            let fast = ok(&format!("{q}(dns.content_category[*] in {{{s}}})"));
            // Neutral extra conditions that keep the quantifier from being distributed.
            let extra = if all { "or dns.content_category[*] < 0" } else { "and dns.content_category[*] >= 0" };
            let slow = ok(&format!("{q}(dns.content_category[*] in {{{s}}} {extra})"));
            let general = matches!(slow.root, super::Node::Quant { .. });
            prop_assert!(general, "the slow form was specialised");
            let mut facts = query(None, None);
            facts.content_categories = &ids;
            let hit = |id: &u32| wanted.contains(id);
            let want = if all { ids.iter().all(hit) } else { ids.iter().any(hit) };
            prop_assert_eq!(fast.eval(&facts), want);
            prop_assert_eq!(slow.eval(&facts), want);
        }
    }
}
