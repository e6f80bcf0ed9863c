//! Listeners: each turns what arrives into a [`Request`], runs the one pipeline, sends the
//! reply and hands the outcome to the one exit.
//!
//! UDP is ours ([`udp`]: a socket per worker, a packet-cache fast path); hickory-server
//! owns TCP (a task per connection). [`serve::Handler`] is the full path of both. The
//! configuration in service is a [`Live`]: a reload swaps it whole between two queries,
//! so no query is dropped (SPEC §7).

mod batch;
pub mod packet;
pub mod ratelimit;
pub mod serve;
mod udp;
pub mod wire;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::diag::Diagnostic;
use crate::pipeline::{self, Outcome, Request, Resolver};
use crate::querylog::QueryLog;
use crate::record::{Event, Exit};
use crate::resolve::Cache;
use crate::runtime::{Live, Runtime};
use packet::PacketCache;

/// State shared by every query and by reloads.
#[derive(Debug)]
pub struct Shared {
    /// The configuration in service.
    pub live: Arc<Live>,
    /// The message cache (kept across reloads).
    pub cache: Cache,
    /// Finished UDP responses (kept across reloads; entries of an older configuration
    /// are never served).
    pub packets: PacketCache,
    /// Metrics and the query log.
    pub exit: Exit,
    /// The one clock (tests move it).
    pub clock: Clock,
    /// When the server started, on that clock (rate limits count seconds from here).
    pub epoch: crate::clock::Instant,
    /// `[server] rate_limit` counters per client network.
    pub limiter: ratelimit::Limiter,
    /// Counters of refused outsiders per network.
    pub outsiders: ratelimit::Limiter,
}

impl Shared {
    /// The one road, serving: the pipeline over the message cache.
    pub async fn answer(&self, rt: &Runtime, req: &Request) -> Outcome {
        pipeline::run(rt, Resolver::Cache(&self.cache), req, &mut ()).await
    }

    /// The one exit for a request the pipeline answered.
    pub fn record(&self, rt: &Runtime, req: &Request, outcome: &Outcome) {
        let elapsed = self.clock.now().saturating_duration_since(req.arrival);
        self.exit.record(rt, &Event::of(req, outcome, elapsed));
    }

    /// Reloads the configuration (SIGHUP) and reopens the query log (logrotate): see
    /// [`Live::reload`].
    pub async fn reload(&self) -> Result<(), Vec<Diagnostic>> {
        if let Some(log) = self.exit.querylog() {
            log.reopen();
        }
        self.live.reload().await
    }
}

/// A running server.
pub struct Running {
    /// The shared state.
    pub shared: Arc<Shared>,
    /// The bound DNS addresses (UDP and TCP on each).
    pub addrs: Vec<SocketAddr>,
    server: Server<serve::Handler>,
    udp: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting and waits for in-flight queries.
    pub async fn shutdown(mut self) {
        for t in &self.udp {
            t.abort();
        }
        if let Err(e) = self.server.shutdown_gracefully().await {
            warn!(error = %e, "shutdown");
        }
    }

    /// Serves until the listeners stop.
    pub async fn wait(&mut self) {
        if let Err(e) = self.server.block_until_done().await {
            error!(error = %e, "server stopped");
        }
    }
}

/// Binds UDP (`workers` sockets) and TCP on one address. With port 0 the TCP listener
/// takes the port the kernel gave the UDP sockets, so both protocols share it.
async fn bind_pair(
    addr: SocketAddr,
    workers: usize,
) -> std::io::Result<(Vec<UdpSocket>, TcpListener)> {
    let mut last = None;
    for _ in 0..16 {
        let udp = udp::bind(addr, workers)?;
        let bound = udp[0].local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("cannot bind")))
}

/// Starts serving `rt` (loaded from `config_path`) on its listen addresses.
pub async fn start(config_path: &Path, rt: Runtime) -> std::io::Result<Running> {
    let settings = rt.settings.clone();
    let querylog = match &settings.querylog {
        Some(p) => Some(QueryLog::open(p).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot open query log {}: {e}", p.display()),
            )
        })?),
        None => None,
    };
    let clock = rt.clock.clone();
    let shared = Arc::new(Shared {
        live: Arc::new(Live::new(config_path, rt)),
        cache: Cache::new(settings.cache_size, settings.serve_stale, clock.clone()),
        packets: PacketCache::new(settings.cache_size),
        exit: Exit::new(querylog, clock.clone()),
        epoch: clock.now(),
        limiter: ratelimit::Limiter::default(),
        outsiders: ratelimit::Limiter::default(),
        clock,
    });
    let handler = serve::Handler::new(shared.clone());
    let mut server = Server::new(handler.clone());
    // As many UDP sockets per address as threads may run (the CPUs this process may use).
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut addrs = Vec::new();
    let mut udp_tasks = Vec::new();
    for addr in &settings.listen {
        let (udp, tcp) = match bind_pair(*addr, workers).await {
            Ok(pair) => pair,
            // A host without IPv6 (a container, a kernel booted with ipv6.disable) cannot
            // bind [::1]; the default and example listen there too, so that alone is not
            // fatal while another address serves.
            Err(e)
                if addr.is_ipv6()
                    // EADDRNOTAVAIL, or EAFNOSUPPORT (97 on Linux) without an IPv6 stack.
                    && (e.kind() == std::io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(97))
                    && settings.listen.iter().any(|a| a.is_ipv4()) =>
            {
                warn!(%addr, error = %e, "IPv6 address not available on this host; not listening there");
                continue;
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr}: {e}"),
                ));
            }
        };
        let bound = udp[0].local_addr()?;
        udp_tasks.extend(udp::spawn(&shared, &handler, udp));
        // Responses queued per connection: hickory answers one TCP query at a time.
        server.register_listener(tcp, settings.tcp_idle, 32);
        info!(addr = %bound, "listening");
        addrs.push(bound);
    }
    Ok(Running {
        shared,
        addrs,
        server,
        udp: udp_tasks,
    })
}
