//! [`IpSet`]: IP addresses and CIDR networks as sorted, merged, non-overlapping ranges.
//!
//! A list of networks is a union of integer intervals, so after sorting and merging, a
//! lookup is one binary search: find the last range starting at or below the address and
//! check its end. Starts and ends live in separate vectors so the search touches only the
//! starts (16 per cache line for IPv4). 10,000 ranges cost about 14 comparisons.
//!
//! IPv4 and IPv6 are kept apart (u32 and u128). An IPv4-mapped IPv6 address
//! (`::ffff:192.0.2.1`) is looked up as IPv4, and a listed IPv6 range that covers mapped
//! addresses is also added as the IPv4 range it maps, so both spellings always agree.

use std::net::IpAddr;

use ipnet::IpNet;

/// The IPv4-mapped block `::ffff:0:0/96`.
const MAPPED_START: u128 = 0xffff_0000_0000;
const MAPPED_END: u128 = 0xffff_ffff_ffff;

/// A set of IP addresses and networks.
#[derive(Debug, Default, Clone)]
pub struct IpSet {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
    /// Networks given, before merging.
    networks: usize,
}

/// Sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Default, Clone)]
struct Ranges<T> {
    starts: Vec<T>,
    ends: Vec<T>,
}

impl<T: Copy + Ord> Ranges<T> {
    /// Sorts and merges `ranges` (inclusive); `next` is `x + 1` or `None` at the maximum.
    fn build(mut ranges: Vec<(T, T)>, next: impl Fn(T) -> Option<T>) -> Self {
        ranges.sort_unstable();
        let mut merged = Self {
            starts: Vec::with_capacity(ranges.len()),
            ends: Vec::with_capacity(ranges.len()),
        };
        for (start, end) in ranges {
            if let Some(last) = merged.ends.last_mut() {
                // Overlapping or adjacent (`start <= last + 1`): extend the last range.
                if next(*last).is_none_or(|after| start <= after) {
                    *last = (*last).max(end);
                    continue;
                }
            }
            merged.starts.push(start);
            merged.ends.push(end);
        }
        merged.starts.shrink_to_fit();
        merged.ends.shrink_to_fit();
        merged
    }

    fn contains(&self, x: T) -> bool {
        let i = self.starts.partition_point(|&start| start <= x);
        i > 0 && self.ends.get(i - 1).is_some_and(|&end| x <= end)
    }
}

impl IpSet {
    /// The set of the given networks (host bits are ignored: `10.1.2.3/8` is `10.0.0.0/8`).
    pub fn from_networks(networks: impl IntoIterator<Item = IpNet>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut count = 0;
        for net in networks {
            count += 1;
            match net {
                IpNet::V4(net) => v4.push((u32::from(net.network()), u32::from(net.broadcast()))),
                IpNet::V6(net) => {
                    let (start, end) = (u128::from(net.network()), u128::from(net.broadcast()));
                    v6.push((start, end));
                    let (mapped_start, mapped_end) = (start.max(MAPPED_START), end.min(MAPPED_END));
                    if mapped_start <= mapped_end {
                        // Both lie inside the /96: their offsets in it are the IPv4 range.
                        let offset = |x: u128| u32::try_from(x - MAPPED_START).ok();
                        if let (Some(first), Some(last)) =
                            (offset(mapped_start), offset(mapped_end))
                        {
                            v4.push((first, last));
                        }
                    }
                }
            }
        }
        Self {
            v4: Ranges::build(v4, |x: u32| x.checked_add(1)),
            v6: Ranges::build(v6, |x: u128| x.checked_add(1)),
            networks: count,
        }
    }

    /// Whether `ip` is in the set (IPv4-mapped IPv6 addresses match IPv4 entries).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.v4.contains(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.v4.contains(u32::from(v4)),
                None => self.v6.contains(u128::from(v6)),
            },
        }
    }

    /// Number of addresses and networks the set was built from.
    pub fn len(&self) -> usize {
        self.networks
    }

    /// Whether the set was built from nothing.
    pub fn is_empty(&self) -> bool {
        self.networks == 0
    }

    /// Number of disjoint ranges after merging (IPv4 plus IPv6).
    pub fn ranges_len(&self) -> usize {
        self.v4.starts.len() + self.v6.starts.len()
    }
}

/// Parses a list value: an address (`192.0.2.1`, `2001:db8::1`) or a network
/// (`192.0.2.0/24`); a bracketed IPv6 address is accepted too.
pub(crate) fn parse_network(value: &str) -> Option<IpNet> {
    if let Ok(net) = value.parse::<IpNet>() {
        return Some(net);
    }
    let value = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    value.parse::<IpAddr>().ok().map(IpNet::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(ip: [u8; 4]) -> IpAddr {
        IpAddr::V6(std::net::Ipv4Addr::from(ip).to_ipv6_mapped())
    }

    fn ip_set(values: &[&str]) -> IpSet {
        IpSet::from_networks(values.iter().filter_map(|v| parse_network(v)))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn addresses_and_networks_match_v4_and_v6() {
        let set = ip_set(&[
            "192.0.2.1",
            "10.0.0.0/8",
            "2001:db8::/32",
            "::1",
            "[2001:db8:ffff::1]",
        ]);
        assert!(set.contains(ip("192.0.2.1")));
        assert!(!set.contains(ip("192.0.2.2")));
        assert!(set.contains(ip("10.255.255.255")));
        assert!(!set.contains(ip("11.0.0.0")));
        assert!(set.contains(ip("2001:db8:1::5")));
        assert!(set.contains(ip("::1")));
        assert!(!set.contains(ip("::2")));
        assert!(!set.contains(ip("2001:db9::")));
        assert_eq!(set.len(), 5);
    }

    #[test]
    fn mapped_v6_lookup_matches_v4_entry() {
        let set = ip_set(&["192.0.2.0/24"]);
        assert!(set.contains(mapped([192, 0, 2, 77])));
        assert!(!set.contains(mapped([192, 0, 3, 1])));
    }

    #[test]
    fn mapped_v6_entry_matches_v4_lookup() {
        let set = ip_set(&["::ffff:198.51.100.0/120", "::/0"]);
        assert!(set.contains(ip("198.51.100.9")));
        assert!(
            set.contains(ip("8.8.8.8")),
            "::/0 covers every mapped address"
        );
        let only_mapped = ip_set(&["::ffff:198.51.100.7"]);
        assert!(only_mapped.contains(ip("198.51.100.7")));
        assert!(!only_mapped.contains(ip("198.51.100.8")));
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        let set = ip_set(&[
            "10.0.0.0/24",
            "10.0.1.0/24",
            "10.0.0.128/25",
            "10.0.3.0/24",
            "0.0.0.0/0",
        ]);
        assert_eq!(set.v4.starts.len(), 1);
        let set2 = ip_set(&[
            "10.0.0.0/24",
            "10.0.1.0/24",
            "10.0.3.0/24",
            "255.255.255.255",
        ]);
        assert_eq!(set2.ranges_len(), 3);
        assert!(set2.contains(ip("10.0.1.255")));
        assert!(!set2.contains(ip("10.0.2.0")));
        assert!(set2.contains(ip("255.255.255.255")));
    }

    #[test]
    fn host_bits_in_a_network_are_ignored() {
        let set = ip_set(&["10.1.2.3/8"]);
        assert!(set.contains(ip("10.200.0.1")));
    }

    #[test]
    fn garbage_is_not_a_network() {
        for bad in [
            "",
            "10.0.0.0/33",
            "1.2.3",
            "example.com",
            "::g",
            "10.0.0.1 10.0.0.2",
        ] {
            assert!(parse_network(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ten_thousand_ranges_look_up_by_binary_search() {
        let nets = (0..10_000u32)
            .map(|i| format!("{}.{}.{}.0/24", 10 + i / 65_536, (i / 256) % 256, i % 256));
        let set = IpSet::from_networks(nets.filter_map(|n| parse_network(&n)).step_by(2));
        assert_eq!(set.len(), 5_000);
        assert!(set.contains(ip("10.0.2.1")));
        assert!(!set.contains(ip("10.0.3.1")));
        assert!(set.contains(ip("10.39.14.255")));
    }
}
