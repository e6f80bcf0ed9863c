//! The pieces of iteration that need no network: reading responses and following chains.
//! Iteration itself is tested against a loopback hierarchy of real servers (tests/it).

use std::str::FromStr;

use hickory_proto::rr::rdata::{A, NS, NULL, SOA};
use hickory_proto::serialize::binary::BinEncodable;

use super::*;

fn n(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn rec(owner: &str, data: RData) -> Record {
    Record::from_rdata(n(owner), 300, data)
}

fn a(owner: &str, ip: [u8; 4]) -> Record {
    rec(owner, RData::A(A::new(ip[0], ip[1], ip[2], ip[3])))
}

fn cname(owner: &str, target: &str) -> Record {
    rec(owner, RData::CNAME(CNAME(n(target))))
}

fn ns(owner: &str, target: &str) -> Record {
    rec(owner, RData::NS(NS(n(target))))
}

fn soa(zone: &str) -> Record {
    rec(
        zone,
        RData::SOA(SOA::new(n(zone), n(zone), 1, 60, 60, 60, 60)),
    )
}

fn response(rcode: ResponseCode, aa: bool, answers: Vec<Record>, auth: Vec<Record>) -> Message {
    let mut m = Message::new(1, MessageType::Response, OpCode::Query);
    m.metadata.response_code = rcode;
    m.metadata.authoritative = aa;
    m.answers = answers;
    m.authorities = auth;
    m
}

#[test]
fn responses_are_answers_referrals_or_lame() {
    let zone = n("test.");
    let ask = n("www.sub.test.");
    let ok = ResponseCode::NoError;
    // Data for the name.
    let m = response(ok, true, vec![a("www.sub.test.", [192, 0, 2, 1])], vec![]);
    assert_eq!(classify(&m, &zone, &ask, RecordType::A), Kind::Final);
    // A referral to a child on the way to the name.
    let m = response(ok, false, vec![], vec![ns("sub.test.", "ns.sub.test.")]);
    assert_eq!(
        classify(&m, &zone, &ask, RecordType::A),
        Kind::Referral(n("sub.test."))
    );
    // A "referral" upward or sideways is lame.
    let m = response(ok, false, vec![], vec![ns(".", "a.root.")]);
    assert_eq!(classify(&m, &zone, &ask, RecordType::A), Kind::Lame);
    let m = response(ok, false, vec![], vec![ns("other.test.", "ns.other.test.")]);
    assert_eq!(classify(&m, &zone, &ask, RecordType::A), Kind::Lame);
    // NODATA with the zone's SOA, and NXDOMAIN, are final.
    let m = response(ok, true, vec![], vec![soa("test.")]);
    assert_eq!(classify(&m, &zone, &ask, RecordType::A), Kind::Final);
    let m = response(ResponseCode::NXDomain, true, vec![], vec![soa("test.")]);
    assert_eq!(classify(&m, &zone, &ask, RecordType::A), Kind::Final);
    // REFUSED, SERVFAIL, and an empty answer without authority are lame.
    for rcode in [ResponseCode::Refused, ResponseCode::ServFail] {
        assert_eq!(
            classify(
                &response(rcode, false, vec![], vec![]),
                &zone,
                &ask,
                RecordType::A
            ),
            Kind::Lame
        );
    }
    assert_eq!(
        classify(
            &response(ok, false, vec![], vec![]),
            &zone,
            &ask,
            RecordType::A
        ),
        Kind::Lame
    );
    // Data for a name outside the zone asked about is not an answer.
    let m = response(ok, false, vec![a("www.sub.test.", [192, 0, 2, 1])], vec![]);
    assert_eq!(
        classify(&m, &n("example."), &ask, RecordType::A),
        Kind::Lame
    );
}

#[test]
fn chains_are_followed_within_the_zone_and_handed_on_outside_it() {
    let zone = n("test.");
    let m = response(
        ResponseCode::NoError,
        true,
        vec![
            cname("a.test.", "b.test."),
            cname("b.test.", "c.example."),
            a("c.example.", [6, 6, 6, 6]),
        ],
        vec![],
    );
    let step = follow(&m, &n("a.test."), RecordType::A, &zone, false);
    assert_eq!(step.records.len(), 2, "the out-of-zone A is not believed");
    assert_eq!(step.next, Some(n("c.example.")));

    // In-zone data at the end of the chain: done.
    let m = response(
        ResponseCode::NoError,
        true,
        vec![cname("a.test.", "b.test."), a("b.test.", [192, 0, 2, 2])],
        vec![],
    );
    let step = follow(&m, &n("A.test."), RecordType::A, &zone, false);
    assert_eq!((step.records.len(), step.next), (2, None));

    // A chain to an in-zone name that does not exist ends with this NXDOMAIN.
    let m = response(
        ResponseCode::NXDomain,
        true,
        vec![cname("a.test.", "gone.test.")],
        vec![soa("test.")],
    );
    let step = follow(&m, &n("a.test."), RecordType::A, &zone, false);
    assert_eq!((step.records.len(), step.next), (1, None));

    // Asking for the CNAME itself takes it as the data.
    let m = response(
        ResponseCode::NoError,
        true,
        vec![cname("a.test.", "x.example.")],
        vec![],
    );
    let step = follow(&m, &n("a.test."), RecordType::CNAME, &zone, false);
    assert_eq!((step.records.len(), step.next), (1, None));
}

#[test]
fn dnames_are_synthesized_here_not_taken_from_the_server() {
    let zone = n("test.");
    let dname = rec(
        "old.test.",
        RData::Unknown {
            code: RecordType::DNAME,
            rdata: NULL::with(n("new.example.").to_bytes().unwrap()),
        },
    );
    assert_eq!(dname_target(&dname), Some(n("new.example.")));
    // The server's own CNAME points somewhere else: ignored.
    let m = response(
        ResponseCode::NoError,
        true,
        vec![dname, cname("www.old.test.", "evil.test.")],
        vec![],
    );
    let step = follow(&m, &n("www.old.test."), RecordType::A, &zone, false);
    assert_eq!(step.next, Some(n("www.new.example.")));
    assert_eq!(step.records.len(), 2);
    assert_eq!(step.records[0].record_type(), RecordType::DNAME);
    assert_eq!(
        step.records[1].data,
        RData::CNAME(CNAME(n("www.new.example.")))
    );
    assert_eq!(step.records[1].name, n("www.old.test."));
}

#[test]
fn minimisation_takes_one_label_at_a_time_then_strides() {
    // zone "." (0 labels), a 3-label name: 1, 2, 3.
    assert_eq!(next_labels(1, 0, 3), 2);
    assert_eq!(next_labels(2, 0, 3), 3);
    // A 30-label name below a 1-label zone reaches the whole name in about ten steps.
    let mut labels = 2;
    let mut steps = 1;
    while labels < 30 {
        labels = next_labels(labels, 1, 30);
        steps += 1;
    }
    assert!(steps <= 11, "{steps} steps");
}

#[test]
fn negative_answers_keep_the_soa_of_the_zone_that_gave_them() {
    let q = Question {
        name: n("gone.test."),
        qtype: RecordType::A,
        qclass: hickory_proto::rr::DNSClass::IN,
        dnssec_ok: false,
        checking_disabled: false,
    };
    let reply = Reply {
        fetched: Fetched {
            msg: response(
                ResponseCode::NXDomain,
                true,
                vec![],
                vec![soa("test."), ns("test.", "ns.test."), soa("example.")],
            ),
            zone: n("test."),
        },
        server: "127.0.0.1".parse().unwrap(),
    };
    let r = finish(&q, reply, Vec::new());
    assert_eq!(r.msg.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.msg.authorities.len(), 1);
    assert_eq!(r.servers, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
}
