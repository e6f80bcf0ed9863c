//! Discovery of Designated Resolvers (RFC 9462): `_dns.resolver.arpa SVCB` names this
//! server's encrypted endpoints, so clients upgrade from plain DNS to DoT or DoH by
//! themselves. `resolver.arpa` is a locally served zone: never forwarded.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::svcb::{Alpn, IpHint, SVCB, SvcParamKey, SvcParamValue, Unknown};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::answer::Reply;
use crate::runtime::Runtime;

/// TTL of the SVCB answers.
const TTL: u32 = 300;

/// Whether `name` is in `resolver.arpa`.
pub(super) fn is_resolver_arpa(name: &Name) -> bool {
    let labels: Vec<&[u8]> = name.iter().collect();
    labels.len() >= 2
        && labels[labels.len() - 2].eq_ignore_ascii_case(b"resolver")
        && labels[labels.len() - 1].eq_ignore_ascii_case(b"arpa")
}

/// The answer for `name`/`qtype` in `resolver.arpa`, to a query that arrived at `local`.
pub(super) fn answer(rt: &Runtime, name: &Name, qtype: RecordType, local: Option<IpAddr>) -> Reply {
    let is_dns = name.num_labels() == 3
        && name
            .iter()
            .next()
            .is_some_and(|l| l.eq_ignore_ascii_case(b"_dns"));
    if !is_dns {
        return Reply::rcode(ResponseCode::NXDomain);
    }
    let mut reply = Reply::rcode(ResponseCode::NoError);
    let Some(host) = rt
        .hostname
        .as_deref()
        .and_then(|h| Name::from_ascii(format!("{h}.")).ok())
    else {
        return reply;
    };
    if qtype != RecordType::SVCB {
        return reply;
    }
    let hints = |params: &mut Vec<(SvcParamKey, SvcParamValue)>| match local {
        Some(IpAddr::V4(v4)) if !v4.is_unspecified() => params.push((
            SvcParamKey::Ipv4Hint,
            SvcParamValue::Ipv4Hint(IpHint(vec![A(v4)])),
        )),
        Some(IpAddr::V6(v6)) if !v6.is_unspecified() => params.push((
            SvcParamKey::Ipv6Hint,
            SvcParamValue::Ipv6Hint(IpHint(vec![AAAA(v6)])),
        )),
        _ => {}
    };
    let mut priority = 1;
    if let Some(doh) = &rt.settings.doh
        && let Some(addr) = doh.listen.first()
    {
        let mut params = vec![
            (
                SvcParamKey::Alpn,
                SvcParamValue::Alpn(Alpn(vec!["h2".into()])),
            ),
            (SvcParamKey::Port, SvcParamValue::Port(addr.port())),
        ];
        hints(&mut params);
        // dohpath (RFC 9461, key 7): no named variant in hickory-proto 0.26.
        params.push((
            SvcParamKey::Unknown(7),
            SvcParamValue::Unknown(Unknown(format!("{}{{?dns}}", doh.path).into_bytes())),
        ));
        reply.answers.push(Record::from_rdata(
            name.clone(),
            TTL,
            RData::SVCB(SVCB::new(priority, host.clone(), params)),
        ));
        priority += 1;
    }
    if let Some(dot) = &rt.settings.dot
        && let Some(addr) = dot.listen.first()
    {
        let mut params = vec![
            (
                SvcParamKey::Alpn,
                SvcParamValue::Alpn(Alpn(vec!["dot".into()])),
            ),
            (SvcParamKey::Port, SvcParamValue::Port(addr.port())),
        ];
        hints(&mut params);
        reply.answers.push(Record::from_rdata(
            name.clone(),
            TTL,
            RData::SVCB(SVCB::new(priority, host, params)),
        ));
    }
    reply
}
