//! The facts a query supplies to the policies (SPEC §3) that are not the client's: the
//! record type's name, the client's GeoIP, and the answer-derived post-resolution facts.

use std::borrow::Cow;
use std::net::IpAddr;

use hickory_proto::rr::{RData, RecordType};

use crate::geoip::GeoInfo;
use crate::policy::fields::{PostFacts, fqdn_of};
use crate::resolve::Resolved;
use crate::runtime::Runtime;

/// `dns.query_rtype`: the mnemonic, or `TYPEnnn` for a type without one (RFC 3597).
pub(super) fn rtype_name(qtype: RecordType) -> Cow<'static, str> {
    match qtype {
        RecordType::Unknown(code) => Cow::Owned(format!("TYPE{code}")),
        known => Cow::Borrowed(known.into()),
    }
}

/// `dns.src.geo.*`, looked up only when a policy reads it.
pub(super) fn src_geo(rt: &Runtime, ip: IpAddr) -> GeoInfo {
    match (&rt.geoip, rt.policies.needs_src_geo) {
        (Some(g), true) => g.lookup(ip),
        _ => GeoInfo::default(),
    }
}

/// Collects the post-resolution facts from an answer (SPEC §3 post fields).
pub fn post_facts(rt: &Runtime, r: &Resolved) -> PostFacts {
    let mut post = PostFacts {
        authoritative_ns_ips: r.msg.servers.clone(),
        ..PostFacts::default()
    };
    for rec in &r.msg.answers {
        match &rec.data {
            RData::A(a) => post.resolved_ips.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => post.resolved_ips.push(IpAddr::V6(a.0)),
            RData::CNAME(c) => post.cnames.push(fqdn_of(&c.0)),
            RData::MX(mx) => post.mx.push(fqdn_of(&mx.exchange)),
            RData::PTR(p) => post.ptr.push(fqdn_of(&p.0)),
            RData::TXT(t) => post.txt.push(
                t.txt_data
                    .iter()
                    .map(|d| String::from_utf8_lossy(d))
                    .collect::<Vec<_>>()
                    .concat(),
            ),
            _ => {}
        }
    }
    if rt.policies.needs_dst_geo {
        if let Some(g) = &rt.geoip {
            post.dst_geo = post.resolved_ips.iter().map(|ip| g.lookup(*ip)).collect();
        }
    }
    post
}
