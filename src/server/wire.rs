//! Just enough of the DNS wire format for the UDP fast path: reading the one question
//! (and OPT) of an ordinary query straight from the datagram, and finding the TTL fields
//! of an encoded response so a cached copy can be aged in place (RFC 1035 §4.1).
//!
//! Anything unusual is not handled here: [`Query::parse`] says `None` and the query takes
//! the full path through hickory's decoder, which answers FORMERR, BADVERS and the rest.

/// The parts of an ordinary query the fast path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// Message id.
    pub id: u16,
    /// Recursion desired.
    pub rd: bool,
    /// Authentic data (RFC 6840 §5.7: AD in a query asks for AD in the answer).
    pub ad: bool,
    /// Checking disabled.
    pub cd: bool,
    /// Length of the question name on the wire (uncompressed, 1..=255).
    pub name_len: usize,
    /// Question type.
    pub qtype: u16,
    /// The OPT record, if any: (UDP payload size, DO bit).
    pub edns: Option<(u16, bool)>,
}

/// Where the question name starts.
pub const QNAME_AT: usize = 12;
/// `QCLASS` IN.
const CLASS_IN: u16 = 1;
/// `TYPE` OPT.
const TYPE_OPT: u16 = 41;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

impl Query {
    /// Reads a standard query with one IN question, no answer or authority records and
    /// at most an EDNS(0) OPT record; anything else is `None`.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let (flags0, flags1) = (*b.get(2)?, *b.get(3)?);
        // QR = 0, OPCODE = 0 (QUERY); AA/TC are meaningless in a query: leave those to the
        // full path too.
        if flags0 & 0b1111_1110 != 0 {
            return None;
        }
        let counts = (u16_at(b, 4)?, u16_at(b, 6)?, u16_at(b, 8)?, u16_at(b, 10)?);
        if !matches!(counts, (1, 0, 0, 0 | 1)) {
            return None;
        }
        let mut at = QNAME_AT;
        loop {
            let len = usize::from(*b.get(at)?);
            if len == 0 {
                at += 1;
                break;
            }
            // Compression pointers (and the reserved label types) in a question: full path.
            if len > 63 {
                return None;
            }
            at += 1 + len;
        }
        let name_len = at - QNAME_AT;
        if name_len > 255 {
            return None;
        }
        let qtype = u16_at(b, at)?;
        if u16_at(b, at + 2)? != CLASS_IN {
            return None;
        }
        at += 4;
        let edns = if counts.3 == 1 {
            // Root owner, TYPE OPT, CLASS = payload, TTL = ext-rcode, version, flags.
            if *b.get(at)? != 0 || u16_at(b, at + 1)? != TYPE_OPT {
                return None;
            }
            let payload = u16_at(b, at + 3)?;
            let (ext_rcode, version) = (*b.get(at + 5)?, *b.get(at + 6)?);
            if ext_rcode != 0 || version != 0 {
                return None;
            }
            let dnssec_ok = b.get(at + 7)? & 0x80 != 0;
            let rdlen = usize::from(u16_at(b, at + 9)?);
            at += 11;
            let end = at + rdlen;
            // Options must frame the data exactly; those hickory reads itself (NSID, DNSSEC
            // algorithm lists, client subnet) may be malformed: FORMERR is the full path's.
            while at < end {
                let (code, len) = (u16_at(b, at)?, usize::from(u16_at(b, at + 2)?));
                if matches!(code, 3 | 5 | 6 | 7 | 8) {
                    return None;
                }
                at += 4 + len;
            }
            if at != end {
                return None;
            }
            Some((payload, dnssec_ok))
        } else {
            None
        };
        // Trailing bytes (or a short OPT): full path.
        if at != b.len() {
            return None;
        }
        Some(Self {
            id: u16_at(b, 0)?,
            rd: flags0 & 0x01 != 0,
            ad: flags1 & 0x20 != 0,
            cd: flags1 & 0x10 != 0,
            name_len,
            qtype,
            edns,
        })
    }
}

/// Skips a (possibly compressed) name; returns the offset after it.
fn skip_name(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *b.get(at)?;
        match len {
            0 => return Some(at + 1),
            1..=63 => at += 1 + usize::from(len),
            0xc0..=0xff => {
                b.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
}

/// Every TTL field of an encoded response — its offset and value — but the OPT record's,
/// which is no TTL. `None` if the message does not parse.
pub fn ttls(b: &[u8]) -> Option<Vec<(u16, u32)>> {
    let qd = u16_at(b, 4)?;
    let rrs = u32::from(u16_at(b, 6)?) + u32::from(u16_at(b, 8)?) + u32::from(u16_at(b, 10)?);
    let mut at = QNAME_AT;
    for _ in 0..qd {
        at = skip_name(b, at)? + 4;
    }
    let mut ttls = Vec::new();
    for _ in 0..rrs {
        at = skip_name(b, at)?;
        let rtype = u16_at(b, at)?;
        let ttl_at = at + 4;
        let ttl = u32::from_be_bytes(b.get(ttl_at..ttl_at + 4)?.try_into().ok()?);
        let rdlen = usize::from(u16_at(b, at + 8)?);
        if rtype != TYPE_OPT {
            ttls.push((u16::try_from(ttl_at).ok()?, ttl));
        }
        at += 10 + rdlen;
    }
    (at == b.len()).then_some(ttls)
}

/// Writes into `out` an answer to the query in `packet` made of its header and question
/// alone, with `rcode` and, if `truncated`, TC set; `ede` adds an OPT carrying that
/// Extended DNS Error when the query had EDNS (RFC 8914: no OPT, no EDE). `q` is the
/// parsed query, or `None` for one only the header of which is read (no question is
/// echoed then). `None` if `packet` has no query header.
pub fn header_reply(
    packet: &[u8],
    q: Option<&Query>,
    rcode: u8,
    truncated: bool,
    ede: Option<(u16, &str)>,
    out: &mut Vec<u8>,
) -> Option<()> {
    let head = packet.get(..QNAME_AT)?;
    // A response (QR set) is never answered: no reflection loops.
    if head[2] & 0x80 != 0 {
        return None;
    }
    out.clear();
    out.extend_from_slice(head);
    // QR, the opcode and RD kept; AA clear; TC as asked. RA set; AD clear; CD kept.
    out[2] = 0x80 | (head[2] & 0x79) | if truncated { 0x02 } else { 0 };
    out[3] = 0x80 | (head[3] & 0x10) | (rcode & 0x0f);
    let qd = u16::from(q.is_some());
    out[4..6].copy_from_slice(&qd.to_be_bytes());
    out[6..12].fill(0);
    let Some(q) = q else {
        return Some(());
    };
    out.extend_from_slice(packet.get(QNAME_AT..QNAME_AT + q.name_len + 4)?);
    if let Some((payload, dnssec_ok)) = q.edns {
        out[10..12].copy_from_slice(&1u16.to_be_bytes());
        let payload = payload.clamp(512, crate::resolve::forward::EDNS_PAYLOAD);
        let text_len = ede.map_or(0, |(_, t)| t.len().min(256));
        let rdlen = if ede.is_some() {
            6 + text_len as u16
        } else {
            0
        };
        out.push(0); // root owner
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&payload.to_be_bytes());
        out.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
        out.extend_from_slice(&rdlen.to_be_bytes());
        if let Some((code, text)) = ede {
            out.extend_from_slice(&15u16.to_be_bytes()); // OPTION-CODE: EDE
            out.extend_from_slice(&(2 + text_len as u16).to_be_bytes());
            out.extend_from_slice(&code.to_be_bytes());
            out.extend_from_slice(&text.as_bytes()[..text_len]);
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as HQuery};
    use hickory_proto::rr::rdata::{A, CNAME, SOA};
    use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
    use proptest::prelude::*;

    use super::*;

    fn query(name: &str, qtype: RecordType, edns: Option<(u16, bool)>) -> Message {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.queries
            .push(HQuery::query(Name::from_str(name).unwrap(), qtype));
        if let Some((payload, dnssec_ok)) = edns {
            let mut e = Edns::new();
            e.set_max_payload(payload);
            e.set_dnssec_ok(dnssec_ok);
            m.set_edns(e);
        }
        m
    }

    #[test]
    fn header_replies_echo_the_question_and_carry_the_ede() {
        let wire = query("Www.Example.", RecordType::A, Some((4096, true)))
            .to_vec()
            .unwrap();
        let q = Query::parse(&wire).unwrap();
        let mut out = Vec::new();
        header_reply(&wire, Some(&q), 5, false, Some((18, "no")), &mut out).unwrap();
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(
            m.metadata.response_code,
            hickory_proto::op::ResponseCode::Refused
        );
        assert!(m.metadata.recursion_desired && !m.metadata.truncation);
        assert_eq!(m.queries[0].name().to_ascii(), "www.example.");
        let edns = m.edns.as_ref().unwrap();
        assert_eq!(edns.max_payload(), 1232);
        assert!(edns.flags().dnssec_ok);
        let ede = edns.options().options.iter().find_map(|(_, o)| match o {
            hickory_proto::rr::rdata::opt::EdnsOption::Unknown(15, d) => Some(d.clone()),
            _ => None,
        });
        assert_eq!(ede, Some(vec![0, 18, b'n', b'o']));
        // Truncated, no EDNS: header and question only, TC set.
        let plain = query("a.example.", RecordType::A, None).to_vec().unwrap();
        let pq = Query::parse(&plain).unwrap();
        header_reply(&plain, Some(&pq), 0, true, Some((18, "")), &mut out).unwrap();
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation && m.edns.is_none() && m.answers.is_empty());
        // Only a header: no question echoed; a response is never answered.
        header_reply(&plain[..12], None, 5, false, None, &mut out).unwrap();
        assert_eq!(out.len(), 12);
        let mut response = plain.clone();
        response[2] |= 0x80;
        assert!(header_reply(&response, Some(&pq), 5, false, None, &mut out).is_none());
    }

    #[test]
    fn reads_an_ordinary_query() {
        let m = query("Www.Example.COM.", RecordType::AAAA, Some((1232, true)));
        let q = Query::parse(&m.to_vec().unwrap()).unwrap();
        assert_eq!(q.id, 0x1234);
        assert!(q.rd && !q.cd && !q.ad);
        assert_eq!(q.name_len, 17);
        assert_eq!(q.qtype, 28);
        assert_eq!(q.edns, Some((1232, true)));
        let plain = Query::parse(&query("a.", RecordType::A, None).to_vec().unwrap()).unwrap();
        assert_eq!(plain.edns, None);
        assert_eq!(plain.name_len, 3);
    }

    #[test]
    fn leaves_the_unusual_to_the_full_path() {
        let ok = query("a.example.", RecordType::A, Some((512, false)))
            .to_vec()
            .unwrap();
        assert!(Query::parse(&ok).is_some());
        // Truncated anywhere.
        for n in 0..ok.len() {
            assert_eq!(Query::parse(&ok[..n]), None, "prefix {n}");
        }
        // Trailing garbage.
        let mut long = ok.clone();
        long.push(0);
        assert_eq!(Query::parse(&long), None);
        // A response, another opcode, two questions, EDNS version 1, CHAOS.
        let mut resp = ok.clone();
        resp[2] |= 0x80;
        assert_eq!(Query::parse(&resp), None);
        let mut notify = ok.clone();
        notify[2] |= 4 << 3;
        assert_eq!(Query::parse(&notify), None);
        let mut two = query("a.example.", RecordType::A, None);
        two.queries
            .push(HQuery::query(Name::from_str("b.").unwrap(), RecordType::A));
        assert_eq!(Query::parse(&two.to_vec().unwrap()), None);
        let mut v1 = ok.clone();
        let opt = v1.len() - 11;
        v1[opt + 6] = 1;
        assert_eq!(Query::parse(&v1), None);
        let mut chaos = query("version.bind.", RecordType::TXT, None);
        chaos.queries[0].set_query_class(DNSClass::CH);
        assert_eq!(Query::parse(&chaos.to_vec().unwrap()), None);
    }

    #[test]
    fn edns_options_must_be_well_framed_and_plain() {
        let base = query("a.example.", RecordType::A, Some((1232, false)))
            .to_vec()
            .unwrap();
        let with = |rdata: &[u8]| {
            let mut b = base.clone();
            let len = b.len();
            b[len - 2..].copy_from_slice(&(rdata.len() as u16).to_be_bytes());
            b.extend_from_slice(rdata);
            b
        };
        // A cookie (10) with 8 bytes: fine.
        let cookie = [0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        assert!(Query::parse(&with(&cookie)).is_some());
        // Too long for the data, too short, or a client subnet: the full path decides.
        assert_eq!(
            Query::parse(&with(&[0, 10, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8])),
            None
        );
        assert_eq!(Query::parse(&with(&[0, 10, 0])), None);
        let ecs = [0, 8, 0, 9, 0, 1, 40, 0, 1, 2, 3, 4, 5];
        assert_eq!(Query::parse(&with(&ecs)), None);
    }

    #[test]
    fn finds_every_ttl_but_the_opts() {
        let mut m = query("www.example.com.", RecordType::A, Some((1232, false)));
        m.metadata.message_type = MessageType::Response;
        let name = Name::from_str("www.example.com.").unwrap();
        let target = Name::from_str("cdn.example.net.").unwrap();
        m.answers.push(Record::from_rdata(
            name.clone(),
            300,
            RData::CNAME(CNAME(target.clone())),
        ));
        m.answers.push(Record::from_rdata(
            target,
            60,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        m.authorities.push(Record::from_rdata(
            Name::from_str("example.com.").unwrap(),
            900,
            RData::SOA(SOA::new(name.clone(), name, 1, 2, 3, 4, 5)),
        ));
        let b = m.to_vec().unwrap();
        let found = ttls(&b).unwrap();
        assert_eq!(found.len(), 3);
        assert_eq!(found.iter().map(|t| t.1).min(), Some(60));
        let values: Vec<u32> = found
            .iter()
            .map(|&(o, _)| {
                u32::from_be_bytes(b[usize::from(o)..usize::from(o) + 4].try_into().unwrap())
            })
            .collect();
        assert_eq!(values, [300, 60, 900]);
        assert_eq!(ttls(&b[..b.len() - 1]), None);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Query::parse(&bytes);
            let _ = ttls(&bytes);
        }

        #[test]
        fn agrees_with_hickory(labels in proptest::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,18}[a-zA-Z0-9])?", 1..6),
                               qtype in 1u16..300, payload in 0u16..5000, dnssec_ok: bool, with_edns: bool) {
            let name = format!("{}.", labels.join("."));
            let edns = with_edns.then_some((payload.max(512), dnssec_ok));
            let m = query(&name, RecordType::from(qtype), edns);
            let b = m.to_vec().unwrap();
            let q = Query::parse(&b).unwrap();
            prop_assert_eq!(q.name_len, name.len() + 1);
            prop_assert_eq!(q.qtype, qtype);
            prop_assert_eq!(q.edns, edns);
        }
    }
}
