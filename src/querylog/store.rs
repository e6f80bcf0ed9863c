//! The query store (SPEC §12 "Query log"): the query log kept where the API can search it,
//! for `retention`. Rows travel from the one exit to a writer thread of the store's own
//! through a bounded queue: when the queue is full a row is dropped and counted
//! (`dnsgate_querylog_dropped_total{sink="store"}`), never waited for, so a query is not
//! slowed by the store.
//!
//! The seam is [`Backend`]: SQLite ([`super::sqlite`]) now; a server database (SPEC §14,
//! `store = "postgres"`) joins by implementing it and adding a [`StoreKind`]. What is
//! common to every backend lives here: the queue, batches (one transaction each), the
//! drop counter, failure episodes and retention rounds.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::Entry;
use crate::clock::Clock;
use crate::label::QueryAction;

/// Rows queued for the writer at most; past it they are dropped (at 20k qps, 3 s).
pub const QUEUE: usize = 65_536;
/// Rows written in one transaction at most.
pub const MAX_BATCH: usize = 16_384;
/// How long the writer lets rows gather after the first one of a batch: while it sleeps,
/// queueing a row wakes nobody (no system call on a serving thread), a batch of many rows
/// costs one commit, and the index pages of names asked often are written once for many
/// rows (a test with Python's sqlite3: 10,000 rows a batch cost a quarter less a row
/// than 2,000).
pub const LINGER: Duration = Duration::from_millis(500);
/// How often old rows are looked for.
pub const EXPIRE_EVERY: Duration = Duration::from_secs(60);
/// Rows deleted in one statement at most, so a large backlog of old rows is deleted a
/// chunk per batch and the writer never stalls long.
pub const EXPIRE_CHUNK: usize = 5_000;
/// The most rows one search returns.
pub const MAX_LIMIT: usize = 1_000;
/// The writer's niceness: it runs on what serving leaves. At 19 it gets about 1.5% of a
/// core that the serving threads want and all of one they leave idle, so at saturation
/// rows are dropped (counted) rather than queries slowed, and below it (20k qps on one
/// core measured, README) every row is written.
pub const WRITER_NICE: i32 = 19;

/// Which store, and where (from `[querylog] store`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreKind {
    /// An SQLite database file (`<state_dir>/querylog.sqlite`).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
}

/// The store's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// Which store.
    pub kind: StoreKind,
    /// Rows older than this are deleted.
    pub retention: Duration,
}

/// What a query store does. Called from the writer thread (`insert`, `expire`) and from
/// blocking tasks of the API (`search`), never from a serving thread; an implementation
/// keeps its own connections.
pub trait Backend: Send + Sync + 'static {
    /// Writes `rows` in one transaction: all of them or none.
    fn insert(&self, rows: &[Entry]) -> Result<(), Error>;
    /// Deletes at most `limit` rows older than `before`, the oldest first; how many.
    fn expire(&self, before: Timestamp, limit: usize) -> Result<usize, Error>;
    /// The rows `filter` selects, newest first, at most `filter.limit`.
    fn search(&self, filter: &Filter) -> Result<Vec<Row>, Error>;
}

/// A search (`GET /api/v1/querylog`). Absent fields select everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The client address.
    pub client: Option<IpAddr>,
    /// The device id.
    pub device: Option<String>,
    /// The user's e-mail address.
    pub user: Option<String>,
    /// A domain, lowercase without a trailing dot: the name itself and every name below
    /// it (`example.com` selects `example.com` and `www.example.com`, not `myexample.com`).
    pub name: Option<String>,
    /// What was done.
    pub action: Option<QueryAction>,
    /// Rows at or after this time.
    pub since: Option<Timestamp>,
    /// Rows before this time.
    pub until: Option<Timestamp>,
    /// The most rows returned (1 to [`MAX_LIMIT`]).
    pub limit: usize,
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            client: None,
            device: None,
            user: None,
            name: None,
            action: None,
            since: None,
            until: None,
            limit: 100,
        }
    }
}

/// A stored row: the fields and values of the JSON-lines log's line for the same query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// When it was answered (RFC 3339, UTC).
    pub time: String,
    /// Client address.
    pub client: String,
    /// Device id.
    pub device: Option<String>,
    /// User e-mail.
    pub user: Option<String>,
    /// Query name.
    pub name: String,
    /// Query type.
    #[serde(rename = "type")]
    pub qtype: Option<String>,
    /// Action taken.
    pub action: String,
    /// Deciding policy.
    pub policy: Option<String>,
    /// Phase of the decision.
    pub phase: Option<String>,
    /// The CNAME target the deciding policy matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    /// Response code.
    pub rcode: String,
    /// Time to answer.
    pub latency_ms: f64,
    /// Answered from the cache.
    pub cached: bool,
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database said no.
    #[error("{what}: {source}")]
    Database {
        /// What was being done.
        what: &'static str,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database was made by a newer dnsgate.
    #[error("{path}: schema version {found} is newer than this dnsgate's ({known})")]
    NewerSchema {
        /// The database.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// Ours.
        known: i64,
    },
}

impl Error {
    /// A backend error while doing `what`.
    pub fn database(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Database {
            what,
            source: Box::new(e),
        }
    }
}

/// Opens the backend `kind` names.
fn open_backend(kind: &StoreKind) -> Result<Arc<dyn Backend>, Error> {
    match kind {
        StoreKind::Sqlite { path } => Ok(Arc::new(super::sqlite::Sqlite::open(path)?)),
    }
}

/// A handle to the store: queue rows, search.
#[derive(Clone)]
pub struct StoreLog {
    tx: SyncSender<Msg>,
    dropped: metrics::Counter,
    backend: Arc<dyn Backend>,
}

/// What the writer is sent: a row, or a request to write what it holds now and say so
/// (a shutdown's [`StoreLog::drain`]).
enum Msg {
    Row(Entry),
    Drain(mpsc::Sender<()>),
}

impl std::fmt::Debug for StoreLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLog").finish_non_exhaustive()
    }
}

impl StoreLog {
    /// Opens the store of `spec` (blocking: the database is opened and its schema made)
    /// and starts its writer thread; rows are timed out on `clock`.
    pub fn open(spec: &StoreSpec, clock: &Clock) -> Result<Self, Error> {
        let backend = open_backend(&spec.kind)?;
        Self::start(backend, spec.retention, clock)
            .map_err(|e| Error::database("cannot start the query store's writer", e))
    }

    /// Starts a writer thread over `backend`.
    pub fn start(
        backend: Arc<dyn Backend>,
        retention: Duration,
        clock: &Clock,
    ) -> std::io::Result<Self> {
        let dropped = super::dropped_counter("store");
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let writer = Writer {
            backend: backend.clone(),
            retention,
            clock: clock.clone(),
            dropped: dropped.clone(),
            lost: None,
            next_expiry: clock.wall(),
            expiring: false,
        };
        // The writer's events go where the opener's go (as the file's writer).
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        std::thread::Builder::new()
            .name("dnsgate-querystore".into())
            .spawn(move || {
                let _events = tracing::dispatcher::set_default(&dispatch);
                crate::sys::set_thread_nice(WRITER_NICE);
                writer.run(&rx);
            })?;
        Ok(Self {
            tx,
            dropped,
            backend,
        })
    }

    /// Queues a row; drops it (counted) if the writer is far behind.
    pub fn log(&self, e: Entry) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.tx.try_send(Msg::Row(e))
        {
            self.dropped.increment(1);
        }
    }

    /// Waits (blocking) until every queued row is written, at most `within`: a shutdown
    /// calls it so the last half second of queries is not lost. Whether it got there.
    pub fn drain(&self, within: Duration) -> bool {
        // Behind every row queued before it; the writer answers once they are written.
        let (ack, done) = mpsc::channel();
        self.tx.send(Msg::Drain(ack)).is_ok() && done.recv_timeout(within).is_ok()
    }

    /// Searches (blocking: call from a blocking task).
    pub fn search(&self, filter: &Filter) -> Result<Vec<Row>, Error> {
        self.backend.search(filter)
    }

    /// The backend (tests write and expire through it directly).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
}

/// The writer: batches from the queue, one transaction each, and retention rounds
/// between them.
struct Writer {
    backend: Arc<dyn Backend>,
    retention: Duration,
    clock: Clock,
    dropped: metrics::Counter,
    /// Rows lost since writes started failing; `None` while they succeed.
    lost: Option<u64>,
    /// When old rows are next looked for.
    next_expiry: Timestamp,
    /// A retention round is under way (more chunks to delete).
    expiring: bool,
}

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<Msg>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // The last batch was full: more is waiting, so no lingering.
        let mut busy = false;
        loop {
            // Idle, wake now and then for retention; deleting a backlog, do not wait.
            let wait = if busy || self.expiring {
                Duration::ZERO
            } else {
                Duration::from_secs(1)
            };
            // Drains asked for: answered once the rows queued before them are written.
            let mut acks = Vec::new();
            match rx.recv_timeout(wait) {
                Ok(Msg::Row(e)) => {
                    if !busy {
                        std::thread::sleep(LINGER);
                    }
                    batch.push(e);
                }
                Ok(Msg::Drain(ack)) => acks.push(ack),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Rows after a drain wait for the next batch.
            while batch.len() < MAX_BATCH && acks.is_empty() {
                match rx.try_recv() {
                    Ok(Msg::Row(e)) => batch.push(e),
                    Ok(Msg::Drain(ack)) => acks.push(ack),
                    Err(_) => break,
                }
            }
            busy = batch.len() == MAX_BATCH;
            if !batch.is_empty() {
                self.write(&batch);
                batch.clear();
            }
            for ack in acks {
                let _ = ack.send(());
            }
            self.expire_some();
        }
    }

    /// Writes one batch; counts its rows as lost if the transaction fails.
    fn write(&mut self, rows: &[Entry]) {
        match self.backend.insert(rows) {
            Ok(()) => {
                if let Some(lost) = self.lost.take() {
                    info!(lost, "query store writing resumed ({lost} rows lost)");
                }
            }
            Err(error) => {
                let n = rows.len() as u64;
                self.dropped.increment(n);
                match &mut self.lost {
                    Some(lost) => *lost += n,
                    None => {
                        warn!(%error, "query store writes are failing: rows are dropped and counted in dnsgate_querylog_dropped_total{{sink=\"store\"}} until writing resumes");
                        self.lost = Some(n);
                    }
                }
            }
        }
    }

    /// One chunk of a retention round, if one is due or under way.
    fn expire_some(&mut self) {
        let now = self.clock.wall();
        if !self.expiring && now < self.next_expiry {
            return;
        }
        let cutoff = now.as_nanosecond() - self.retention.as_nanos().min(i128::MAX as u128) as i128;
        let cutoff = Timestamp::from_nanosecond(cutoff).unwrap_or(Timestamp::MIN);
        let started = Instant::now();
        match self.backend.expire(cutoff, EXPIRE_CHUNK) {
            Ok(n) => {
                self.expiring = n == EXPIRE_CHUNK;
                tracing::debug!(
                    deleted = n,
                    took_ms = started.elapsed().as_millis() as u64,
                    "query store: old rows deleted"
                );
            }
            Err(error) => {
                warn!(%error, "query store: cannot delete old rows; trying again later");
                self.expiring = false;
            }
        }
        if !self.expiring {
            self.next_expiry = now.checked_add(EXPIRE_EVERY).unwrap_or(Timestamp::MAX);
        }
    }
}
