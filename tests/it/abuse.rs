//! Abuse from a wide network: outsiders are refused cheaply and only up to a rate, clients
//! past `[server] rate_limit` get a slipped (truncated) answer or nothing, and ANY gets a
//! minimal answer (RFC 8482) — dnsgate amplifies nothing.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tokio::net::UdpSocket;

use crate::client::{self, Opts, ede, query, query_with};
use crate::{base_config, gate, gate_with, query_log, upstream};

/// Sends `n` queries for `name` from a socket on `source` as fast as it can, then collects
/// every answer that comes within `wait`.
async fn burst(source: &str, to: SocketAddr, name: &str, n: usize, wait: Duration) -> Vec<Message> {
    let sock = UdpSocket::bind((source, 0)).await.unwrap();
    for _ in 0..n {
        let (_, wire) = client::build(name, RecordType::A, Opts::default());
        sock.send_to(&wire, to).await.unwrap();
    }
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(len)) = tokio::time::timeout(wait, sock.recv(&mut buf)).await {
        got.push(Message::from_vec(&buf[..len]).unwrap());
    }
    got
}

#[tokio::test]
async fn outsiders_are_refused_up_to_a_rate_and_their_log_lines_are_sampled() {
    let up = upstream::start().await;
    let text = base_config(up.addr).replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"127.0.0.1:0\"]\nallow_networks = [\"127.0.0.1/32\"]",
    ) + "[querylog]\npath = \"q.jsonl\"\n";
    let g = gate_with(up, &text, &[]).await;
    let answers = burst(
        "127.0.0.3",
        g.addr,
        "www.test.",
        50,
        Duration::from_millis(300),
    )
    .await;
    assert!(!answers.is_empty(), "an outsider is told REFUSED");
    // Ten a second per network; a burst may straddle one second boundary.
    assert!(
        answers.len() <= 20,
        "{} REFUSED for 50 queries",
        answers.len()
    );
    for m in &answers {
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert_eq!(ede(m), Some((18, "client not allowed".to_owned())));
        assert_eq!(m.queries[0].name().to_ascii(), "www.test.");
    }
    assert_eq!(g.upstream.queries(), 0, "nothing else runs for an outsider");
    // Their log lines are sampled: a few, not one per query.
    let log = query_log(&g.dir.path().join("q.jsonl"), |l| !l.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = query_log(&g.dir.path().join("q.jsonl"), |l| l.len() >= log.len()).await;
    assert!((1..=20).contains(&log.len()), "{} lines", log.len());
    assert!(
        log.iter()
            .all(|l| l["action"] == "refused" && l["client"] == "127.0.0.3")
    );
    // An allowed client is served meanwhile.
    assert_eq!(
        crate::client::ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
}

#[tokio::test]
async fn past_the_rate_limit_a_client_gets_slipped_answers_or_none() {
    let g = gate("", &[]).await;
    let limited = {
        let up = upstream::start().await;
        let text = base_config(up.addr).replace(
            "listen = [\"127.0.0.1:0\"]",
            "listen = [\"127.0.0.1:0\"]\nrate_limit = { per_client_qps = 5, slip = 2 }",
        );
        gate_with(up, &text, &[]).await
    };
    let answers = burst(
        "127.0.0.1",
        limited.addr,
        "www.test.",
        60,
        Duration::from_millis(300),
    )
    .await;
    let full: Vec<_> = answers.iter().filter(|m| !m.metadata.truncation).collect();
    let slipped: Vec<_> = answers.iter().filter(|m| m.metadata.truncation).collect();
    assert!(
        (5..=10).contains(&full.len()),
        "{} answered of 60",
        full.len()
    );
    assert!(
        !slipped.is_empty() && answers.len() < 60,
        "{} slipped, {} in all",
        slipped.len(),
        answers.len()
    );
    for m in &slipped {
        assert!(m.answers.is_empty() && m.metadata.response_code == ResponseCode::NoError);
    }
    // A slipped client retries over TCP and is answered.
    let tcp = query_with(
        limited.addr,
        "www.test.",
        RecordType::A,
        Opts {
            tcp: true,
            ..Opts::default()
        },
    )
    .await;
    assert_eq!(crate::client::ips(&tcp), ["192.0.2.10"]);
    // Without a limit, every query is answered.
    let answers = burst(
        "127.0.0.1",
        g.addr,
        "www.test.",
        60,
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(answers.len(), 60);
}

#[tokio::test]
async fn any_gets_a_minimal_answer_without_asking_upstream() {
    let g = gate("", &[]).await;
    let m = query(g.addr, "www.test.", RecordType::ANY).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 1, "{m:?}");
    match &m.answers[0].data {
        RData::HINFO(h) => assert_eq!(&*h.cpu, b"RFC8482"),
        other => panic!("HINFO expected, got {other:?}"),
    }
    assert_eq!(g.upstream.queries(), 0);
}
