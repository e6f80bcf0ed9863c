//! Policy benchmarks: parse, compile and evaluate (wirefilter's split), on a realistic set —
//! 100 policies, three domain lists of 1,000,000 names in all, 10,000 IP ranges, an
//! identity directory — over a mix of blocked and allowed names.
//!
//! `cargo bench --bench policy`

#![allow(clippy::unwrap_used)] // a benchmark: a failure should stop it loudly

mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dnsgate::geoip::GeoInfo;
use dnsgate::policy::expr::{self, CompileEnv, Limits};
use dnsgate::policy::fields::{ListMemo, Phase, QueryFacts};

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

    const NAMES: usize = 1_000_000;
    let (_dir, rt) = common::realistic(NAMES);
    // 80% allowed, 20% blocked names, as the comparison scenario.
    let queries: Vec<String> = (0..1000)
        .map(|i| {
            if i % 5 == 0 {
                common::blocked_query(i, NAMES)
            } else {
                common::allowed_query(i)
            }
        })
        .collect();
    let now = jiff::Timestamp::now();
    let mut i = 0;
    let client = common::device_ip();
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
