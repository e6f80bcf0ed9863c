//! Bad input and failing upstreams (SPEC §7).

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{self, Opts, ede, ips, query};
use crate::gate;

#[tokio::test]
async fn silent_upstream_gives_servfail_with_ede_22_within_the_timeout() {
    let g = gate("[cache]\nserve_stale = false\n", &[]).await;
    g.upstream.set_silent(true);
    let m = query(g.addr, "www.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(ede(&m).map(|e| e.0), Some(22));
}

#[tokio::test]
async fn unreachable_upstream_gives_servfail_with_ede_23() {
    // A port nobody listens on: the kernel answers "connection refused" at once.
    let closed = crate::closed_port();
    let up = crate::upstream::start().await;
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"udp://{closed}\"]\ntimeout_ms = 1000\n"
    );
    let g = crate::gate_with(up, &cfg, &[]).await;
    let m = query(g.addr, "www.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(ede(&m).map(|e| e.0), Some(23));
}

#[tokio::test]
async fn a_second_upstream_answers_when_the_first_is_down() {
    let closed = crate::closed_port();
    let up = crate::upstream::start().await;
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"udp://{closed}\", \"udp://{}\"]\ntimeout_ms = 1000\n",
        up.addr
    );
    let g = crate::gate_with(up, &cfg, &[]).await;
    for _ in 0..3 {
        let m = query(g.addr, "www.test.", RecordType::A).await;
        assert_eq!(ips(&m), ["192.0.2.10"]);
    }
}

#[tokio::test]
async fn expired_answer_is_served_stale_with_ede_3_when_the_upstream_fails() {
    let g = gate("[cache]\nserve_stale = true\n", &[]).await;
    let fresh = query(g.addr, "short.test.", RecordType::A).await;
    assert_eq!(ips(&fresh), ["192.0.2.20"]);
    assert!(ede(&fresh).is_none());
    g.running.shared.clock.advance(Duration::from_millis(2600)); // TTL 2 s has run out
    g.upstream.set_silent(true);
    let stale = query(g.addr, "short.test.", RecordType::A).await;
    assert_eq!(stale.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ips(&stale), ["192.0.2.20"]);
    assert_eq!(ede(&stale).map(|e| e.0), Some(3));
    assert_eq!(stale.answers[0].ttl, 30);
    // RFC 8767 failure-recheck timer: for the next 30 s the stale answer comes at once,
    // without asking the upstream that just failed.
    let asked = g.upstream.queries();
    g.upstream.set_silent(false);
    let again = query(g.addr, "short.test.", RecordType::A).await;
    assert_eq!(ede(&again).map(|e| e.0), Some(3));
    assert_eq!(g.upstream.queries(), asked);
    // Other names are not held back by it.
    assert!(ede(&query(g.addr, "www.test.", RecordType::A).await).is_none());
}

#[tokio::test]
async fn an_expired_nxdomain_is_served_stale_with_ede_19() {
    let g = gate("", &[]).await;
    let fresh = query(g.addr, "nothing-here.test.", RecordType::A).await;
    assert_eq!(fresh.metadata.response_code, ResponseCode::NXDomain);
    g.running.shared.clock.advance(Duration::from_secs(61)); // SOA minimum 60 s
    g.upstream.set_silent(true);
    let stale = query(g.addr, "nothing-here.test.", RecordType::A).await;
    assert_eq!(stale.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(ede(&stale).map(|e| e.0), Some(19));
}

#[tokio::test]
async fn without_serve_stale_an_expired_answer_is_not_used() {
    let g = gate("[cache]\nserve_stale = false\n", &[]).await;
    query(g.addr, "short.test.", RecordType::A).await;
    g.running.shared.clock.advance(Duration::from_millis(2600));
    g.upstream.set_silent(true);
    let m = query(g.addr, "short.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn malformed_packets_never_kill_the_server() {
    let g = gate("", &[]).await;
    let wait = Duration::from_millis(300);
    // Shorter than a header: dropped.
    assert!(client::udp_raw(g.addr, &[1, 2, 3], wait).await.is_none());
    // A header claiming a question that is not there: FORMERR (or dropped).
    let junk = [
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
    ];
    if let Some(bytes) = client::udp_raw(g.addr, &junk, wait).await {
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    }
    // Random garbage of many sizes.
    for len in [12usize, 13, 40, 300, 1500] {
        let bytes: Vec<u8> = (0..len).map(|_| rand::random()).collect();
        let _ = client::udp_raw(g.addr, &bytes, Duration::from_millis(50)).await;
    }
    // A query with two questions: FORMERR.
    assert_eq!(
        two_questions(g.addr).await.metadata.response_code,
        ResponseCode::FormErr
    );
    // Still serving.
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
}

#[tokio::test]
async fn a_bad_tcp_frame_closes_only_that_connection() {
    let g = gate("", &[]).await;
    // A frame that promises more than it sends, then the connection closes.
    let mut s = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    s.write_all(&[0x01, 0x00, 0xde, 0xad]).await.unwrap();
    drop(s);
    // A frame of garbage: the server closes the connection (or answers FORMERR).
    let mut s = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    let mut frame = vec![0x00, 0x10];
    frame.extend((0..16).map(|_| 0xffu8));
    s.write_all(&frame).await.unwrap();
    let mut buf = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    // Others are served, over TCP and UDP.
    let m = client::query_with(
        g.addr,
        "www.test.",
        RecordType::A,
        Opts {
            tcp: true,
            ..Opts::default()
        },
    )
    .await;
    assert_eq!(ips(&m), ["192.0.2.10"]);
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
}

#[tokio::test]
async fn a_blackholed_first_upstream_is_learned_and_skipped() {
    // A swallows every query (a blackhole, not a refusal); B answers.
    let a = crate::upstream::start().await;
    a.set_silent(true);
    let b = crate::upstream::start().await;
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"udp://{}\", \"udp://{}\"]\ntimeout_ms = 1000\n",
        a.addr, b.addr
    );
    let g = crate::gate_with(b, &cfg, &[]).await;
    let names = [
        ("www.test.", "192.0.2.10"),
        ("jp.test.", "192.0.2.55"),
        ("pt.test.", "198.51.100.7"),
        ("us.test.", "203.0.113.9"),
        ("mx.test.", "192.0.2.25"),
        ("ns.test.", "127.0.0.1"),
        ("ads.test.", "192.0.2.30"),
        ("tracker.ads.test.", "192.0.2.31"),
        ("good.ads.test.", "192.0.2.32"),
        ("internal.test.", "192.0.2.40"),
    ];
    for (name, ip) in names {
        let m = query(g.addr, name, RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(ips(&m), [ip], "{name} answered by B");
    }
    assert_eq!(
        g.upstream.queries(),
        names.len(),
        "B answered every distinct name once"
    );
    // Taking turns would send A half of them; a resolver that learns sends A a few probes.
    assert!(
        a.queries() <= 3,
        "the dead upstream was tried first {} times out of {}",
        a.queries(),
        names.len()
    );
}

#[tokio::test]
async fn a_formerr_reply_is_logged_too() {
    let g = gate("[querylog]\npath = \"queries.jsonl\"\n", &[]).await;
    let log = g.dir.path().join("queries.jsonl");
    // A query with two questions: FORMERR.
    assert_eq!(
        two_questions(g.addr).await.metadata.response_code,
        ResponseCode::FormErr
    );
    // And a good query, so the log is known to be written.
    assert_eq!(
        ips(&query(g.addr, "jp.test.", RecordType::A).await),
        ["192.0.2.55"]
    );

    let lines = crate::query_log(&log, |l| {
        l.iter().any(|v| v["rcode"] == "FORMERR") && l.iter().any(|v| v["name"] == "jp.test")
    })
    .await;
    assert!(
        lines
            .iter()
            .any(|v| v["name"] == "jp.test" && v["rcode"] == "NOERROR"),
        "{lines:?}"
    );
    let formerr: Vec<_> = lines.iter().filter(|v| v["rcode"] == "FORMERR").collect();
    assert_eq!(
        formerr.len(),
        1,
        "one line for the FORMERR reply: {lines:?}"
    );
    assert_eq!(formerr[0]["client"], "127.0.0.1", "{lines:?}");
    assert_eq!(lines.len(), 2, "{lines:?}");
}

/// Sends a query with two questions (a FORMERR for any resolver) and returns the reply.
async fn two_questions(server: std::net::SocketAddr) -> Message {
    let opts = Opts {
        edns: None,
        ..Opts::default()
    };
    let (_, mut wire) = client::build("www.test.", RecordType::A, opts);
    let question = wire[12..].to_vec();
    wire[5] = 2;
    wire.extend_from_slice(&question);
    let reply = client::udp_raw(server, &wire, Duration::from_secs(5))
        .await
        .unwrap();
    Message::from_vec(&reply).unwrap()
}

#[tokio::test]
async fn a_refusing_upstream_is_skipped_for_one_that_answers() {
    let first = crate::upstream::start().await;
    first.set_refusing(true);
    let up = crate::upstream::start().await;
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"udp://{}\", \"udp://{}\"]\ntimeout_ms = 1000\n",
        first.addr, up.addr
    );
    let g = crate::gate_with(up, &cfg, &[]).await;
    for name in ["www.test.", "jp.test.", "us.test.", "pt.test."] {
        let m = query(g.addr, name, RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(ips(&m).len(), 1, "{name}");
    }
    // Only when every upstream refuses does the client see it.
    g.upstream.set_refusing(true);
    let m = query(g.addr, "mx.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn an_undecodable_query_gets_formerr_and_a_log_line() {
    let g = gate("[querylog]\npath = \"queries.jsonl\"\n", &[]).await;
    // A header announcing one question, and no question.
    let wire = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    let raw = client::udp_raw(g.addr, &wire, Duration::from_secs(10))
        .await
        .expect("an answer");
    let m = Message::from_vec(&raw).unwrap();
    assert_eq!(m.metadata.id, 0xabcd);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    let log = g.dir.path().join("queries.jsonl");
    let lines = crate::query_log(&log, |l| !l.is_empty()).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["rcode"], "FORMERR", "{lines:?}");
    assert_eq!(lines[0]["action"], "error", "{lines:?}");
    assert_eq!(lines[0]["client"], "127.0.0.1", "{lines:?}");
}
