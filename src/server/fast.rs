//! The UDP fast path: what can be answered from the datagram's bytes without decoding it
//! or spawning a task — outsiders refused from the header, rate limits, and answers
//! replayed from the packet cache — recorded through the one exit like everything else.

use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;

use super::Shared;
use super::packet::Key;
use super::ratelimit::Verdict;
use super::wire::{self, QNAME_AT, Query};
use crate::clock::Instant;
use crate::label::{Protocol, QueryAction, Rcode, ede};
use crate::pipeline::{self, Client, ClientClass, DeviceHint};
use crate::record::{Event, QName};
use crate::runtime::Runtime;

/// What the fast path leaves the full path for a miss: the key to remember the answer
/// under, the client class it was made with, and the configuration generation.
pub(super) type Miss = (Key, ClientClass, u64);

/// What the fast path did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fast {
    /// Answered into the reply buffer.
    Reply,
    /// Nothing is to be sent (past a rate limit, or not a query).
    Silent,
    /// The full path decides.
    Miss,
}

/// Queries a second a refused outsider network gets REFUSED for; past that, nothing.
const OUTSIDER_QPS: u32 = 10;

/// The fast path: outsiders refused from the header (within their budget), rate limits,
/// then the packet cache. A miss sets `miss` to what the full path needs to remember its
/// answer (left `None`: not one for the cache).
#[allow(clippy::too_many_arguments)]
pub(super) fn fast(
    shared: &Shared,
    rt: &Runtime,
    packet: &[u8],
    src: SocketAddr,
    start: Instant,
    second: u64,
    out: &mut Vec<u8>,
    miss: &mut Option<Miss>,
) -> Fast {
    let ip = src.ip().to_canonical();
    let parsed = Query::parse(packet);
    // 1. Outsiders (SPEC §4.1): REFUSED + EDE 18 from the header and question alone, as
    // cheap as a cache hit, at most OUTSIDER_QPS a second per network; their log lines
    // sampled. The pipeline would decide the same (it asks the same `admits`).
    if !pipeline::admits(rt, ip) {
        if shared.outsiders.check(ip, second, OUTSIDER_QPS, 0) != Verdict::Pass {
            shared.exit.hot().rate_limited(false, true);
            return Fast::Silent;
        }
        let refused = ResponseCode::Refused.low();
        let ede = Some((ede::PROHIBITED, pipeline::NOT_ALLOWED));
        if wire::header_reply(packet, parsed.as_ref(), refused, false, ede, out).is_none() {
            return Fast::Silent;
        }
        let event = Event {
            protocol: Protocol::Udp,
            client: ip,
            identity: None,
            name: parsed.map_or(QName::None, |_| QName::Wire(&packet[QNAME_AT..])),
            qtype: parsed.map(|q| q.qtype.into()),
            action: QueryAction::Refused,
            policy: None,
            phase: None,
            cname: None,
            rcode: Rcode::Refused,
            cached: false,
            replayed: false,
            elapsed: shared.clock.now().saturating_duration_since(start),
            sampled: true,
        };
        shared.exit.record(rt, &event);
        return Fast::Reply;
    }
    // 2. `[server] rate_limit`: past it, a slipped (truncated, empty) answer or nothing.
    let limit = rt.rate_limit;
    if limit.per_client_qps > 0 {
        match shared
            .limiter
            .check(ip, second, limit.per_client_qps, limit.slip)
        {
            Verdict::Pass => {}
            Verdict::Slip => {
                shared.exit.hot().rate_limited(true, false);
                let made = wire::header_reply(packet, parsed.as_ref(), 0, true, None, out);
                return if made.is_some() {
                    Fast::Reply
                } else {
                    Fast::Silent
                };
            }
            Verdict::Drop => {
                shared.exit.hot().rate_limited(false, false);
                return Fast::Silent;
            }
        }
    }
    // 3. The packet cache (zone transfers get their REFUSED on the full path).
    let Some(q) = parsed else {
        return Fast::Miss;
    };
    if matches!(q.qtype, 251 | 252) {
        return Fast::Miss;
    }
    let client = Client::identify(rt, ip, &DeviceHint::None);
    let class = client.class(&rt.policies);
    let Some(key) = Key::new(packet, &q, class) else {
        return Fast::Miss;
    };
    let Some(meta) = shared
        .packets
        .answer(&key, packet, &q, rt.generation, start, out)
    else {
        *miss = Some((key, class, rt.generation));
        return Fast::Miss;
    };
    let event = Event {
        protocol: Protocol::Udp,
        client: client.ip,
        identity: client.identity.map(|i| &**i),
        name: QName::Wire(packet.get(QNAME_AT..).unwrap_or_default()),
        qtype: Some(q.qtype.into()),
        action: meta.action,
        policy: meta.policy,
        phase: meta.phase,
        cname: meta.cname.as_deref(),
        rcode: meta.rcode,
        cached: meta.action.is_resolved(),
        replayed: true,
        elapsed: shared.clock.now().saturating_duration_since(start),
        sampled: false,
    };
    shared.exit.record(rt, &event);
    Fast::Reply
}
