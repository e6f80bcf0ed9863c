//! The UDP fast path: answers replayed from the packet cache must be what the full
//! pipeline would have said — for this query (id, name case, aged TTLs), for this client
//! (as far as the policies tell clients apart), and for this configuration.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

use crate::client::{self, Opts, ede, ips};
use crate::gate;

/// Sends `wire` from `source` (a loopback address) and returns the raw answer.
async fn ask_from(source: &str, server: SocketAddr, wire: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind((source, 0)).await.unwrap();
    sock.send_to(wire, server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    buf.truncate(n);
    buf
}

/// `name` A from `source`: the parsed answer, checked against the query's id.
async fn a_from(source: &str, server: SocketAddr, name: &str) -> Message {
    let (id, wire) = client::build(name, RecordType::A, Opts::default());
    let m = Message::from_vec(&ask_from(source, server, &wire).await).unwrap();
    assert_eq!(m.metadata.id, id);
    m
}

#[tokio::test]
async fn a_repeated_question_is_answered_for_this_query() {
    let g = gate("", &[]).await;
    let first = a_from("127.0.0.1", g.addr, "www.test.").await;
    assert_eq!(ips(&first), ["192.0.2.10"]);
    let first_ttl = first.answers[0].ttl;

    // The same question in another case (0x20), with another id: the client's own
    // spelling and id come back, and the upstream is not asked again.
    let (id, mut wire) = client::build("www.test.", RecordType::A, Opts::default());
    wire[12 + 1..12 + 4].copy_from_slice(b"WwW");
    wire[12 + 5..12 + 9].copy_from_slice(b"TeSt");
    let raw = ask_from("127.0.0.1", g.addr, &wire).await;
    assert_eq!(&raw[12..12 + 10], &wire[12..12 + 10], "question as asked");
    let again = Message::from_vec(&raw).unwrap();
    assert_eq!(again.metadata.id, id);
    assert!(again.metadata.recursion_available);
    assert_eq!(ips(&again), ["192.0.2.10"]);
    assert_eq!(g.upstream.queries(), 1);

    // A second later the TTL has gone down with the clock.
    g.running.shared.clock.advance(Duration::from_millis(2100));
    let later = a_from("127.0.0.1", g.addr, "www.test.").await;
    assert!(
        later.answers[0].ttl <= first_ttl - 2,
        "{} then {}",
        first_ttl,
        later.answers[0].ttl
    );
    assert_eq!(g.upstream.queries(), 1);

    // No EDNS, DO, and CD are other questions as far as answers go.
    let no_edns = Opts {
        edns: None,
        ..Opts::default()
    };
    let plain = client::query_with(g.addr, "www.test.", RecordType::A, no_edns).await;
    assert!(plain.edns.is_none(), "no OPT asked, none given");
    let with_do = Opts {
        dnssec_ok: true,
        ..Opts::default()
    };
    let dnssec = client::query_with(g.addr, "www.test.", RecordType::A, with_do).await;
    assert!(dnssec.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
    assert_eq!(g.upstream.queries_with_do(), 1);
}

#[tokio::test]
async fn clients_the_policies_tell_apart_get_their_own_answers() {
    let g = gate(
        "[identity]\ndirectory = \"ids.toml\"\n\
         [[policies]]\nname = \"kids\"\naction = \"block\"\n\
         traffic = 'dns.fqdn == \"www.test\"'\nidentity = 'any(identity.groups.name[*] == \"kids\")'\n",
        &[(
            "ids.toml",
            "[[groups]]\nid = \"k\"\nname = \"kids\"\n\
             [[users]]\nemail = \"kid@example.com\"\ngroups = [\"k\"]\n\
             [[devices]]\nid = \"tablet\"\nuser = \"kid@example.com\"\nips = [\"127.0.0.3\"]\n",
        )],
    )
    .await;
    for round in 0..3 {
        let adult = a_from("127.0.0.1", g.addr, "www.test.").await;
        assert_eq!(ips(&adult), ["192.0.2.10"], "round {round}");
        assert_eq!(ede(&adult), None, "round {round}");
        let kid = a_from("127.0.0.3", g.addr, "www.test.").await;
        assert_eq!(ips(&kid), ["0.0.0.0"], "round {round}");
        assert_eq!(ede(&kid).map(|e| e.0), Some(15), "round {round}");
        let other = a_from("127.0.0.4", g.addr, "www.test.").await;
        assert_eq!(ips(&other), ["192.0.2.10"], "round {round}");
    }
}

#[tokio::test]
async fn policies_on_the_client_address_are_kept_apart_too() {
    let g = gate(
        "[[policies]]\nname = \"lab\"\naction = \"block\"\nblock_mode = \"nxdomain\"\n\
         traffic = 'dns.src_ip in {127.0.0.2/32} and dns.fqdn == \"www.test\"'\n",
        &[],
    )
    .await;
    for round in 0..3 {
        let blocked = a_from("127.0.0.2", g.addr, "www.test.").await;
        assert_eq!(
            blocked.metadata.response_code,
            ResponseCode::NXDomain,
            "round {round}"
        );
        let fine = a_from("127.0.0.5", g.addr, "www.test.").await;
        assert_eq!(ips(&fine), ["192.0.2.10"], "round {round}");
    }
}

#[tokio::test]
async fn replayed_answers_are_logged_as_cached() {
    let g = gate(
        "[querylog]\npath = \"queries.jsonl\"\n\
         [[policies]]\nname = \"no jp\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"jp.test\"'\n",
        &[],
    )
    .await;
    for _ in 0..3 {
        assert_eq!(
            ips(&a_from("127.0.0.1", g.addr, "www.test.").await),
            ["192.0.2.10"]
        );
        assert_eq!(
            ips(&a_from("127.0.0.1", g.addr, "jp.test.").await),
            ["0.0.0.0"]
        );
    }
    let log = g.dir.path().join("queries.jsonl");
    let lines = crate::query_log(&log, |l| l.len() >= 6).await;
    assert_eq!(lines.len(), 6, "one line per query: {lines:?}");
    let www: Vec<_> = lines.iter().filter(|v| v["name"] == "www.test").collect();
    let cached: Vec<_> = www.iter().map(|v| v["cached"].clone()).collect();
    assert_eq!(cached, [false, true, true], "{lines:?}");
    for v in lines.iter().filter(|v| v["name"] == "jp.test") {
        assert_eq!(v["action"], "block", "{v}");
        assert_eq!(v["policy"], "no jp", "{v}");
        assert_eq!(v["type"], "A", "{v}");
    }
}

#[tokio::test]
async fn upstream_sockets_are_reused_a_few_times_then_replaced() {
    let g = gate("", &[]).await;
    // Forty different names, one after the other: forty upstream queries.
    for i in 0..40 {
        let m = a_from("127.0.0.1", g.addr, &format!("n{i}.test.")).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    let ports = g.upstream.udp_source_ports();
    assert_eq!(ports.len(), 40, "{ports:?}");
    let mut uses = std::collections::HashMap::new();
    for p in &ports {
        *uses.entry(*p).or_insert(0usize) += 1;
    }
    let most = uses.values().copied().max().unwrap();
    assert!(
        most <= dnsgate::resolve::forward::SOCKET_USES as usize,
        "no port serves more than SOCKET_USES queries: {uses:?}"
    );
    assert!(
        uses.len() >= 40usize.div_ceil(dnsgate::resolve::forward::SOCKET_USES as usize),
        "{uses:?}"
    );
    assert!(uses.len() < 40, "sockets are reused: {uses:?}");

    // A socket idle for two seconds is not reused: its port is closed.
    g.running.shared.clock.advance(Duration::from_millis(2200));
    let m = a_from("127.0.0.1", g.addr, "n40.test.").await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let after = g.upstream.udp_source_ports();
    assert!(
        !ports.contains(&after[40]),
        "port {} was used before: {ports:?}",
        after[40]
    );
}

#[tokio::test]
async fn a_post_resolution_verdict_lives_no_longer_than_the_answer_it_judged() {
    // short.test has TTL 2; the block is answered with `[block] ttl` 60. Repeating the
    // block for 60 s would keep judging an address the name may no longer have.
    let g = gate(
        "[[policies]]\nname = \"bad ip\"\naction = \"block\"\n\
         traffic = 'any(dns.resolved_ips[*] in {192.0.2.20})'\n",
        &[],
    )
    .await;
    for _ in 0..3 {
        let m = a_from("127.0.0.1", g.addr, "short.test.").await;
        assert_eq!(ips(&m), ["0.0.0.0"]);
        assert_eq!(ede(&m).map(|e| e.0), Some(15));
    }
    assert_eq!(g.upstream.queries(), 1, "repeated while fresh");
    g.running.shared.clock.advance(Duration::from_millis(2600));
    let m = a_from("127.0.0.1", g.addr, "short.test.").await;
    assert_eq!(ips(&m), ["0.0.0.0"]);
    assert_eq!(
        g.upstream.queries(),
        2,
        "asked again once the answer expired"
    );
}
