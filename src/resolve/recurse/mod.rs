//! Recursive mode: resolving from the root (RFC 1034 §5.3.3), written on hickory-proto.
//!
//! One client question is a chain of lookups, one per name of its CNAME/DNAME chain
//! ([`Recursor::resolve`]); one lookup walks down from the closest zone cut it knows,
//! following referrals ([`Recursor::lookup`]); one step asks the servers of one zone,
//! fastest first, racing the next beside a slow one ([`Recursor::ask`]).
//!
//! - Zone cuts learned from referrals (name servers, in-bailiwick glue) and name-server
//!   addresses are cached until their TTL; server round trips, timeouts and lameness are
//!   remembered per address ([`servers`]).
//! - Relaxed QNAME minimisation (RFC 9156): a server is asked for one label more than the
//!   zone it serves (type A), not the whole name; an NXDOMAIN or a failure to such a
//!   question is not believed (broken servers answer empty non-terminals that way), the
//!   whole name is asked instead.
//! - Every query carries a random id, source port and name case (0x20) and is asked
//!   without RD; answers outside the asked zone's bailiwick are ignored.
//! - Bounded: [`MAX_CHAIN`] CNAME/DNAME links, [`MAX_DEPTH`] nested lookups of name-server
//!   addresses, `max_queries_per_request` outgoing queries per client question, and the
//!   whole question within `timeout_ms`. A failed question is remembered for
//!   [`FAILURE_TTL`] so a dead zone is not asked again for every client.
//!
//! Why not hickory's `Recursor`: it turns negative answers into errors, drops the reason
//! validation failed (the EDE codes SPEC §9 requires), has no DNAME, does not cache
//! failures and had cross-response CNAME loop bugs in 0.26.3 (docs/REFERENCE.md).

mod hints;
mod servers;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::sync::Semaphore;
use tokio::time::{Instant as NetInstant, sleep_until, timeout_at};
use tracing::debug;

use super::dnssec::Security;
use super::validate::{self, Chain, Fetched, Validation, Validator};
pub use hints::RootHints;
use servers::Servers;

use super::exchange::{self, Pool};
use super::{Error, Question, Response};
use crate::clock::{Clock, Instant};
use crate::label::ede;
use crate::metrics;

/// CNAME and DNAME links followed for one question.
pub const MAX_CHAIN: usize = 12;
/// Nested lookups (a name server's address needing a lookup of its own, and so on).
pub const MAX_DEPTH: u8 = 6;
/// Referrals followed in one lookup.
const MAX_REFERRALS: usize = 30;
/// How long a question that failed is answered from that failure.
pub const FAILURE_TTL: Duration = Duration::from_secs(5);
/// Longest a zone cut or an address is kept.
const MAX_TTL: u32 = 86_400;
/// Questions resolved at once; beyond this they wait (within their timeout).
const MAX_IN_FLIGHT: usize = 1024;
/// Name servers of one zone whose addresses are looked up per round when no glue came.
const NS_LOOKUPS: usize = 3;
/// Servers within this of the fastest are chosen among at random (Unbound's 400 ms).
const RTT_BAND: Duration = Duration::from_millis(400);
/// The port authoritative servers listen on.
const PORT: u16 = 53;

/// What a recursor is configured with; equal configurations keep the recursor (and what
/// it learned) across a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecursorConfig {
    /// Where iteration starts.
    pub hints: RootHints,
    /// Time allowed for one client question.
    pub timeout: Duration,
    /// Outgoing queries one client question may cause.
    pub max_queries: usize,
    /// DNSSEC validation (`None`: off).
    pub validation: Option<Validation>,
}

/// A zone cut: a zone and its name servers.
#[derive(Debug)]
struct Cut {
    zone: Name,
    ns: Vec<Name>,
    /// Addresses that came with the referral, for names within the referring zone.
    glue: Vec<(Name, IpAddr)>,
    /// `None`: the root hints, which never expire.
    expires: Option<Instant>,
    /// What the referral said of the child's DS (validating): the DS RRset and its
    /// RRSIGs, or the NSEC/NSEC3 records (and RRSIGs) proving there is none; empty when
    /// it said nothing. Saves asking the parent again.
    delegation: Vec<Record>,
    /// The zone whose server gave the referral.
    parent: Name,
}

#[derive(Debug)]
struct Addresses {
    ips: Vec<IpAddr>,
    expires: Instant,
}

/// One client question's budget.
#[derive(Debug)]
pub(crate) struct Ctx {
    queries: usize,
    depth: u8,
    deadline: NetInstant,
}

/// The final response of one lookup, and where it came from.
#[derive(Debug)]
struct Reply {
    fetched: Fetched,
    server: IpAddr,
}

impl std::ops::Deref for Reply {
    type Target = Fetched;
    fn deref(&self) -> &Fetched {
        &self.fetched
    }
}

/// How a server's response moves a lookup on.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// It answers the question (data, CNAME/DNAME, NXDOMAIN or NODATA).
    Final,
    /// It delegates to this child zone.
    Referral(Name),
    /// It has no authority for the zone it was asked as a server of.
    Lame,
}

/// The recursor.
pub struct Recursor {
    config: RecursorConfig,
    /// DNSSEC validation, when on.
    validator: Option<Validator>,
    root: Arc<Cut>,
    servers: Servers,
    cuts: quick_cache::sync::Cache<Name, Arc<Cut>>,
    addresses: quick_cache::sync::Cache<Name, Arc<Addresses>>,
    failures: quick_cache::sync::Cache<(Name, RecordType), (Instant, Error)>,
    pools: Mutex<HashMap<IpAddr, Arc<Pool>>>,
    in_flight: Semaphore,
    clock: Clock,
    errors: ::metrics::Counter,
    fingerprint: u64,
}

impl std::fmt::Debug for Recursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recursor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

use validate::Boxed;

impl Recursor {
    /// A recursor starting from `config.hints`.
    pub fn new(config: RecursorConfig, clock: Clock) -> Self {
        let root = Arc::new(Cut {
            zone: Name::root(),
            ns: config.hints.names(),
            glue: config.hints.servers.clone(),
            expires: None,
            delegation: Vec::new(),
            parent: Name::root(),
        });
        let errors = ::metrics::counter!(metrics::UPSTREAM_ERRORS_TOTAL, "upstream" => "recursive");
        errors.increment(0);
        let fingerprint = {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut h = DefaultHasher::new();
            "recursive".hash(&mut h);
            config.hints.hash(&mut h);
            config.timeout.hash(&mut h);
            config.max_queries.hash(&mut h);
            format!("{:?}", config.validation).hash(&mut h);
            h.finish()
        };
        Self {
            validator: config
                .validation
                .clone()
                .map(|v| Validator::new(v, clock.clone())),
            root,
            servers: Servers::new(clock.clone()),
            cuts: quick_cache::sync::Cache::new(100_000),
            addresses: quick_cache::sync::Cache::new(100_000),
            failures: quick_cache::sync::Cache::new(10_000),
            pools: Mutex::new(HashMap::new()),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            clock,
            errors,
            fingerprint,
            config,
        }
    }

    /// A stable identity of this configuration (the message cache's partition).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Whether `other` is configured the same.
    pub fn same_config(&self, other: &Self) -> bool {
        self.config == other.config
    }

    /// Resolves one client question from the root: the whole answer (the CNAME/DNAME chain
    /// and the data, or the negative answer with its SOA) and the servers that gave it.
    pub async fn query(&self, q: &Question) -> Result<Response, Error> {
        let key = (q.name.to_lowercase(), q.qtype);
        if let Some((until, e)) = self.failures.get(&key)
            && self.clock.now() < until
        {
            return Err(e);
        }
        let deadline = NetInstant::now() + self.config.timeout;
        let Ok(Ok(_permit)) = timeout_at(deadline, self.in_flight.acquire()).await else {
            return Err(Error::Timeout);
        };
        let mut ctx = Ctx {
            queries: 0,
            depth: 0,
            deadline,
        };
        let result = timeout_at(deadline, self.resolve(&mut ctx, q))
            .await
            .unwrap_or(Err(Error::Timeout));
        if let Err(e) = &result {
            debug!(name = %q.name, qtype = %q.qtype, error = %e, queries = ctx.queries, "recursion failed");
            self.errors.increment(1);
            self.failures
                .insert(key, (self.clock.now() + FAILURE_TTL, e.clone()));
        }
        result
    }

    /// Follows `q`'s CNAME/DNAME chain, one lookup per name.
    fn resolve<'a>(
        &'a self,
        ctx: &'a mut Ctx,
        q: &'a Question,
    ) -> Boxed<'a, Result<Response, Error>> {
        Box::pin(async move {
            let mut name = q.name.clone();
            let mut answers = Vec::new();
            let mut seen = vec![name.clone()];
            // Client questions are validated (not name-server addresses, nor CD=1 ones).
            let validate = self.validator.is_some() && !q.checking_disabled && ctx.depth == 0;
            let mut verdict = Security::Secure;
            for _ in 0..MAX_CHAIN {
                let reply = self.lookup(ctx, &name, q).await?;
                let step = follow(&reply.msg, &name, q.qtype, &reply.zone, q.dnssec_ok);
                if validate {
                    let negative = step.next.is_none() && !step.data;
                    let hop = validate::judge(
                        self,
                        ctx,
                        &reply,
                        &step.records,
                        &step.synthesized,
                        &step.last,
                        q.qtype,
                        negative,
                    )
                    .await;
                    verdict = validate::worst(verdict, hop);
                    if matches!(verdict, Security::Bogus(_)) {
                        break;
                    }
                }
                answers.extend(step.records);
                let Some(target) = step.next else {
                    let mut r = finish(q, reply, answers);
                    if let (true, Some(v)) = (validate, &self.validator) {
                        v.settle(&mut r, verdict)?;
                    }
                    return Ok(r);
                };
                if seen.contains(&target) {
                    return Err(Error::Failed {
                        ede: ede::OTHER,
                        reason: format!("CNAME loop at {target}"),
                    });
                }
                seen.push(target.clone());
                name = target;
            }
            if let (Security::Bogus(_), Some(v)) = (&verdict, &self.validator) {
                let mut r = Response::new(Message::new(0, MessageType::Response, OpCode::Query), 0);
                v.settle(&mut r, verdict)?;
            }
            Err(Error::Failed {
                ede: ede::OTHER,
                reason: format!("CNAME chain of {} longer than {MAX_CHAIN} links", q.name),
            })
        })
    }

    /// The deepest cached zone cut at or above `name`.
    fn closest_cut(&self, name: &Name) -> Arc<Cut> {
        let now = self.clock.now();
        let mut n = name.clone();
        while !n.is_root() {
            if let Some(c) = self.cuts.get(&n) {
                if c.expires.is_none_or(|t| now < t) {
                    return c;
                }
                self.cuts.remove(&n);
            }
            n = n.base_name();
        }
        self.root.clone()
    }

    /// Walks down from the closest known cut to the servers of `name`'s zone and returns
    /// their answer for (`name`, `q.qtype`).
    async fn lookup(&self, ctx: &mut Ctx, name: &Name, q: &Question) -> Result<Reply, Error> {
        // A DS RRset lives on the parent side of its zone cut.
        let mut cut = if q.qtype == RecordType::DS && !name.is_root() {
            self.closest_cut(&name.base_name())
        } else {
            self.closest_cut(name)
        };
        let mut minimise = true;
        let mut labels = cut.zone.num_labels() + 1;
        for _ in 0..MAX_REFERRALS {
            let full = !minimise || labels >= name.num_labels();
            let (ask, qtype) = if full {
                (name.clone(), q.qtype)
            } else {
                (name.trim_to(labels as usize), RecordType::A)
            };
            let msg = match self.ask(ctx, &cut, &ask, qtype, q).await {
                Ok(m) => m,
                // A minimised question some server could not take: ask the whole name.
                Err(e) if !full && !matches!(e, Error::Timeout) => {
                    debug!(zone = %cut.zone, %ask, error = %e, "minimised question failed, asking the whole name");
                    minimise = false;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (msg, server) = msg;
            match classify(&msg, &cut.zone, &ask, qtype) {
                Kind::Referral(child) => {
                    cut = self.learn_cut(&msg, &cut, &child);
                    labels = cut.zone.num_labels() + 1;
                }
                Kind::Final if full => {
                    return Ok(Reply {
                        fetched: Fetched {
                            msg,
                            zone: cut.zone.clone(),
                        },
                        server,
                    });
                }
                Kind::Final => {
                    let alias = msg
                        .answers
                        .iter()
                        .any(|r| matches!(r.record_type(), RecordType::CNAME | RecordType::DNAME));
                    if msg.metadata.response_code == ResponseCode::NXDomain || alias {
                        // Relaxed minimisation: an NXDOMAIN for part of the name may be a
                        // broken server's answer for an empty non-terminal; an alias leads
                        // elsewhere. Either way the whole name settles it.
                        minimise = false;
                    } else {
                        labels = next_labels(labels, cut.zone.num_labels(), name.num_labels());
                    }
                }
                Kind::Lame => unreachable!("ask never returns a lame answer"),
            }
        }
        Err(Error::Failed {
            ede: ede::OTHER,
            reason: format!("more than {MAX_REFERRALS} referrals for {name}"),
        })
    }

    /// Remembers the cut `child` that `msg` (from a server of `parent`) delegates to.
    fn learn_cut(&self, msg: &Message, parent: &Cut, child: &Name) -> Arc<Cut> {
        let mut ttl = MAX_TTL;
        let mut ns = Vec::new();
        for r in &msg.authorities {
            if let RData::NS(n) = &r.data
                && r.name == *child
            {
                ttl = ttl.min(r.ttl);
                if !ns.contains(&n.0) {
                    ns.push(n.0.clone());
                }
            }
        }
        // Glue only for the delegated names, and only within what the asked server serves.
        let glue = msg
            .additionals
            .iter()
            .filter(|r| ns.contains(&r.name) && parent.zone.zone_of(&r.name))
            .filter_map(|r| match &r.data {
                RData::A(a) => Some((r.name.clone(), IpAddr::V4(a.0))),
                RData::AAAA(a) => Some((r.name.clone(), IpAddr::V6(a.0))),
                _ => None,
            })
            .collect();
        let delegation = if self.validator.is_some() {
            msg.authorities
                .iter()
                .filter(|r| match r.record_type() {
                    RecordType::DS => r.name == *child,
                    RecordType::NSEC | RecordType::NSEC3 | RecordType::RRSIG => {
                        parent.zone.zone_of(&r.name)
                    }
                    _ => false,
                })
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let cut = Arc::new(Cut {
            zone: child.clone(),
            ns,
            glue,
            expires: Some(self.clock.now() + Duration::from_secs(u64::from(ttl))),
            delegation,
            parent: parent.zone.clone(),
        });
        if ttl > 0 {
            self.cuts.insert(child.to_lowercase(), cut.clone());
        }
        cut
    }

    /// The addresses of `cut`'s servers known without asking anyone.
    fn known_addresses(&self, cut: &Cut) -> Vec<IpAddr> {
        let now = self.clock.now();
        let mut ips: Vec<IpAddr> = cut.glue.iter().map(|(_, ip)| *ip).collect();
        for ns in &cut.ns {
            if let Some(a) = self.addresses.get(ns)
                && now < a.expires
            {
                ips.extend(&a.ips);
            }
        }
        ips.sort_unstable();
        ips.dedup();
        ips
    }

    /// Puts `ips` in the order to ask them (Unbound's server selection): at random among
    /// the servers within [`RTT_BAND`] of the fastest (an unmeasured one counts as
    /// [`servers::UNKNOWN_RTT`], so it gets its turn and is measured), then the others by
    /// round trip; lame and down servers last.
    fn order(&self, ips: &mut [IpAddr], zone: &Name) {
        use rand::seq::SliceRandom;
        ips.shuffle(&mut rand::rng());
        let scores: Vec<(u8, Duration)> =
            ips.iter().map(|ip| self.servers.score(*ip, zone)).collect();
        let Some(&best) = scores.iter().min() else {
            return;
        };
        let mut keyed: Vec<((u8, Duration), IpAddr)> = scores
            .into_iter()
            .zip(ips.iter().copied())
            .map(|((penalty, rtt), ip)| {
                if penalty == best.0 && rtt <= best.1 + RTT_BAND {
                    ((penalty, Duration::ZERO), ip)
                } else {
                    ((penalty, rtt), ip)
                }
            })
            .collect();
        keyed.sort_by_key(|k| k.0);
        for (slot, (_, ip)) in ips.iter_mut().zip(keyed) {
            *slot = ip;
        }
    }

    /// How many of `cut`'s name servers have addresses known (glue or looked up, even
    /// if the lookup found none: that is not asked again for a while).
    fn known_servers(&self, cut: &Cut) -> usize {
        let now = self.clock.now();
        cut.ns
            .iter()
            .filter(|n| {
                cut.glue.iter().any(|(g, _)| g == *n)
                    || self.addresses.get(*n).is_some_and(|a| now < a.expires)
            })
            .count()
    }

    /// Looks up the addresses of up to [`NS_LOOKUPS`] of `cut`'s servers that have none
    /// known yet (names within the zone itself cannot be: their glue is missing).
    async fn lookup_servers(&self, ctx: &mut Ctx, cut: &Cut, tried: &mut Vec<Name>) -> Vec<IpAddr> {
        let mut found = Vec::new();
        if ctx.depth >= MAX_DEPTH {
            return found;
        }
        let now = self.clock.now();
        let pending: Vec<Name> = cut
            .ns
            .iter()
            .filter(|n| !cut.zone.zone_of(n) || cut.zone.is_root())
            .filter(|n| !cut.glue.iter().any(|(g, _)| g == *n))
            .filter(|n| !tried.contains(n))
            .filter(|n| self.addresses.get(*n).is_none_or(|a| now >= a.expires))
            .take(NS_LOOKUPS)
            .cloned()
            .collect();
        for ns in pending {
            tried.push(ns.clone());
            let mut ips = Vec::new();
            let mut ttl = MAX_TTL;
            for qtype in [RecordType::A, RecordType::AAAA] {
                let q = Question {
                    name: ns.clone(),
                    qtype,
                    qclass: hickory_proto::rr::DNSClass::IN,
                    dnssec_ok: false,
                    checking_disabled: false,
                };
                ctx.depth += 1;
                let r = self.resolve(ctx, &q).await;
                ctx.depth -= 1;
                if let Ok(r) = r {
                    for rec in &r.msg.answers {
                        match &rec.data {
                            RData::A(a) => ips.push(IpAddr::V4(a.0)),
                            RData::AAAA(a) => ips.push(IpAddr::V6(a.0)),
                            _ => continue,
                        }
                        ttl = ttl.min(rec.ttl);
                    }
                }
                // IPv4 is enough to go on with; AAAA only when a name has no A.
                if !ips.is_empty() {
                    break;
                }
            }
            let expires = self.clock.now()
                + if ips.is_empty() {
                    FAILURE_TTL
                } else {
                    Duration::from_secs(u64::from(ttl))
                };
            self.addresses.insert(
                ns.to_lowercase(),
                Arc::new(Addresses {
                    ips: ips.clone(),
                    expires,
                }),
            );
            found.extend(ips);
            if !found.is_empty() {
                break;
            }
        }
        found
    }

    fn pool(&self, ip: IpAddr) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if pools.len() > 4096 && !pools.contains_key(&ip) {
            pools.clear();
        }
        pools.entry(ip).or_default().clone()
    }

    /// One query to one server.
    async fn exchange(
        &self,
        ip: IpAddr,
        q: &Question,
        deadline: NetInstant,
    ) -> (IpAddr, Duration, Result<Message, Error>) {
        let started = NetInstant::now();
        let pool = self.pool(ip);
        let randomize = self.servers.keeps_case(ip);
        let r = exchange::udp(
            SocketAddr::new(ip, PORT),
            &pool,
            q,
            false,
            deadline,
            &self.clock,
            randomize,
        )
        .await;
        let r = match r {
            Ok(exchange::Outcome::Answer(r)) => Ok(r.msg),
            Ok(exchange::Outcome::CaseIgnored(r)) => {
                self.servers.ignores_case(ip);
                Ok(r.msg)
            }
            Err(e) => Err(e),
        };
        (ip, started.elapsed(), r)
    }

    /// Asks the servers of `cut` for (`name`, `qtype`), best first; when one has not
    /// answered by its retransmission timer the next is asked beside it. Lame answers
    /// move on to the next server; the first other answer wins.
    async fn ask(
        &self,
        ctx: &mut Ctx,
        cut: &Cut,
        name: &Name,
        qtype: RecordType,
        q: &Question,
    ) -> Result<(Message, IpAddr), Error> {
        let question = Question {
            name: name.clone(),
            qtype,
            qclass: q.qclass,
            // Validation needs the signatures, whatever the client asked.
            dnssec_ok: q.dnssec_ok || self.validator.is_some(),
            checking_disabled: false,
        };
        let mut ips = self.known_addresses(cut);
        let mut tried_ns = Vec::new();
        if ips.is_empty() {
            ips = self.lookup_servers(ctx, cut, &mut tried_ns).await;
        } else if self.known_servers(cut) < cut.ns.len().min(2) {
            // Only one name server's address is known (no glue came): look up one more
            // now, so the zone does not hang on a single server and the load spreads.
            // The first question paid for one; this one pays for the second.
            ips.extend(self.lookup_servers(ctx, cut, &mut tried_ns).await);
        }
        let mut asked: Vec<IpAddr> = Vec::new();
        let mut last_error = None;
        let mut lame = 0usize;
        loop {
            ips.retain(|ip| !asked.contains(ip));
            self.order(&mut ips, &cut.zone);
            let mut next = 0;
            let mut running = FuturesUnordered::new();
            let mut timer = NetInstant::now();
            // Servers whose timer ran out before they answered: if another answers first,
            // they count as having timed out (else a blackholed server stays first).
            let mut overdue: Vec<IpAddr> = Vec::new();
            let mut last_ip = None;
            loop {
                let due = running.is_empty() || NetInstant::now() >= timer;
                if due && next < ips.len() {
                    if ctx.queries >= self.config.max_queries {
                        if running.is_empty() {
                            return Err(budget(self.config.max_queries));
                        }
                        next = ips.len();
                        continue;
                    }
                    let ip = ips[next];
                    next += 1;
                    ctx.queries += 1;
                    asked.push(ip);
                    last_ip = Some(ip);
                    timer = (NetInstant::now() + self.servers.rto(ip)).min(ctx.deadline);
                    running.push(self.exchange(ip, &question, ctx.deadline));
                    continue;
                }
                let (ip, rtt, result) = if next < ips.len() {
                    tokio::select! {
                        Some(done) = running.next() => done,
                        () = sleep_until(timer) => {
                            overdue.extend(last_ip.take());
                            continue;
                        }
                    }
                } else {
                    match running.next().await {
                        Some(done) => done,
                        None => break,
                    }
                };
                match result {
                    Ok(msg) => {
                        self.servers.answered(ip, rtt);
                        if classify(&msg, &cut.zone, name, qtype) == Kind::Lame {
                            debug!(server = %ip, zone = %cut.zone, rcode = %msg.metadata.response_code, "lame server");
                            self.servers.lame(ip, &cut.zone);
                            lame += 1;
                        } else {
                            for late in overdue.iter().filter(|&&o| o != ip) {
                                self.servers.failed(*late);
                            }
                            return Ok((msg, ip));
                        }
                    }
                    Err(e) => {
                        debug!(server = %ip, zone = %cut.zone, error = %e, "server failed");
                        self.servers.failed(ip);
                        last_error = Some(e);
                    }
                }
                // That one is done: the next need not wait for its timer.
                timer = NetInstant::now();
            }
            // Every known address failed: look up servers not tried yet, if any.
            let more = self.lookup_servers(ctx, cut, &mut tried_ns).await;
            if more.iter().all(|ip| asked.contains(ip)) {
                break;
            }
            ips = more;
        }
        if asked.is_empty() && ctx.queries >= self.config.max_queries {
            return Err(budget(self.config.max_queries));
        }
        if asked.is_empty() {
            return Err(Error::Failed {
                ede: ede::NO_REACHABLE_AUTHORITY,
                reason: format!("no address for any name server of {}", cut.zone),
            });
        }
        match last_error {
            Some(e) if lame == 0 => Err(e),
            _ => Err(Error::Failed {
                ede: ede::NO_REACHABLE_AUTHORITY,
                reason: format!("no server of {} answered with authority", cut.zone),
            }),
        }
    }
}

/// The error for a question that used up its outgoing queries.
fn budget(max: usize) -> Error {
    Error::Failed {
        ede: ede::OTHER,
        reason: format!("more than {max} outgoing queries for one question"),
    }
}

/// RFC 9156 §2.3: one label more per step, but no more than about ten steps for a long
/// name (the first four one label each, then bigger strides).
fn next_labels(labels: u8, zone_labels: u8, name_labels: u8) -> u8 {
    const MAX_MINIMISE_COUNT: u8 = 10;
    const MINIMISE_ONE_LAB: u8 = 4;
    let done = labels - zone_labels;
    let left = name_labels.saturating_sub(labels);
    if done < MINIMISE_ONE_LAB || left == 0 {
        return labels + 1;
    }
    let steps_left = MAX_MINIMISE_COUNT.saturating_sub(done).max(1);
    labels + left.div_ceil(steps_left).max(1)
}

/// What `msg`, from a server of `zone` asked about `ask`, is.
fn classify(msg: &Message, zone: &Name, ask: &Name, qtype: RecordType) -> Kind {
    let rcode = msg.metadata.response_code;
    if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
        return Kind::Lame;
    }
    if msg.metadata.message_type != MessageType::Response {
        return Kind::Lame;
    }
    let answers = msg.answers.iter().any(|r| {
        zone.zone_of(&r.name)
            && (r.name == *ask || r.record_type() == RecordType::DNAME && r.name.zone_of(ask))
    });
    if answers || rcode == ResponseCode::NXDomain {
        return Kind::Final;
    }
    let mut upward = false;
    for r in &msg.authorities {
        if r.record_type() != RecordType::NS {
            continue;
        }
        // The parent answers for the DS at a cut: a referral to that very cut is lame.
        if zone.zone_of(&r.name)
            && r.name != *zone
            && r.name.zone_of(ask)
            && !(qtype == RecordType::DS && r.name == *ask)
        {
            return Kind::Referral(r.name.clone());
        }
        if r.name != *zone {
            upward = true;
        }
    }
    let soa = msg
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA && zone.zone_of(&r.name));
    if !upward && (msg.metadata.authoritative || soa) {
        Kind::Final
    } else {
        Kind::Lame
    }
}

/// The records of one response that answer `name` (following CNAMEs and DNAMEs within
/// the zone the response came from), and the name to look up next when the chain leaves
/// that zone or the response stops short.
struct Step {
    records: Vec<Record>,
    next: Option<Name>,
    /// The last name of the chain within this response.
    last: Name,
    /// Owners of the CNAMEs made here from DNAMEs (validated through their DNAME).
    synthesized: Vec<Name>,
    /// Whether data of the type asked was found.
    data: bool,
}

fn follow(msg: &Message, name: &Name, qtype: RecordType, zone: &Name, dnssec_ok: bool) -> Step {
    let mut cur = name.clone();
    let mut out: Vec<Record> = Vec::new();
    let mut synthesized: Vec<Name> = Vec::new();
    let sigs = |out: &mut Vec<Record>, owner: &Name, covered: RecordType| {
        if dnssec_ok {
            out.extend(
                msg.answers
                    .iter()
                    .filter(|r| r.name == *owner && rrsig_covers(r, covered))
                    .cloned(),
            );
        }
    };
    for _ in 0..MAX_CHAIN {
        // RFC 6672: a DNAME above the name rewrites its suffix (the server's own
        // synthesized CNAME is not trusted: we make it).
        if let Some(d) = msg.answers.iter().find(|r| {
            r.record_type() == RecordType::DNAME
                && r.name != cur
                && r.name.zone_of(&cur)
                && zone.zone_of(&r.name)
        }) && qtype != RecordType::DNAME
        {
            let Some(target) = dname_target(d) else {
                break;
            };
            let keep = (cur.num_labels() - d.name.num_labels()) as usize;
            let prefix = Name::from_labels(cur.iter().take(keep)).ok();
            let Some(new) = prefix.and_then(|p| p.append_domain(&target).ok()) else {
                // Too long for a name (RFC 6672 YXDOMAIN): the chain ends here.
                break;
            };
            out.push(d.clone());
            sigs(&mut out, &d.name, RecordType::DNAME);
            out.push(Record::from_rdata(
                cur.clone(),
                d.ttl,
                RData::CNAME(CNAME(new.clone())),
            ));
            synthesized.push(cur.clone());
            cur = new;
            if !zone.zone_of(&cur) {
                return Step {
                    records: out,
                    next: Some(cur.clone()),
                    last: cur,
                    synthesized,
                    data: false,
                };
            }
            continue;
        }
        let alias = msg.answers.iter().find(|r| {
            r.name == cur && r.record_type() == RecordType::CNAME && zone.zone_of(&r.name)
        });
        if let (Some(c), false) = (alias, matches!(qtype, RecordType::CNAME | RecordType::ANY)) {
            let RData::CNAME(target) = &c.data else {
                break;
            };
            out.push(c.clone());
            sigs(&mut out, &cur, RecordType::CNAME);
            cur = target.0.clone();
            if !zone.zone_of(&cur) {
                return Step {
                    records: out,
                    next: Some(cur.clone()),
                    last: cur,
                    synthesized,
                    data: false,
                };
            }
            continue;
        }
        let data: Vec<Record> = msg
            .answers
            .iter()
            .filter(|r| {
                r.name == cur
                    && zone.zone_of(&r.name)
                    && (r.record_type() == qtype || qtype == RecordType::ANY)
            })
            .cloned()
            .collect();
        let found = !data.is_empty();
        out.extend(data);
        if found {
            sigs(&mut out, &cur, qtype);
        }
        // The chain ends in this response: data, or this response's negative answer for
        // the last name; else the server stopped short and the last name is asked anew.
        let negative = msg.metadata.response_code == ResponseCode::NXDomain
            || msg
                .authorities
                .iter()
                .any(|r| r.record_type() == RecordType::SOA);
        if found || cur == *name || negative {
            return Step {
                records: out,
                next: None,
                last: cur,
                synthesized,
                data: found,
            };
        }
        return Step {
            records: out,
            next: Some(cur.clone()),
            last: cur,
            synthesized,
            data: false,
        };
    }
    Step {
        records: out,
        next: None,
        last: cur,
        synthesized,
        data: false,
    }
}

/// The target of a DNAME record (hickory-proto 0.26 keeps DNAME RDATA as unknown bytes:
/// an uncompressed name, RFC 6672 §2.5).
pub(crate) fn dname_target(r: &Record) -> Option<Name> {
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
    match &r.data {
        RData::Unknown { code, rdata } if *code == RecordType::DNAME => {
            Name::read(&mut BinDecoder::new(&rdata.anything)).ok()
        }
        _ => None,
    }
}

/// Whether `r` is an RRSIG covering `covered` (read from the RDATA's first two bytes, so
/// it works without hickory's DNSSEC types).
fn rrsig_covers(r: &Record, covered: RecordType) -> bool {
    if r.record_type() != RecordType::RRSIG {
        return false;
    }
    let mut buf = Vec::new();
    let mut enc = hickory_proto::serialize::binary::BinEncoder::new(&mut buf);
    use hickory_proto::serialize::binary::BinEncodable;
    r.data.emit(&mut enc).is_ok()
        && buf.len() >= 2
        && RecordType::from(u16::from_be_bytes([buf[0], buf[1]])) == covered
}

/// The client's answer: the chain's records, the final rcode, and for a negative answer
/// the SOA (and its proofs, for DO) of the zone that gave it.
fn finish(q: &Question, reply: Reply, answers: Vec<Record>) -> Response {
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    let rcode = reply.msg.metadata.response_code;
    m.metadata.response_code = rcode;
    m.metadata.recursion_available = true;
    m.metadata.recursion_desired = true;
    let mut query = Query::query(q.name.clone(), q.qtype);
    query.set_query_class(q.qclass);
    m.add_query(query);
    let has_data = answers
        .iter()
        .any(|r| r.record_type() == q.qtype || q.qtype == RecordType::ANY);
    if !has_data || rcode == ResponseCode::NXDomain {
        m.authorities = reply
            .msg
            .authorities
            .iter()
            .filter(|r| reply.zone.zone_of(&r.name))
            .filter(|r| match r.record_type() {
                RecordType::SOA => true,
                RecordType::NSEC | RecordType::NSEC3 | RecordType::RRSIG => q.dnssec_ok,
                _ => false,
            })
            .cloned()
            .collect();
    }
    m.answers = answers;
    let wire_len = m.to_vec().map_or(512, |v| v.len());
    Response {
        msg: m,
        wire_len,
        servers: vec![reply.server],
        ede: None,
    }
}

#[cfg(test)]
mod tests;

impl Chain for Recursor {
    type Ctx = Ctx;

    fn validator(&self) -> &Validator {
        self.validator
            .as_ref()
            .unwrap_or_else(|| unreachable!("validation runs only with a validator"))
    }

    fn fetch<'a>(
        &'a self,
        ctx: &'a mut Ctx,
        name: &'a Name,
        qtype: RecordType,
    ) -> Boxed<'a, Result<Fetched, String>> {
        Box::pin(async move {
            // The DS of a cut: what its referral said, when it said something.
            if qtype == RecordType::DS
                && let Some(cut) = self.cuts.get(name)
                && !cut.delegation.is_empty()
                && cut.expires.is_none_or(|t| self.clock.now() < t)
            {
                let mut msg = Message::new(0, MessageType::Response, OpCode::Query);
                let has_ds = cut
                    .delegation
                    .iter()
                    .any(|r| r.record_type() == RecordType::DS);
                if has_ds {
                    msg.answers = cut.delegation.clone();
                } else {
                    msg.authorities = cut.delegation.clone();
                }
                return Ok(Fetched {
                    msg,
                    zone: cut.parent.clone(),
                });
            }
            let q = Question {
                name: name.clone(),
                qtype,
                qclass: hickory_proto::rr::DNSClass::IN,
                dnssec_ok: true,
                checking_disabled: false,
            };
            self.lookup(ctx, name, &q)
                .await
                .map(|r| r.fetched)
                .map_err(|e| format!("cannot fetch {name} {qtype}: {e}"))
        })
    }

    /// Iterating, the zone is known: the one whose server answered.
    fn zone_of<'a>(
        &'a self,
        _: &'a mut Ctx,
        _: &'a Name,
        reply: &'a Fetched,
    ) -> Boxed<'a, Result<Name, String>> {
        Box::pin(async move { Ok(reply.zone.clone()) })
    }
}
