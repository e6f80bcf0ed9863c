//! The UDP fast path's wire reader and packet-cache key, and the TTL finder, on any bytes.
//!
//! Input: one datagram. As a query: `Query::parse`, and when it parses, `Key::new` for a
//! client class picked from the id, cross-checked against hickory's decoder (the full
//! path): where both read the packet, they must agree on everything the key holds, or a
//! cached answer would be replayed to the wrong question. As a response: `wire::ttls`,
//! whose offsets must lie inside the packet (the cache patches them in place). And the
//! header-only reply the fast path sends outsiders and slipped clients (`header_reply`):
//! a response hickory reads, echoing the question when there is one.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dnsgate::pipeline::ClientClass;
use dnsgate::server::packet::Key;
use dnsgate::server::wire::{QNAME_AT, Query, header_reply, ttls};
use hickory_proto::op::{Message, MessageType, OpCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(q) = Query::parse(data) {
        assert!((1..=255).contains(&q.name_len));
        let class = match data[0] % 4 {
            0 => ClientClass::Anyone,
            1 => ClientClass::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, data[1]))),
            2 => ClientClass::Ip(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
            _ => ClientClass::Identity(usize::MAX, usize::from(data[1])),
        };
        assert!(
            Key::new(data, &q, class).is_some(),
            "no key for a parsed query"
        );
        if let Ok(m) = Message::from_vec(data) {
            agree(data, &q, &m);
        }
    }
    let q = Query::parse(data);
    let mut out = Vec::new();
    let ede = Some((18, "not allowed"));
    if header_reply(data, q.as_ref(), 5, data.len() % 2 == 1, ede, &mut out).is_some() {
        assert_eq!(out[..2], data[..2]);
        assert!(out[2] & 0x80 != 0, "a reply is a response");
        match &q {
            None => assert_eq!(out.len(), QNAME_AT),
            Some(q) => {
                let m = Message::from_vec(&out).expect("hickory reads the header reply");
                assert_eq!(m.queries.len(), 1);
                assert_eq!(u16::from(m.queries[0].query_type()), q.qtype);
                assert_eq!(
                    out[QNAME_AT..QNAME_AT + q.name_len],
                    data[QNAME_AT..QNAME_AT + q.name_len]
                );
                assert_eq!(m.edns.is_some(), q.edns.is_some());
            }
        }
    }
    if let Some(found) = ttls(data) {
        for (at, ttl) in found {
            let at = usize::from(at);
            let bytes = data.get(at..at + 4).expect("TTL offset outside the packet");
            assert_eq!(u32::from_be_bytes(bytes.try_into().unwrap()), ttl);
        }
    }
});

/// The fast path's reading of a query must be hickory's.
fn agree(data: &[u8], q: &Query, m: &Message) {
    let md = &m.metadata;
    assert_eq!(md.id, q.id);
    assert_eq!(md.message_type, MessageType::Query);
    assert_eq!(md.op_code, OpCode::Query);
    assert_eq!(md.recursion_desired, q.rd);
    assert_eq!(md.authentic_data, q.ad);
    assert_eq!(md.checking_disabled, q.cd);
    assert_eq!(m.queries.len(), 1);
    let hq = &m.queries[0];
    assert_eq!(u16::from(hq.query_type()), q.qtype);
    // The same labels, byte for byte (the key lowercases ASCII; so must hickory's compare).
    let mut wire = Vec::new();
    for label in hq.name().iter() {
        wire.push(u8::try_from(label.len()).unwrap());
        wire.extend_from_slice(label);
    }
    wire.push(0);
    assert_eq!(
        wire,
        &data[QNAME_AT..QNAME_AT + q.name_len],
        "question name"
    );
    match (&m.edns, q.edns) {
        (None, None) => {}
        (Some(e), Some((payload, dnssec_ok))) => {
            assert_eq!(e.max_payload().max(512), payload.max(512));
            assert_eq!(e.flags().dnssec_ok, dnssec_ok);
        }
        (h, f) => panic!("EDNS: hickory {h:?}, fast path {f:?}"),
    }
}
