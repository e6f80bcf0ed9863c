//! Prefetch (SPEC §2 `[cache] prefetch`): an answer asked for in the last 10% of its TTL
//! is refreshed in the background, so the next client after expiry still gets a cached
//! answer instead of waiting for the upstream.

use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::client::{ips, query};
use crate::gate;

/// Waits (at most 5 s) until the upstream has seen `n` queries.
async fn upstream_reaches(g: &crate::Gate, n: usize) -> bool {
    for _ in 0..100 {
        if g.upstream.queries() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_name_asked_late_in_its_ttl_is_refreshed_in_the_background() {
    let g = gate("", &[]).await;
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    let asked = g.upstream.queries();
    // 60% through its 300 s: a plain hit, nothing refreshed.
    g.running.shared.clock.advance(Duration::from_secs(180));
    query(g.addr, "www.test.", RecordType::A).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(g.upstream.queries(), asked);
    // 92%: answered from the cache at once (TTL counted down), refreshed behind it.
    g.running.shared.clock.advance(Duration::from_secs(96));
    let late = query(g.addr, "www.test.", RecordType::A).await;
    assert_eq!(ips(&late), ["192.0.2.10"]);
    assert!(late.answers[0].ttl <= 24, "{}", late.answers[0].ttl);
    assert!(upstream_reaches(&g, asked + 1).await, "prefetched");
    // Past the original expiry: still a hit, from the refreshed entry, no client waits.
    g.running.shared.clock.advance(Duration::from_secs(40));
    let after = query(g.addr, "www.test.", RecordType::A).await;
    assert_eq!(ips(&after), ["192.0.2.10"]);
    assert!(after.answers[0].ttl > 200, "{}", after.answers[0].ttl);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(g.upstream.queries(), asked + 1);
}

#[tokio::test]
async fn without_prefetch_the_client_after_expiry_waits_for_the_upstream() {
    let g = gate("[cache]\nprefetch = false\n", &[]).await;
    query(g.addr, "www.test.", RecordType::A).await;
    let asked = g.upstream.queries();
    g.running.shared.clock.advance(Duration::from_secs(280));
    query(g.addr, "www.test.", RecordType::A).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(g.upstream.queries(), asked, "no background refresh");
    g.running.shared.clock.advance(Duration::from_secs(30));
    query(g.addr, "www.test.", RecordType::A).await;
    assert_eq!(
        g.upstream.queries(),
        asked + 1,
        "the expired entry was asked for again"
    );
}
