//! Every list format for every list kind, on any text.
//!
//! Input: one byte picking the kind (`% 4`: domain, ip, email, string) and the format
//! (`/ 4 % 4`: domains, hosts, adblock, plain), then the list text (invalid UTF-8 is
//! replaced, as a lossy reader would). Checked: the counts agree, every blocked name
//! matches and every exception does not, a domain list's names read back as they are,
//! and every address or network line of an IP list is in the set.
#![no_main]

use std::net::IpAddr;

use dnsgate::lists::{List, ListFormat, ListKind, ParseStats};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

const KINDS: [ListKind; 4] = [
    ListKind::Domain,
    ListKind::Ip,
    ListKind::Email,
    ListKind::String,
];
const FORMATS: [ListFormat; 4] = [
    ListFormat::Domains,
    ListFormat::Hosts,
    ListFormat::Adblock,
    ListFormat::Plain,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(pick % 4)];
    let format = FORMATS[usize::from(pick / 4 % 4)];
    let text = String::from_utf8_lossy(rest);
    let (list, stats) = List::parse(kind, format, &text);
    assert_eq!(list.kind(), kind);
    assert_eq!(list.len(), stats.entries, "{stats:?}");
    assert!(stats.warnings.len() <= ParseStats::MAX_WARNINGS.min(stats.skipped));
    match &list {
        List::Domain(d) => {
            let blocked: Vec<&str> = d.blocked().collect();
            let excepted: Vec<&str> = d.exceptions().collect();
            assert_eq!(blocked.len(), d.len());
            assert_eq!(excepted.len(), d.exceptions_len());
            for name in &blocked {
                assert_eq!(d.matches_exact(name), d.matches_suffix(name), "{name:?}");
                if d.exceptions_len() == 0 {
                    assert!(d.matches_exact(name), "{name:?}");
                }
            }
            for name in &excepted {
                assert!(
                    !d.matches_exact(name) && !d.matches_suffix(name),
                    "{name:?}"
                );
            }
            // The stored names are normalised: as a plain list they load as themselves.
            let again = blocked.join("\n");
            let (List::Domain(d2), s2) = List::parse(ListKind::Domain, ListFormat::Domains, &again)
            else {
                unreachable!()
            };
            assert_eq!(s2.skipped, 0, "{:?}", s2.warnings);
            assert!(d2.blocked().eq(blocked.iter().copied()));
        }
        List::Ip(set) => {
            for line in text.lines() {
                let value = line.trim();
                let value = value.find('#').map_or(value, |i| &value[..i]).trim_end();
                let net = value
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| value.parse::<IpAddr>().ok().map(IpNet::from));
                if let Some(net) = net {
                    assert!(set.contains(net.network()), "{net}");
                    assert!(set.contains(net.broadcast()), "{net}");
                }
            }
        }
        List::Email(_) | List::String(_) => {}
    }
});
