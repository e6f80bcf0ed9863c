//! Answer synthesis (SPEC §4.5): block, override and safe-search answers, built for exactly
//! the question asked. The Extended DNS Error (RFC 8914) each carries comes from one place,
//! [`crate::policy::Decision::ede`]; negative answers carry an SOA whose TTL is `[block] ttl`
//! so clients cache them for that long (RFC 2308).

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::label::ede;
use crate::policy::BlockMode;
use crate::resolve::Resolved;

/// A reply before it is put on the wire.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// The rcode.
    pub rcode: ResponseCode,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authorities: Vec<Record>,
    /// Additional section (no OPT: that is added when sending).
    pub additionals: Vec<Record>,
    /// Extended DNS Error code and text.
    pub ede: Option<(u16, String)>,
    /// The AD bit, passed through from upstream.
    pub authentic_data: bool,
}

impl Reply {
    /// A reply with only an rcode.
    pub fn rcode(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            ..Self::default()
        }
    }

    /// Lowers every record's TTL to at most `secs`.
    pub fn cap_ttl(&mut self, secs: u32) {
        for r in self
            .answers
            .iter_mut()
            .chain(&mut self.authorities)
            .chain(&mut self.additionals)
        {
            r.ttl = r.ttl.min(secs);
        }
    }

    /// Attaches an EDE.
    pub fn with_ede(mut self, code: u16, text: impl Into<String>) -> Self {
        self.ede = Some((code, text.into()));
        self
    }

    /// The upstream's answer, with TTLs counted down (or stale: 30 s and EDE 3).
    pub fn from_resolved(r: &Resolved) -> Self {
        let m = &r.msg;
        let mut reply = Self {
            rcode: m.rcode,
            answers: m.answers.iter().map(|x| r.adjust(x)).collect(),
            authorities: m.authorities.iter().map(|x| r.adjust(x)).collect(),
            additionals: m.additionals.iter().map(|x| r.adjust(x)).collect(),
            ede: m.ede.clone(),
            authentic_data: m.authentic_data,
        };
        if r.stale {
            let code = if m.rcode == ResponseCode::NXDomain {
                ede::STALE_NXDOMAIN
            } else {
                ede::STALE
            };
            reply.ede = Some((code, String::new()));
        }
        reply
    }
}

fn address_records(name: &Name, qtype: RecordType, ips: &[IpAddr], ttl: u32) -> Vec<Record> {
    ips.iter()
        .filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(*v4))),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(*v6))),
            _ => None,
        })
        .map(|rdata| Record::from_rdata(name.clone(), ttl, rdata))
        .collect()
}

const NULL_IPS: [IpAddr; 2] = [
    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
];

/// The SOA of a synthesized negative answer: its TTL and MINIMUM are `ttl`, so a client
/// caches the NXDOMAIN or NODATA exactly as long as a positive block answer.
pub fn negative_soa(name: &Name, ttl: u32) -> Record {
    let mname = Name::from_ascii("dnsgate.invalid.").unwrap_or_else(|_| Name::root());
    let rname = Name::from_ascii("hostmaster.dnsgate.invalid.").unwrap_or_else(|_| Name::root());
    Record::from_rdata(
        name.clone(),
        ttl,
        RData::SOA(SOA::new(mname, rname, 1, 1800, 900, 604_800, ttl)),
    )
}

/// A synthesized answer from address records; NODATA (with an SOA) when none fit the type.
fn addresses(name: &Name, qtype: RecordType, ips: &[IpAddr], ttl: u32) -> Reply {
    let answers = address_records(name, qtype, ips, ttl);
    let authorities = if answers.is_empty() {
        vec![negative_soa(name, ttl)]
    } else {
        Vec::new()
    };
    Reply {
        answers,
        authorities,
        ..Reply::default()
    }
}

/// A block answer for `name`/`qtype`: null (0.0.0.0 / ::, NODATA for other types),
/// NXDOMAIN, REFUSED, or the block-page addresses.
pub fn block(
    name: &Name,
    qtype: RecordType,
    mode: BlockMode,
    block_ips: &[IpAddr],
    ttl: u32,
) -> Reply {
    match mode {
        BlockMode::NxDomain => Reply {
            rcode: ResponseCode::NXDomain,
            authorities: vec![negative_soa(name, ttl)],
            ..Reply::default()
        },
        BlockMode::Refused => Reply::rcode(ResponseCode::Refused),
        BlockMode::Null => addresses(name, qtype, &NULL_IPS, ttl),
        BlockMode::Ips => addresses(name, qtype, block_ips, ttl),
    }
}

/// An override by addresses: A/AAAA from `ips`, NODATA for a family (or type) not given.
pub fn override_ips(name: &Name, qtype: RecordType, ips: &[IpAddr], ttl: u32) -> Reply {
    addresses(name, qtype, ips, ttl)
}

/// A CNAME from `name` to `target`, followed by the target's own answer when it was
/// resolved (for a CNAME question, only the CNAME). Used by override_host and safe search.
pub fn cname(name: &Name, target: &Name, ttl: u32, resolved: Option<&Resolved>) -> Reply {
    let mut reply = Reply {
        answers: vec![Record::from_rdata(
            name.clone(),
            ttl,
            RData::CNAME(CNAME(target.clone())),
        )],
        ..Reply::default()
    };
    if let Some(r) = resolved {
        let target_reply = Reply::from_resolved(r);
        reply.rcode = target_reply.rcode;
        reply.answers.extend(target_reply.answers);
        reply.authorities = target_reply.authorities;
    }
    reply
}

/// An upper bound for a record's size on the wire (names counted uncompressed). `None` for
/// types whose size is not cheap to bound; the caller then measures exactly.
fn record_bound(r: &Record) -> Option<usize> {
    let name = |n: &Name| n.len() + 1;
    let rdata = match &r.data {
        RData::A(_) => 4,
        RData::AAAA(_) => 16,
        RData::CNAME(n) => name(&n.0),
        RData::NS(n) => name(&n.0),
        RData::PTR(n) => name(&n.0),
        RData::MX(mx) => 2 + name(&mx.exchange),
        RData::TXT(t) => t.txt_data.iter().map(|d| d.len() + 1).sum(),
        RData::SOA(soa) => name(&soa.mname) + name(&soa.rname) + 20,
        _ => return None,
    };
    Some(name(&r.name) + 10 + rdata)
}

impl Reply {
    /// Whether the reply certainly fits in `limit` bytes with `overhead` bytes of header,
    /// question and OPT — cheaply, without encoding. `false` means "measure it".
    pub fn surely_fits(&self, overhead: usize, limit: usize) -> bool {
        let mut total = overhead;
        for r in self
            .answers
            .iter()
            .chain(&self.authorities)
            .chain(&self.additionals)
        {
            match record_bound(r) {
                Some(n) => total += n,
                None => return false,
            }
            if total > limit {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_block_answers_the_question_asked() {
        let n = Name::from_ascii("ads.example.").unwrap();
        let a = block(&n, RecordType::A, BlockMode::Null, &[], 60);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].data, RData::A(A::new(0, 0, 0, 0)));
        assert!(a.authorities.is_empty());
        let aaaa = block(&n, RecordType::AAAA, BlockMode::Null, &[], 60);
        assert_eq!(
            aaaa.answers[0].data,
            RData::AAAA(AAAA(std::net::Ipv6Addr::UNSPECIFIED))
        );
        let mx = block(&n, RecordType::MX, BlockMode::Null, &[], 60);
        assert!(mx.answers.is_empty());
        assert_eq!(mx.rcode, ResponseCode::NoError);
        assert!(matches!(&mx.authorities[0].data, RData::SOA(soa) if soa.minimum == 60));
        let any = block(&n, RecordType::ANY, BlockMode::Null, &[], 60);
        assert_eq!(any.answers.len(), 2);
        let ips: Vec<IpAddr> = vec!["192.0.2.9".parse().unwrap()];
        let page = block(&n, RecordType::AAAA, BlockMode::Ips, &ips, 60);
        assert!(page.answers.is_empty(), "no v6 block page: NODATA");
        let nx = block(&n, RecordType::A, BlockMode::NxDomain, &[], 45);
        assert_eq!(nx.rcode, ResponseCode::NXDomain);
        assert_eq!(nx.authorities[0].ttl, 45);
        assert!(
            block(&n, RecordType::A, BlockMode::Refused, &[], 60)
                .authorities
                .is_empty()
        );
    }
}
