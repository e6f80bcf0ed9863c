//! Policy benchmarks: parse, compile and evaluate (wirefilter's split), on a realistic set —
//! 100 policies, three domain lists of 1,000,000 names in all, 10,000 IP ranges, an
//! identity directory — over a mix of blocked and allowed names.
//!
//! `cargo bench --bench policy`

#![allow(clippy::unwrap_used)] // a benchmark: a failure should stop it loudly

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use dnsgate::geoip::GeoInfo;
use dnsgate::policy::expr::{self, CompileEnv, Limits};
use dnsgate::policy::fields::{ListMemo, Phase, QueryFacts};
use dnsgate::runtime::Runtime;

fn name(i: usize) -> String {
    format!("host{i}.domain{}.example{}.com", i % 977, i % 13)
}

/// Writes the configuration and its lists; returns the loaded runtime.
fn realistic() -> (tempfile::TempDir, Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = String::from("[identity]\ndirectory = \"ids.toml\"\n");
    for (list, range) in [
        ("ads", 0..500_000),
        ("trackers", 500_000..800_000),
        ("malware", 800_000..1_000_000),
    ] {
        let mut text = String::new();
        for i in range {
            writeln!(text, "{}", name(i)).unwrap();
        }
        std::fs::write(dir.path().join(format!("{list}.txt")), text).unwrap();
        writeln!(cfg, "[[lists]]\nname = \"{list}\"\npath = \"{list}.txt\"\n").unwrap();
    }
    let mut nets = String::new();
    for i in 0..10_000u32 {
        let a = 0x0a00_0000 + i * 256;
        writeln!(nets, "{}/24", std::net::Ipv4Addr::from(a)).unwrap();
    }
    std::fs::write(dir.path().join("nets.txt"), nets).unwrap();
    cfg.push_str("[[lists]]\nname = \"nets\"\ntype = \"ip\"\npath = \"nets.txt\"\n\n");
    cfg.push_str("[[categories]]\nid = 1\nname = \"Ads\"\nlists = [\"ads\", \"trackers\"]\n\n");
    cfg.push_str(
        "[[categories]]\nid = 80\nname = \"Malware\"\nlists = [\"malware\"]\nsecurity = true\n\n",
    );
    std::fs::write(
        dir.path().join("ids.toml"),
        "[[groups]]\nid = \"g1\"\nname = \"kids\"\n[[users]]\nemail = \"bob@example.com\"\ngroups = [\"g1\"]\n\
         [[devices]]\nid = \"tablet\"\nuser = \"bob@example.com\"\nips = [\"192.168.1.20\"]\n",
    )
    .unwrap();
    let shapes = [
        "any(dns.domains[*] in $ads)",
        "any(dns.domains[*] in $trackers) and not dns.src_ip in $nets",
        "any(dns.security_category[*] in {80})",
        "dns.fqdn == \"exact{i}.example.org\"",
        "any(dns.domains[*] == \"blocked{i}.example.net\")",
        "dns.query_rtype == \"ANY\" and dns.fqdn contains \"x{i}\"",
        "any(dns.content_category[*] in {1}) and any(identity.groups.name[*] == \"kids\")",
        "dns.fqdn matches \"^ad[0-9]+\\\\.tracker{i}\\\\.\"",
        "identity.email == \"user{i}@example.com\"",
        "any(dns.domains[*] in {\"a{i}.com\" \"b{i}.com\" \"c{i}.com\"})",
    ];
    for i in 0..100 {
        let traffic = shapes[i % shapes.len()].replace("{i}", &i.to_string());
        writeln!(cfg, "[[policies]]\nname = \"p{i}\"\nprecedence = {}\naction = \"block\"\ntraffic = '{traffic}'\n", 1000 - i)
            .unwrap();
    }
    let path = dir.path().join("dnsgate.toml");
    std::fs::write(&path, cfg).unwrap();
    let rt = Runtime::load(&path).unwrap_or_else(|d| panic!("{d:?}"));
    (dir, rt)
}

fn bench(c: &mut Criterion) {
    let lists = Default::default();
    let env = CompileEnv {
        lists: &lists,
        email_variants: false,
        has_geoip: false,
        limits: Limits::default(),
    };
    let src = "any(dns.domains[*] == \"example.com\") and not (dns.src_ip in {10.0.0.0/8 192.168.0.0/16} or dns.query_rtype == \"ANY\")";
    c.bench_function("expr/parse", |b| {
        b.iter(|| expr::parse(black_box(src), Limits::default()))
    });
    c.bench_function("expr/compile", |b| {
        b.iter(|| expr::compile(black_box(src), &env))
    });

    let (_dir, rt) = realistic();
    // 80% allowed, 20% blocked names, as the comparison scenario.
    let queries: Vec<String> = (0..1000)
        .map(|i| {
            if i % 5 == 0 {
                format!("sub.{}", name(i * 997 % 1_000_000))
            } else {
                format!("www.site{i}.org")
            }
        })
        .collect();
    let now = jiff::Timestamp::now();
    let mut i = 0;
    let client: IpAddr = "192.168.1.20".parse().unwrap();
    c.bench_function("policy/eval_100_policies_1m_list_entries", |b| {
        b.iter(|| {
            let fqdn = &queries[i % queries.len()];
            i += 1;
            let memo = ListMemo::default();
            let (content, security) = rt.policies.categorize(fqdn, &memo);
            let facts = QueryFacts {
                fqdn,
                rtype: "A",
                src_ip: client,
                location: None,
                identity: rt.directory.identity_for_ip(client).map(|a| &**a),
                content_categories: content.as_slice(),
                security_categories: security.as_slice(),
                src_geo: GeoInfo::default(),
                post: None,
                memo: &memo,
            };
            black_box(rt.policies.run(Phase::Pre, &facts, now, &mut ()))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
