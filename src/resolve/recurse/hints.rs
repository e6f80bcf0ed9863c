//! Root hints: where iteration starts. Built in (the IANA root servers, as in
//! `named.root`), or read from a file in that zone-file format.

use std::net::IpAddr;

use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::txt::Parser;

/// The root servers' names and addresses (IANA `named.root`, last changed 2023-11 when
/// b.root-servers.net moved).
const BUILT_IN: &str = "
.                        3600000      NS    A.ROOT-SERVERS.NET.
A.ROOT-SERVERS.NET.      3600000      A     198.41.0.4
A.ROOT-SERVERS.NET.      3600000      AAAA  2001:503:ba3e::2:30
.                        3600000      NS    B.ROOT-SERVERS.NET.
B.ROOT-SERVERS.NET.      3600000      A     170.247.170.2
B.ROOT-SERVERS.NET.      3600000      AAAA  2801:1b8:10::b
.                        3600000      NS    C.ROOT-SERVERS.NET.
C.ROOT-SERVERS.NET.      3600000      A     192.33.4.12
C.ROOT-SERVERS.NET.      3600000      AAAA  2001:500:2::c
.                        3600000      NS    D.ROOT-SERVERS.NET.
D.ROOT-SERVERS.NET.      3600000      A     199.7.91.13
D.ROOT-SERVERS.NET.      3600000      AAAA  2001:500:2d::d
.                        3600000      NS    E.ROOT-SERVERS.NET.
E.ROOT-SERVERS.NET.      3600000      A     192.203.230.10
E.ROOT-SERVERS.NET.      3600000      AAAA  2001:500:a8::e
.                        3600000      NS    F.ROOT-SERVERS.NET.
F.ROOT-SERVERS.NET.      3600000      A     192.5.5.241
F.ROOT-SERVERS.NET.      3600000      AAAA  2001:500:2f::f
.                        3600000      NS    G.ROOT-SERVERS.NET.
G.ROOT-SERVERS.NET.      3600000      A     192.112.36.4
G.ROOT-SERVERS.NET.      3600000      AAAA  2001:500:12::d0d
.                        3600000      NS    H.ROOT-SERVERS.NET.
H.ROOT-SERVERS.NET.      3600000      A     198.97.190.53
H.ROOT-SERVERS.NET.      3600000      AAAA  2001:500:1::53
.                        3600000      NS    I.ROOT-SERVERS.NET.
I.ROOT-SERVERS.NET.      3600000      A     192.36.148.17
I.ROOT-SERVERS.NET.      3600000      AAAA  2001:7fe::53
.                        3600000      NS    J.ROOT-SERVERS.NET.
J.ROOT-SERVERS.NET.      3600000      A     192.58.128.30
J.ROOT-SERVERS.NET.      3600000      AAAA  2001:503:c27::2:30
.                        3600000      NS    K.ROOT-SERVERS.NET.
K.ROOT-SERVERS.NET.      3600000      A     193.0.14.129
K.ROOT-SERVERS.NET.      3600000      AAAA  2001:7fd::1
.                        3600000      NS    L.ROOT-SERVERS.NET.
L.ROOT-SERVERS.NET.      3600000      A     199.7.83.42
L.ROOT-SERVERS.NET.      3600000      AAAA  2001:500:9f::42
.                        3600000      NS    M.ROOT-SERVERS.NET.
M.ROOT-SERVERS.NET.      3600000      A     202.12.27.33
M.ROOT-SERVERS.NET.      3600000      AAAA  2001:dc3::35
";

/// The root name servers: their names and addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RootHints {
    /// `(server name, address)` for every address given.
    pub servers: Vec<(Name, IpAddr)>,
}

impl RootHints {
    /// The IANA root servers.
    pub fn built_in() -> Self {
        Self::parse(BUILT_IN).unwrap_or_else(|e| unreachable!("built-in root hints: {e}"))
    }

    /// Reads hints in `named.root` format: `. NS name` records and the names' A/AAAA
    /// records. Addresses of names no root NS record names are ignored.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (_, sets) = Parser::new(text, None, Some(Name::root()))
            .parse()
            .map_err(|e| e.to_string())?;
        let mut names = Vec::new();
        let mut addrs = Vec::new();
        for set in sets.values() {
            for r in set.records_without_rrsigs() {
                match &r.data {
                    RData::NS(ns) if r.name.is_root() => names.push(ns.0.clone()),
                    RData::A(a) => addrs.push((r.name.clone(), IpAddr::V4(a.0))),
                    RData::AAAA(a) => addrs.push((r.name.clone(), IpAddr::V6(a.0))),
                    _ => {}
                }
            }
        }
        let mut servers: Vec<(Name, IpAddr)> = addrs
            .into_iter()
            .filter(|(n, _)| names.contains(n))
            .collect();
        servers.sort();
        servers.dedup();
        if servers.is_empty() {
            return Err(
                "no root server addresses (expected `. NS name` records and A/AAAA records for those names)"
                    .into(),
            );
        }
        Ok(Self { servers })
    }

    /// The root server names.
    pub fn names(&self) -> Vec<Name> {
        let mut v: Vec<Name> = self.servers.iter().map(|(n, _)| n.clone()).collect();
        v.dedup();
        v
    }

    /// Record types the hints carry addresses of (A, AAAA).
    pub fn families(&self) -> Vec<RecordType> {
        let mut v = Vec::new();
        if self.servers.iter().any(|(_, ip)| ip.is_ipv4()) {
            v.push(RecordType::A);
        }
        if self.servers.iter().any(|(_, ip)| ip.is_ipv6()) {
            v.push(RecordType::AAAA);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_hints_name_thirteen_servers_with_both_families() {
        let h = RootHints::built_in();
        assert_eq!(h.names().len(), 13);
        assert_eq!(h.servers.len(), 26);
        assert!(h.servers.iter().any(|(n, ip)| {
            n.to_ascii().eq_ignore_ascii_case("a.root-servers.net.")
                && *ip == "198.41.0.4".parse::<IpAddr>().unwrap()
        }));
    }

    #[test]
    fn hints_files_keep_only_root_servers() {
        let h = RootHints::parse(
            ". 3600 NS a.root.test.\na.root.test. 3600 A 127.1.0.1\nother.test. 3600 A 127.9.9.9\n",
        )
        .unwrap();
        assert_eq!(h.servers.len(), 1);
        assert_eq!(h.families(), vec![RecordType::A]);
        assert!(RootHints::parse("other.test. 3600 A 127.9.9.9\n").is_err());
        assert!(RootHints::parse(". 3600 NS\n").is_err());
    }
}
