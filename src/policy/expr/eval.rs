//! The compiled tree and its evaluation: the per-query hot path.
//!
//! Every node is specialised at compile time for its field and operation, so evaluating
//! is a walk over enum nodes that reads facts by direct field access and compares bytes:
//! no allocation (bar `lower()` of values over 256 bytes), no normalisation, no lookups
//! by field name, no trait objects. Elements inside `any()`/`all()` travel as a small
//! `Copy` value ([`Elem`]) rather than through a closure per element.
//!
//! The `matches` pattern, which looks inside the regex to skip it where it can, lives in
//! `pattern`; the tests, which outweigh the code, live in files of their own.

use std::cmp::Ordering;
use std::net::IpAddr;
use std::sync::Arc;

use super::ast::CmpOp;
use super::sets::{IpKey, IpRanges, Ranges, StrSet};
use crate::geoip::Code;
use crate::identity::Group;
use crate::lists::List;
use crate::policy::fields::{QueryFacts, domains};

#[cfg(test)]
mod differential_tests;
#[cfg(test)]
mod field_tests;
mod pattern;
#[cfg(test)]
mod tests;
mod wildcard;
#[cfg(test)]
mod wirefilter_tests;

pub(super) use self::pattern::Pattern;
pub(super) use self::wildcard::Wildcard;

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
    /// `f[N] OP x`: the test on element N of an array; the last field is the answer
    /// when there is no such element (true for `!=`, as in wirefilter).
    Index(Box<(ArrSrc, u32, Self, bool)>),
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
    /// `wildcard` / `strict wildcard`.
    Wildcard(Box<Wildcard>),
    /// `DomainList::matches_exact`.
    DomainList(Arc<List>),
    /// `EmailSet::contains`, with or without variants.
    EmailList(Arc<List>, bool),
    StringList(Arc<List>),
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
    Cmp(CmpOp, i64),
    /// `& N`: some bit of N is set.
    BitAnd(i64),
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
    AuthoritativeNsIps,
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
            Self::Index(ix) => {
                let (arr, i, body, missing) = &**ix;
                arr.nth(f, *i).map_or(*missing, |e| body.eval(f, &e))
            }
        }
    }

    /// `body` (a test of the current element) on element `i` of `arr`; `missing` when
    /// the array has no such element.
    pub(super) fn index(arr: ArrSrc, i: u32, body: Self, missing: bool) -> Self {
        Self::Index(Box::new((arr, i, body, missing)))
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
            Self::Wildcard(w) => w.is_match(s),
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
            Self::Cmp(op, x) => order(*op, i64::from(n).cmp(x)),
            Self::BitAnd(x) => i64::from(n) & x != 0,
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
    /// Element `i` of the array, if it has one.
    #[inline(never)]
    fn nth<'a>(&self, f: &QueryFacts<'a>, i: u32) -> Option<Elem<'a>> {
        let mut k = 0;
        let mut found = None;
        self.scan(f, false, |e| {
            if k == i {
                found = Some(e);
                return true;
            }
            k += 1;
            false
        });
        found
    }

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
            Self::AuthoritativeNsIps => {
                let ips = post.map_or(&[][..], |p| &p.authoritative_ns_ips[..]);
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
