//! The policy language's operators through the server (SPEC §3): `xor`, `matches`,
//! `contains`, `lower()`, `!=` and `all()`. Each policy names itself in its block reason,
//! so every answer says which policy decided.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::client::{ede, ips, query};
use crate::gate;

const POLICIES: &str = r#"
[[policies]]
name = "ne"
precedence = 1
action = "block"
block_reason = "ne"
traffic = 'dns.fqdn == "pt.test" and dns.query_rtype != "A"'

[[policies]]
name = "matches"
precedence = 2
action = "block"
block_reason = "matches"
traffic = 'dns.fqdn matches "^tr[a-z]+er[.]ads[.]"'

[[policies]]
name = "contains"
precedence = 3
action = "block"
block_reason = "contains"
traffic = 'dns.fqdn contains "ood.ad"'

[[policies]]
name = "lower"
precedence = 4
action = "block"
block_reason = "lower"
traffic = 'lower(dns.query_rtype) == "mx"'

[[policies]]
name = "all"
precedence = 5
action = "block"
block_reason = "all"
traffic = 'dns.fqdn in {"jp.test" "mixed.test"} and all(dns.resolved_ips[*] in {192.0.2.0/24})'

[[policies]]
name = "xor"
precedence = 50
action = "block"
block_reason = "xor"
traffic = 'dns.fqdn == "www.test" xor dns.query_rtype == "AAAA"'
"#;

/// The reason of a block (EDE 15), or `None` for an answer no policy blocked.
fn blocked_by(m: &Message) -> Option<String> {
    ede(m).filter(|(code, _)| *code == 15).map(|(_, text)| text)
}

async fn decided(g: &crate::Gate, name: &str, qtype: RecordType) -> (Option<String>, Message) {
    let m = query(g.addr, name, qtype).await;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "{name} {qtype}: {m:?}"
    );
    (blocked_by(&m), m)
}

#[tokio::test]
async fn xor_is_true_when_exactly_one_side_is() {
    let g = gate(POLICIES, &[]).await;
    // (name is www.test) xor (type is AAAA)
    let (by, m) = decided(&g, "www.test.", RecordType::A).await; // true, false
    assert_eq!(by.as_deref(), Some("xor"));
    assert_eq!(ips(&m), ["0.0.0.0"]);
    let (by, m) = decided(&g, "www.test.", RecordType::AAAA).await; // true, true
    assert_eq!(by, None);
    assert_eq!(ips(&m), ["2001:db8::10"]);
    let (by, m) = decided(&g, "v6de.test.", RecordType::AAAA).await; // false, true
    assert_eq!(by.as_deref(), Some("xor"));
    assert_eq!(ips(&m), ["::"]);
    let (by, m) = decided(&g, "us.test.", RecordType::A).await; // false, false
    assert_eq!(by, None);
    assert_eq!(ips(&m), ["203.0.113.9"]);
}

#[tokio::test]
async fn matches_and_contains_test_the_name() {
    let g = gate(POLICIES, &[]).await;
    let (by, m) = decided(&g, "tracker.ads.test.", RecordType::A).await;
    assert_eq!(by.as_deref(), Some("matches"));
    assert_eq!(ips(&m), ["0.0.0.0"]);
    // Upper case in the query: names compare case-insensitively.
    assert_eq!(
        decided(&g, "TRACKER.ads.test.", RecordType::A)
            .await
            .0
            .as_deref(),
        Some("matches")
    );
    // good.ads.test fails the regex and contains "ood.ad".
    assert_eq!(
        decided(&g, "good.ads.test.", RecordType::A)
            .await
            .0
            .as_deref(),
        Some("contains")
    );
    // ads.test is neither.
    let (by, m) = decided(&g, "ads.test.", RecordType::A).await;
    assert_eq!(by, None);
    assert_eq!(ips(&m), ["192.0.2.30"]);
}

#[tokio::test]
async fn lower_and_not_equal_decide() {
    let g = gate(POLICIES, &[]).await;
    // lower(dns.query_rtype) == "mx": every MX question, whatever the name.
    let (by, m) = decided(&g, "mail.test.", RecordType::MX).await;
    assert_eq!(by.as_deref(), Some("lower"));
    assert!(m.answers.is_empty(), "null block of MX: NODATA");
    assert_eq!(
        decided(&g, "www.test.", RecordType::MX).await.0.as_deref(),
        Some("lower")
    );
    assert_eq!(
        g.upstream.queries(),
        0,
        "pre-resolution blocks never ask upstream"
    );
    // pt.test and type != A.
    assert_eq!(
        decided(&g, "pt.test.", RecordType::TXT).await.0.as_deref(),
        Some("ne")
    );
    let (by, m) = decided(&g, "pt.test.", RecordType::A).await;
    assert_eq!(by, None);
    assert_eq!(ips(&m), ["198.51.100.7"]);
}

#[tokio::test]
async fn all_needs_every_resolved_address_to_match() {
    let g = gate(POLICIES, &[]).await;
    // jp.test: 192.0.2.55 only.
    let (by, m) = decided(&g, "jp.test.", RecordType::A).await;
    assert_eq!(by.as_deref(), Some("all"));
    assert_eq!(ips(&m), ["0.0.0.0"]);
    // mixed.test: 192.0.2.56 and 203.0.113.10 — not all in 192.0.2.0/24.
    let (by, m) = decided(&g, "mixed.test.", RecordType::A).await;
    assert_eq!(by, None);
    let mut got = ips(&m);
    got.sort();
    assert_eq!(got, ["192.0.2.56", "203.0.113.10"]);
}

/// Issue 14: a network with host bits set loads (as its network) and `check` says where it
/// is, as a warning; Cloudflare would refuse the rule.
#[test]
fn check_warns_about_networks_with_host_bits_and_still_loads() {
    use crate::cli::{dnsgate, write_config};
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[[policies]]\nname = \"lan\"\naction = \"block\"\ntraffic = 'dns.src_ip in {10.1.2.3/8} and dns.fqdn == \"example\\x2ecom\"'\n",
    );
    let (code, out, err) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 policies"), "{out}");
    assert!(
        err.contains("dnsgate.toml:4:27: warning: policy `lan`: `10.1.2.3/8` has host bits set: it is read as `10.0.0.0/8` (Cloudflare refuses it)"),
        "{err}"
    );
}
