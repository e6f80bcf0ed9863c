//! The shared message cache: whole upstream responses keyed by (question, DO bit, upstream
//! group), TTLs counted down on the way out, negative answers cached by their SOA
//! (RFC 2308), expired entries kept for serve-stale (RFC 8767).
//!
//! Time is the server's one [`Clock`], so tests move it instead of sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};

use crate::clock::{Clock, Instant};

use super::{Error, Question, Response, Upstream};
use crate::metrics;

/// Longest TTL we keep an answer for, whatever the upstream says.
pub const MAX_TTL: u32 = 86_400;
/// How long past expiry an answer may still be served stale (RFC 8767 suggests 1–3 days).
pub const STALE_MAX: u32 = 86_400;
/// TTL of a stale answer (RFC 8767 §4: 30 seconds).
pub const STALE_TTL: u32 = 30;
/// RFC 8767 §5 client-response timer: with a stale answer in hand, wait this long for the
/// upstream at most (stub resolvers retry after about a second or two).
pub const STALE_CLIENT_TIMER: std::time::Duration = std::time::Duration::from_millis(1800);
/// RFC 8767 §5 failure-recheck timer: after a failed refresh, answer stale at once for this
/// long instead of asking the failing upstream again for every query.
pub const FAILURE_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// A cached upstream response.
#[derive(Debug)]
pub struct CachedMessage {
    /// The upstream's rcode.
    pub rcode: ResponseCode,
    /// The upstream's AD bit.
    pub authentic_data: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authorities: Vec<Record>,
    /// Additional section (without OPT).
    pub additionals: Vec<Record>,
    /// When it was stored.
    pub stored: Instant,
    /// How long it is fresh, in seconds (0: not cacheable).
    pub ttl: u32,
    /// The name servers that gave it (recursive mode).
    pub servers: Vec<std::net::IpAddr>,
    /// An Extended DNS Error that goes with it (an insecure answer's EDE 1, 2 or 27).
    pub ede: Option<(u16, String)>,
    /// Cache weight: one unit per started KiB on the wire, so `[cache] size` bounds memory
    /// even when an attacker's zone serves 64 KiB answers.
    pub weight: u32,
}

impl CachedMessage {
    /// Takes an upstream response apart and works out how long it may be cached.
    pub fn from_response(r: Response, qtype: RecordType, now: Instant) -> Self {
        let mut msg = r.msg;
        let ttl = cache_ttl(&msg, qtype);
        // What the client is told must not outlive what we keep: every TTL capped at
        // MAX_TTL, and the SOA of a negative answer at min(TTL, MINIMUM) (RFC 2308 §5).
        let negative = msg.metadata.response_code == ResponseCode::NXDomain
            || !msg.answers.iter().any(|r| r.record_type() == qtype);
        for r in msg
            .answers
            .iter_mut()
            .chain(&mut msg.authorities)
            .chain(&mut msg.additionals)
        {
            r.ttl = r.ttl.min(MAX_TTL);
            if let (true, RData::SOA(soa)) = (negative, &r.data) {
                r.ttl = r.ttl.min(soa.minimum);
            }
        }
        Self {
            weight: 1 + (r.wire_len / 1024) as u32,
            rcode: msg.metadata.response_code,
            servers: r.servers,
            ede: r.ede,
            authentic_data: msg.metadata.authentic_data,
            answers: msg.answers,
            authorities: msg.authorities,
            additionals: msg
                .additionals
                .into_iter()
                .filter(|r| r.record_type() != RecordType::OPT)
                .collect(),
            stored: now,
            ttl,
        }
    }
}

/// RFC 2308 §5 and RFC 1035: an answer lives as long as its shortest TTL; a negative
/// answer (NXDOMAIN, or NODATA — also at the end of a CNAME chain) no longer than
/// min(SOA TTL, SOA MINIMUM), and not at all without an SOA; nothing else is cached.
fn cache_ttl(msg: &Message, qtype: RecordType) -> u32 {
    let rcode = msg.metadata.response_code;
    if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
        return 0;
    }
    let answer_ttl = msg.answers.iter().map(|r| r.ttl).min();
    let has_data = matches!(qtype, RecordType::ANY | RecordType::CNAME) && !msg.answers.is_empty()
        || msg.answers.iter().any(|r| r.record_type() == qtype);
    let ttl = if rcode == ResponseCode::NoError && has_data {
        answer_ttl.unwrap_or(0)
    } else {
        let negative = msg.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        });
        match (negative, answer_ttl) {
            (Some(n), Some(a)) => n.min(a),
            (Some(n), None) => n,
            (None, _) => 0,
        }
    };
    ttl.min(MAX_TTL)
}

/// An answer to give the client, fresh or stale.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The response.
    pub msg: Arc<CachedMessage>,
    /// Seconds since it was stored (TTLs are reduced by this).
    pub age: u32,
    /// Served stale (RFC 8767): TTLs are [`STALE_TTL`], EDE 3 is attached.
    pub stale: bool,
    /// Came from the cache.
    pub cached: bool,
    /// Seconds before its end when it is refreshed (prefetch): a copy of it (the packet
    /// cache) must be let go by then, so the refresh is asked for.
    pub replay_margin: u32,
}

impl Resolved {
    /// The RFC 8482 §4.2 answer to ANY: one HINFO record saying "RFC8482" (TTL 3789, as
    /// Cloudflare answers).
    pub fn rfc8482(q: &Question) -> Self {
        use hickory_proto::rr::rdata::HINFO;
        let hinfo = Record::from_rdata(
            q.name.clone(),
            3789,
            RData::HINFO(HINFO::new("RFC8482".to_owned(), String::new())),
        );
        let msg = CachedMessage {
            rcode: ResponseCode::NoError,
            authentic_data: false,
            answers: vec![hinfo],
            authorities: Vec::new(),
            additionals: Vec::new(),
            stored: Instant::now(),
            ttl: 3789,
            weight: 1,
            servers: Vec::new(),
            ede: None,
        };
        Self {
            msg: Arc::new(msg),
            age: 0,
            stale: false,
            cached: false,
            replay_margin: 0,
        }
    }

    /// An answer made of `ips` (A and AAAA records for `q`'s name, TTL 60), as if an
    /// upstream had said so: `explain --resolved` and policy tests judge it like a real one.
    pub fn given(q: &Question, ips: &[std::net::IpAddr]) -> Self {
        use hickory_proto::rr::rdata::{A, AAAA};
        let answers = ips
            .iter()
            .map(|ip| {
                let data = match ip {
                    std::net::IpAddr::V4(v4) => RData::A(A(*v4)),
                    std::net::IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                };
                Record::from_rdata(q.name.clone(), 60, data)
            })
            .collect();
        let msg = CachedMessage {
            rcode: ResponseCode::NoError,
            authentic_data: false,
            answers,
            authorities: Vec::new(),
            additionals: Vec::new(),
            stored: Instant::now(),
            ttl: 0,
            weight: 1,
            servers: Vec::new(),
            ede: None,
        };
        Self {
            msg: Arc::new(msg),
            age: 0,
            stale: false,
            cached: false,
            replay_margin: 0,
        }
    }

    /// How much longer this answer may be repeated: its cache lifetime left (0 when it is
    /// stale or was never cacheable, like a negative answer without an SOA).
    pub fn fresh_for(&self) -> u32 {
        if self.stale {
            0
        } else {
            self.msg.ttl.saturating_sub(self.age + self.replay_margin)
        }
    }

    /// A record with its TTL as the client should see it.
    pub fn adjust(&self, r: &Record) -> Record {
        let mut r = r.clone();
        r.ttl = if self.stale {
            STALE_TTL
        } else {
            r.ttl.saturating_sub(self.age)
        };
        r
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    q: Question,
    group: u64,
}

type Flight = Arc<tokio::sync::OnceCell<Result<Arc<CachedMessage>, Error>>>;

struct FlightDone<'a> {
    map: &'a Mutex<HashMap<Key, Flight>>,
    key: &'a Key,
    flight: Flight,
}

impl Drop for FlightDone<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(self.key);
        }
    }
}

#[derive(Clone)]
struct Weigher;

impl quick_cache::Weighter<Key, Arc<CachedMessage>> for Weigher {
    fn weight(&self, _: &Key, v: &Arc<CachedMessage>) -> u64 {
        u64::from(v.weight)
    }
}

/// The message cache shared by every upstream group (a handle: clones share it).
#[derive(Clone)]
pub struct Cache(Arc<Shared>);

struct Shared {
    inner: Option<quick_cache::sync::Cache<Key, Arc<CachedMessage>, Weigher>>,
    serve_stale: bool,
    prefetch: bool,
    /// Keys being refreshed in the background now.
    prefetching: Mutex<std::collections::HashSet<Key>>,
    /// Questions being resolved now: concurrent askers share one upstream exchange.
    in_flight: Mutex<HashMap<Key, Flight>>,
    /// When a refresh of an expired entry last failed (RFC 8767 failure-recheck timer).
    failed_recently: quick_cache::sync::Cache<Key, Instant>,
    clock: Clock,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("enabled", &self.0.inner.is_some())
            .finish()
    }
}

impl Cache {
    /// Forgets every answer (`POST /api/v1/cache/flush`); questions in flight finish.
    pub fn clear(&self) {
        if let Some(c) = &self.0.inner {
            c.clear();
        }
        self.0.failed_recently.clear();
    }
}

impl Cache {
    /// A cache of at most `size` weight units — about one per small message (0 disables
    /// caching). With `prefetch`, an answer asked for in the last 10% of its TTL is
    /// refreshed in the background (Unbound's `prefetch`), so a popular name never makes
    /// a client wait for it.
    pub fn new(size: usize, serve_stale: bool, prefetch: bool, clock: Clock) -> Self {
        Self(Arc::new(Shared {
            clock,
            inner: (size > 0)
                .then(|| quick_cache::sync::Cache::with_weighter(size, size as u64, Weigher)),
            serve_stale,
            prefetch,
            prefetching: Mutex::new(std::collections::HashSet::new()),
            in_flight: Mutex::new(HashMap::new()),
            failed_recently: quick_cache::sync::Cache::new(4096),
        }))
    }

    /// Refreshes `key` in the background unless that is under way already.
    fn prefetch(&self, upstream: &Arc<Upstream>, key: &Key) {
        {
            let mut busy = self.0.prefetching.lock().unwrap_or_else(|e| e.into_inner());
            if !busy.insert(key.clone()) {
                return;
            }
        }
        let (cache, upstream, key) = (self.clone(), upstream.clone(), key.clone());
        tokio::spawn(async move {
            ::metrics::counter!(metrics::PREFETCHES_TOTAL).increment(1);
            if let (Ok(msg), Some(inner)) = (cache.0.fetch(&upstream, &key).await, &cache.0.inner)
                && msg.ttl > 0
            {
                inner.insert(key.clone(), msg);
            }
            let mut busy = cache
                .0
                .prefetching
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            busy.remove(&key);
        });
    }
}

impl Shared {
    /// The last tenth of a `ttl` long life, when prefetch refreshes an entry.
    fn margin(&self, ttl: u32) -> u32 {
        if self.prefetch && ttl >= 10 {
            ttl.div_ceil(10)
        } else {
            0
        }
    }

    /// One upstream exchange per key at a time: the first asker queries, the others wait
    /// for its result (a burst of identical misses costs one upstream query).
    async fn fetch(&self, upstream: &Upstream, key: &Key) -> Result<Arc<CachedMessage>, Error> {
        let flight: Flight = {
            let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        // Removes the flight when done — also when this future is dropped midway (a
        // client-response timer fired), so the map never keeps abandoned entries.
        let _done = FlightDone {
            map: &self.in_flight,
            key,
            flight: flight.clone(),
        };
        flight
            .get_or_init(|| async {
                let r = upstream.query(&key.q).await?;
                Ok(Arc::new(CachedMessage::from_response(
                    r,
                    key.q.qtype,
                    self.clock.now(),
                )))
            })
            .await
            .clone()
    }
}

impl Cache {
    /// Resolves `q` through `upstream`, from the cache when fresh; on upstream failure,
    /// from an expired entry when serve-stale allows it.
    pub async fn resolve(&self, upstream: &Arc<Upstream>, q: &Question) -> Result<Resolved, Error> {
        let this = &*self.0;
        let key = Key {
            q: q.clone(),
            group: upstream.fingerprint(),
        };
        let Some(cache) = &this.inner else {
            let msg = this.fetch(upstream, &key).await?;
            return Ok(Resolved {
                msg,
                age: 0,
                stale: false,
                cached: false,
                replay_margin: 0,
            });
        };
        let existing = cache.get(&key);
        if let Some(entry) = &existing {
            let age = self
                .0
                .clock
                .now()
                .saturating_duration_since(entry.stored)
                .as_secs();
            if age < u64::from(entry.ttl) {
                ::metrics::counter!(metrics::CACHE_HITS_TOTAL).increment(1);
                // The last 10% of its life: refreshed behind this answer.
                if this.prefetch && entry.ttl >= 10 && age * 10 >= u64::from(entry.ttl) * 9 {
                    self.prefetch(upstream, &key);
                }
                return Ok(Resolved {
                    replay_margin: this.margin(entry.ttl),
                    msg: entry.clone(),
                    age: age as u32,
                    stale: false,
                    cached: true,
                });
            }
        }
        ::metrics::counter!(metrics::CACHE_MISSES_TOTAL).increment(1);
        let stale = |entry: &Arc<CachedMessage>| {
            let age = self
                .0
                .clock
                .now()
                .saturating_duration_since(entry.stored)
                .as_secs();
            (this.serve_stale && age < u64::from(entry.ttl) + u64::from(STALE_MAX)).then(|| {
                Resolved {
                    msg: entry.clone(),
                    age: age as u32,
                    stale: true,
                    cached: true,
                    replay_margin: 0,
                }
            })
        };
        let stale_answer = existing.as_ref().and_then(stale);
        let fetched = match &stale_answer {
            None => this.fetch(upstream, &key).await,
            Some(st) => {
                // RFC 8767 §5: a refresh failed a moment ago — answer stale at once.
                if this.failed_recently.get(&key).is_some_and(|t| {
                    this.clock.now().saturating_duration_since(t) < FAILURE_RECHECK
                }) {
                    return Ok(st.clone());
                }
                match tokio::time::timeout(STALE_CLIENT_TIMER, this.fetch(upstream, &key)).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::Timeout),
                }
            }
        };
        match fetched {
            Ok(msg) => {
                if msg.ttl > 0 {
                    this.failed_recently.remove(&key);
                    cache.insert(key, msg.clone());
                } else if msg.rcode == ResponseCode::ServFail {
                    // RFC 8767 §5: an upstream SERVFAIL is a failure to refresh.
                    if let Some(r) = stale_answer {
                        this.failed_recently.insert(key, this.clock.now());
                        return Ok(r);
                    }
                }
                Ok(Resolved {
                    replay_margin: this.margin(msg.ttl),
                    msg,
                    age: 0,
                    stale: false,
                    cached: false,
                })
            }
            // A bogus answer is an answer judged wrong, not a failure to get one: stale data
            // never stands in for it.
            Err(e) => match stale_answer {
                Some(r) if !e.is_bogus() => {
                    this.failed_recently.insert(key, this.clock.now());
                    Ok(r)
                }
                _ => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::{A, SOA};

    fn msg(rcode: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        m.answers = answers;
        m.authorities = authorities;
        m
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let n = Name::from_ascii("test.").unwrap();
        Record::from_rdata(
            n.clone(),
            ttl,
            RData::SOA(SOA::new(n.clone(), n, 1, 60, 60, 60, minimum)),
        )
    }

    #[test]
    fn ttls_follow_rfc_2308() {
        let a = |ttl| {
            Record::from_rdata(
                Name::from_ascii("a.test.").unwrap(),
                ttl,
                RData::A(A::new(192, 0, 2, 1)),
            )
        };
        let cname = |ttl| {
            let n = Name::from_ascii("b.test.").unwrap();
            Record::from_rdata(
                n.clone(),
                ttl,
                RData::CNAME(hickory_proto::rr::rdata::CNAME(n)),
            )
        };
        let ttl = |m: &Message| cache_ttl(m, RecordType::A);
        assert_eq!(
            ttl(&msg(ResponseCode::NoError, vec![a(300), a(60)], vec![])),
            60
        );
        assert_eq!(
            ttl(&msg(ResponseCode::NXDomain, vec![], vec![soa(3600, 120)])),
            120
        );
        assert_eq!(
            ttl(&msg(ResponseCode::NoError, vec![], vec![soa(30, 120)])),
            30
        );
        assert_eq!(ttl(&msg(ResponseCode::NXDomain, vec![], vec![])), 0);
        assert_eq!(ttl(&msg(ResponseCode::ServFail, vec![a(300)], vec![])), 0);
        assert_eq!(
            ttl(&msg(ResponseCode::NoError, vec![a(10 * MAX_TTL)], vec![])),
            MAX_TTL
        );
        // A CNAME chain ending in NODATA or NXDOMAIN: the SOA bounds it, and so does the CNAME.
        assert_eq!(
            ttl(&msg(
                ResponseCode::NoError,
                vec![cname(300)],
                vec![soa(3600, 60)]
            )),
            60
        );
        assert_eq!(
            ttl(&msg(
                ResponseCode::NXDomain,
                vec![cname(20)],
                vec![soa(3600, 60)]
            )),
            20
        );
        assert_eq!(
            ttl(&msg(ResponseCode::NoError, vec![cname(300)], vec![])),
            0
        );
        assert_eq!(
            cache_ttl(
                &msg(ResponseCode::NoError, vec![cname(300)], vec![]),
                RecordType::CNAME
            ),
            300
        );
    }
}
