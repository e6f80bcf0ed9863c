//! UDP serving: one `SO_REUSEPORT` socket per worker thread on each address, each read by
//! its own task (Unbound's and dnsdist's layout: the kernel spreads clients over sockets).
//!
//! A datagram first tries the fast path, synchronously, in the receiving task: read the
//! question from the bytes ([`wire::Query`]), check the ACL, and replay a response from
//! the [`PacketCache`] — no decoding, no allocation, no task. Everything else — a miss,
//! anything unusual, anything malformed — takes the full path in a task of its own:
//! hickory's decoder and our [`Handler`], whose response is then remembered for next time.
//! Both end in the one exit ([`crate::record`]); the client class a cached answer is
//! keyed by comes from the pipeline's own [`Client`].

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Header, MessageType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::xfer::Protocol as HProtocol;
use hickory_server::server::{ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use socket2::{Domain, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::debug;

use super::Shared;
use super::batch::{self, Inbox, Local, Outbox};
use super::fast::{Fast, Miss, fast, remember};
use super::serve::Handler;
use crate::clock::Instant;
use crate::label::Protocol;
use crate::pipeline::{Message, Request};

/// Where a datagram came from and went to, and when.
#[derive(Debug, Clone, Copy)]
struct Datagram {
    src: SocketAddr,
    local: Option<Local>,
    arrival: Instant,
}

/// Sends `bytes` to `dst` from `local` on `sock`, waiting for room if there is none.
async fn send(
    sock: &UdpSocket,
    bytes: &[u8],
    dst: SocketAddr,
    local: Option<Local>,
) -> std::io::Result<usize> {
    let fd = sock.as_raw_fd();
    loop {
        match sock.try_io(Interest::WRITABLE, || {
            batch::send_from(fd, bytes, dst, local)
        }) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => sock.writable().await?,
            done => return done,
        }
    }
}

/// Full-path queries one socket may have waiting at once.
const MAX_PENDING: usize = 4096;
/// Datagrams a read loop handles before it lets other tasks run (each yield costs a trip
/// through the scheduler: every 64 cost 10% more CPU per query than every 1024, which at
/// full load is still a turn every ~7 ms).
const YIELD_EVERY: usize = 1024;

/// The receive buffer asked for.
const RECV_BUFFER: usize = 4 << 20;

/// Binds `n` sockets sharing `addr` (with port 0, the port the first one got).
pub(super) fn bind(addr: SocketAddr, n: usize) -> std::io::Result<Vec<UdpSocket>> {
    let mut sockets: Vec<UdpSocket> = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n.max(1) {
        // (`[::]` keeps the system's dual-stack default, as the TCP listener beside it does.)
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
        s.set_reuse_port(true)?;
        // Room for a burst while a worker is busy (a reload, a slow path): what the kernel
        // allows up to net.core.rmem_max. As Unbound's `so-rcvbuf: 4m`.
        let _ = s.set_recv_buffer_size(RECV_BUFFER);
        s.set_nonblocking(true)?;
        // A wildcard socket learns where each query was sent, to answer from there.
        if addr.ip().is_unspecified() {
            batch::enable_pktinfo(s.as_raw_fd(), addr.is_ipv6())?;
        }
        s.bind(&addr.into())?;
        let udp = UdpSocket::from_std(s.into())?;
        addr = udp.local_addr()?;
        sockets.push(udp);
    }
    Ok(sockets)
}

/// Starts a task reading each socket.
pub(super) fn spawn(
    shared: &Arc<Shared>,
    handler: &Handler,
    sockets: Vec<UdpSocket>,
) -> Vec<JoinHandle<()>> {
    sockets
        .into_iter()
        .map(|s| {
            let (shared, handler) = (shared.clone(), handler.clone());
            tokio::spawn(async move { read_loop(shared, handler, Arc::new(s)).await })
        })
        .collect()
}

async fn read_loop(shared: Arc<Shared>, handler: Handler, sock: Arc<UdpSocket>) {
    let fd = sock.as_raw_fd();
    let wildcard = sock.local_addr().is_ok_and(|a| a.ip().is_unspecified());
    let (mut inbox, mut outbox) = (Inbox::new(wildcard), Outbox::default());
    // Full-path queries of this socket waiting at once; beyond, a datagram is dropped (the
    // client retries), as Unbound does past `num-queries-per-thread`.
    let pending = Arc::new(Semaphore::new(MAX_PENDING));
    let mut since_yield = 0;
    loop {
        let n = match sock.try_io(Interest::READABLE, || inbox.recv(fd)) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Err(e) = sock.readable().await {
                    debug!(error = %e, "udp readiness");
                    tokio::task::yield_now().await;
                }
                since_yield = 0;
                continue;
            }
            // ICMP errors of earlier sends (ECONNREFUSED) and the like: reported once.
            Err(e) => {
                debug!(error = %e, "udp receive");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let start = shared.clock.now();
        // Rate limits count in whole seconds of the server's clock.
        let second = start.saturating_duration_since(shared.epoch).as_secs();
        // One configuration for the whole batch (a reload lands between two batches).
        let rt = shared.live.load();
        for i in 0..n {
            let Some((packet, src, cut)) = inbox.get(i) else {
                continue;
            };
            // A datagram longer than any query we take was cut by the read: what is left
            // is not what the client sent, so it gets no answer built from it.
            if cut {
                debug!(%src, "oversized datagram dropped");
                continue;
            }
            let local = inbox.local(i);
            let mut miss = None;
            let verdict = fast(
                &shared,
                &rt,
                packet,
                src,
                start,
                second,
                outbox.next_buffer(),
                &mut miss,
            );
            if verdict == Fast::Reply {
                outbox.commit(src, local);
            } else if verdict == Fast::Silent {
                // Past a rate limit, or not a query: nothing goes back.
            } else if let Ok(permit) = pending.clone().try_acquire_owned() {
                let (shared, handler, sock) = (shared.clone(), handler.clone(), sock.clone());
                let packet = packet.to_vec();
                let from = Datagram {
                    src,
                    local,
                    arrival: start,
                };
                tokio::spawn(async move {
                    full(shared, handler, sock, packet, from, miss).await;
                    drop(permit);
                });
            } else {
                debug!(%src, "too many queries waiting; datagram dropped");
            }
        }
        drop(rt);
        flush(&sock, &mut outbox).await;
        // A socket that never runs dry must still let the other tasks of this thread
        // (other sockets, the full path, timers, TCP, reloads) have their turn.
        since_yield += n;
        if since_yield >= YIELD_EVERY {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// Sends every queued reply, waiting for room if the socket has none.
async fn flush(sock: &UdpSocket, outbox: &mut Outbox) {
    let fd = sock.as_raw_fd();
    while outbox.queued() > 0 {
        match sock.try_io(Interest::WRITABLE, || outbox.send(fd)) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if sock.writable().await.is_err() {
                    outbox.discard(outbox.queued());
                }
            }
            // This reply cannot go (say, to an address the kernel refuses): drop it, send
            // the others.
            Err(e) => {
                debug!(error = %e, "udp send");
                outbox.discard(1);
            }
        }
    }
}

/// The full path for one datagram; its answer goes into the packet cache if the fast path
/// made a key for it, and the pipeline decided for the same client class under the same
/// configuration.
async fn full(
    shared: Arc<Shared>,
    handler: Handler,
    sock: Arc<UdpSocket>,
    packet: Vec<u8>,
    from: Datagram,
    miss: Option<Miss>,
) {
    let Datagram {
        src,
        local,
        arrival,
    } = from;
    // FORMERR needs only the header, should the rest not decode.
    let mut header = [0u8; 12];
    let header_len = packet.len().min(12);
    header[..header_len].copy_from_slice(&packet[..header_len]);
    let Ok(request) = hickory_server::server::Request::from_bytes(packet, src, HProtocol::Udp)
    else {
        unreadable(&shared, &sock, &header[..header_len], from).await;
        return;
    };
    // Never answer an answer (reflection loops).
    if request.metadata.message_type == MessageType::Response {
        return;
    }
    let sent = Arc::new(Mutex::new(None));
    let capture = Capture {
        sock,
        dst: src,
        local,
        sent: miss.is_some().then(|| sent.clone()),
    };
    let listener = match (local, capture.sock.local_addr()) {
        (Some(l), Ok(bound)) => Some(SocketAddr::new(l.addr, bound.port())),
        (None, Ok(bound)) => Some(bound),
        _ => None,
    };
    let served = handler
        .serve(&request, Some(arrival), listener, None, capture)
        .await;
    let Some(miss) = miss else {
        return;
    };
    if let Some(bytes) = sent.lock().ok().and_then(|mut s| s.take()) {
        remember(&shared, miss, &served, &bytes);
    }
}

/// A datagram hickory cannot decode: the pipeline decides (FORMERR, or REFUSED for an
/// outsider) from what is known, and the answer is its header alone. A response, or
/// something too short to have a header, is dropped unanswered.
async fn unreadable(shared: &Shared, sock: &UdpSocket, header: &[u8], from: Datagram) {
    let Datagram {
        src,
        local,
        arrival,
    } = from;
    let Ok(header) = Header::read(&mut BinDecoder::new(header)) else {
        return;
    };
    if header.metadata.message_type == MessageType::Response {
        return;
    }
    let rt = shared.live.load_full();
    let mut req = Request::new(&shared.clock, src.ip(), Protocol::Udp, Message::Malformed);
    req.arrival = arrival;
    let outcome = shared.answer(&rt, &req).await;
    debug!(%src, action = outcome.action.as_str(), "unreadable query");
    let mut md = hickory_proto::op::Metadata::response_from_request(&header.metadata);
    md.response_code = outcome.reply.rcode;
    let reply = Header {
        metadata: md,
        counts: Default::default(),
    };
    shared.record(&rt, &req, &outcome);
    if let Ok(bytes) = reply.to_bytes() {
        let _ = send(sock, &bytes, src, local).await;
    }
}

/// Sends a response on our socket, keeping a copy of the bytes for the packet cache.
#[derive(Clone)]
struct Capture {
    sock: Arc<UdpSocket>,
    dst: SocketAddr,
    local: Option<Local>,
    sent: Option<Arc<Mutex<Option<Vec<u8>>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let limit = response.edns().map_or(512, |e| e.max_payload());
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(limit);
        let info = response
            .destructive_emit(&mut encoder)
            .map_err(|e| NetError::from(e.to_string()))?;
        send(&self.sock, &bytes, self.dst, self.local).await?;
        if let Some(slot) = &self.sent {
            if let Ok(mut s) = slot.lock() {
                *s = Some(bytes);
            }
        }
        Ok(info)
    }
}
