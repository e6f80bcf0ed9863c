//! Tests across the module: the real-world lists in `tests/data/lists-real/` (see its
//! README), and property tests that render random name sets in every format and parse them
//! back.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::name::is_local_host;
use super::*;

const ADSERVERS_HOSTS: &str = include_str!("../../tests/data/lists-real/adservers-hosts.txt");
const NOCOIN_ADBLOCK: &str = include_str!("../../tests/data/lists-real/nocoin-adblock.txt");
const NOCOIN_HOSTS: &str = include_str!("../../tests/data/lists-real/nocoin-hosts.txt");

fn domain_list(format: ListFormat, text: &str) -> (DomainList, ParseStats) {
    match List::parse(ListKind::Domain, format, text) {
        (List::Domain(list), stats) => (list, stats),
        (other, _) => panic!("a domain list parsed as {:?}", other.kind()),
    }
}

#[test]
fn adservers_hosts_list_loads_every_name() {
    let (list, stats) = domain_list(ListFormat::Hosts, ADSERVERS_HOSTS);
    // 42,531 host lines; 173 repeat a name in another letter case (`Checkra1n.cc`...).
    assert_eq!(
        (list.len(), stats.entries, stats.skipped),
        (42_358, 42_358, 0),
        "{:?}",
        stats.warnings
    );
    for name in [
        "0001-cab8-4c8c-43de.reporo.net",
        "doubleclick.net",
        "checkra1n.cc",
        "pt_br.statcounter.com",
    ] {
        assert!(list.matches_exact(name), "{name}");
        assert!(list.matches_suffix(&format!("deeper.{name}")), "{name}");
    }
    assert!(list.matches_exact("1016557.fls.doubleclick.net"));
    assert!(
        !list.matches_exact("reporo.net"),
        "only hosts under it are listed"
    );
    assert!(list.matches_suffix("anything.doubleclick.net"));
    for name in [
        "example.com",
        "wikipedia.org",
        "net",
        "reporo.net",
        "localhost",
    ] {
        assert!(!list.matches_suffix(name), "{name}");
    }
    // About 25 bytes a name in the arena plus a 4-byte slot per bucket.
    assert!(list.heap_bytes() < 1_500_000, "{} bytes", list.heap_bytes());
}

#[test]
fn nocoin_adblock_list_takes_domain_rules_and_skips_browser_rules() {
    let (list, stats) = domain_list(ListFormat::Adblock, NOCOIN_ADBLOCK);
    // 187 `||name^` rules (with `$third-party` or none, with `^` or not); every `@@` rule
    // there is `$websocket`-only, so none becomes an exception.
    assert_eq!(
        (list.len(), list.exceptions_len(), stats.entries),
        (187, 0, 187)
    );
    // Broken down in `nocoin_adblock_skips_are_counted_by_reason`.
    assert_eq!(stats.skipped, 130, "{:?}", stats.warnings);
    assert_eq!(stats.warnings.len(), ParseStats::MAX_WARNINGS);
    assert!(
        stats
            .warnings
            .iter()
            .any(|(line, why)| *line == 13 && why.starts_with("IP address"))
    );
    assert!(
        stats
            .warnings
            .iter()
            .any(|(line, why)| *line == 34 && why.starts_with("modifier $domain"))
    );
    assert!(
        stats
            .warnings
            .iter()
            .any(|(line, why)| *line == 212 && why.starts_with("URL or path rule"))
    );
    for name in [
        "2miners.com",
        "coinimp.com",
        "freecontent.date",
        "authedmine.com",
        "cdn.cloudcoins.co",
    ] {
        assert!(list.matches_exact(name), "{name}");
    }
    assert!(list.matches_suffix("www.coinimp.com"));
    assert!(list.matches_exact("js.nahnoji.cz"));
    // Listed only with `$domain=`/`$websocket` (or as an IP, or inside a wildcard).
    for name in [
        "authedwebmine.cz",
        "nahnoji.cz",
        "directprimal.com",
        "23.83.114.131",
        "now.sh",
        "example.com",
    ] {
        assert!(!list.matches_suffix(name), "{name}");
    }
}

#[test]
fn nocoin_adblock_skips_are_counted_by_reason() {
    let mut tally = std::collections::BTreeMap::new();
    for line in NOCOIN_ADBLOCK.lines() {
        let (_, stats) = domain_list(ListFormat::Adblock, line);
        if let Some((_, why)) = stats.warnings.first() {
            let reason = why.split([':', '$']).next().unwrap_or_default().trim_end();
            *tally.entry(reason.to_owned()).or_insert(0) += 1;
        }
    }
    let want = [
        ("IP address in a domain list", 7),
        ("URL or path rule", 81), // `/path`, `||host/path`, `||host^*...`
        ("URL pattern, not a name", 8), // bare `-coin-hive.js`, `.aspx?poolid=`...
        ("URL rule", 4),          // `=ws://*?pool=`...
        ("modifier", 18),         // `$websocket`, `$domain=`, `$script`...
        ("regex rule", 5),
        ("rule with only modifiers", 6),
        ("wildcard inside a name", 1),
    ];
    let want: std::collections::BTreeMap<String, usize> =
        want.iter().map(|&(r, n)| (r.to_owned(), n)).collect();
    assert_eq!(tally, want);
    assert_eq!(want.values().sum::<usize>(), 130);
}

#[test]
fn nocoin_adblock_and_hosts_versions_agree_on_shared_names() {
    let (adblock, _) = domain_list(ListFormat::Adblock, NOCOIN_ADBLOCK);
    let (hosts, stats) = domain_list(ListFormat::Hosts, NOCOIN_HOSTS);
    assert_eq!((hosts.len(), stats.skipped), (313, 0));
    // The two files are different snapshots of the list (adblock: November 2025, hosts:
    // March 2025) and hosts files spell out subdomains, so the sets differ; measured:
    let adblock_names: BTreeSet<&str> = adblock.blocked().collect();
    let hosts_names: BTreeSet<&str> = hosts.blocked().collect();
    assert_eq!(adblock_names.intersection(&hosts_names).count(), 140);
    // Subdomain matching closes much of the gap: 183 of the 313 hosts names fall under an
    // adblock rule, and every one of the 140 shared names matches both ways.
    let covered = hosts_names
        .iter()
        .filter(|name| adblock.matches_suffix(name))
        .count();
    assert_eq!(covered, 183);
    for name in adblock_names.intersection(&hosts_names) {
        assert!(
            adblock.matches_exact(name) && hosts.matches_exact(name),
            "{name}"
        );
    }
    // Names that both versions list.
    for name in [
        "authedmine.com",
        "webmine.cz",
        "cdn.cloudcoins.co",
        "js.nahnoji.cz",
    ] {
        assert!(
            adblock.matches_suffix(name) && hosts.matches_suffix(name),
            "{name}"
        );
    }
}

#[test]
fn real_lists_load_as_other_kinds_without_panicking() {
    for text in [ADSERVERS_HOSTS, NOCOIN_ADBLOCK, NOCOIN_HOSTS] {
        for kind in [ListKind::Ip, ListKind::Email, ListKind::String] {
            for format in [
                ListFormat::Domains,
                ListFormat::Hosts,
                ListFormat::Adblock,
                ListFormat::Plain,
            ] {
                let (list, _) = List::parse(kind, format, text);
                assert_eq!(list.kind(), kind);
            }
        }
    }
}

/// A valid, normalised DNS name of one to four labels.
fn name() -> impl Strategy<Value = String> {
    let label = "[a-z0-9]([a-z0-9_-]{0,8}[a-z0-9])?";
    (prop::collection::vec(label, 0..4), "[a-z][a-z0-9]{0,5}")
        .prop_map(|(labels, tld)| {
            let mut name = labels.join(".");
            if !name.is_empty() {
                name.push('.');
            }
            name + &tld
        })
        .prop_filter("hosts files skip local names", |name| !is_local_host(name))
}

fn render(format: ListFormat, names: &BTreeSet<String>) -> String {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    match format {
        ListFormat::Domains | ListFormat::Plain => {
            format!("# comment\n{}\n", names.join("\n"))
        }
        ListFormat::Hosts => names
            .chunks(3)
            .map(|chunk| format!("0.0.0.0 {} # c\n", chunk.join(" ")))
            .collect(),
        ListFormat::Adblock => names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                if i % 2 == 0 {
                    format!("||{name}^\n")
                } else {
                    format!("||{name}^$third-party\n")
                }
            })
            .collect(),
    }
}

proptest! {
    #[test]
    fn every_format_round_trips_a_name_set(names in prop::collection::btree_set(name(), 0..60)) {
        for format in [ListFormat::Domains, ListFormat::Hosts, ListFormat::Adblock, ListFormat::Plain] {
            let (list, stats) = domain_list(format, &render(format, &names));
            let got: BTreeSet<String> = list.blocked().map(str::to_owned).collect();
            prop_assert_eq!(&got, &names, "{:?}", format);
            prop_assert_eq!((stats.entries, stats.skipped), (names.len(), 0));
            for name in &names {
                prop_assert!(list.matches_exact(name));
            }
        }
    }

    #[test]
    fn names_round_trip_in_any_case_and_with_trailing_dot(names in prop::collection::btree_set(name(), 1..30)) {
        let text: String = names.iter().map(|n| format!("{}.\n*.{n}\n", n.to_ascii_uppercase())).collect();
        let (list, stats) = domain_list(ListFormat::Domains, &text);
        let got: BTreeSet<String> = list.blocked().map(str::to_owned).collect();
        prop_assert_eq!(got, names);
        prop_assert_eq!(stats.skipped, 0);
    }

    #[test]
    fn junk_lines_never_panic(lines in prop::collection::vec("[-a-zA-Z0-9.|@^$#/!*:~=,_ \t\\[\\]?%]{0,40}|\\PC{0,20}", 0..40)) {
        let text = lines.join("\n");
        for kind in [ListKind::Domain, ListKind::Ip, ListKind::Email, ListKind::String] {
            for format in [ListFormat::Domains, ListFormat::Hosts, ListFormat::Adblock, ListFormat::Plain] {
                let (list, stats) = List::parse(kind, format, &text);
                prop_assert_eq!(list.len(), stats.entries);
                prop_assert!(stats.warnings.len() <= ParseStats::MAX_WARNINGS.min(stats.skipped));
                if let List::Domain(domains) = &list {
                    // Whatever was accepted is a normalised name that matches itself.
                    for name in domains.blocked() {
                        prop_assert!(domains.matches_suffix(name) || domains.exceptions_len() > 0);
                        prop_assert_eq!(name.to_ascii_lowercase(), name);
                    }
                }
            }
        }
    }

    #[test]
    fn ip_set_agrees_with_a_linear_scan(
        nets in prop::collection::vec((any::<u32>(), 8u8..=32), 0..40),
        probes in prop::collection::vec(any::<u32>(), 0..40),
    ) {
        let nets: Vec<ipnet::Ipv4Net> = nets
            .into_iter()
            .filter_map(|(addr, len)| ipnet::Ipv4Net::new(addr.into(), len).ok())
            .map(|net| net.trunc())
            .collect();
        let set = IpSet::from_networks(nets.iter().copied().map(ipnet::IpNet::V4));
        let near = nets.iter().flat_map(|n| [u32::from(n.network()), u32::from(n.broadcast()).wrapping_add(1)]);
        for probe in probes.into_iter().chain(near) {
            let addr = std::net::Ipv4Addr::from(probe);
            let want = nets.iter().any(|net| net.contains(&addr));
            prop_assert_eq!(set.contains(addr.into()), want, "{}", addr);
            prop_assert_eq!(set.contains(addr.to_ipv6_mapped().into()), want, "{}", addr);
        }
    }
}
