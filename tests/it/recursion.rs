//! Recursive mode (SPEC §9) over the loopback hierarchy ([`crate::hierarchy`]): dnsgate
//! resolves from root hints that name only 127.N.x.y servers, and the same corpus goes
//! through Unbound recursing over the same hierarchy (the differential run).
//!
//! Nets taken (see hierarchy.rs): 221–235.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::client::{ede, ips, query};
use crate::hierarchy::{Hierarchy, Mode, corpus};
use crate::unbound::{Unbound, answer_summary};
use crate::{Gate, gate_with, upstream};

/// A dnsgate in recursive mode over `h`, with `extra` appended to its configuration.
/// `{UPSTREAM}` in `extra` is the test forwarder upstream (for `resolve` policies).
async fn recursive(h: &Hierarchy, extra: &str) -> Gate {
    let up = upstream::start().await;
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstream]\nmode = \"recursive\"\nroot_hints = \"root.hints\"\ndnssec = \"off\"\ntimeout_ms = 3000\n{extra}"
    );
    gate_with(up, &config, &[("root.hints", &h.root_hints())]).await
}

fn names(m: &hickory_proto::op::Message) -> Vec<(String, RecordType)> {
    m.answers
        .iter()
        .map(|r| (r.name.to_ascii().to_lowercase(), r.record_type()))
        .collect()
}

#[tokio::test]
async fn names_resolve_from_the_root_through_referrals_and_glue() {
    let h = Hierarchy::start(221).await;
    let g = recursive(&h, "").await;
    let m = query(g.addr, "www.sub.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ips(&m), ["192.0.2.10"]);
    assert!(m.metadata.recursion_available);
    assert!(!m.metadata.authoritative);
    // Each level was asked once, and the root only about the TLD (QNAME minimisation).
    let root: Vec<String> = h.server("a.root-servers.test.").names();
    let root2: Vec<String> = h.server("b.root-servers.test.").names();
    let all_root: Vec<String> = root.into_iter().chain(root2).collect();
    assert!(!all_root.is_empty());
    for n in &all_root {
        assert!(n.eq_ignore_ascii_case("test."), "the root saw {n}");
    }
    let sub = h.server("ns1.sub.test.").seen();
    assert!(
        sub.iter()
            .any(|s| s.name.eq_ignore_ascii_case("www.sub.test.") && s.qtype == RecordType::A),
        "{sub:?}"
    );
    // 0x20: the name went out in mixed case at least once.
    let tld: Vec<String> = h
        .server("ns1.test.")
        .names()
        .into_iter()
        .chain(h.server("ns2.test.").names())
        .collect();
    let spelled = tld.iter().chain(sub.iter().map(|s| &s.name));
    assert!(
        spelled
            .clone()
            .any(|n| n.chars().any(|c| c.is_ascii_uppercase())),
        "no mixed case: {:?}",
        spelled.collect::<Vec<_>>()
    );
    // A second name in a known zone goes straight to that zone's server.
    let before_root =
        h.server("a.root-servers.test.").queries() + h.server("b.root-servers.test.").queries();
    let m = query(g.addr, "www.sub.test.", RecordType::AAAA).await;
    assert_eq!(ips(&m), ["2001:db8::10"]);
    let after_root =
        h.server("a.root-servers.test.").queries() + h.server("b.root-servers.test.").queries();
    assert_eq!(before_root, after_root, "the cut was cached");
}

#[tokio::test]
async fn name_servers_without_glue_chains_dnames_and_negatives() {
    let h = Hierarchy::start(222).await;
    let g = recursive(&h, "").await;
    // far.test's servers are named under example.: looked up on the way.
    assert_eq!(
        ips(&query(g.addr, "www.far.test.", RecordType::A).await),
        ["192.0.2.40"]
    );
    // CNAME chains across zones: each link, in order, then the data.
    let m = query(g.addr, "chain.test.", RecordType::A).await;
    assert_eq!(
        names(&m),
        [
            ("chain.test.".into(), RecordType::CNAME),
            ("alias.test.".into(), RecordType::CNAME),
            ("www.sub.test.".into(), RecordType::A)
        ]
    );
    let m = query(g.addr, "x.example.", RecordType::A).await;
    assert_eq!(ips(&m), ["192.0.2.41"]);
    // A CNAME ending in NODATA: NOERROR, the CNAME, the target zone's SOA.
    let m = query(g.addr, "x.example.", RecordType::TXT).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(names(&m), [("x.example.".into(), RecordType::CNAME)]);
    assert!(
        m.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA
                && r.name.to_ascii().eq_ignore_ascii_case("far.test.")),
        "{:?}",
        m.authorities
    );
    // DNAME: the DNAME, the CNAME made from it, then the data in the other TLD.
    let m = query(g.addr, "www.old.test.", RecordType::A).await;
    assert_eq!(
        names(&m),
        [
            ("old.test.".into(), RecordType::DNAME),
            ("www.old.test.".into(), RecordType::CNAME),
            ("www.new.example.".into(), RecordType::A)
        ]
    );
    assert_eq!(ips(&m), ["192.0.2.30"]);
    let m = query(g.addr, "nx.old.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // NXDOMAIN and NODATA with the SOA of the zone that said so.
    let m = query(g.addr, "nothing.sub.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        m.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA
                && r.name.to_ascii().eq_ignore_ascii_case("sub.test."))
    );
    let m = query(g.addr, "nodata.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(
        m.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA)
    );
    let m = query(g.addr, "no-such-tld.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn a_cname_loop_is_servfail_and_the_failure_is_remembered() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let h = Hierarchy::start(223).await;
    let g = recursive(&h, "").await;
    let m = query(g.addr, "loop1.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let (code, text) = ede(&m).expect("an EDE says why");
    assert_eq!(code, 0);
    assert!(text.contains("loop"), "{text}");
    // Asked again at once: answered from the remembered failure, no server asked.
    let asked: usize = h.servers().map(|s| s.queries()).sum();
    let again = query(g.addr, "loop1.test.", RecordType::A).await;
    assert_eq!(again.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(h.servers().map(|s| s.queries()).sum::<usize>(), asked);
    // Counted: one failed question per resolution, under one label; every query sent.
    let text = metrics.render();
    let value = |series: &str| {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(
        value("dnsgate_upstream_errors_total{upstream=\"recursive\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value("dnsgate_outgoing_queries_total{protocol=\"udp\"}"),
        Some(asked as f64),
        "{text}"
    );
}

#[tokio::test]
async fn lame_dead_and_slow_servers_are_skipped_and_the_fast_one_learned() {
    let h = Hierarchy::start(224).await;
    let g = recursive(&h, "").await;
    // REFUSED from one server, nothing bound at another, a silent root server.
    h.server("b.root-servers.test.").set_mode(Mode::Silent);
    assert_eq!(
        ips(&query(g.addr, "www.lame.test.", RecordType::A).await),
        ["192.0.2.50"]
    );
    assert_eq!(
        ips(&query(g.addr, "www.dead.test.", RecordType::A).await),
        ["192.0.2.60"]
    );
    // An upward referral is lame too.
    h.server("ns1.lame.test.").set_mode(Mode::Lame);
    assert_eq!(
        ips(&query(g.addr, "txt.lame.test.", RecordType::A).await).len(),
        0
    );
    // Unmeasured servers are tried at random (as Unbound does); once the slow one has
    // been caught out by its timer, the fast one takes every question.
    assert_eq!(
        ips(&query(g.addr, "www.slow.test.", RecordType::A).await),
        ["192.0.2.70"]
    );
    // 20 questions: the chance the slow one is never drawn is one in a million.
    for i in 0..20 {
        let m = query(g.addr, &format!("warm{i}.slow.test."), RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    let slow_before = h.server("ns1.slow.test.").queries();
    let fast_before = h.server("ns2.slow.test.").queries();
    assert!(slow_before >= 1, "the slow server was tried at least once");
    for i in 0..5 {
        let m = query(g.addr, &format!("n{i}.slow.test."), RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    assert_eq!(
        h.server("ns1.slow.test.").queries(),
        slow_before,
        "the slow server was not asked again"
    );
    assert!(h.server("ns2.slow.test.").queries() >= fast_before + 5);
    // Only a slow server: waited for, within the timeout.
    assert_eq!(
        ips(&query(g.addr, "www.late.test.", RecordType::A).await),
        ["192.0.2.80"]
    );
}

#[tokio::test]
async fn a_zone_whose_servers_all_fail_is_servfail_and_not_asked_again_at_once() {
    let h = Hierarchy::start(225).await;
    let g = recursive(&h, "").await;
    h.server("ns1.late.test.").set_mode(Mode::ServFail);
    let m = query(g.addr, "www.late.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(ede(&m).map(|e| e.0), Some(22), "No Reachable Authority");
    let asked = h.server("ns1.late.test.").queries();
    query(g.addr, "www.late.test.", RecordType::A).await;
    assert_eq!(
        h.server("ns1.late.test.").queries(),
        asked,
        "the failure was cached"
    );
    // After the failure's 5 s (moved on the server's clock), the zone is asked again.
    h.server("ns1.late.test.").set_mode(Mode::Answer);
    g.running.shared.clock.advance(Duration::from_secs(6));
    assert_eq!(
        ips(&query(g.addr, "www.late.test.", RecordType::A).await),
        ["192.0.2.80"]
    );
}

#[tokio::test]
async fn outgoing_queries_per_question_are_capped() {
    let h = Hierarchy::start(226).await;
    // root, test., far.test. (whose servers need example. and its own lookups): more than 3.
    let g = recursive(&h, "max_queries_per_request = 3\n").await;
    let m = query(g.addr, "www.far.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let (_, text) = ede(&m).unwrap();
    assert!(text.contains("outgoing queries"), "{text}");
    let sent: usize = h.servers().map(|s| s.queries()).sum();
    assert!(sent <= 3, "{sent} queries went out");
}

#[tokio::test]
async fn resolve_policies_still_forward_and_post_policies_see_the_authoritative_servers() {
    let h = Hierarchy::start(227).await;
    let sub_server = h.addr_of("ns1.sub.test.").ip();
    let extra = format!(
        r#"
[[policies]]
name = "corp"
action = "resolve"
upstreams = ["udp://{{UPSTREAM}}"]
traffic = 'any(dns.domains[*] == "internal.test")'

[[policies]]
name = "no-sub-servers"
action = "block"
traffic = 'any(dns.authoritative_ns_ips[*] == {sub_server})'
"#
    );
    let g = recursive(&h, &extra).await;
    // Conditional forwarding: the test upstream's answer, no hierarchy server asked.
    let before: usize = h.servers().map(|s| s.queries()).sum();
    assert_eq!(
        ips(&query(g.addr, "internal.test.", RecordType::A).await),
        ["192.0.2.40"]
    );
    assert_eq!(h.servers().map(|s| s.queries()).sum::<usize>(), before);
    assert!(g.upstream.queries() >= 1);
    // Answered by ns1.sub.test: blocked after resolution; answered by ns1.test: allowed.
    let m = query(g.addr, "www.sub.test.", RecordType::A).await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    assert_eq!(ede(&m).map(|e| e.0), Some(15));
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.1"]
    );
}

/// The corpus through dnsgate and through Unbound, over the same hierarchy: the same
/// rcodes and the same answer records (no policies, so no difference is allowed).
#[tokio::test]
async fn differential_run_against_unbound() {
    let h = Hierarchy::start(228).await;
    let g = recursive(&h, "").await;
    let unbound = Unbound::start(&h, Default::default()).await;
    let mut differences = Vec::new();
    for q in corpus() {
        let ours = query(g.addr, q.name, q.qtype).await;
        let theirs = unbound.query(q.name, q.qtype).await;
        assert_eq!(
            ours.metadata.response_code, q.rcode,
            "{} {} ({}): {:?}",
            q.name, q.qtype, q.what, ours
        );
        let has_data = ours.answers.iter().any(|r| r.record_type() == q.qtype);
        assert_eq!(has_data, q.data, "{} {} ({})", q.name, q.qtype, q.what);
        // RRset order is not meaningful (Unbound rotates it).
        let lower = |v: Vec<String>| {
            let mut v: Vec<String> = v.into_iter().map(|s| s.to_lowercase()).collect();
            v.sort();
            v
        };
        let (a, b) = (lower(answer_summary(&ours)), lower(answer_summary(&theirs)));
        if ours.metadata.response_code != theirs.metadata.response_code || a != b {
            differences.push(format!(
                "{} {} ({}): dnsgate {} {a:?} / unbound {} {b:?}",
                q.name, q.qtype, q.what, ours.metadata.response_code, theirs.metadata.response_code
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "differences:\n{}",
        differences.join("\n")
    );
}

#[tokio::test]
async fn answers_from_recursion_are_cached_and_carry_no_ad_bit() {
    let h = Hierarchy::start(229).await;
    let g = recursive(&h, "").await;
    let opts = crate::client::Opts {
        dnssec_ok: true,
        ..Default::default()
    };
    let m = crate::client::query_with(g.addr, "www.test.", RecordType::A, opts).await;
    assert_eq!(ips(&m), ["192.0.2.1"]);
    assert!(!m.metadata.authentic_data, "nothing was validated");
    let asked: usize = h.servers().map(|s| s.queries()).sum();
    let again = crate::client::query_with(g.addr, "www.test.", RecordType::A, opts).await;
    assert!(matches!(again.answers[0].data, RData::A(_)));
    assert_eq!(
        h.servers().map(|s| s.queries()).sum::<usize>(),
        asked,
        "from the cache"
    );
}

#[tokio::test]
async fn relaxed_minimisation_survives_servers_that_deny_empty_non_terminals() {
    let h = Hierarchy::start(230).await;
    let g = recursive(&h, "").await;
    // Learn the cut sub.test. first, then break its server for type A questions.
    assert_eq!(
        ips(&query(g.addr, "www.sub.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    h.server("ns1.sub.test.").set_mode(Mode::NxForA);
    // Minimised, `ent.sub.test. A` gets NXDOMAIN; the whole question is asked anyway.
    let m = query(g.addr, "txt.ent.sub.test.", RecordType::TXT).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(names(&m), [("txt.ent.sub.test.".into(), RecordType::TXT)]);
    let seen = h.server("ns1.sub.test.").seen();
    assert!(
        seen.iter()
            .any(|s| s.name.eq_ignore_ascii_case("ent.sub.test.") && s.qtype == RecordType::A),
        "the minimised question went first: {seen:?}"
    );
}

#[tokio::test]
async fn queries_spread_over_a_zone_s_equally_fast_servers() {
    let h = Hierarchy::start(231).await;
    let g = recursive(&h, "").await;
    for i in 0..30 {
        query(g.addr, &format!("n{i}.far.test."), RecordType::A).await;
    }
    let (a, b) = (
        h.server("ns1.hosting.example.").queries(),
        h.server("ns2.hosting.example.").queries(),
    );
    assert!(a >= 3 && b >= 3, "ns1 got {a}, ns2 got {b}");
}
