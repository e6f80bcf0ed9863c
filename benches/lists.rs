//! List benches (STYLE: `benches/lists.rs`, about 1M domains): building a domain list
//! from text, and the lookups a query pays: suffix (`any(dns.domains[*] in $list)`),
//! exact (`dns.fqdn in $list`), and an IP set of 10,000 ranges.
//!
//! The names are synthetic but shaped like real block lists: 1–3 random labels of 3–10
//! characters under a common TLD, about 18 bytes on average.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dnsgate::lists::{List, ListFormat, ListKind};

/// splitmix64, so runs compare like with like.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn names(count: usize) -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const TLDS: [&str; 8] = ["com", "net", "org", "io", "de", "co.uk", "info", "ru"];
    let mut rng = Rng(42);
    (0..count)
        .map(|_| {
            let mut name = String::new();
            for _ in 0..=rng.below(3) {
                for _ in 0..3 + rng.below(8) {
                    name.push(char::from(ALPHABET[rng.below(ALPHABET.len())]));
                }
                name.push('.');
            }
            name + TLDS[rng.below(TLDS.len())]
        })
        .collect()
}

fn domain_list(format: ListFormat, text: &str) -> dnsgate::lists::DomainList {
    match List::parse(ListKind::Domain, format, text) {
        (List::Domain(list), _) => list,
        _ => unreachable!("a domain list"),
    }
}

fn build(c: &mut Criterion) {
    let names = names(1_000_000);
    let domains: String = names.iter().map(|n| format!("{n}\n")).collect();
    let hosts: String = names.iter().map(|n| format!("0.0.0.0 {n}\n")).collect();
    let adblock: String = names.iter().map(|n| format!("||{n}^\n")).collect();
    // Memory is not something criterion measures; report the built list's heap once.
    let list = domain_list(ListFormat::Domains, &domains);
    let avg = names.iter().map(String::len).sum::<usize>() as f64 / names.len() as f64;
    eprintln!(
        "lists: {} names (avg {avg:.1} bytes) hold {:.1} MiB of heap",
        list.len(),
        list.heap_bytes() as f64 / f64::from(1 << 20)
    );
    drop(list);
    let mut group = c.benchmark_group("lists/build_1m");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for (label, format, text) in [
        ("domains", ListFormat::Domains, &domains),
        ("hosts", ListFormat::Hosts, &hosts),
        ("adblock", ListFormat::Adblock, &adblock),
    ] {
        group.bench_function(label, |b| b.iter(|| domain_list(format, black_box(text))));
    }
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let names = names(1_000_000);
    let text: String = names.iter().map(|n| format!("{n}\n")).collect();
    let list = domain_list(ListFormat::Domains, &text);
    let sample: Vec<&String> = names.iter().step_by(97).take(10_000).collect();
    // Four-label-ish queries: a subdomain of a listed name (hit after one or more
    // probes), a sibling that is not listed (every probe misses), and the name itself.
    let hits: Vec<String> = sample.iter().map(|n| format!("www.{n}")).collect();
    let misses: Vec<String> = sample.iter().map(|n| format!("www.x{n}")).collect();
    let exact: Vec<&str> = sample.iter().map(|n| n.as_str()).collect();

    let mut group = c.benchmark_group("lists/lookup_1m");
    let mut i = 0;
    group.bench_function("suffix_hit", |b| {
        b.iter(|| {
            i = (i + 1) % hits.len();
            list.matches_suffix(black_box(&hits[i]))
        })
    });
    group.bench_function("suffix_miss", |b| {
        b.iter(|| {
            i = (i + 1) % misses.len();
            list.matches_suffix(black_box(&misses[i]))
        })
    });
    group.bench_function("exact_hit", |b| {
        b.iter(|| {
            i = (i + 1) % exact.len();
            list.matches_exact(black_box(exact[i]))
        })
    });
    group.finish();

    let networks: String = (0..10_000u32)
        .map(|n| format!("10.{}.{}.0/24\n", (n * 2) / 256, (n * 2) % 256))
        .collect();
    let List::Ip(ips) = List::parse(ListKind::Ip, ListFormat::Plain, &networks).0 else {
        unreachable!("an IP list")
    };
    let mut rng = Rng(7);
    let probes: Vec<IpAddr> = (0..10_000)
        .map(|_| Ipv4Addr::from(0x0a00_0000 + (rng.next() as u32 % 0x0050_0000)).into())
        .collect();
    let mut group = c.benchmark_group("lists/ip_10k_ranges");
    group.bench_function("contains", |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            ips.contains(black_box(probes[i]))
        })
    });
    group.finish();
}

criterion_group!(benches, build, lookup);
criterion_main!(benches);
