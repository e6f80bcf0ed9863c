//! The command line: `run`, `check`, `explain`, `test`.
#![allow(clippy::print_stdout)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracing::{error, info};

use crate::lists::url::{Mode, UrlLists};
use crate::runtime::Runtime;

/// Prints a line to stdout; a closed pipe (`dnsgate explain … | head`) ends the program
/// quietly instead of panicking.
fn emit(line: &str) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

macro_rules! outln {
    ($($t:tt)*) => { emit(&format!($($t)*)) };
}

mod explain;
pub mod import;
mod test;
mod token;

pub use token::TokenCommand;

/// dnsgate: a filtering DNS resolver with Cloudflare Gateway-style policies.
#[derive(Debug, Parser)]
#[command(name = "dnsgate", version, about)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DNS.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "/etc/dnsgate/dnsgate.toml")]
        config: PathBuf,
    },
    /// Load everything `run` would, print a summary or every error, and exit.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = "/etc/dnsgate/dnsgate.toml")]
        config: PathBuf,
    },
    /// Evaluate the policies for one query and say why.
    Explain {
        /// Configuration file.
        #[arg(short, long, default_value = "/etc/dnsgate/dnsgate.toml")]
        config: PathBuf,
        /// Query name.
        name: String,
        /// Query type.
        #[arg(default_value = "A")]
        qtype: String,
        /// Client address.
        #[arg(long, default_value = "127.0.0.1")]
        client: IpAddr,
        /// DoH token identifying the device.
        #[arg(long)]
        token: Option<String>,
        /// Post-resolution answer addresses to use instead of resolving.
        #[arg(long)]
        resolved: Vec<IpAddr>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Ask the endpoints of matching `external` policies (signed requests, as
        /// serving does); without it they are not asked and `--stub` or `on_error` decides.
        #[arg(long)]
        external: bool,
        /// A stubbed verdict for an `external` policy: `POLICY=allow|block|continue`.
        #[arg(long, value_name = "POLICY=VERDICT")]
        stub: Vec<String>,
    },
    /// Run policy test files: each case one query through the policies, judged against
    /// what it expects. Prints each failing case, then `N passed, M failed`.
    Test {
        /// Policy test files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Bring policies from elsewhere (SPEC §13).
    Import {
        /// From where.
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// API tokens (SPEC §12).
    Token {
        /// What to do with tokens.
        #[command(subcommand)]
        command: TokenCommand,
    },
}

/// What `dnsgate import` reads.
#[derive(Debug, Subcommand)]
pub enum ImportFrom {
    /// Cloudflare Gateway DNS rules and lists, as the Cloudflare API returns them, into
    /// `DIR/policies.toml` (to include) and `DIR/lists/*.txt`; what cannot be carried over
    /// is named on standard error.
    Cloudflare {
        /// The rules: the answer of `GET /accounts/{id}/gateway/rules`.
        #[arg(long)]
        rules: PathBuf,
        /// The lists: the answer of `GET /accounts/{id}/gateway/lists`, each list with
        /// its `items` added.
        #[arg(long)]
        lists: Option<PathBuf>,
        /// Where to write.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs a parsed command line.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Run { config } => serve(&config).await,
        Command::Check { config } => check(&config),
        Command::Test { files } => test::run(&files).await,
        Command::Token { command } => token::run(command),
        Command::Import {
            from: ImportFrom::Cloudflare { rules, lists, out },
        } => import::run(&rules, lists.as_deref(), &out),
        Command::Explain {
            config,
            name,
            qtype,
            client,
            token,
            resolved,
            json,
            external,
            stub,
        } => {
            let query = explain::Query {
                name: &name,
                qtype: &qtype,
                client,
                token: token.as_deref(),
                resolved: &resolved,
                external,
                stubs: &stub,
            };
            explain::explain(&config, &query, json).await
        }
    }
}

/// A query name typed by a person (`explain`'s NAME, a policy test's `query`), as a query
/// would carry it: a name in Unicode in its ASCII (punycode) form, the whole name at once
/// (so `。` separates labels, as UTS 46 says), and `_` allowed as lists allow it.
fn query_name(name: &str) -> anyhow::Result<hickory_proto::rr::Name> {
    let parsed = crate::lists::name_to_ascii(name)
        .map_err(anyhow::Error::from)
        .and_then(|ascii| Ok(hickory_proto::rr::Name::from_ascii(&*ascii)?));
    let mut qname = parsed.with_context(|| format!("`{name}` is not a DNS name"))?;
    qname.set_fqdn(true);
    Ok(qname)
}

fn load_or_report(config: &Path) -> anyhow::Result<Runtime> {
    report(config, Runtime::load(config))
}

fn report(
    config: &Path,
    loaded: Result<Runtime, Vec<crate::diag::Diagnostic>>,
) -> anyhow::Result<Runtime> {
    loaded.map_err(|diags| {
        for d in &diags {
            eprintln!("{d}");
        }
        anyhow::anyhow!("{} error(s) in {}", diags.len(), config.display())
    })
}

fn check(config: &Path) -> anyhow::Result<()> {
    let rt = load_or_report(config)?;
    for w in &rt.policies.warnings {
        let at = format!("{}:{}:{}", w.path.display(), w.line, w.col);
        eprintln!("{at}: warning: {}", w.message);
    }
    outln!("{}", rt.summary());
    Ok(())
}

async fn serve(config: &Path) -> anyhow::Result<()> {
    // Signal handlers first: a SIGHUP (say, `systemctl reload` right after start) must
    // never hit the default action, which would end the process.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // The recorder comes before the configuration, whose per-policy counters register
    // with it at load.
    let handle = crate::metrics::install_recorder();
    crate::metrics::register_zeroes();
    // URL lists are fetched (those without a saved copy) while loading: off the async
    // threads, like a reload. A first fetch may take up to its 120 s limit: tell systemd
    // (whose start timeout is 90 s by default) to wait that long.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::ExtendTimeoutUsec(150_000_000)]);
    let url_lists = Arc::new(UrlLists::new(Mode::Serve));
    let loaded = {
        let (path, url_lists) = (config.to_path_buf(), url_lists.clone());
        let load = tokio::task::spawn_blocking(move || {
            Runtime::load_with(&path, &url_lists, &crate::clock::Clock::new())
        });
        // `systemctl stop` during a slow first fetch ends the start, not after it.
        tokio::select! {
            loaded = load => loaded?,
            _ = term.recv() => {
                info!("stopped while loading");
                return Ok(());
            }
        }
    };
    let rt = report(config, loaded)?;
    info!(summary = %rt.summary(), config = %config.display(), "configuration loaded");
    if let (Some(addr), Some(handle)) = (rt.settings.metrics, handle) {
        let listener = crate::metrics::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for metrics"))?;
        tokio::spawn(crate::metrics::serve(listener, handle));
    }
    crate::server::raise_fd_limit();
    let mut running = crate::server::start(config, rt).await?;
    if let Some(api) = crate::api::start(running.shared.clone()).await? {
        info!(addr = %api.addr, "admin API listening");
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let shared = running.shared.clone();
    // URL lists are refreshed in the background and swapped in through the same `Live` as
    // reloads, so a reload and a list swap never interleave.
    tokio::spawn(crate::lists::url::refresh::run(shared.live.clone()));
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading");
                let s = shared.clone();
                // Loading lists can take a while: not in the way of SIGTERM. Reloads run
                // one at a time (the `Live` lock), in the order asked.
                tokio::spawn(async move {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                    let _ = s.reload().await;
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                });
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = running.wait() => {
                error!("listeners stopped");
                bail!("listeners stopped");
            }
        }
    }
    info!("shutting down");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let shared = running.shared.clone();
    running.shutdown().await;
    // The store's last batch (up to half a second of queries) is written before exiting.
    if let Some(log) = shared.exit.querylog().cloned() {
        let drained =
            tokio::task::spawn_blocking(move || log.drain(std::time::Duration::from_secs(3)))
                .await
                .unwrap_or(false);
        if !drained {
            tracing::warn!("the query store did not write its last rows within 3 s; they are lost");
        }
    }
    Ok(())
}
