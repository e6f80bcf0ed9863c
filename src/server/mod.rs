//! Listeners and the shared serving state.
//!
//! UDP is ours ([`udp`]: a socket per worker, a packet-cache fast path); hickory-server
//! owns TCP (a task per connection). [`handler::Handler`] answers both. The loaded configuration sits in an `ArcSwap`, so a
//! reload swaps it whole between two queries and no query is dropped (SPEC §7).

mod batch;
pub mod handler;
pub mod packet;
mod udp;
pub mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{error, info, warn};

use crate::diag::Diagnostic;
use crate::metrics;
use crate::querylog::QueryLog;
use crate::resolve::Cache;
use packet::PacketCache;
use crate::runtime::Runtime;

/// State shared by every query and by reloads.
#[derive(Debug)]
pub struct Shared {
    /// The current configuration; each query takes one snapshot.
    pub runtime: ArcSwap<Runtime>,
    /// The message cache (kept across reloads).
    pub cache: Cache,
    /// The query log.
    pub querylog: Option<QueryLog>,
    /// Finished UDP responses (kept across reloads; entries of an older configuration
    /// are never served).
    pub packets: PacketCache,
    /// The per-query metric series.
    pub hot: metrics::Hot,
    /// The configuration file reloads read.
    pub config_path: PathBuf,
}

/// A running server.
pub struct Running {
    /// The shared state.
    pub shared: Arc<Shared>,
    /// The bound DNS addresses (UDP and TCP on each).
    pub addrs: Vec<SocketAddr>,
    server: Server<handler::Handler>,
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

/// Starts serving `rt` on its listen addresses.
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
    publish_list_gauges(&rt);
    let shared = Arc::new(Shared {
        runtime: ArcSwap::from_pointee(rt),
        cache: Cache::new(settings.cache_size, settings.serve_stale),
        packets: PacketCache::new(settings.cache_size),
        hot: metrics::Hot::new(),
        querylog,
        config_path: config_path.to_path_buf(),
    });
    let handler = handler::Handler::new(shared.clone());
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

fn publish_list_gauges(rt: &Runtime) {
    for l in &rt.list_info {
        ::metrics::gauge!(metrics::LIST_ENTRIES, "list" => l.name.clone()).set(l.entries as f64);
    }
}

/// Hands freed memory back to the system after an old configuration is dropped: its lists
/// were tens of megabytes, and glibc would otherwise keep them as free heap, so every
/// reload would look like a leak of one configuration's size. (Queries still holding the
/// old configuration free it a moment later; the next reload trims that.)
pub fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Reloads the configuration (SIGHUP): the new one replaces the old only if all of it
/// loads; otherwise the old keeps serving and the errors are returned.
pub fn reload(shared: &Shared) -> Result<(), Vec<Diagnostic>> {
    if let Some(log) = &shared.querylog {
        log.reopen();
    }
    // URL lists: the copies this process holds are taken as they are (SPEC §7 reloads
    // the configuration, not the network); only a list without one is fetched.
    let url_lists = shared.runtime.load().url_lists.clone();
    match Runtime::load_with(&shared.config_path, &url_lists) {
        Ok(mut rt) => {
            rt.adopt_upstreams(&shared.runtime.load());
            if rt.settings != shared.runtime.load().settings {
                warn!(
                    "listen, metrics, query log and cache settings take effect at the next restart"
                );
            }
            publish_list_gauges(&rt);
            let summary = rt.summary();
            let old = shared.runtime.swap(Arc::new(rt));
            // Lists the new configuration dropped: their series go to 0 (a recorder cannot
            // delete a series).
            let current = shared.runtime.load();
            for l in &old.list_info {
                if !current.list_info.iter().any(|n| n.name == l.name) {
                    ::metrics::gauge!(metrics::LIST_ENTRIES, "list" => l.name.clone()).set(0.0);
                }
            }
            drop(current);
            drop(old);
            release_memory();
            info!(summary = %summary, "configuration reloaded");
            ::metrics::counter!(metrics::CONFIG_RELOADS_TOTAL, "result" => "success").increment(1);
            Ok(())
        }
        Err(diags) => {
            for d in &diags {
                error!("{d}");
            }
            error!(
                errors = diags.len(),
                "reload rejected; the running configuration keeps serving"
            );
            ::metrics::counter!(metrics::CONFIG_RELOADS_TOTAL, "result" => "failure").increment(1);
            Err(diags)
        }
    }
}
