//! Forwarding a question to upstream servers over UDP (retried over TCP when truncated) or
//! TCP, keeping the whole response message.
//!
//! Why not `hickory_resolver`'s lookup or name-server pool: both turn NXDOMAIN, NODATA and
//! SERVFAIL into errors and the lookup path drops CNAMEs (see docs/REFERENCE.md), while a
//! forwarder must hand the client the upstream's message as it was.
//!
//! One question is a race within one deadline (`timeout_ms`): the first server is asked;
//! when its retransmission timer (from its measured round trips, RFC 6298) runs out, the
//! next is asked (or the same again, for a lost datagram) while the first may still
//! answer; the first good answer wins. So an upstream that answers in 1.2 s of a 2 s
//! timeout is still heard, however many times it was asked again meanwhile.
//!
//! Sockets are reused: creating, connecting, registering and closing one per query was a
//! quarter of the CPU of a cache miss. A socket serves at most [`SOCKET_USES`] queries, one
//! at a time and each with its own random id, is drained before each, and is dropped
//! after a timeout or an error; see [`exchange`] for the rest of the spoofing defences.

mod health;
mod validate;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hickory_proto::op::ResponseCode;
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep_until, timeout_at};
use tracing::debug;

use super::{Error, Question, Response, Transport, UpstreamSpec};
use crate::clock::Clock;
use crate::metrics;
use health::Health;

use super::exchange::{self, Pool, TlsPool};
pub use super::exchange::{EDNS_PAYLOAD, SOCKET_USES};

/// Upstream exchanges in flight at once, per forwarder. Beyond this, queries wait (within
/// their timeout): a flood of unique names must not turn into unbounded sockets and
/// buffers.
pub const MAX_IN_FLIGHT: usize = 1024;

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
    pools: Vec<Pool>,
    /// Idle DoT connections per server.
    tls_pools: Vec<TlsPool>,
    /// How DoT servers' certificates are verified.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// HTTP clients of DoH servers, made at first use (after their host's address is
    /// looked up, when it is a name).
    https: Vec<tokio::sync::OnceCell<reqwest::Client>>,
    /// Plain servers that find DoH hosts' addresses besides this group's own.
    bootstrap: Vec<UpstreamSpec>,
    /// DNSSEC validation of the answers, when on (`[upstream] dnssec = "validate"`).
    validator: Option<super::validate::Validator>,
    /// The zone found for a name (validating unsigned data), and until when.
    zones: quick_cache::sync::Cache<
        hickory_proto::rr::Name,
        (hickory_proto::rr::Name, crate::clock::Instant),
    >,
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
            tls_pools: servers.iter().map(|_| Default::default()).collect(),
            https: servers
                .iter()
                .map(|_| tokio::sync::OnceCell::new())
                .collect(),
            bootstrap: Vec::new(),
            tls: None,
            servers,
            labels,
            errors,
            health,
            timeout,
            next: AtomicUsize::new(0),
            epoch: clock.now(),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            clock,
            validator: None,
            zones: quick_cache::sync::Cache::new(10_000),
        }
    }

    /// The HTTP client of DoH server `idx`: its host pinned to its address (looked up
    /// through this group's plain servers when the URL names a host), HTTP/2 preferred,
    /// connections kept (HTTP/2 streams share one).
    async fn https_client(
        &self,
        idx: usize,
        url: &str,
        deadline: Instant,
    ) -> Result<&reqwest::Client, Error> {
        self.https[idx]
            .get_or_try_init(|| async {
                let Some(config) = &self.tls else {
                    return Err(Error::Network("no TLS configuration".into()));
                };
                let mut config = (**config).clone();
                config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                let host = url
                    .strip_prefix("https://")
                    .and_then(|r| r.split('/').next())
                    .map(|a| match a.rsplit_once(':') {
                        Some((h, p)) if p.parse::<u16>().is_ok() && !h.is_empty() => h,
                        _ => a,
                    })
                    .unwrap_or_default()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned();
                let mut addr = self.servers[idx].addr;
                if addr.ip().is_unspecified() {
                    addr.set_ip(self.bootstrap(&host, deadline).await?);
                }
                reqwest::Client::builder()
                    .tls_backend_preconfigured(config)
                    .resolve(&host, addr)
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| Error::Network(format!("DoH client: {e}")))
            })
            .await
    }

    /// These plain servers also find DoH hosts' addresses (the default group's).
    pub fn with_bootstrap(mut self, servers: Vec<UpstreamSpec>) -> Self {
        self.bootstrap = servers
            .into_iter()
            .filter(|s| matches!(s.transport, Transport::Udp | Transport::Tcp))
            .collect();
        self
    }

    /// The address of `host`, asked of the plain (UDP/TCP) servers of this group, then of
    /// the default group.
    async fn bootstrap(&self, host: &str, deadline: Instant) -> Result<std::net::IpAddr, Error> {
        let name = hickory_proto::rr::Name::from_ascii(format!("{}.", host.trim_end_matches('.')))
            .map_err(|e| Error::Network(format!("DoH host `{host}`: {e}")))?;
        let spare = Pool::default();
        let plain = self
            .servers
            .iter()
            .zip(self.pools.iter())
            .chain(self.bootstrap.iter().map(|s| (s, &spare)));
        for (server, pool) in plain {
            if !matches!(server.transport, Transport::Udp | Transport::Tcp) {
                continue;
            }
            for qtype in [
                hickory_proto::rr::RecordType::A,
                hickory_proto::rr::RecordType::AAAA,
            ] {
                let q = Question {
                    name: name.clone(),
                    qtype,
                    qclass: hickory_proto::rr::DNSClass::IN,
                    dnssec_ok: false,
                    checking_disabled: false,
                };
                let answer = match server.transport {
                    Transport::Udp => {
                        exchange::udp(server.addr, pool, &q, true, deadline, &self.clock, false)
                            .await
                            .map(|o| match o {
                                exchange::Outcome::Answer(r)
                                | exchange::Outcome::CaseIgnored(r) => r,
                            })
                    }
                    _ => exchange::tcp(server.addr, &q, true, deadline).await,
                };
                if let Ok(r) = answer {
                    for rec in &r.msg.answers {
                        match &rec.data {
                            hickory_proto::rr::RData::A(a) => return Ok(a.0.into()),
                            hickory_proto::rr::RData::AAAA(a) => return Ok(a.0.into()),
                            _ => {}
                        }
                    }
                }
            }
        }
        Err(Error::Network(format!(
            "cannot find the address of DoH server `{host}` (it needs a udp:// or tcp:// upstream in its group)"
        )))
    }

    /// This forwarder, verifying DoT servers' certificates with `config`.
    pub fn with_tls(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// This forwarder, validating what its servers say with `validation`.
    pub fn validating(mut self, validation: super::validate::Validation) -> Self {
        let fingerprint = {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut h = DefaultHasher::new();
            self.fingerprint.hash(&mut h);
            format!("{validation:?}").hash(&mut h);
            h.finish()
        };
        self.fingerprint = fingerprint;
        self.validator = Some(super::validate::Validator::new(
            validation,
            self.clock.clone(),
        ));
        self
    }

    /// Whether `other` has the same servers and timeout.
    pub fn same_config(&self, other: &Self) -> bool {
        self.servers == other.servers
            && self.timeout == other.timeout
            && self.fingerprint == other.fingerprint
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
        order.sort_by_key(|&i| self.health[i].is_avoided(now));
        order
    }

    /// The servers, as configured.
    pub fn servers(&self) -> &[UpstreamSpec] {
        &self.servers
    }

    /// One attempt at server `idx`, racing the others until `deadline`.
    async fn attempt(
        &self,
        idx: usize,
        q: &Question,
        deadline: Instant,
    ) -> (usize, Duration, Result<Response, Error>) {
        let started = Instant::now();
        let server = &self.servers[idx];
        let result = match &server.transport {
            Transport::Udp => {
                let randomize = self.health[idx].keeps_case(self.now_ms());
                match exchange::udp(
                    server.addr,
                    &self.pools[idx],
                    q,
                    true,
                    deadline,
                    &self.clock,
                    randomize,
                )
                .await
                {
                    Ok(exchange::Outcome::Answer(r)) => Ok(r),
                    Ok(exchange::Outcome::CaseIgnored(r)) => {
                        debug!(upstream = %self.labels[idx], "upstream does not keep the case of names: asking it without 0x20 for a while");
                        self.health[idx].ignores_case(self.now_ms());
                        Ok(r)
                    }
                    Err(e) => Err(e),
                }
            }
            Transport::Tcp => exchange::tcp(server.addr, q, true, deadline).await,
            Transport::Https(url) => match self.https_client(idx, url, deadline).await {
                Ok(client) => exchange::https(client, url, q, deadline).await,
                Err(e) => Err(e),
            },
            Transport::Tls(name) => match &self.tls {
                Some(config) => {
                    exchange::tls(server.addr, name, config, &self.tls_pools[idx], q, deadline)
                        .await
                }
                None => Err(Error::Network("no TLS configuration".into())),
            },
        };
        (idx, started.elapsed(), result)
    }

    /// Asks the servers (healthy ones first, round robin) until one answers, all within
    /// the timeout. A server that has not answered when its retransmission timer runs out
    /// is not given up: the next attempt starts beside it, and whichever answers first
    /// wins. A failure (refused, unreachable) starts the next attempt at once.
    pub async fn query(&self, q: &Question) -> Result<Response, Error> {
        match &self.validator {
            None => self.ask(q).await,
            Some(v) => validate::query(self, v, q).await,
        }
    }

    /// The question as it is, to the servers.
    async fn ask(&self, q: &Question) -> Result<Response, Error> {
        if self.servers.is_empty() {
            return Err(Error::Network("no upstream servers configured".into()));
        }
        let deadline = Instant::now() + self.timeout;
        let Ok(Ok(_permit)) = timeout_at(deadline, self.in_flight.acquire()).await else {
            return Err(Error::Timeout);
        };
        let order = self.order();
        // With one server, still ask twice: a lost UDP datagram should not cost the query.
        let attempts = order.len().max(2);
        let mut next = 0;
        let mut running = FuturesUnordered::new();
        let mut retransmit = Instant::now();
        let mut saw_timeout = false;
        let mut last_soft = None;
        let mut answered: Vec<usize> = Vec::new();
        let mut last_network = None;
        // The server asked last, and those whose timer ran out before they answered: if
        // another answers first, they count as having failed (else a blackholed server
        // would stay first in line, costing every query its timer).
        let mut last_idx = order[0];
        let mut overdue: Vec<usize> = Vec::new();
        loop {
            // Start the next attempt when the last one's timer ran out, or nothing runs.
            let due = running.is_empty() || Instant::now() >= retransmit;
            if due && next < attempts {
                let idx = order[next % order.len()];
                next += 1;
                // A second round is for lost datagrams, not for servers that already
                // answered.
                if next > order.len() && answered.contains(&idx) {
                    continue;
                }
                let rto = self.health[idx].rto(self.timeout / 2);
                retransmit = (Instant::now() + rto).min(deadline);
                last_idx = idx;
                running.push(self.attempt(idx, q, deadline));
                continue;
            }
            if running.is_empty() {
                break;
            }
            let (idx, rtt, result) = if next < attempts {
                tokio::select! {
                    Some(done) = running.next() => done,
                    () = sleep_until(retransmit) => {
                        overdue.push(last_idx);
                        continue;
                    }
                }
            } else {
                match running.next().await {
                    Some(done) => done,
                    None => break,
                }
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
            self.health[idx].record(result.is_ok() && !soft, self.now_ms());
            match result {
                Ok(mut r) if !soft => {
                    // SPEC §9: an upstream's AD bit is believed only over a path nobody
                    // can tamper with (loopback, tls://).
                    let server = &self.servers[idx];
                    if !server.addr.ip().is_loopback()
                        && !matches!(server.transport, Transport::Tls(_) | Transport::Https(_))
                    {
                        r.msg.metadata.authentic_data = false;
                    }
                    self.health[idx].observe_rtt(rtt);
                    let now = self.now_ms();
                    for &late in overdue.iter().filter(|&&o| o != idx) {
                        self.health[late].record(false, now);
                        self.errors[late].increment(1);
                    }
                    return Ok(r);
                }
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
            // This attempt is over: the next need not wait for its timer.
            retransmit = Instant::now();
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

impl Forwarder {
    /// A stable identity of this group's configuration (see [`super::Upstream::fingerprint`]).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}
