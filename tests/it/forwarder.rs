//! The forwarder against upstreams that are slow, careless or hostile: a slow answer within
//! the timeout is heard, names go out in random case (0x20) and come back as asked, an
//! upstream that drops the case still answers, a reply without the question is nobody's,
//! and an answer too big for UDP is fetched over TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use crate::client::{Opts, ede, ips, query, query_with};
use crate::{base_config, gate, gate_with, upstream};

#[tokio::test]
async fn an_upstream_answering_inside_the_timeout_is_heard_however_slow() {
    // timeout_ms = 1000 in the test configuration: answers at 0.6 s and 0.9 s arrive after
    // the first retransmission and must still be taken.
    for (delay, name) in [(600, "www.test."), (900, "jp.test.")] {
        let g = gate("", &[]).await;
        g.upstream.set_delay(Duration::from_millis(delay));
        let m = query(g.addr, name, RecordType::A).await;
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "{delay} ms: {m:?}"
        );
        assert_eq!(ips(&m).len(), 1, "{delay} ms");
        assert!(g.upstream.queries() >= 2, "asked again meanwhile");
    }
}

#[tokio::test]
async fn names_go_upstream_in_random_case_and_come_back_as_asked() {
    let g = gate("", &[]).await;
    let names = [
        "www.test.",
        "jp.test.",
        "pt.test.",
        "us.test.",
        "mixed.test.",
        "mx.test.",
    ];
    for n in names {
        let m = query(g.addr, n, RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        // The client sees its own spelling in the answer's records.
        for r in &m.answers {
            assert_eq!(r.name.to_ascii(), n, "{m:?}");
        }
    }
    let sent = g.upstream.names();
    assert_eq!(sent.len(), names.len(), "{sent:?}");
    let mixed = sent
        .iter()
        .filter(|s| s.chars().any(|c| c.is_ascii_uppercase()))
        .count();
    assert!(mixed >= 3, "random case upstream: {sent:?}");
    for (s, n) in sent.iter().zip(names) {
        assert!(s.eq_ignore_ascii_case(n), "{s} for {n}");
    }
}

/// How the fake upstream misbehaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Answers with the question name lowercased.
    DropsCase,
    /// Answers FORMERR without a question section.
    FormErrWithoutQuestion,
    /// Answers over UDP with a message larger than 4096 bytes and no TC bit; over TCP
    /// with the same message.
    Oversized,
}

/// A raw upstream on UDP and TCP at one port.
struct Fake {
    addr: SocketAddr,
    udp_names: Arc<std::sync::Mutex<Vec<String>>>,
    tcp_queries: Arc<AtomicUsize>,
}

fn answer(query: &Message, fault: Fault) -> Message {
    let mut m = Message::new(
        query.metadata.id,
        MessageType::Response,
        query.metadata.op_code,
    );
    m.metadata.recursion_available = true;
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    let q = query.queries[0].clone();
    match fault {
        Fault::FormErrWithoutQuestion => {
            m.metadata.response_code = ResponseCode::FormErr;
            return m;
        }
        Fault::DropsCase => {
            let lower = Name::from_ascii(q.name().to_ascii().to_ascii_lowercase()).unwrap();
            let mut lq = q.clone();
            lq.set_name(lower.clone());
            m.add_query(lq);
            m.answers.push(Record::from_rdata(
                lower,
                300,
                RData::A(A::new(192, 0, 2, 77)),
            ));
        }
        Fault::Oversized => {
            m.add_query(q.clone());
            for i in 0..60 {
                let text = format!("{i:03} {}", "x".repeat(90));
                m.answers.push(Record::from_rdata(
                    q.name().clone(),
                    300,
                    RData::TXT(TXT::new(vec![text])),
                ));
            }
        }
    }
    m
}

async fn fake(fault: Fault) -> Fake {
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let udp_names = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tcp_queries = Arc::new(AtomicUsize::new(0));
    let names = udp_names.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            names.lock().unwrap().push(q.queries[0].name().to_ascii());
            let bytes = answer(&q, fault).to_vec().unwrap();
            let _ = udp.send_to(&bytes, from).await;
        }
    });
    let counted = tcp_queries.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(len) = s.read_u16().await else { return };
                let mut body = vec![0u8; usize::from(len)];
                if s.read_exact(&mut body).await.is_err() {
                    return;
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let q = Message::from_vec(&body).unwrap();
                let bytes = answer(&q, fault).to_vec().unwrap();
                let _ = s.write_all(&(bytes.len() as u16).to_be_bytes()).await;
                let _ = s.write_all(&bytes).await;
            });
        }
    });
    Fake {
        addr,
        udp_names,
        tcp_queries,
    }
}

/// A gate forwarding to `up` only.
async fn gate_to(up: SocketAddr, timeout_ms: u32) -> crate::Gate {
    let real = upstream::start().await;
    let text = base_config(up).replace("timeout_ms = 1000", &format!("timeout_ms = {timeout_ms}"));
    gate_with(real, &text, &[]).await
}

#[tokio::test]
async fn an_upstream_that_drops_the_case_still_answers_and_is_then_asked_as_written() {
    let up = fake(Fault::DropsCase).await;
    let g = gate_to(up.addr, 1000).await;
    for name in ["www.example.", "other.example."] {
        let m = query(g.addr, name, RecordType::A).await;
        assert_eq!(ips(&m), ["192.0.2.77"], "{name}: {m:?}");
    }
    let seen = up.udp_names.lock().unwrap().clone();
    // The first in random case, then the same as written; the next name as written.
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[0].eq_ignore_ascii_case("www.example."), "{seen:?}");
    assert_eq!(seen[1], "www.example.", "{seen:?}");
    assert_eq!(seen[2], "other.example.", "{seen:?}");
}

#[tokio::test]
async fn a_formerr_without_the_question_is_not_taken_as_the_answer() {
    let up = fake(Fault::FormErrWithoutQuestion).await;
    let g = gate_to(up.addr, 300).await;
    let m = query(g.addr, "www.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m:?}");
    assert_eq!(
        ede(&m).map(|e| e.0),
        Some(22),
        "a timeout, not the FORMERR: {m:?}"
    );
}

#[tokio::test]
async fn an_answer_too_big_for_udp_is_fetched_over_tcp() {
    let up = fake(Fault::Oversized).await;
    let g = gate_to(up.addr, 1000).await;
    let m = query_with(
        g.addr,
        "big.example.",
        RecordType::TXT,
        Opts {
            tcp: true,
            ..Opts::default()
        },
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert_eq!(m.answers.len(), 60);
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 1);
}
