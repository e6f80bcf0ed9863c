//! Listeners: each turns what arrives into a [`Request`], runs the one pipeline, sends the
//! reply and hands the outcome to the one exit.
//!
//! UDP ([`udp`]: a socket per worker, a packet-cache fast path) and TCP ([`tcp`]: bounded
//! connections, pipelined queries) are ours; hickory's decoder reads what the fast path
//! cannot, and [`serve::Handler`] is the full path of both. The
//! configuration in service is a [`Live`]: a reload swaps it whole between two queries,
//! so no query is dropped (SPEC §7).

mod batch;
mod doh;
mod fast;
pub mod packet;
pub mod ratelimit;
pub mod serve;
pub mod tcp;
mod udp;
pub mod wire;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tracing::info;

use crate::clock::Clock;
use crate::diag::Diagnostic;
use crate::pipeline::{self, Externals, Outcome, Request, Resolver};
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
        pipeline::run(
            rt,
            Resolver::Cache(&self.cache),
            Externals::Ask,
            req,
            &mut (),
        )
        .await
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
    /// The bound DNS-over-TLS addresses.
    pub dot_addrs: Vec<SocketAddr>,
    /// The bound DNS-over-HTTPS addresses.
    pub doh_addrs: Vec<SocketAddr>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops the listeners (queries being answered finish on their own).
    pub async fn shutdown(self) {
        for t in &self.listeners {
            t.abort();
        }
        for t in self.listeners {
            let _ = t.await;
        }
    }

    /// Serves until a listener stops (they run until the process ends).
    pub async fn wait(&mut self) {
        for t in &mut self.listeners {
            let _ = t.await;
        }
    }
}

/// TCP connections the process can hold: its file-descriptor limit (raised to the hard
/// limit at start), less room for everything else (sockets to upstreams, files, UDP).
fn tcp_budget(configured: usize) -> usize {
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
    let spare = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(256)
        / 2;
    configured.min(spare.max(16))
}

/// Raises the soft file-descriptor limit to the hard one (as systemd's `LimitNOFILE`
/// allows): every TCP client and upstream exchange holds one.
pub fn raise_fd_limit() {
    if let Ok(n) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::debug!(limit = n, "file-descriptor limit");
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
    let clock = rt.clock.clone();
    let querylog = QueryLog::open(
        settings.querylog.as_deref(),
        settings.querylog_store.as_ref(),
        &clock,
    )
    .await
    .map_err(|e| {
        let p = settings.querylog.as_deref().unwrap_or(Path::new(""));
        std::io::Error::new(
            e.kind(),
            format!("cannot open query log {}: {e}", p.display()),
        )
    })?;
    let shared = Arc::new(Shared {
        live: Arc::new(Live::new(config_path, rt)),
        cache: Cache::new(
            settings.cache_size,
            settings.serve_stale,
            settings.prefetch,
            clock.clone(),
        ),
        packets: PacketCache::new(settings.cache_size),
        exit: Exit::new(querylog, clock.clone()),
        epoch: clock.now(),
        limiter: ratelimit::Limiter::default(),
        outsiders: ratelimit::Limiter::default(),
        clock,
    });
    let handler = serve::Handler::new(shared.clone());
    let limits = tcp::Limits {
        total: tcp_budget(settings.tcp_max_connections),
        per_client: settings.tcp_max_per_client,
        idle: settings.tcp_idle,
    };
    // As many UDP sockets per address as threads may run (the CPUs this process may use).
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
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
                tracing::warn!(%addr, error = %e, "IPv6 address not available on this host; not listening there");
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
        tasks.extend(udp::spawn(&shared, &handler, udp));
        tasks.push(tcp::spawn(
            &shared,
            &handler,
            tcp,
            limits,
            tcp::Transport::Plain,
        ));
        info!(addr = %bound, "listening");
        addrs.push(bound);
    }
    // The encrypted listeners: the TCP accept loop with a TLS handshake first.
    let mut encrypted = [
        (tcp::Transport::Tls, "DoT", Vec::new()),
        (tcp::Transport::Https, "DoH", Vec::new()),
    ];
    for (transport, what, bound_addrs) in &mut encrypted {
        let listen = match transport {
            tcp::Transport::Tls => settings.dot.as_ref().map(|d| &d.listen),
            _ => settings.doh.as_ref().map(|d| &d.listen),
        };
        for addr in listen.into_iter().flatten() {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen for {what} on {addr}: {e}"))
            })?;
            let bound = listener.local_addr()?;
            tasks.push(tcp::spawn(&shared, &handler, listener, limits, *transport));
            info!(addr = %bound, "listening for {what}");
            bound_addrs.push(bound);
        }
    }
    let [(_, _, dot_addrs), (_, _, doh_addrs)] = encrypted;
    Ok(Running {
        shared,
        addrs,
        dot_addrs,
        doh_addrs,
        listeners: tasks,
    })
}
