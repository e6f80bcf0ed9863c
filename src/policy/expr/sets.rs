//! The compiled forms of `in {…}`: string sets, integer ranges and IP ranges.
//!
//! Each is built once at load so a membership test is a short scan, one hash probe or one
//! binary search, with no allocation. Policies usually hold a handful of values, where a
//! scan beats hashing; pasted lists of hundreds of names get a hash set.

use std::net::IpAddr;

use hashbrown::HashSet;

use super::ast::CmpOp;

/// Sets up to this size are scanned; larger ones are hashed.
const SCAN_MAX: usize = 8;

/// A set of (already normalised) strings.
#[derive(Debug)]
pub(super) enum StrSet {
    /// A few strings, compared in turn.
    Scan(Box<[Box<str>]>),
    /// Many strings, hashed (boxed to keep compiled nodes small).
    Hash(Box<HashSet<Box<str>>>),
}

impl StrSet {
    pub(super) fn new(items: impl IntoIterator<Item = String>) -> Self {
        let mut items: Vec<Box<str>> = items.into_iter().map(String::into_boxed_str).collect();
        items.sort_unstable();
        items.dedup();
        if items.len() <= SCAN_MAX {
            Self::Scan(items.into_boxed_slice())
        } else {
            Self::Hash(Box::new(items.into_iter().collect()))
        }
    }

    /// Every member.
    pub(super) fn items(&self) -> Vec<&str> {
        match self {
            Self::Scan(items) => items.iter().map(|i| &**i).collect(),
            Self::Hash(set) => set.iter().map(|i| &**i).collect(),
        }
    }

    #[inline]
    pub(super) fn contains(&self, s: &str) -> bool {
        match self {
            Self::Scan(items) => items.iter().any(|i| **i == *s),
            Self::Hash(set) => set.contains(s),
        }
    }
}

/// Sorted, non-overlapping inclusive ranges.
#[derive(Debug)]
pub(super) struct Ranges<T>(Box<[(T, T)]>);

impl<T: Ord + Copy> Ranges<T> {
    pub(super) fn new(mut v: Vec<(T, T)>) -> Self {
        v.sort_unstable();
        let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match out.last_mut() {
                Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        Self(out.into_boxed_slice())
    }

    #[inline]
    pub(super) fn contains(&self, x: T) -> bool {
        // The first range that does not end before x is the only one that can hold it.
        let i = self.0.partition_point(|r| r.1 < x);
        self.0.get(i).is_some_and(|r| r.0 <= x)
    }
}

/// IP addresses and networks, one range table per family.
#[derive(Debug)]
pub(super) struct IpRanges {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
}

/// The IPv4-mapped block `::ffff:0:0/96`, as numbers.
const MAPPED: (u128, u128) = (0xffff << 32, (0xffff << 32) | 0xffff_ffff);

impl IpRanges {
    /// Builds the table from inclusive address ranges (single addresses, networks with
    /// their host bits cleared, `a..b`). Queries see IPv4-mapped addresses folded into
    /// IPv4 ([`IpKey`]), so the part of an IPv6 range inside `::ffff:0:0/96` is entered as
    /// the IPv4 range it maps: `::/0` and `::ffff:0:0/96` hold every IPv4 address, and
    /// `::ffff:10.0.0.0/104` holds `10.0.0.0/8`.
    pub(super) fn new(ranges: impl IntoIterator<Item = (IpAddr, IpAddr)>) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (lo, hi) in ranges {
            match (lo, hi) {
                (IpAddr::V4(lo), IpAddr::V4(hi)) => v4.push((u32::from(lo), u32::from(hi))),
                (IpAddr::V6(lo), IpAddr::V6(hi)) => {
                    let (lo, hi) = (u128::from(lo), u128::from(hi));
                    let (mlo, mhi) = (lo.max(MAPPED.0), hi.min(MAPPED.1));
                    if mlo <= mhi {
                        v4.push(((mlo - MAPPED.0) as u32, (mhi - MAPPED.0) as u32));
                    }
                    v6.push((lo, hi));
                }
                // The parser refuses ranges that mix families.
                _ => {}
            }
        }
        Self {
            v4: Ranges::new(v4),
            v6: Ranges::new(v6),
        }
    }

    /// The addresses `op` (an ordering) holds for against `x`, in `x`'s family only (an
    /// IPv4-mapped `x` counts as IPv4): as wirefilter, which finds addresses of two
    /// families incomparable, an IPv4 client is neither `<` nor `>=` an IPv6 address.
    pub(super) fn ordering(op: CmpOp, x: IpAddr) -> Self {
        fn side<T: Copy + Ord>(
            op: CmpOp,
            x: T,
            min: T,
            max: T,
            prev: Option<T>,
            next: Option<T>,
        ) -> Vec<(T, T)> {
            match op {
                CmpOp::Lt => prev.map(|p| (min, p)).into_iter().collect(),
                CmpOp::Le => vec![(min, x)],
                CmpOp::Gt => next.map(|n| (n, max)).into_iter().collect(),
                CmpOp::Ge => vec![(x, max)],
                CmpOp::Eq => vec![(x, x)],
                CmpOp::Ne => [prev.map(|p| (min, p)), next.map(|n| (n, max))]
                    .into_iter()
                    .flatten()
                    .collect(),
            }
        }
        let (v4, v6) = match IpKey::of(x) {
            IpKey::V4(a) => (
                side(op, a, 0, u32::MAX, a.checked_sub(1), a.checked_add(1)),
                Vec::new(),
            ),
            IpKey::V6(a) => (
                Vec::new(),
                side(op, a, 0, u128::MAX, a.checked_sub(1), a.checked_add(1)),
            ),
        };
        Self {
            v4: Ranges::new(v4),
            v6: Ranges::new(v6),
        }
    }

    #[inline]
    pub(super) fn contains(&self, ip: IpKey) -> bool {
        match ip {
            IpKey::V4(a) => self.v4.contains(a),
            IpKey::V6(a) => self.v6.contains(a),
        }
    }
}

/// An address as a number, IPv4-mapped IPv6 folded into IPv4 (so `::ffff:192.0.2.1`
/// is `192.0.2.1`). Computed arithmetically: `IpAddr::to_canonical` rebuilds the address
/// byte by byte in memory, and reading it back whole stalls store forwarding, which cost
/// more than the range search itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IpKey {
    V4(u32),
    V6(u128),
}

impl IpKey {
    #[inline]
    pub(super) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Self::V4(u32::from(a)),
            IpAddr::V6(a) => {
                let n = u128::from(a);
                if n >> 32 == 0xffff {
                    Self::V4(n as u32)
                } else {
                    Self::V6(n)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_string_sets_agree() {
        let small = StrSet::new(["a".to_owned(), "b".to_owned()]);
        assert!(matches!(small, StrSet::Scan(_)));
        assert!(small.contains("a") && !small.contains("c") && !small.contains(""));
        let large = StrSet::new((0..100).map(|i| format!("n{i}.com")));
        assert!(matches!(large, StrSet::Hash(_)));
        assert!(large.contains("n42.com") && !large.contains("n100.com"));
    }

    #[test]
    fn ranges_merge_and_search() {
        let r = Ranges::new(vec![(10u32, 20), (1, 3), (15, 30), (40, 40)]);
        assert_eq!(&*r.0, [(1, 3), (10, 30), (40, 40)]);
        for (x, want) in [
            (0, false),
            (1, true),
            (3, true),
            (4, false),
            (25, true),
            (31, false),
            (40, true),
            (41, false),
        ] {
            assert_eq!(r.contains(x), want, "{x}");
        }
        assert!(!Ranges::<u32>::new(vec![]).contains(0));
    }

    #[test]
    fn ip_ranges_cover_networks_of_both_families() {
        let nets = [
            "10.0.0.0/8",
            "192.0.2.1/32",
            "2001:db8::/32",
            "::ffff:198.51.100.0/120",
        ];
        let set = IpRanges::new(
            nets.iter()
                .filter_map(|n| n.parse::<ipnet::IpNet>().ok())
                .map(|n| (n.network(), n.broadcast())),
        );
        for (ip, want) in [
            ("10.255.0.1", true),
            ("11.0.0.0", false),
            ("192.0.2.1", true),
            ("192.0.2.2", false),
            ("2001:db8:ffff::1", true),
            ("2001:db9::", false),
            ("198.51.100.7", true),
            ("::ffff:10.1.2.3", true),
            ("::10.1.2.3", false),
        ] {
            let ip: IpAddr = ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
            assert_eq!(set.contains(IpKey::of(ip)), want, "{ip}");
            assert_eq!(IpKey::of(ip), IpKey::of(ip.to_canonical()), "{ip}");
        }
    }
}
