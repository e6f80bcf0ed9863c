//! The packet cache: finished UDP responses, keyed by everything they depend on, replayed
//! with the query's id, flags and name case patched in and the TTLs aged in place
//! (PowerDNS Recursor's and dnsdist's packet cache).
//!
//! A response depends on the question (name case-insensitively, type), the query's EDNS
//! (present, payload, DO), its CD and AD bits, the client as far as the policies can tell
//! clients apart, the configuration, and the time. The key holds the first five; an entry
//! remembers the configuration generation it was made under, and expires with its
//! smallest TTL — and, when any policy has a schedule, at the next minute, when a schedule
//! may begin or end. So a hit is exactly what the full pipeline would have answered, and a
//! policy verdict is cached with the answer (the verdict cache comes free).
//!
//! Only answers worth repeating go in: NOERROR and NXDOMAIN, not truncated, not stale.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::wire::{QNAME_AT, Query, ttls};
use crate::clock::Instant;
use crate::label::{Phase, QueryAction, Rcode};
use crate::pipeline::{ClientClass, Outcome};
use crate::resolve::forward::EDNS_PAYLOAD;

/// What the pipeline decided for a cached response, replayed into metrics and the query log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// What was done.
    pub action: QueryAction,
    /// The deciding policy.
    pub policy: Option<usize>,
    /// The phase it decided in.
    pub phase: Option<Phase>,
    /// The response code.
    pub rcode: Rcode,
    /// The CNAME target the deciding policy matched, if it decided on one.
    pub cname: Option<Arc<str>>,
}

impl Meta {
    /// What `outcome` decided.
    pub fn of(outcome: &Outcome) -> Self {
        Self {
            action: outcome.action,
            policy: outcome.policy,
            phase: outcome.phase,
            rcode: outcome.reply.rcode.into(),
            cname: outcome.cname.as_deref().map(Arc::from),
        }
    }
}

/// One cached response.
#[derive(Debug)]
pub struct Packet {
    bytes: Box<[u8]>,
    /// Offsets of the TTL fields and the TTLs they held when stored.
    ttls: Box<[(u16, u32)]>,
    stored: Instant,
    expires: Instant,
    generation: u64,
    /// What decided it.
    pub meta: Meta,
}

/// A key, built on the stack.
pub struct Key {
    buf: [u8; Self::MAX],
    len: usize,
}

impl Key {
    /// Client kind, address, identity and location, flags, payload, type, name.
    const MAX: usize = 1 + 16 + 8 + 8 + 1 + 2 + 2 + 255;

    /// The key of `q` (read from `packet`) for a client of class `client`.
    pub fn new(packet: &[u8], q: &Query, client: ClientClass) -> Option<Self> {
        let mut k = Self {
            buf: [0; Self::MAX],
            len: 0,
        };
        match client {
            ClientClass::Anyone => k.push(&[0]),
            ClientClass::Ip(ip, identity, location) => {
                match ip {
                    IpAddr::V4(ip) => {
                        k.push(&[4]);
                        k.push(&ip.octets());
                    }
                    IpAddr::V6(ip) => {
                        k.push(&[6]);
                        k.push(&ip.octets());
                    }
                }
                k.push(&identity.to_ne_bytes());
                k.push(&location.to_ne_bytes());
            }
            ClientClass::Identity(identity, location) => {
                k.push(&[1]);
                k.push(&identity.to_ne_bytes());
                k.push(&location.to_ne_bytes());
            }
        }
        let (flags, payload) = match q.edns {
            Some((payload, dnssec_ok)) => (
                1 | u8::from(dnssec_ok) << 1,
                payload.clamp(512, EDNS_PAYLOAD),
            ),
            None => (0, 0),
        };
        k.push(&[flags | u8::from(q.cd) << 2 | u8::from(q.ad) << 3]);
        k.push(&payload.to_be_bytes());
        k.push(&q.qtype.to_be_bytes());
        let name = packet.get(QNAME_AT..QNAME_AT + q.name_len)?;
        let start = k.len;
        k.push(name);
        k.buf[start..k.len].make_ascii_lowercase();
        Some(k)
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[derive(Debug, Clone, Copy)]
struct Weigher;

impl quick_cache::Weighter<Box<[u8]>, Arc<Packet>> for Weigher {
    /// One unit per started KiB, as the message cache counts.
    fn weight(&self, k: &Box<[u8]>, v: &Arc<Packet>) -> u64 {
        ((k.len() + v.bytes.len() + v.ttls.len() * 8 + 96) as u64).div_ceil(1024)
    }
}

/// The cache.
pub struct PacketCache {
    /// `None` with `[cache] size = 0`: nothing is cached.
    inner: Option<quick_cache::sync::Cache<Box<[u8]>, Arc<Packet>, Weigher>>,
}

impl std::fmt::Debug for PacketCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketCache")
            .field("len", &self.inner.as_ref().map_or(0, |c| c.len()))
            .finish()
    }
}

impl PacketCache {
    /// A cache of at most `size` units (KiB, as `[cache] size`); 0 caches nothing.
    pub fn new(size: usize) -> Self {
        Self {
            inner: (size > 0)
                .then(|| quick_cache::sync::Cache::with_weighter(size, size as u64, Weigher)),
        }
    }

    /// Forgets every response.
    pub fn clear(&self) {
        if let Some(c) = &self.inner {
            c.clear();
        }
    }

    /// Writes the cached response to `q` into `out`, made for this query: its id, RD bit
    /// and name case, the TTLs aged; returns what decided it and its metric labels. `None`
    /// if there is none fresh for `generation`.
    pub fn answer(
        &self,
        key: &Key,
        packet: &[u8],
        q: &Query,
        generation: u64,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Option<Meta> {
        let p = self.inner.as_ref()?.get(key.as_bytes())?;
        if p.generation != generation || now >= p.expires {
            return None;
        }
        out.clear();
        out.extend_from_slice(&p.bytes);
        out[..2].copy_from_slice(&q.id.to_be_bytes());
        out[2] = (out[2] & !1) | u8::from(q.rd);
        let name = QNAME_AT..QNAME_AT + q.name_len;
        out.get_mut(name.clone())?
            .copy_from_slice(packet.get(name)?);
        let age = u32::try_from(now.duration_since(p.stored).as_secs()).unwrap_or(u32::MAX);
        for &(at, ttl) in &p.ttls {
            let at = usize::from(at);
            out[at..at + 4].copy_from_slice(&ttl.saturating_sub(age).to_be_bytes());
        }
        Some(p.meta.clone())
    }

    /// Remembers `response` (as sent for a query with key `key`) if it is worth
    /// repeating, for at most `max_age`.
    pub fn insert(
        &self,
        key: &Key,
        response: &[u8],
        meta: Meta,
        generation: u64,
        now: Instant,
        max_age: Duration,
    ) {
        let Some(inner) = &self.inner else {
            return;
        };
        if !matches!(meta.rcode, Rcode::NoError | Rcode::NxDomain) {
            return;
        }
        // Truncated: the client comes back over TCP.
        if response.get(2).is_none_or(|f| f & 0x02 != 0) {
            return;
        }
        let Some(ttls) = ttls(response) else {
            return;
        };
        // No record, no life to go by (a NODATA without an SOA).
        let Some(min_ttl) = ttls.iter().map(|t| t.1).min() else {
            return;
        };
        let life = Duration::from_secs(u64::from(min_ttl)).min(max_age);
        if life.is_zero() {
            return;
        }
        let packet = Packet {
            bytes: response.into(),
            ttls: ttls.into(),
            stored: now,
            expires: now + life,
            generation,
            meta,
        };
        inner.insert(key.as_bytes().into(), Arc::new(packet));
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as HQuery};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    use super::*;

    fn query(id: u16, name: &str, payload: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.queries
            .push(HQuery::query(Name::from_str(name).unwrap(), RecordType::A));
        if let Some(p) = payload {
            let mut e = Edns::new();
            e.set_max_payload(p);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn response(query: &[u8], ttl: u32) -> Vec<u8> {
        let mut m = Message::from_vec(query).unwrap();
        m.metadata.message_type = MessageType::Response;
        let name = m.queries[0].name().clone();
        m.answers.push(Record::from_rdata(
            name,
            ttl,
            RData::A(A::new(192, 0, 2, 7)),
        ));
        m.to_vec().unwrap()
    }

    const META: Meta = Meta {
        action: QueryAction::Allow,
        policy: None,
        phase: None,
        rcode: Rcode::NoError,
        cname: None,
    };

    #[test]
    fn replays_with_id_case_and_aged_ttls() {
        let cache = PacketCache::new(1000);
        let first = query(1, "www.example.com.", Some(1232));
        let q1 = Query::parse(&first).unwrap();
        let k1 = Key::new(&first, &q1, ClientClass::Anyone).unwrap();
        let t0 = Instant::now();
        cache.insert(&k1, &response(&first, 300), META, 7, t0, Duration::MAX);

        let mut second = query(0xbeef, "www.example.com.", Some(4096));
        // 0x20: the client's case comes back (hickory's encoder lowercases, so by hand).
        second[QNAME_AT + 1..QNAME_AT + 4].make_ascii_uppercase();
        second[QNAME_AT + 13..QNAME_AT + 16].make_ascii_uppercase();
        let q2 = Query::parse(&second).unwrap();
        let k2 = Key::new(&second, &q2, ClientClass::Anyone).unwrap();
        assert_eq!(
            k1.as_bytes(),
            k2.as_bytes(),
            "case and payloads over 1232 do not matter"
        );
        let mut out = Vec::new();
        let meta = cache
            .answer(
                &k2,
                &second,
                &q2,
                7,
                t0 + Duration::from_secs(100),
                &mut out,
            )
            .unwrap();
        assert_eq!(meta, META);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0xbeef);
        assert_eq!(
            &out[QNAME_AT..QNAME_AT + 17],
            &second[QNAME_AT..QNAME_AT + 17]
        );
        assert_eq!(m.queries[0].name().to_string(), "WWW.example.COM.");
        assert_eq!(m.answers[0].ttl, 200);
        // Another configuration, or past the TTL: nothing.
        assert_eq!(cache.answer(&k2, &second, &q2, 8, t0, &mut out), None);
        let late = t0 + Duration::from_secs(300);
        assert_eq!(cache.answer(&k2, &second, &q2, 7, late, &mut out), None);
    }

    #[test]
    fn keys_tell_apart_what_changes_the_answer() {
        let a = query(1, "a.example.", None);
        let b = query(1, "a.example.", Some(1232));
        let c = query(1, "a.example.", Some(600));
        let key = |p: &[u8], client| {
            let q = Query::parse(p).unwrap();
            Key::new(p, &q, client).unwrap().as_bytes().to_vec()
        };
        let ip = |s: &str| ClientClass::Ip(s.parse().unwrap(), 0, 0);
        assert_ne!(key(&a, ClientClass::Anyone), key(&b, ClientClass::Anyone));
        assert_ne!(key(&b, ClientClass::Anyone), key(&c, ClientClass::Anyone));
        assert_ne!(key(&a, ip("10.0.0.1")), key(&a, ip("10.0.0.2")));
        // Two devices behind one address (DoH tokens): apart.
        assert_ne!(
            key(&a, ClientClass::Ip("10.0.0.1".parse().unwrap(), 1, 0)),
            key(&a, ClientClass::Ip("10.0.0.1".parse().unwrap(), 2, 0))
        );
        assert_ne!(
            key(&a, ClientClass::Identity(1, 2)),
            key(&a, ClientClass::Identity(1, 3))
        );
        let mut cd = a.clone();
        cd[3] |= 0x10;
        assert_ne!(key(&a, ClientClass::Anyone), key(&cd, ClientClass::Anyone));
    }

    #[test]
    fn keeps_only_what_is_worth_repeating() {
        let cache = PacketCache::new(1000);
        let p = query(1, "a.example.", None);
        let q = Query::parse(&p).unwrap();
        let k = Key::new(&p, &q, ClientClass::Anyone).unwrap();
        let now = Instant::now();
        let servfail = Meta {
            rcode: Rcode::ServFail,
            ..META
        };
        cache.insert(&k, &response(&p, 300), servfail, 1, now, Duration::MAX);
        cache.insert(&k, &response(&p, 0), META, 1, now, Duration::MAX);
        let mut truncated = response(&p, 300);
        truncated[2] |= 0x02;
        cache.insert(&k, &truncated, META, 1, now, Duration::MAX);
        let mut out = Vec::new();
        assert_eq!(cache.answer(&k, &p, &q, 1, now, &mut out), None);
        // A schedule caps the life of an answer.
        cache.insert(&k, &response(&p, 300), META, 1, now, Duration::from_secs(5));
        assert!(cache.answer(&k, &p, &q, 1, now, &mut out).is_some());
        let later = now + Duration::from_secs(5);
        assert_eq!(cache.answer(&k, &p, &q, 1, later, &mut out), None);
    }
}
