//! The one exit: every answered query — replayed from the packet cache, resolved, refused,
//! unreadable or failed — is counted and logged here, and nowhere else.
//!
//! [`Event`] is what an answer leaves behind; [`Exit::record`] turns it into the metrics of
//! SPEC §6 and a query-log line. The fast path builds its event from a cached entry without
//! decoding the query: the name is read from the wire only when a log line needs it.

use std::net::IpAddr;
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
}

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
        }
    }
}

/// Where events go: the per-query metric series and the query log.
#[derive(Debug)]
pub struct Exit {
    hot: Hot,
    querylog: Option<QueryLog>,
    clock: Clock,
}

impl Exit {
    /// An exit counting into the installed recorder and logging to `querylog`.
    pub fn new(querylog: Option<QueryLog>, clock: Clock) -> Self {
        Self {
            hot: Hot::new(),
            querylog,
            clock,
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
        let Some(log) = &self.querylog else {
            return;
        };
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
