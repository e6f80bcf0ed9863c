//! Networks for identity, locations and access control: parsing addresses and CIDRs the
//! way operators write them, and longest-prefix lookups that never allocate.

use std::hash::Hash;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

/// A hash map for the query path: foldhash is fast, and its weaker collision resistance
/// does not matter for maps that only the loader inserts into.
pub(crate) type FastMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;

/// Why an entry of `ips` or `networks` was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BadNet {
    #[error("`{0}` is not an IP address")]
    Address(String),
    #[error("`{0}` is not an IP network")]
    Network(String),
    #[error("`{0}` has host bits set (the network is `{1}`)")]
    HostBits(String, IpNet),
}

/// Parses an address (a host network) or a network in CIDR notation. IPv4-mapped IPv6 is
/// stored as IPv4, as lookups canonicalize sources the same way. A network with host bits
/// set is refused rather than silently truncated: `10.1.2.3/8` is more likely a typo for
/// `10.1.2.3/32` than a way to write `10.0.0.0/8`.
pub(crate) fn parse_net(text: &str) -> Result<IpNet, BadNet> {
    let text = text.trim();
    let net = if text.contains('/') {
        let net: IpNet = text.parse().map_err(|_| BadNet::Network(text.to_owned()))?;
        if net.trunc() != net {
            return Err(BadNet::HostBits(text.to_owned(), net.trunc()));
        }
        net
    } else {
        let ip: IpAddr = text.parse().map_err(|_| BadNet::Address(text.to_owned()))?;
        IpNet::from(ip)
    };
    Ok(canonical_net(net))
}

/// A network as users write it: a single address without its `/32` or `/128`.
pub(crate) struct Shown(pub(crate) IpNet);

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// `::ffff:a.b.c.d/n` (n ≥ 96) as `a.b.c.d/(n-96)`; anything else unchanged.
pub(crate) fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        {
            if let Ok(v4) = Ipv4Net::new(v4, len) {
                return IpNet::V4(v4);
            }
        }
    }
    net
}

/// Longest-prefix match: one hash map per prefix length in use, probed from the longest.
/// A directory uses few distinct lengths (typically /32, /128 and a /24 or /64 or two), so
/// a lookup is a handful of probes, none allocating; unlike a trie, the cost does not grow
/// with the number of entries.
#[derive(Debug)]
pub(crate) struct PrefixMap<V> {
    /// Sorted by prefix length, longest first; keys are network addresses.
    v4: Vec<(u8, FastMap<u32, V>)>,
    v6: Vec<(u8, FastMap<u128, V>)>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        Self {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }
}

impl<V> PrefixMap<V> {
    /// Adds `net` (host bits already cleared), replacing any value for the same network.
    pub(crate) fn insert(&mut self, net: IpNet, value: V) {
        match net {
            IpNet::V4(n) => {
                insert_level(&mut self.v4, n.prefix_len(), u32::from(n.network()), value)
            }
            IpNet::V6(n) => {
                insert_level(&mut self.v6, n.prefix_len(), u128::from(n.network()), value)
            }
        }
    }

    /// The value of the most specific network holding `ip`.
    pub(crate) fn get(&self, ip: IpAddr) -> Option<&V> {
        match ip {
            IpAddr::V4(ip) => {
                let bits = u32::from(ip);
                self.v4
                    .iter()
                    .find_map(|(len, map)| map.get(&(bits & mask_v4(*len))))
            }
            IpAddr::V6(ip) => {
                let bits = u128::from(ip);
                self.v6
                    .iter()
                    .find_map(|(len, map)| map.get(&(bits & mask_v6(*len))))
            }
        }
    }
}

/// The netmask of an IPv4 prefix length (0..=32).
fn mask_v4(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

/// The netmask of an IPv6 prefix length (0..=128).
fn mask_v6(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

fn insert_level<K: Hash + Eq, V>(levels: &mut Vec<(u8, FastMap<K, V>)>, len: u8, key: K, value: V) {
    let at = match levels.binary_search_by(|(l, _)| len.cmp(l)) {
        Ok(at) => at,
        Err(at) => {
            levels.insert(at, (len, FastMap::default()));
            at
        }
    };
    levels[at].1.insert(key, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_map_prefers_the_longest_prefix() {
        let mut map = PrefixMap::default();
        for (net, v) in [
            ("0.0.0.0/0", 0),
            ("10.0.0.0/8", 8),
            ("10.1.0.0/16", 16),
            ("10.1.2.3/32", 32),
            ("::/0", 100),
            ("2001:db8::/32", 132),
            ("2001:db8::1/128", 228),
        ] {
            map.insert(net.parse().unwrap(), v);
        }
        let get = |s: &str| map.get(ip(s)).copied();
        assert_eq!(get("10.1.2.3"), Some(32));
        assert_eq!(get("10.1.2.4"), Some(16));
        assert_eq!(get("10.2.0.0"), Some(8));
        assert_eq!(get("11.0.0.0"), Some(0));
        assert_eq!(get("2001:db8::1"), Some(228));
        assert_eq!(get("2001:db8::2"), Some(132));
        assert_eq!(get("::1"), Some(100));
        assert_eq!(PrefixMap::<u8>::default().get(ip("10.0.0.1")), None);
        assert_eq!(
            (mask_v4(0), mask_v4(8), mask_v4(32)),
            (0, 0xff00_0000, u32::MAX)
        );
        assert_eq!((mask_v6(0), mask_v6(128)), (0, u128::MAX));
    }
}
