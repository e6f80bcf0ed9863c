//! The query log: one JSON line per query (SPEC §2 `[querylog]`), written by a background
//! task so a slow disk never slows an answer. When the writer falls behind, lines are
//! dropped and counted rather than queued without bound.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use jiff::Timestamp;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tracing::warn;

use crate::label::{Phase, QueryAction, Rcode};

/// One query, as logged.
#[derive(Debug)]
pub struct Entry {
    /// When it was answered.
    pub time: Timestamp,
    /// Client address.
    pub client: IpAddr,
    /// Device id, if known.
    pub device: Option<String>,
    /// User e-mail, if known.
    pub user: Option<String>,
    /// Query name (normalised).
    pub name: String,
    /// Query type (none for a message without a question).
    pub qtype: Option<RecordType>,
    /// Action taken.
    pub action: QueryAction,
    /// Deciding policy.
    pub policy: Option<String>,
    /// Phase of the decision.
    pub phase: Option<Phase>,
    /// The CNAME target the deciding policy matched (CNAME uncloaking).
    pub cname: Option<String>,
    /// Response code.
    pub rcode: Rcode,
    /// Time to answer.
    pub latency: Duration,
    /// Answered from the cache.
    pub cached: bool,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    client: String,
    device: Option<&'a str>,
    user: Option<&'a str>,
    name: &'a str,
    #[serde(rename = "type")]
    qtype: Option<String>,
    action: &'static str,
    policy: Option<&'a str>,
    phase: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cname: Option<&'a str>,
    rcode: &'static str,
    latency_ms: f64,
    cached: bool,
}

impl Entry {
    /// The JSON line (without the newline).
    pub fn to_json(&self) -> String {
        let line = Line {
            time: self.time.to_string(),
            client: self.client.to_string(),
            device: self.device.as_deref(),
            user: self.user.as_deref(),
            name: &self.name,
            qtype: self.qtype.map(|t| t.to_string()),
            action: self.action.as_str(),
            policy: self.policy.as_deref(),
            phase: self.phase.map(Phase::as_str),
            cname: self.cname.as_deref(),
            rcode: self.rcode.as_str(),
            latency_ms: self.latency.as_secs_f64() * 1000.0,
            cached: self.cached,
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

enum Msg {
    Entry(Entry),
    /// Reopen the file (after logrotate moved it away), on reload.
    Reopen,
}

/// A handle to the query-log writer.
#[derive(Debug, Clone)]
pub struct QueryLog {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Entry(_) => "Entry",
            Self::Reopen => "Reopen",
        })
    }
}

async fn open_append(path: &Path) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
}

impl QueryLog {
    /// Opens (appends to) the log file and starts the writer task.
    pub async fn open(path: &Path) -> std::io::Result<Self> {
        let file = open_append(path).await?;
        let path = path.to_path_buf();
        let (tx, mut rx) = mpsc::channel::<Msg>(65_536);
        tokio::spawn(async move {
            let mut out = tokio::io::BufWriter::new(file);
            while let Some(msg) = rx.recv().await {
                let mut buf = String::new();
                let mut reopen = false;
                let mut next = Some(msg);
                // Drain what is already queued before writing, so bursts cost one write.
                while let Some(m) = next {
                    match m {
                        Msg::Entry(e) => {
                            buf.push_str(&e.to_json());
                            buf.push('\n');
                        }
                        Msg::Reopen => reopen = true,
                    }
                    next = rx.try_recv().ok();
                }
                if let Err(err) = async {
                    out.write_all(buf.as_bytes()).await?;
                    out.flush().await
                }
                .await
                {
                    warn!(error = %err, "query log write failed");
                }
                if reopen {
                    match open_append(&path).await {
                        Ok(f) => out = tokio::io::BufWriter::new(f),
                        Err(err) => {
                            warn!(error = %err, path = %path.display(), "cannot reopen the query log")
                        }
                    }
                }
            }
        });
        Ok(Self { tx })
    }

    /// Reopens the file (a reload does this, so logrotate can move the old one away).
    pub fn reopen(&self) {
        let _ = self.tx.try_send(Msg::Reopen);
    }

    /// Queues an entry; drops it if the writer is far behind.
    pub fn log(&self, e: Entry) {
        if self.tx.try_send(Msg::Entry(e)).is_err() {
            ::metrics::counter!("dnsgate_querylog_dropped_total").increment(1);
        }
    }
}
