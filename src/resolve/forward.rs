//! Forwarding a question to upstream servers over UDP (retried over TCP when truncated) or
//! TCP, keeping the whole response message.
//!
//! Why not `hickory_resolver`'s lookup or name-server pool: both turn NXDOMAIN, NODATA and
//! SERVFAIL into errors and the lookup path drops CNAMEs (see NOTES-hickory), while a
//! forwarder must hand the client the upstream's message as it was. The exchange itself is
//! small: a random id per query on a socket with a random source port, answers checked
//! against id and question, a deadline for the whole attempt across servers.
//!
//! Sockets are reused: creating, connecting, registering and closing one per query was a
//! quarter of the CPU of a cache miss. A socket serves at most [`SOCKET_USES`] queries, one
//! at a time and each with its own random id, and is dropped after a timeout or an error,
//! so a late or forged answer to an old query can only ever meet a query that checks id
//! and question, and source ports keep changing (a fresh kernel-chosen port every
//! [`SOCKET_USES`] queries, or after two idle seconds).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};
use tracing::debug;

use super::{Error, Question, Transport, UpstreamSpec};
use crate::clock::Clock;
use crate::metrics;

/// The EDNS payload size we advertise upstream and downstream (DNS flag day 2020).
pub const EDNS_PAYLOAD: u16 = 1232;

/// Upstream exchanges in flight at once, per forwarder. Beyond this, queries wait (within
/// their timeout): a flood of unique names must not turn into unbounded sockets and
/// buffers.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Queries one UDP socket serves before it is closed and a new port taken.
pub const SOCKET_USES: u16 = 16;
/// Idle sockets kept per upstream server.
const POOL_MAX: usize = 256;
/// An idle socket older than this is closed rather than reused: open ports that sit
/// waiting are what off-path attackers probe for (SADDNS).
const POOL_IDLE: Duration = Duration::from_secs(2);

/// A connected socket to one upstream and its receive buffer, between queries.
#[derive(Debug)]
struct Pooled {
    sock: UdpSocket,
    buf: Vec<u8>,
    uses: u16,
    idle_since: Instant,
}

/// Largest UDP response accepted; we advertise [`EDNS_PAYLOAD`], so anything bigger is
/// a broken upstream.
const UDP_BUFFER: usize = 4096;

/// What we remember about one upstream: failures in a row and until when to prefer the
/// others (milliseconds since the forwarder was made).
#[derive(Debug, Default)]
struct Health {
    failures: AtomicU32,
    avoid_until_ms: AtomicU64,
}

/// A group of upstream servers used in turn.
#[derive(Debug)]
pub struct Forwarder {
    servers: Vec<UpstreamSpec>,
    labels: Vec<String>,
    /// `dnsgate_upstream_errors_total{upstream}`, registered (at 0) when the group is built.
    errors: Vec<::metrics::Counter>,
    health: Vec<Health>,
    timeout: Duration,
    next: AtomicUsize,
    epoch: Instant,
    in_flight: Semaphore,
    fingerprint: u64,
    /// Times server back-off and socket idleness (not network timeouts: those are real).
    clock: Clock,
    /// Idle UDP sockets per server.
    pools: Vec<std::sync::Mutex<Vec<Pooled>>>,
}

/// An upstream response and its size on the wire.
#[derive(Debug)]
pub struct Response {
    /// The message.
    pub msg: Message,
    /// Its encoded size, for weighing it in the cache.
    pub wire_len: usize,
}

impl Forwarder {
    /// A forwarder over `servers` that gives up after `timeout` in all.
    pub fn new(servers: Vec<UpstreamSpec>, timeout: Duration, clock: Clock) -> Self {
        let labels: Vec<String> = servers.iter().map(ToString::to_string).collect();
        let errors = labels
            .iter()
            .map(|l| {
                let c =
                    ::metrics::counter!(metrics::UPSTREAM_ERRORS_TOTAL, "upstream" => l.clone());
                c.increment(0);
                c
            })
            .collect();
        let health = servers.iter().map(|_| Health::default()).collect();
        let fingerprint = {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut h = DefaultHasher::new();
            servers.hash(&mut h);
            h.finish()
        };
        Self {
            fingerprint,
            pools: servers.iter().map(|_| Default::default()).collect(),
            servers,
            labels,
            errors,
            health,
            timeout,
            next: AtomicUsize::new(0),
            epoch: clock.now(),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            clock,
        }
    }

    /// Whether `other` has the same servers and timeout.
    pub fn same_config(&self, other: &Self) -> bool {
        self.servers == other.servers && self.timeout == other.timeout
    }

    fn now_ms(&self) -> u64 {
        self.clock
            .now()
            .saturating_duration_since(self.epoch)
            .as_millis() as u64
    }

    /// The order to try servers in: round robin over the healthy ones, then the ones that
    /// failed recently (so a dead upstream does not cost every other query a timeout).
    fn order(&self) -> Vec<usize> {
        let n = self.servers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let mut order: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
        order.sort_by_key(|&i| self.health[i].avoid_until_ms.load(Ordering::Relaxed) > now);
        order
    }

    fn record(&self, idx: usize, ok: bool) {
        let h = &self.health[idx];
        if ok {
            h.failures.store(0, Ordering::Relaxed);
            h.avoid_until_ms.store(0, Ordering::Relaxed);
        } else {
            // Back off 1 s, 2 s, 4 s ... up to 30 s; after that the server is tried again
            // first, so a recovered upstream comes back by itself.
            let f = h.failures.fetch_add(1, Ordering::Relaxed).min(5);
            let backoff = (1000u64 << f).min(30_000);
            h.avoid_until_ms
                .store(self.now_ms() + backoff, Ordering::Relaxed);
        }
    }

    /// The servers, as configured.
    pub fn servers(&self) -> &[UpstreamSpec] {
        &self.servers
    }

    /// Sends the question to the servers in turn (healthy ones first, round robin)
    /// until one answers; the whole attempt is bounded by the timeout.
    pub async fn query(&self, q: &Question) -> Result<Response, Error> {
        if self.servers.is_empty() {
            return Err(Error::Network("no upstream servers configured".into()));
        }
        let deadline = Instant::now() + self.timeout;
        let Ok(Ok(_permit)) = timeout_at(deadline, self.in_flight.acquire()).await else {
            return Err(Error::Timeout);
        };
        let order = self.order();
        // With one server, still try twice: a lost UDP datagram should not cost the query.
        let attempts = order.len().max(2);
        let slice = self.timeout / attempts as u32;
        let mut saw_timeout = false;
        let mut last_soft = None;
        let mut answered = Vec::new();
        let mut last_network = None;
        for i in 0..attempts {
            let idx = order[i % order.len()];
            // A second round is for lost datagrams, not for servers that already answered.
            if i >= order.len() && answered.contains(&idx) {
                continue;
            }
            let server = &self.servers[idx];
            let attempt_deadline = if i + 1 == attempts {
                deadline
            } else {
                (Instant::now() + slice).min(deadline)
            };
            let result = match server.transport {
                Transport::Udp => {
                    exchange_udp(
                        server.addr,
                        &self.pools[idx],
                        q,
                        attempt_deadline,
                        &self.clock,
                    )
                    .await
                }
                Transport::Tcp => exchange_tcp(server.addr, q, attempt_deadline).await,
            };
            // SERVFAIL, REFUSED, NOTIMP and FORMERR say "not this server": try the next one,
            // and hand the client such a reply only if every server gave one.
            let soft = result.as_ref().is_ok_and(|r| {
                matches!(
                    r.msg.metadata.response_code,
                    ResponseCode::ServFail
                        | ResponseCode::Refused
                        | ResponseCode::NotImp
                        | ResponseCode::FormErr
                )
            });
            self.record(idx, result.is_ok() && !soft);
            match result {
                Ok(r) if !soft => return Ok(r),
                Ok(r) => {
                    answered.push(idx);
                    self.errors[idx].increment(1);
                    debug!(rcode = %r.msg.metadata.response_code, upstream = %self.labels[idx], "upstream refused or failed");
                    last_soft = Some(r);
                }
                Err(e) => {
                    self.errors[idx].increment(1);
                    debug!(error = %e, upstream = %self.labels[idx], "upstream attempt failed");
                    match e {
                        Error::Timeout => saw_timeout = true,
                        e => last_network = Some(e),
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
        }
        // A timeout anywhere makes the failure a timeout (EDE 22); only when every attempt
        // failed at the network level is it a network error (EDE 23). Logged at debug:
        // per-query detail, counted in dnsgate_upstream_errors_total.
        if let Some(r) = last_soft {
            return Ok(r);
        }
        match last_network {
            Some(e) if !saw_timeout => Err(e),
            _ => Err(Error::Timeout),
        }
    }
}

async fn exchange_udp(
    addr: SocketAddr,
    pool: &std::sync::Mutex<Vec<Pooled>>,
    q: &Question,
    deadline: Instant,
    clock: &Clock,
) -> Result<Response, Error> {
    let (id, wire) = encode_query(q)?;
    let idle_for = |s: &Pooled| clock.now().saturating_duration_since(s.idle_since);
    // The newest idle socket; if even that has idled too long, so have all the others.
    let idle = pool.lock().ok().and_then(|mut p| {
        let s = p.pop()?;
        if idle_for(&s) < POOL_IDLE {
            Some(s)
        } else {
            p.clear();
            None
        }
    });
    let mut s = match idle {
        Some(s) => s,
        None => {
            let bind: SocketAddr = if addr.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = UdpSocket::bind(bind).await.map_err(net)?;
            sock.connect(addr).await.map_err(net)?;
            Pooled {
                sock,
                buf: vec![0u8; UDP_BUFFER],
                uses: 0,
                idle_since: clock.now(),
            }
        }
    };
    // Errors and timeouts drop the socket (with whatever may still arrive on it).
    s.sock.send(&wire).await.map_err(net)?;
    loop {
        let len = match timeout_at(deadline, s.sock.recv(&mut s.buf)).await {
            Err(_) => return Err(Error::Timeout),
            Ok(r) => r.map_err(net)?,
        };
        // Anything that is not the answer to our question is ignored, not an error:
        // it may be a late answer or a spoofing attempt.
        let Ok(msg) = Message::from_vec(&s.buf[..len]) else {
            continue;
        };
        if !answers(&msg, id, q) {
            continue;
        }
        s.uses += 1;
        if s.uses < SOCKET_USES {
            if let Ok(mut p) = pool.lock() {
                // The oldest are at the front: close those idle too long.
                if p.first().is_some_and(|o| idle_for(o) >= POOL_IDLE) {
                    p.retain(|o| idle_for(o) < POOL_IDLE);
                }
                if p.len() < POOL_MAX {
                    s.idle_since = clock.now();
                    p.push(s);
                }
            }
        }
        if msg.metadata.truncation {
            debug!(%addr, "truncated answer, retrying over TCP");
            return exchange_tcp(addr, q, deadline).await;
        }
        return Ok(Response { msg, wire_len: len });
    }
}

async fn exchange_tcp(
    addr: SocketAddr,
    q: &Question,
    deadline: Instant,
) -> Result<Response, Error> {
    let (id, wire) = encode_query(q)?;
    let io = async {
        let mut stream = TcpStream::connect(addr).await.map_err(net)?;
        let _ = stream.set_nodelay(true);
        let mut framed = Vec::with_capacity(wire.len() + 2);
        framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
        framed.extend_from_slice(&wire);
        stream.write_all(&framed).await.map_err(net)?;
        loop {
            let len = stream.read_u16().await.map_err(net)? as usize;
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await.map_err(net)?;
            let msg = Message::from_vec(&body)
                .map_err(|e| Error::Network(format!("bad response: {e}")))?;
            if answers(&msg, id, q) {
                return Ok(Response { msg, wire_len: len });
            }
        }
    };
    timeout_at(deadline, io)
        .await
        .unwrap_or(Err(Error::Timeout))
}

fn net(e: std::io::Error) -> Error {
    Error::Network(e.to_string())
}

fn encode_query(q: &Question) -> Result<(u16, Vec<u8>), Error> {
    let id: u16 = rand::random();
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.checking_disabled = q.checking_disabled;
    // RFC 6840 §5.7: ask for the AD bit, so a validating upstream says what it validated.
    m.metadata.authentic_data = true;
    let mut query = Query::query(q.name.clone(), q.qtype);
    query.set_query_class(q.qclass);
    m.add_query(query);
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    edns.set_dnssec_ok(q.dnssec_ok);
    m.set_edns(edns);
    let wire = m
        .to_vec()
        .map_err(|e| Error::Network(format!("cannot encode query: {e}")))?;
    Ok((id, wire))
}

/// Whether `msg` is the response to our query `id` for `q`.
fn answers(msg: &Message, id: u16, q: &Question) -> bool {
    if msg.metadata.id != id || msg.metadata.message_type != MessageType::Response {
        return false;
    }
    // An EDNS-intolerant server may answer FORMERR without echoing the question.
    if msg.queries.is_empty() && msg.metadata.response_code == ResponseCode::FormErr {
        return true;
    }
    msg.queries.len() == 1
        && msg.queries[0].name() == &q.name
        && msg.queries[0].query_type() == q.qtype
        && msg.queries[0].query_class() == q.qclass
}

impl Forwarder {
    /// A stable identity of this group's configuration (see [`super::Upstream::fingerprint`]).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}
