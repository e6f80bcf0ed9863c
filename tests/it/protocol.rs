//! DNS protocol details a resolver owes its clients: EDNS payload and version (RFC 6891),
//! the DO and CD bits (RFC 4035 §3.2) in forwarding and in the cache key, and what is never
//! forwarded (other classes, zone transfers).

use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};

use crate::client::{self, Opts, exchange, ips, query_with};
use crate::gate;

/// Encodes a `www.test A` query whose OPT record advertises `payload` — written into the
/// wire directly, since hickory's encoder raises anything below 512 to 512.
fn query_with_payload(payload: u16) -> (u16, Vec<u8>) {
    let (id, mut wire) = client::build("www.test.", RecordType::A, Opts::default());
    // The OPT record (no options) is the last 11 bytes: root, type 41, class = payload,
    // TTL (ext-rcode, version, flags), rdlength 0.
    let opt = wire.len() - 11;
    assert_eq!(
        &wire[opt..opt + 3],
        &[0, 0, 41],
        "the query ends with a bare OPT record"
    );
    wire[opt + 3..opt + 5].copy_from_slice(&payload.to_be_bytes());
    (id, wire)
}

#[tokio::test]
async fn response_payload_is_the_clients_raised_to_512_and_capped_at_1232() {
    let g = gate("", &[]).await;
    for (asked, want) in [
        (0u16, 512u16),
        (100, 512),
        (511, 512),
        (512, 512),
        (1000, 1000),
        (1232, 1232),
        (1233, 1232),
        (4096, 1232),
        (65535, 1232),
    ] {
        let (id, wire) = query_with_payload(asked);
        let bytes = client::udp_raw(g.addr, &wire, Duration::from_secs(10))
            .await
            .expect("answer within 10 s");
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.id, id);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NoError,
            "payload {asked}"
        );
        assert_eq!(ips(&m), ["192.0.2.10"], "payload {asked}");
        // hickory's decoder keeps the OPT class as sent, so this is the server's value.
        assert_eq!(
            m.edns.as_ref().map(Edns::max_payload),
            Some(want),
            "client payload {asked}"
        );
    }
}

#[tokio::test]
async fn an_unknown_edns_version_gets_badvers_and_no_answer() {
    let g = gate("", &[]).await;
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_ascii("www.test.").unwrap(),
        RecordType::A,
    ));
    let mut e = Edns::new();
    e.set_max_payload(1232);
    e.set_version(1);
    m.set_edns(e);
    let (resp, bytes) = exchange(g.addr, &m).await;
    // BADVERS is extended rcode 16: header rcode 0, OPT extended-rcode 1 (RFC 6891 §6.1.3).
    assert_eq!(bytes[3] & 0x0f, 0, "header rcode bits");
    let opt = resp
        .edns
        .as_ref()
        .expect("BADVERS needs an OPT record in the response");
    assert_eq!(opt.rcode_high(), 1, "extended rcode: 16 = BADVERS");
    assert_eq!(
        opt.version(),
        0,
        "the responder states the version it speaks"
    );
    assert!(resp.answers.is_empty(), "{resp:?}");
    assert_eq!(
        g.upstream.queries(),
        0,
        "nothing is resolved for a version we do not speak"
    );
    // Version 0 still works.
    let ok = client::query(g.addr, "www.test.", RecordType::A).await;
    assert_eq!(ips(&ok), ["192.0.2.10"]);
    assert_eq!(ok.edns.as_ref().map(|e| e.rcode_high()), Some(0));
}

#[tokio::test]
async fn the_do_bit_is_forwarded_and_part_of_the_cache_key() {
    let g = gate("", &[]).await;
    let plain = Opts::default();
    let dnssec = Opts {
        dnssec_ok: true,
        ..Opts::default()
    };

    assert_eq!(
        ips(&query_with(g.addr, "www.test.", RecordType::A, plain).await),
        ["192.0.2.10"]
    );
    assert_eq!(g.upstream.queries(), 1);
    assert_eq!(
        g.upstream.queries_with_do(),
        0,
        "no DO asked, none forwarded"
    );
    let m = query_with(g.addr, "www.test.", RecordType::A, dnssec).await;
    assert_eq!(ips(&m), ["192.0.2.10"]);
    assert!(
        m.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
        "DO mirrored in the response OPT"
    );
    assert_eq!(
        g.upstream.queries(),
        2,
        "a DO query is not answered from a non-DO entry"
    );
    assert_eq!(
        g.upstream.queries_with_do(),
        1,
        "the DO bit reaches the upstream"
    );

    // The same flag twice: the second is a hit, for either flag.
    query_with(g.addr, "jp.test.", RecordType::A, dnssec).await;
    query_with(g.addr, "jp.test.", RecordType::A, dnssec).await;
    assert_eq!(g.upstream.queries(), 3);
    query_with(g.addr, "www.test.", RecordType::A, plain).await;
    query_with(g.addr, "www.test.", RecordType::A, dnssec).await;
    assert_eq!(g.upstream.queries(), 3, "both www.test entries are cached");
}

#[tokio::test]
async fn a_query_with_the_cd_bit_is_answered_with_cd_mirrored() {
    let g = gate("", &[]).await;
    let cd = Opts {
        checking_disabled: true,
        ..Opts::default()
    };
    let m = query_with(g.addr, "www.test.", RecordType::A, cd).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ips(&m), ["192.0.2.10"]);
    assert!(
        m.metadata.checking_disabled,
        "RFC 4035 §3.2.2: CD is copied into the response"
    );
}

#[tokio::test]
async fn the_cd_bit_is_forwarded_and_part_of_the_cache_key() {
    let g = gate("", &[]).await;
    let cd = Opts {
        checking_disabled: true,
        ..Opts::default()
    };
    query_with(g.addr, "www.test.", RecordType::A, Opts::default()).await;
    assert_eq!(g.upstream.queries(), 1);
    assert_eq!(g.upstream.queries_with_cd(), 0);
    let m = query_with(g.addr, "www.test.", RecordType::A, cd).await;
    assert_eq!(ips(&m), ["192.0.2.10"]);
    // RFC 4035 §3.2.2: a CD query must not be answered from data validated (or refused)
    // for a non-CD one, so it is its own cache entry, and the bit goes upstream.
    assert_eq!(
        g.upstream.queries(),
        2,
        "CD and non-CD are cached separately"
    );
    assert_eq!(
        g.upstream.queries_with_cd(),
        1,
        "the CD bit reaches the upstream"
    );
    query_with(g.addr, "www.test.", RecordType::A, cd).await;
    query_with(g.addr, "www.test.", RecordType::A, Opts::default()).await;
    assert_eq!(
        g.upstream.queries(),
        2,
        "each is a cache hit the second time"
    );
}

#[tokio::test]
async fn chaos_class_queries_are_not_forwarded() {
    let g = gate("", &[]).await;
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    let mut q = Query::query(Name::from_ascii("version.bind.").unwrap(), RecordType::TXT);
    q.set_query_class(DNSClass::CH);
    m.add_query(q);
    m.set_edns(Edns::new());
    let (resp, _) = exchange(g.addr, &m).await;
    assert!(
        matches!(
            resp.metadata.response_code,
            ResponseCode::Refused | ResponseCode::NotImp
        ),
        "CHAOS version.bind: {:?}",
        resp.metadata.response_code
    );
    assert!(resp.answers.is_empty(), "{resp:?}");
    assert_eq!(
        g.upstream.queries(),
        0,
        "a non-IN class never goes upstream"
    );
}

#[tokio::test]
async fn zone_transfers_over_udp_are_not_forwarded() {
    let g = gate("", &[]).await;
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii("test.").unwrap(), qtype));
        let (resp, _) = exchange(g.addr, &m).await;
        assert!(
            matches!(
                resp.metadata.response_code,
                ResponseCode::Refused | ResponseCode::NotImp | ResponseCode::FormErr
            ),
            "{qtype} over UDP: {:?}",
            resp.metadata.response_code
        );
        assert!(resp.answers.is_empty(), "{resp:?}");
    }
    assert_eq!(g.upstream.queries(), 0, "zone transfers never go upstream");
}
