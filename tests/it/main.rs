//! Integration tests: a real dnsgate server on 127.0.0.1:0 in front of a real hickory
//! authoritative upstream, queried over real sockets.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod abuse;
mod api;
mod apimatrix;
mod apiwrite;
mod cli;
mod client;
mod cname;
mod deb;
mod doh;
mod dot;
mod explain;
mod expressions;
mod external;
mod fastpath;
mod faults;
mod forwarder;
mod grafana;
mod hierarchy;
mod idn;
mod import;
mod layers;
mod listeners;
mod metrics;
mod policies;
mod policytests;
mod prefetch;
mod protocol;
mod querylog;
mod recursion;
mod reload;
mod scim;
mod serving;
mod signed;
mod store;
mod tcp;
mod tlsup;
mod tokencli;
mod unbound;
mod upstream;
mod urllists;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use dnsgate::runtime::Runtime;
use dnsgate::server::{self, Running};

/// A dnsgate instance under test with its upstream and its files.
pub struct Gate {
    /// Where to send queries.
    pub addr: SocketAddr,
    /// The server.
    pub running: Running,
    /// The upstream it forwards to.
    pub upstream: upstream::Upstream,
    /// Holds the configuration and list files.
    pub dir: tempfile::TempDir,
}

impl Gate {
    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("dnsgate.toml")
    }
}

/// A loopback UDP port nobody listens on: the kernel answers "connection refused" at once.
pub fn closed_port() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Writes `files` (name, contents) into `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// The query log at `path` as JSON values, read again until `done` says everything
/// expected is there (at most 10 s: a test bound, not a check).
pub async fn query_log(
    path: &Path,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for _ in 0..200 {
        lines = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        if done(&lines) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    lines
}

/// The standard head of a test configuration: loopback listener, the test upstream.
pub fn base_config(upstream: SocketAddr) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstream]\nservers = [\"udp://{upstream}\"]\ntimeout_ms = 1000\n\n"
    )
}

/// Starts a gate whose configuration is `base_config` followed by `body`. `{UPSTREAM}` in
/// `body` and files is replaced by the upstream address.
pub async fn gate(body: &str, files: &[(&str, &str)]) -> Gate {
    let up = upstream::start().await;
    let text = format!("{}{}", base_config(up.addr), body);
    gate_with(up, &text, files).await
}

/// Starts a gate with a complete configuration text.
pub async fn gate_with(up: upstream::Upstream, config: &str, files: &[(&str, &str)]) -> Gate {
    let dir = tempfile::tempdir().unwrap();
    let upstream_addr = up.addr.to_string();
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| (n.to_string(), t.replace("{UPSTREAM}", &upstream_addr)))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    write_files(dir.path(), &refs);
    let cfg = dir.path().join("dnsgate.toml");
    std::fs::write(&cfg, config.replace("{UPSTREAM}", &upstream_addr)).unwrap();
    let rt = match Runtime::load(&cfg) {
        Ok(rt) => rt,
        Err(d) => panic!(
            "test config does not load:\n{}",
            dnsgate::diag::Diagnostics(d)
        ),
    };
    let running = server::start(&cfg, rt).await.unwrap();
    let addr = running.addrs[0];
    Gate {
        addr,
        running,
        upstream: up,
        dir,
    }
}
