//! The query log (SPEC §2 `[querylog]`, §12 "Query log"): one row per answered query,
//! written off the serving threads to a JSON-lines file ([`file`]), to a searchable store
//! ([`store`]: SQLite, and a server database in a fleet), or to both. A writer that falls
//! behind or fails loses rows, counted in `dnsgate_querylog_dropped_total{sink}`; a query
//! never waits for one.

mod file;
pub mod sqlite;
pub mod store;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use jiff::Timestamp;
use serde::Serialize;

use crate::clock::Clock;
use crate::label::{Phase, QueryAction, Rcode};
use crate::metrics::QUERYLOG_DROPPED_TOTAL;

pub use store::{Backend, Filter, Row, StoreLog, StoreSpec};

/// One query, as logged.
#[derive(Debug, Clone)]
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

/// The counter of rows lost by one sink (`file` or `store`), created at 0.
fn dropped_counter(sink: &'static str) -> metrics::Counter {
    let c = metrics::counter!(QUERYLOG_DROPPED_TOTAL, "sink" => sink);
    c.increment(0);
    c
}

/// The query log's writers: the file, the store, or both.
#[derive(Debug, Clone)]
pub struct QueryLog {
    file: Option<file::FileLog>,
    store: Option<StoreLog>,
}

impl QueryLog {
    /// Opens what the settings name: the JSON-lines file at `path` (an error if it cannot
    /// be opened, as before), and the store of `store`. A store that cannot be opened is
    /// logged as an error and left out: DNS keeps serving, and the API's search answers
    /// 503 until a restart finds it again. `None` when neither is configured.
    pub async fn open(
        path: Option<&Path>,
        store: Option<&StoreSpec>,
        clock: &Clock,
    ) -> std::io::Result<Option<Self>> {
        let file = match path {
            Some(p) => Some(file::FileLog::open(p).await?),
            None => None,
        };
        let store = match store {
            Some(spec) => {
                let (spec, clock) = (spec.clone(), clock.clone());
                let opened = tokio::task::spawn_blocking(move || StoreLog::open(&spec, &clock))
                    .await
                    .map_err(std::io::Error::other)?;
                match opened {
                    Ok(s) => Some(s),
                    Err(error) => {
                        tracing::error!(%error, "the query store cannot be opened: queries are served, but not stored, and the API cannot search them");
                        None
                    }
                }
            }
            None => None,
        };
        Ok((file.is_some() || store.is_some()).then_some(Self { file, store }))
    }

    /// Reopens the file (a reload does this, so logrotate can move the old one away).
    pub fn reopen(&self) {
        if let Some(f) = &self.file {
            f.reopen();
        }
    }

    /// Queues an entry for each writer; a writer far behind drops it (counted).
    pub fn log(&self, e: Entry) {
        match (&self.file, &self.store) {
            (Some(f), Some(s)) => {
                s.log(e.clone());
                f.log(e);
            }
            (Some(f), None) => f.log(e),
            (None, Some(s)) => s.log(e),
            (None, None) => {}
        }
    }

    /// Waits (blocking, at most `within`) for the store to write every queued row: at
    /// shutdown, so the last batch is kept. Whether it got there (true without a store).
    pub fn drain(&self, within: Duration) -> bool {
        self.store.as_ref().is_none_or(|s| s.drain(within))
    }

    /// The store, if one is open (the API searches it).
    pub fn store(&self) -> Option<&StoreLog> {
        self.store.as_ref()
    }
}
