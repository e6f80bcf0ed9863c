//! The fast path: what can be answered from a query's bytes without decoding it or
//! spawning a task — for UDP, outsiders refused from the header and rate limits; for every
//! transport, answers replayed from the packet cache — recorded through the one exit like
//! everything else. A miss says what the full path's answer is to be remembered under
//! ([`remember`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::ResponseCode;

use super::Shared;
use super::packet::{Key, Meta};
use super::ratelimit::Verdict;
use super::serve::Served;
use super::wire::{self, QNAME_AT, Query};
use crate::clock::Instant;
use crate::label::{Protocol, QueryAction, Rcode, ede};
use crate::pipeline::{self, Client, ClientClass, DeviceHint};
use crate::record::{Event, QName};
use crate::resolve::forward::EDNS_PAYLOAD;
use crate::runtime::Runtime;

/// What the fast path leaves the full path for a miss: the key to remember the answer
/// under, the client class it was made with, the configuration generation, and the minute
/// it was asked in.
pub(super) struct Miss {
    key: Key,
    class: ClientClass,
    generation: u64,
    minute: u64,
    /// The most a UDP answer to this query may hold: an answer made for a stream is
    /// remembered only if UDP would have sent it whole, so an entry serves every transport.
    udp_limit: usize,
}

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
    // 3. The packet cache.
    match parsed {
        Some(q) => replay(
            shared,
            rt,
            packet,
            &q,
            (ip, &DeviceHint::None),
            Protocol::Udp,
            start,
            out,
            miss,
        ),
        None => Fast::Miss,
    }
}

/// The fast path of a query that came over a stream (TCP, DoT, DoH): the packet cache,
/// for a client the ACL lets in (by address, or by a device secret); `device`: what named
/// its device.
#[allow(clippy::too_many_arguments)]
pub(super) fn stream(
    shared: &Shared,
    rt: &Runtime,
    packet: &[u8],
    src: IpAddr,
    device: &DeviceHint,
    protocol: Protocol,
    start: Instant,
    out: &mut Vec<u8>,
    miss: &mut Option<Miss>,
) -> Fast {
    let ip = src.to_canonical();
    let Some(q) = Query::parse(packet) else {
        return Fast::Miss;
    };
    if !pipeline::lets_in(rt, ip, device) {
        return Fast::Miss;
    }
    replay(
        shared,
        rt,
        packet,
        &q,
        (ip, device),
        protocol,
        start,
        out,
        miss,
    )
}

/// The packet cache's answer to `q`, from a client the ACL let in.
#[allow(clippy::too_many_arguments)]
fn replay(
    shared: &Shared,
    rt: &Runtime,
    packet: &[u8],
    q: &Query,
    (ip, device): (IpAddr, &DeviceHint),
    protocol: Protocol,
    start: Instant,
    out: &mut Vec<u8>,
    miss: &mut Option<Miss>,
) -> Fast {
    // Zone transfers get their REFUSED on the full path.
    if matches!(q.qtype, 251 | 252) {
        return Fast::Miss;
    }
    let client = Client::identify(rt, ip, device);
    let class = client.class(&rt.policies);
    let Some(key) = Key::new(packet, q, class) else {
        return Fast::Miss;
    };
    let Some(meta) = shared
        .packets
        .answer(&key, packet, q, rt.generation, start, out)
    else {
        *miss = Some(Miss {
            key,
            class,
            generation: rt.generation,
            minute: unix_now(shared).as_secs() / 60,
            udp_limit: q.edns.map_or(512, |(payload, _)| {
                usize::from(payload.clamp(512, EDNS_PAYLOAD))
            }),
        });
        return Fast::Miss;
    };
    let event = Event {
        protocol,
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

/// Remembers the full path's answer `bytes` to a query the packet cache missed, if the
/// pipeline decided it for the same client class under the same configuration and it is
/// worth repeating.
pub(super) fn remember(shared: &Shared, miss: Miss, served: &Served, bytes: &[u8]) {
    let Miss {
        key,
        class,
        generation,
        minute,
        udp_limit,
    } = miss;
    let outcome = &served.outcome;
    // The same client class under the same configuration: a reload between the key and
    // the decision may make the key's class mean another client now.
    if served.truncated
        || bytes.len() > udp_limit
        || !outcome.is_replayable()
        || outcome.replay != Some(class)
        || outcome.generation != generation
    {
        return;
    }
    let rt = shared.live.load();
    if rt.generation != generation {
        return;
    }
    // Schedules turn on minute boundaries: an answer decided in one minute is not repeated
    // into the next.
    let mut max_age = Duration::MAX;
    if rt.policies.has_schedules {
        let now = unix_now(shared);
        if now.as_secs() / 60 != minute {
            return;
        }
        max_age = Duration::from_secs(60 - now.as_secs() % 60)
            .saturating_sub(Duration::from_nanos(u64::from(now.subsec_nanos())));
    }
    // Nor longer than what it was resolved from may be cached.
    if let Some(fresh) = outcome.fresh_for {
        max_age = max_age.min(Duration::from_secs(u64::from(fresh)));
    }
    shared.packets.insert(
        &key,
        bytes,
        Meta::of(outcome),
        generation,
        shared.clock.now(),
        max_age,
    );
}

/// The wall-clock time since the epoch, on the server's clock.
fn unix_now(shared: &Shared) -> Duration {
    shared
        .clock
        .system_time()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}
