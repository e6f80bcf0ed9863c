//! Metric values: through the binary (`dnsgate run` with `[metrics] listen`, read with
//! `GET /metrics`), and in process with a Prometheus recorder local to the test's thread
//! (the global one is the process's; a current-thread runtime keeps every task of the
//! server under test on the thread with the local one), where the clock can be moved.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::cli::{Server, free_port, metrics, write_config};
use crate::client::{ede, ips, query};
use crate::{upstream, write_files};

/// The value of one series (`name` or `name{labels}` exactly as rendered), if present.
pub(crate) fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn cache_hits_upstream_errors_and_list_entries_are_counted() {
    let up = upstream::start().await;
    // A port nobody listens on: every attempt there fails at once (ICMP port unreachable).
    let dead = crate::closed_port();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_files(
        dir.path(),
        &[(
            "ads.txt",
            "# three names\nads.test\n\nads2.test\nads3.test\n",
        )],
    );
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"udp://{dead}\", \"udp://{}\"]\ntimeout_ms = 1000\n\
         [cache]\nserve_stale = true\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\
         [[lists]]\nname = \"ads\"\npath = \"ads.txt\"\n\
         [[policies]]\nname = \"ads\"\naction = \"block\"\ntraffic = 'any(dns.domains[*] in $ads)'\n",
        up.addr
    );
    let cfg = write_config(dir.path(), &text);
    let server = Server::start(&cfg);
    let dead_series = format!("dnsgate_upstream_errors_total{{upstream=\"udp://{dead}\"}}");
    let live_series = format!(
        "dnsgate_upstream_errors_total{{upstream=\"udp://{}\"}}",
        up.addr
    );

    let m = metrics(port).await;
    assert_eq!(
        value(&m, "dnsgate_list_entries{list=\"ads\"}"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        value(&m, "dnsgate_cache_hits_total").unwrap_or(0.0),
        0.0,
        "{m}"
    );

    // The same question twice: one miss, one hit. Taking turns, the dead upstream is
    // tried at least once on the way.
    for _ in 0..2 {
        assert_eq!(
            ips(&query(server.addr, "www.test.", RecordType::A).await),
            ["192.0.2.10"]
        );
    }
    assert_eq!(
        ips(&query(server.addr, "jp.test.", RecordType::A).await),
        ["192.0.2.55"]
    );
    let m = metrics(port).await;
    assert_eq!(value(&m, "dnsgate_cache_hits_total"), Some(1.0), "{m}");
    assert_eq!(value(&m, "dnsgate_cache_misses_total"), Some(2.0), "{m}");
    assert!(
        value(&m, &dead_series).is_some_and(|v| v >= 1.0),
        "failures to the dead upstream are counted: {m}"
    );
    assert_eq!(
        value(&m, &live_series).unwrap_or(0.0),
        0.0,
        "the live upstream never failed: {m}"
    );
    assert_eq!(
        value(&m, "dnsgate_stale_answers_total").unwrap_or(0.0),
        0.0,
        "{m}"
    );

    // A silent upstream: the query times out, and the timeout counts as an error of that
    // upstream. (Stale answers are counted in `stale_answers_and_resolve_matches_...`.)
    up.set_silent(true);
    let failed = query(server.addr, "mixed.test.", RecordType::A).await;
    assert_eq!(failed.metadata.response_code, ResponseCode::ServFail);
    let m = metrics(port).await;
    assert!(
        value(&m, &live_series).is_some_and(|v| v >= 1.0),
        "timeouts count as upstream errors: {m}"
    );
    up.set_silent(false);

    // A reload with a longer list updates the gauge.
    write_files(
        dir.path(),
        &[(
            "ads.txt",
            "ads.test\nads2.test\nads3.test\nads4.test\nads5.test\n",
        )],
    );
    server.hup();
    server.wait_for_log("configuration reloaded");
    let m = metrics(port).await;
    assert_eq!(
        value(&m, "dnsgate_list_entries{list=\"ads\"}"),
        Some(5.0),
        "{m}"
    );
}

/// A Prometheus recorder for this thread only, and what it renders.
fn local_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder()
}

#[tokio::test(flavor = "current_thread")]
async fn stale_answers_and_resolve_matches_are_counted() {
    let recorder = local_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let g = crate::gate(
        "[cache]\nserve_stale = true\n\n\
         [[policies]]\nname = \"jp upstream\"\naction = \"resolve\"\n\
         traffic = 'dns.fqdn == \"jp.test\"'\nupstreams = [\"udp://{UPSTREAM}\"]\n",
        &[],
    )
    .await;

    // A resolve policy picks the upstreams without deciding: the query is recorded with
    // its action and the policy is counted, on the full path and on a replay.
    for _ in 0..2 {
        assert_eq!(
            ips(&query(g.addr, "jp.test.", RecordType::A).await),
            ["192.0.2.55"]
        );
    }
    let m = handle.render();
    assert_eq!(
        value(&m, "dnsgate_policy_matches_total{policy=\"jp upstream\"}"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            "dnsgate_queries_total{protocol=\"udp\",action=\"resolve\"}"
        ),
        Some(2.0),
        "{m}"
    );

    // Stale: short.test has TTL 2 s; once it has expired and the upstream stops
    // answering, the expired answer is served with EDE 3 and counted.
    assert_eq!(
        ips(&query(g.addr, "short.test.", RecordType::A).await),
        ["192.0.2.20"]
    );
    g.running.shared.clock.advance(Duration::from_secs(3));
    g.upstream.set_silent(true);
    let stale = query(g.addr, "short.test.", RecordType::A).await;
    assert_eq!(stale.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ips(&stale), ["192.0.2.20"]);
    assert_eq!(ede(&stale).map(|e| e.0), Some(3));
    let m = handle.render();
    assert_eq!(value(&m, "dnsgate_stale_answers_total"), Some(1.0), "{m}");
}
