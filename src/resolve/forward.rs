//! Forwarding a question to upstream servers over UDP (retried over TCP when truncated) or
//! TCP, keeping the whole response message.
//!
//! Why not `hickory_resolver`'s lookup or name-server pool: both turn NXDOMAIN, NODATA and
//! SERVFAIL into errors and the lookup path drops CNAMEs (see NOTES-hickory), while a
//! forwarder must hand the client the upstream's message as it was. The exchange itself is
//! small: a fresh socket (random source port) and a random id per query, answers checked
//! against id and question, a deadline for the whole attempt across servers.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};
use tracing::{debug, warn};

use super::{Error, Question, Transport, UpstreamSpec};
use crate::metrics;

/// The EDNS payload size we advertise upstream and downstream (DNS flag day 2020).
pub const EDNS_PAYLOAD: u16 = 1232;

/// A group of upstream servers used in turn.
#[derive(Debug)]
pub struct Forwarder {
    servers: Vec<UpstreamSpec>,
    labels: Vec<String>,
    timeout: Duration,
    next: AtomicUsize,
}

impl Forwarder {
    /// A forwarder over `servers` that gives up after `timeout` in all.
    pub fn new(servers: Vec<UpstreamSpec>, timeout: Duration) -> Self {
        let labels = servers.iter().map(ToString::to_string).collect();
        Self { servers, labels, timeout, next: AtomicUsize::new(0) }
    }

    /// The servers, as configured.
    pub fn servers(&self) -> &[UpstreamSpec] {
        &self.servers
    }

    /// Sends the question to the servers in turn (starting with the next in rotation)
    /// until one answers; the whole attempt is bounded by the timeout.
    pub async fn query(&self, q: &Question) -> Result<Message, Error> {
        if self.servers.is_empty() {
            return Err(Error::Network("no upstream servers configured".into()));
        }
        let deadline = Instant::now() + self.timeout;
        let n = self.servers.len();
        // With one server, still try twice: a lost UDP datagram should not cost the query.
        let attempts = n.max(2);
        let slice = self.timeout / attempts as u32;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut saw_timeout = false;
        let mut last_network = None;
        for i in 0..attempts {
            let idx = (start + i) % n;
            let server = &self.servers[idx];
            let attempt_deadline = if i + 1 == attempts { deadline } else { (Instant::now() + slice).min(deadline) };
            let result = match server.transport {
                Transport::Udp => self.exchange_udp(server.addr, q, attempt_deadline).await,
                Transport::Tcp => exchange_tcp(server.addr, q, attempt_deadline).await,
            };
            match result {
                Ok(m) => return Ok(m),
                Err(e) => {
                    ::metrics::counter!(metrics::UPSTREAM_ERRORS_TOTAL, "upstream" => self.labels[idx].clone()).increment(1);
                    debug!(error = %e, upstream = %self.labels[idx], "upstream attempt failed");
                    match e {
                        Error::Timeout => saw_timeout = true,
                        e => last_network = Some(e),
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
        }
        // A timeout anywhere makes the failure a timeout (EDE 22); only when every attempt
        // failed at the network level is it a network error (EDE 23).
        match last_network {
            Some(e) if !saw_timeout => {
                warn!(error = %e, "all upstreams failed");
                Err(e)
            }
            _ => Err(Error::Timeout),
        }
    }

    async fn exchange_udp(&self, addr: SocketAddr, q: &Question, deadline: Instant) -> Result<Message, Error> {
        let (id, wire) = encode_query(q)?;
        let bind: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind).await.map_err(net)?;
        sock.connect(addr).await.map_err(net)?;
        sock.send(&wire).await.map_err(net)?;
        let mut buf = vec![0u8; 65535];
        loop {
            let len = match timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => return Err(Error::Timeout),
                Ok(r) => r.map_err(net)?,
            };
            // Anything that is not the answer to our question is ignored, not an error:
            // it may be a late answer or a spoofing attempt.
            let Ok(msg) = Message::from_vec(&buf[..len]) else { continue };
            if !answers(&msg, id, q) {
                continue;
            }
            if msg.metadata.truncation {
                debug!(%addr, "truncated answer, retrying over TCP");
                return exchange_tcp(addr, q, deadline).await;
            }
            return Ok(msg);
        }
    }
}

async fn exchange_tcp(addr: SocketAddr, q: &Question, deadline: Instant) -> Result<Message, Error> {
    let (id, wire) = encode_query(q)?;
    let io = async {
        let mut stream = TcpStream::connect(addr).await.map_err(net)?;
        let _ = stream.set_nodelay(true);
        let mut framed = Vec::with_capacity(wire.len() + 2);
        framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
        framed.extend_from_slice(&wire);
        stream.write_all(&framed).await.map_err(net)?;
        loop {
            let len = stream.read_u16().await.map_err(net)? as usize;
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await.map_err(net)?;
            let msg = Message::from_vec(&body).map_err(|e| Error::Network(format!("bad response: {e}")))?;
            if answers(&msg, id, q) {
                return Ok(msg);
            }
        }
    };
    timeout_at(deadline, io).await.unwrap_or(Err(Error::Timeout))
}

fn net(e: std::io::Error) -> Error {
    Error::Network(e.to_string())
}

fn encode_query(q: &Question) -> Result<(u16, Vec<u8>), Error> {
    let id: u16 = rand::random();
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    let mut query = Query::query(q.name.clone(), q.qtype);
    query.set_query_class(q.qclass);
    m.add_query(query);
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    edns.set_dnssec_ok(q.dnssec_ok);
    m.set_edns(edns);
    let wire = m.to_vec().map_err(|e| Error::Network(format!("cannot encode query: {e}")))?;
    Ok((id, wire))
}

/// Whether `msg` is the response to our query `id` for `q`.
fn answers(msg: &Message, id: u16, q: &Question) -> bool {
    msg.metadata.id == id
        && msg.metadata.message_type == MessageType::Response
        && msg.queries.len() == 1
        && msg.queries[0].name() == &q.name
        && msg.queries[0].query_type() == q.qtype
        && msg.queries[0].query_class() == q.qclass
}
