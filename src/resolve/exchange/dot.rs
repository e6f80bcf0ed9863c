//! DNS over TLS to one server, pipelined (RFC 7858 §3.3-3.4, RFC 7766 §6.2.1.1): each
//! connection carries many questions at once, answered in any order and matched by id.
//!
//! A connection is a task that owns the TLS stream: questions reach it over a channel, get
//! an id no other question in flight on it has, and are written together when several are
//! ready; answers are handed back by id. A question waits for the handshake of a new
//! connection instead of opening its own, so a burst opens one connection, not a hundred.
//! A connection closes itself after [`IDLE`] without questions, or when the server closes
//! it; a question lost that way on a connection that had already answered (the server
//! closed it while idle) is asked again once on a new one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::resolve::Error;

/// How long a connection is kept without questions (servers close theirs after 10-30 s).
const IDLE: Duration = Duration::from_secs(10);
/// Questions in flight on one connection before another is opened.
const PER_CONNECTION: usize = 64;
/// Connections to one server at most; past it the least busy takes more.
const MAX_CONNECTIONS: usize = 4;
/// How long a handshake may take (each question also has its own deadline).
const HANDSHAKE: Duration = Duration::from_secs(5);

/// Where the answer to one question goes: its message bytes, or why there are none.
type Reply = oneshot::Sender<Result<Vec<u8>, Error>>;

/// A question for a connection: the framed query (length prefix, then the message) and
/// where its answer goes.
struct Job {
    framed: Vec<u8>,
    reply: Reply,
}

/// One pipelined connection, as the pool sees it.
struct Conn {
    jobs: mpsc::UnboundedSender<Job>,
    /// Questions given to it and not yet answered or abandoned.
    in_flight: AtomicUsize,
    /// It has answered at least once (a failure then may be a close while idle).
    answered: AtomicBool,
    /// Its task has ended: it takes no more questions.
    dead: AtomicBool,
}

/// The pipelined connections to one DoT server.
#[derive(Default)]
pub(crate) struct Pool {
    conns: Mutex<Vec<Arc<Conn>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.conns.lock().map(|c| c.len()).unwrap_or(0);
        f.debug_struct("Pool").field("connections", &n).finish()
    }
}

/// Where a server is and how it proves it.
#[derive(Clone, Copy)]
pub(crate) struct Server<'a> {
    pub addr: SocketAddr,
    pub name: &'a str,
    pub config: &'a Arc<rustls::ClientConfig>,
}

impl Pool {
    /// The connection a new question goes to, opening one when every live one is busy.
    fn pick(&self, server: Server<'_>) -> Arc<Conn> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|c| !c.dead.load(Ordering::Acquire));
        let least = conns
            .iter()
            .min_by_key(|c| c.in_flight.load(Ordering::Relaxed))
            .cloned();
        match least {
            Some(c)
                if c.in_flight.load(Ordering::Relaxed) < PER_CONNECTION
                    || conns.len() >= MAX_CONNECTIONS =>
            {
                c
            }
            _ => {
                let c = open(server);
                conns.push(c.clone());
                c
            }
        }
    }

    /// Sends `framed` (a length-prefixed query) and returns the answer's message bytes,
    /// its id as the query's. Time limits are the caller's.
    pub(crate) async fn ask(&self, server: Server<'_>, framed: &[u8]) -> Result<Vec<u8>, Error> {
        let conn = self.pick(server);
        let reused = conn.answered.load(Ordering::Acquire);
        match send(&conn, framed).await {
            Err(Lost) if reused => {
                // Closed by the server while idle: once more, on a new connection.
                conn.dead.store(true, Ordering::Release);
                let conn = self.pick(server);
                send(&conn, framed).await.map_err(|Lost| closed())?
            }
            Err(Lost) => Err(closed()),
            Ok(r) => r,
        }
    }
}

/// The connection ended before it answered.
struct Lost;

fn closed() -> Error {
    Error::Network("DoT connection closed before the answer".into())
}

/// Puts one question on `conn` and waits for its answer.
async fn send(conn: &Conn, framed: &[u8]) -> Result<Result<Vec<u8>, Error>, Lost> {
    let (reply, answer) = oneshot::channel();
    conn.in_flight.fetch_add(1, Ordering::Relaxed);
    // Counted down however this ends (answered, lost, or the caller's deadline).
    struct Done<'a>(&'a AtomicUsize);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let _done = Done(&conn.in_flight);
    let job = Job {
        framed: framed.to_vec(),
        reply,
    };
    if conn.jobs.send(job).is_err() {
        return Err(Lost);
    }
    let id = [framed[2], framed[3]];
    match answer.await {
        Ok(Ok(mut body)) => {
            conn.answered.store(true, Ordering::Release);
            body[..2].copy_from_slice(&id);
            Ok(Ok(body))
        }
        Ok(Err(e)) => Ok(Err(e)),
        Err(_) => Err(Lost),
    }
}

/// A new connection: its task starts the handshake at once; questions queue meanwhile.
fn open(server: Server<'_>) -> Arc<Conn> {
    let (jobs, rx) = mpsc::unbounded_channel();
    let conn = Arc::new(Conn {
        jobs,
        in_flight: AtomicUsize::new(0),
        answered: AtomicBool::new(false),
        dead: AtomicBool::new(false),
    });
    let (addr, name, config) = (server.addr, server.name.to_owned(), server.config.clone());
    let c = conn.clone();
    tokio::spawn(async move {
        run(addr, &name, &config, rx).await;
        c.dead.store(true, Ordering::Release);
    });
    conn
}

/// A connection's life: handshake, then questions out and answers in until it idles,
/// fails or is closed.
async fn run(
    addr: SocketAddr,
    name: &str,
    config: &Arc<rustls::ClientConfig>,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let stream = match tokio::time::timeout(HANDSHAKE, super::connect_tls(addr, name, config)).await
    {
        Ok(Ok(s)) => s,
        failed => {
            let e = match failed {
                Ok(Err(e)) => e,
                _ => Error::Network(format!("TLS with {addr} ({name}): handshake timed out")),
            };
            // Every question that came for this connection gets its error (a certificate
            // that does not verify is an answer too: never plain DNS instead).
            rx.close();
            while let Some(job) = rx.recv().await {
                let _ = job.reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let pending: Mutex<HashMap<u16, Reply>> = Mutex::new(HashMap::new());
    let pending = &pending;
    let writer = async {
        let mut out = Vec::new();
        loop {
            let first = match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(_) => {
                    // Questions whose askers gave up are not worth keeping it open for.
                    let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                    p.retain(|_, reply| !reply.is_closed());
                    if p.is_empty() {
                        return;
                    }
                    continue;
                }
            };
            out.clear();
            {
                let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                let mut job = Some(first);
                while let Some(Job { mut framed, reply }) = job.take() {
                    if framed.len() >= 4 && !reply.is_closed() {
                        let id = loop {
                            let id: u16 = rand::random();
                            if !p.contains_key(&id) {
                                break id;
                            }
                        };
                        framed[2..4].copy_from_slice(&id.to_be_bytes());
                        p.insert(id, reply);
                        out.extend_from_slice(&framed);
                    }
                    if p.len() < 65_000 {
                        job = rx.try_recv().ok();
                    }
                }
            }
            if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
    };
    let reader = async {
        let mut body = Vec::new();
        loop {
            let Ok(len) = rd.read_u16().await else { return };
            body.resize(len as usize, 0);
            if rd.read_exact(&mut body).await.is_err() || body.len() < 2 {
                return;
            }
            let id = u16::from_be_bytes([body[0], body[1]]);
            let reply = pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            // An id nobody waits for (an asker that gave up) is dropped.
            if let Some(reply) = reply {
                let _ = reply.send(Ok(std::mem::take(&mut body)));
            }
        }
    };
    tokio::select! {
        () = writer => {}
        () = reader => {}
    }
    // Questions queued behind the end are lost (their askers may ask again); those in
    // flight see their reply channels dropped.
    rx.close();
    while rx.try_recv().is_ok() {}
}
