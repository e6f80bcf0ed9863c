//! The one exit: every answered query — replayed from the packet cache, resolved, refused,
//! unreadable or failed — is counted and logged here, and nowhere else.
//!
//! [`Event`] is what an answer leaves behind; [`Exit::record`] turns it into the metrics of
//! SPEC §6 and a query-log line. The fast path builds its event from a cached entry without
//! decoding the query: the name is read from the wire only when a log line needs it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::clock::Clock;
use crate::identity::Identity;
use crate::label::{Phase, Protocol, QueryAction, Rcode};
use crate::metrics::Hot;
use crate::pipeline::{Outcome, Request};
use crate::policy::fields::fqdn_of;
use crate::querylog::{Entry, QueryLog};
use crate::runtime::Runtime;

/// The query name, however the caller has it.
#[derive(Debug, Clone, Copy)]
pub enum QName<'a> {
    /// Decoded.
    Name(&'a Name),
    /// Still in wire format (the fast path): decoded only for a log line.
    Wire(&'a [u8]),
    /// The message had none we could read.
    None,
}

/// What one answered query leaves behind.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// The transport.
    pub protocol: Protocol,
    /// The client address.
    pub client: IpAddr,
    /// Its device and user.
    pub identity: Option<&'a Identity>,
    /// The query name.
    pub name: QName<'a>,
    /// The query type.
    pub qtype: Option<RecordType>,
    /// What was done.
    pub action: QueryAction,
    /// The deciding policy (index into the runtime's).
    pub policy: Option<usize>,
    /// The phase it decided in.
    pub phase: Option<Phase>,
    /// The CNAME target the deciding policy matched, if it decided on one.
    pub cname: Option<&'a str>,
    /// The rcode sent.
    pub rcode: Rcode,
    /// The answer came from a cache (message or packet cache).
    pub cached: bool,
    /// The packet cache replayed it (a resolved one counts as a cache hit).
    pub replayed: bool,
    /// From arrival to the answer.
    pub elapsed: Duration,
    /// Its query-log line is sampled (a refused outsider: a flood of them must not fill
    /// the disk): at most [`SAMPLED_PER_SECOND`] such lines a second are written.
    pub sampled: bool,
}

/// Query-log lines of sampled events written per second at most.
pub const SAMPLED_PER_SECOND: u64 = 10;

impl<'a> Event<'a> {
    /// The event of a request the pipeline answered with `outcome`.
    pub fn of(req: &'a Request, outcome: &'a Outcome, elapsed: Duration) -> Self {
        let q = req.question();
        Self {
            protocol: req.protocol,
            client: req.src,
            identity: outcome.identity.as_deref(),
            name: q.map_or(QName::None, |q| QName::Name(&q.name)),
            qtype: q.map(|q| q.qtype),
            action: outcome.action,
            policy: outcome.policy,
            phase: outcome.phase,
            cname: outcome.cname.as_deref(),
            rcode: outcome.reply.rcode.into(),
            cached: outcome.cached,
            replayed: false,
            elapsed,
            sampled: outcome.action == QueryAction::Refused
                && outcome
                    .reply
                    .ede
                    .as_ref()
                    .is_some_and(|(c, _)| *c == crate::label::ede::PROHIBITED),
        }
    }
}

/// Where events go: the per-query metric series and the query log.
#[derive(Debug)]
pub struct Exit {
    hot: Hot,
    querylog: Option<QueryLog>,
    clock: Clock,
    /// Sampled lines: the second they are counted in (high 32 bits) and how many so far.
    sampled: AtomicU64,
}

impl Exit {
    /// An exit counting into the installed recorder and logging to `querylog`.
    pub fn new(querylog: Option<QueryLog>, clock: Clock) -> Self {
        Self {
            hot: Hot::new(),
            querylog,
            clock,
            sampled: AtomicU64::new(0),
        }
    }

    /// The per-query metric series.
    pub fn hot(&self) -> &Hot {
        &self.hot
    }

    /// Whether a sampled line may be written now.
    fn take_sample(&self) -> bool {
        let second = self
            .clock
            .system_time()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            & 0xffff_ffff;
        let mut current = self.sampled.load(Relaxed);
        loop {
            let n = if current >> 32 == second {
                (current & 0xffff_ffff) + 1
            } else {
                1
            };
            if n > SAMPLED_PER_SECOND {
                return false;
            }
            match self
                .sampled
                .compare_exchange_weak(current, second << 32 | n, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// The query log, if any (a reload reopens it).
    pub fn querylog(&self) -> Option<&QueryLog> {
        self.querylog.as_ref()
    }

    /// Counts and logs one answered query; `rt` is the configuration that decided it.
    pub fn record(&self, rt: &Runtime, e: &Event<'_>) {
        self.hot.answered(e.protocol, e.action, e.rcode, e.elapsed);
        if e.replayed && e.action.is_resolved() {
            self.hot.cache_hit();
        }
        let policy = e.policy.and_then(|i| rt.policies.policies.get(i));
        if let Some(p) = policy {
            p.matches.increment(1);
        }
        if let Some(identity) = e.identity {
            let unix = self
                .clock
                .system_time()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            identity.last_seen.touch(unix);
        }
        let Some(log) = &self.querylog else {
            return;
        };
        if e.sampled && !self.take_sample() {
            self.hot.sampled_out();
            return;
        }
        let name = match e.name {
            QName::Name(n) => fqdn_of(n),
            QName::Wire(w) => Name::read(&mut BinDecoder::new(w))
                .map(|n| fqdn_of(&n))
                .unwrap_or_default(),
            QName::None => String::new(),
        };
        log.log(Entry {
            time: self.clock.wall(),
            client: e.client,
            device: e.identity.map(|i| i.device_id.clone()),
            user: e
                .identity
                .filter(|i| !i.email.is_empty())
                .map(|i| i.email.clone()),
            name,
            qtype: e.qtype,
            action: e.action,
            policy: policy.map(|p| p.name.clone()),
            phase: e.phase,
            cname: e.cname.map(str::to_owned),
            rcode: e.rcode,
            latency: e.elapsed,
            cached: e.cached,
        });
    }
}
