//! DNS over TCP (RFC 7766), ours rather than hickory-server's, so that connections are a
//! bounded resource: at most `tcp_max_connections` at once (the idlest is closed to make
//! room, RFC 7766 §6.2.2) and `tcp_max_per_client` from one address (more are closed at
//! once, so one client cannot push the others out), an idle timeout, and an accept loop
//! that backs off when the process runs out of file descriptors instead of spinning.
//!
//! A connection may carry many queries (pipelining); each is answered by the full path in
//! a task of its own, at most [`IN_FLIGHT_PER_CONNECTION`] at once, and the answers go out
//! in the order they are ready. A frame that cannot be read closes that connection only.
//!
//! DNS over TLS (RFC 7858) is the same protocol inside TLS: a DoT listener is this accept
//! loop with a handshake first ([`Transport::Tls`]). The certificate is the one of the
//! configuration in service at the handshake (a reload swaps it), and the client's SNI
//! names its device when it is one label below `[server] hostname` (SPEC §10).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::NetError;
use hickory_server::net::xfer::Protocol as HProtocol;
use hickory_server::server::{Request as HRequest, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::Shared;
use super::fast::{self, Fast, remember};
use super::serve::Handler;
use super::wire;
use crate::clock::Instant;
use crate::label::Protocol;
use crate::pipeline::{DeviceHint, Message, Request};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// DNS over TCP.
    Plain,
    /// DNS over TLS.
    Tls,
    /// DNS over HTTPS.
    Https,
}

/// Queries of one connection answered at once; more wait to be read.
pub const IN_FLIGHT_PER_CONNECTION: usize = 32;
/// How long the accept loop pauses when the process has no file descriptor left.
const FD_BACKOFF: Duration = Duration::from_millis(100);

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections at once, in all.
    pub total: usize,
    /// Connections at once from one address.
    pub per_client: usize,
    /// A connection with no query for this long is closed.
    pub idle: Duration,
}

/// The open connections.
#[derive(Debug, Default)]
struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    conns: HashMap<u64, Conn>,
}

#[derive(Debug)]
struct Conn {
    peer: IpAddr,
    last: Instant,
    close: Arc<Notify>,
}

/// A registered connection: removed from the registry when dropped.
pub(super) struct Slot {
    registry: Arc<Registry>,
    id: u64,
    close: Arc<Notify>,
}

impl Slot {
    /// Notes a query on this connection (the idlest is the one closed to make room).
    pub(super) fn touch(&self, now: Instant) {
        self.registry.touch(self.id, now);
    }

    /// Resolves when the connection is to be closed to make room.
    pub(super) async fn closed(&self) {
        self.close.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.lock().conns.remove(&self.id);
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a connection from `peer`, closing the idlest one if all places are taken;
    /// `None` if `peer` already has its share.
    fn admit(self: &Arc<Self>, peer: IpAddr, limits: Limits, now: Instant) -> Option<Slot> {
        let mut inner = self.lock();
        if inner.conns.values().filter(|c| c.peer == peer).count() >= limits.per_client {
            return None;
        }
        while inner.conns.len() >= limits.total {
            let Some(idlest) = inner
                .conns
                .iter()
                .min_by_key(|(_, c)| c.last)
                .map(|(id, _)| *id)
            else {
                break;
            };
            if let Some(c) = inner.conns.remove(&idlest) {
                c.close.notify_one();
            }
        }
        inner.next += 1;
        let id = inner.next;
        let close = Arc::new(Notify::new());
        inner.conns.insert(
            id,
            Conn {
                peer,
                last: now,
                close: close.clone(),
            },
        );
        Some(Slot {
            registry: self.clone(),
            id,
            close,
        })
    }

    /// Closes the idlest connection (the process ran out of file descriptors).
    fn close_idlest(&self) {
        let mut inner = self.lock();
        if let Some(id) = inner
            .conns
            .iter()
            .min_by_key(|(_, c)| c.last)
            .map(|(id, _)| *id)
        {
            if let Some(c) = inner.conns.remove(&id) {
                c.close.notify_one();
            }
        }
    }

    fn touch(&self, id: u64, now: Instant) {
        if let Some(c) = self.lock().conns.get_mut(&id) {
            c.last = now;
        }
    }

    fn len(&self) -> usize {
        self.lock().conns.len()
    }
}

/// Starts accepting on `listener`.
pub(super) fn spawn(
    shared: &Arc<Shared>,
    handler: &Handler,
    listener: TcpListener,
    limits: Limits,
    transport: Transport,
) -> JoinHandle<()> {
    let (shared, handler) = (shared.clone(), handler.clone());
    tokio::spawn(async move { accept_loop(shared, handler, listener, limits, transport).await })
}

fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

async fn accept_loop(
    shared: Arc<Shared>,
    handler: Handler,
    listener: TcpListener,
    limits: Limits,
    transport: Transport,
) {
    let registry = Arc::new(Registry::default());
    let mut starved = false;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if starved {
                    starved = false;
                    info!(connections = registry.len(), "TCP accepting again");
                }
                let Some(slot) =
                    registry.admit(peer.ip().to_canonical(), limits, shared.clock.now())
                else {
                    debug!(%peer, "too many TCP connections from this client; closed");
                    continue;
                };
                let (shared, handler) = (shared.clone(), handler.clone());
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().ok();
                    match transport {
                        Transport::Plain => {
                            let via = (Protocol::Tcp, DeviceHint::None);
                            connection(
                                shared,
                                handler,
                                stream,
                                (peer, local),
                                slot,
                                limits.idle,
                                via,
                            )
                            .await;
                        }
                        Transport::Https => {
                            let Some((tls, _)) = handshake(&shared, stream, transport).await else {
                                debug!(%peer, "TLS handshake failed");
                                return;
                            };
                            let idle = limits.idle;
                            super::doh::connection(shared, handler, tls, (peer, local), slot, idle)
                                .await;
                        }
                        Transport::Tls => {
                            let Some((tls, device)) = handshake(&shared, stream, transport).await
                            else {
                                debug!(%peer, "TLS handshake failed");
                                return;
                            };
                            let via = (Protocol::Dot, device);
                            connection(shared, handler, tls, (peer, local), slot, limits.idle, via)
                                .await;
                        }
                    }
                });
            }
            Err(e) if out_of_descriptors(&e) => {
                // Warned once per episode; the idlest connection makes room, and the loop
                // waits rather than spin on a listener that stays readable.
                if !starved {
                    starved = true;
                    warn!(error = %e, connections = registry.len(), "out of file descriptors: closing idle TCP connections");
                }
                registry.close_idlest();
                tokio::time::sleep(FD_BACKOFF).await;
            }
            Err(e) => {
                // A connection reset before it was accepted, and the like.
                debug!(error = %e, "TCP accept");
            }
        }
    }
}

/// Completes a TLS handshake with the certificate in service now; the device hint from
/// the SNI: `<label>.<hostname>` names a device by label, anything else names none.
async fn handshake(
    shared: &Shared,
    stream: TcpStream,
    transport: Transport,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, DeviceHint)> {
    let rt = shared.live.load_full();
    let config = match transport {
        Transport::Https => rt.settings.doh.as_ref()?.tls.clone(),
        _ => rt.settings.dot.as_ref()?.tls.clone(),
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .ok()?
        .ok()?;
    let device = tls
        .get_ref()
        .1
        .server_name()
        .and_then(|sni| device_label(sni, rt.hostname.as_deref()?))
        .map_or(DeviceHint::None, |l| DeviceHint::Label(l.into()));
    Some((tls, device))
}

/// The device label in an SNI: the one label before `.hostname` (case-insensitive).
pub(super) fn device_label<'a>(sni: &'a str, hostname: &str) -> Option<&'a str> {
    let sni = sni.trim_end_matches('.');
    let (label, rest) = sni.split_once('.')?;
    (rest.eq_ignore_ascii_case(hostname) && !label.is_empty()).then_some(label)
}

/// Serves one connection until it closes, idles out, breaks a frame or is closed to make
/// room.
async fn connection<S>(
    shared: Arc<Shared>,
    handler: Handler,
    stream: S,
    (peer, local): (SocketAddr, Option<SocketAddr>),
    slot: Slot,
    idle: Duration,
    via: (Protocol, DeviceHint),
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let via = Arc::new(via);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(IN_FLIGHT_PER_CONNECTION);
    let writer = tokio::spawn(async move {
        // Answers ready together go out in one write (one TLS record, one syscall).
        let mut batch = Vec::new();
        while let Some(framed) = rx.recv().await {
            batch.clear();
            batch.extend_from_slice(&framed);
            while batch.len() < 16 * 1024 {
                match rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if wr.write_all(&batch).await.is_err() {
                break;
            }
        }
    });
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_PER_CONNECTION));
    loop {
        let frame = async {
            let len = rd.read_u16().await?;
            let mut body = vec![0u8; usize::from(len)];
            rd.read_exact(&mut body).await?;
            Ok::<_, std::io::Error>(body)
        };
        let body = tokio::select! {
            read = tokio::time::timeout(idle, frame) => match read {
                Ok(Ok(body)) if body.len() >= 12 => body,
                // Closed, broken, a frame too short to be a message, or idle too long.
                _ => break,
            },
            () = slot.close.notified() => break,
        };
        slot.registry.touch(slot.id, shared.clock.now());
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (shared, handler, tx, via) = (shared.clone(), handler.clone(), tx.clone(), via.clone());
        tokio::spawn(async move {
            query(&shared, &handler, body, (peer, local), &via, tx).await;
            drop(permit);
        });
    }
    drop(tx);
    // Answers already being made still go out before the connection closes.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// Answers one framed query.
async fn query(
    shared: &Shared,
    handler: &Handler,
    body: Vec<u8>,
    (peer, local): (SocketAddr, Option<SocketAddr>),
    via: &(Protocol, DeviceHint),
    tx: mpsc::Sender<Vec<u8>>,
) {
    let arrival = shared.clock.now();
    // The packet cache first: a replay needs no decoding and no pipeline.
    let mut miss = None;
    {
        let rt = shared.live.load();
        let mut out = Vec::new();
        if fast::stream(
            shared,
            &rt,
            &body,
            peer.ip(),
            &via.1,
            via.0,
            arrival,
            &mut out,
            &mut miss,
        ) == Fast::Reply
        {
            let mut framed = Vec::with_capacity(out.len() + 2);
            framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
            framed.extend_from_slice(&out);
            let _ = tx.send(framed).await;
            return;
        }
    }
    let head: Vec<u8> = body[..12].to_vec();
    match HRequest::from_bytes(body, peer, HProtocol::Tcp) {
        Ok(request) => {
            // Never answer an answer.
            if request.metadata.message_type == hickory_proto::op::MessageType::Response {
                return;
            }
            let via =
                (via.1 != DeviceHint::None || via.0 != Protocol::Tcp).then_some((via.0, &via.1));
            let sent = miss.is_some().then(|| Arc::new(Mutex::new(None)));
            let framed = Framed {
                tx,
                sent: sent.clone(),
            };
            // Boxed: the pipeline's future is large, and each query is a task of its own.
            let served = Box::pin(handler.serve(&request, Some(arrival), local, via, framed)).await;
            if let (Some(miss), Some(bytes)) = (
                miss,
                sent.and_then(|s| s.lock().ok().and_then(|mut s| s.take())),
            ) {
                remember(shared, miss, &served, &bytes);
            }
        }
        Err(_) => {
            // Unreadable: the pipeline decides from the header (FORMERR, or REFUSED for an
            // outsider), answered with the header alone.
            let rt = shared.live.load_full();
            let mut req = Request::new(&shared.clock, peer.ip(), via.0, Message::Malformed);
            req.device = via.1.clone();
            req.arrival = arrival;
            req.listener = local;
            let outcome = shared.answer(&rt, &req).await;
            let mut out = Vec::with_capacity(14);
            if wire::header_reply(
                &head,
                None,
                outcome.reply.rcode.low(),
                false,
                None,
                &mut out,
            )
            .is_some()
            {
                shared.record(&rt, &req, &outcome);
                let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&out);
                let _ = tx.send(framed).await;
            }
        }
    }
}

/// Encodes a response for a stream transport (TCP, DoT, DoH): no size limit but the
/// message's own.
pub(super) fn encode<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
    >,
) -> Result<(Vec<u8>, ResponseInfo), NetError> {
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(u16::MAX);
    let info = response
        .destructive_emit(&mut encoder)
        .map_err(|e| NetError::from(e.to_string()))?;
    Ok((bytes, info))
}

/// Hands an encoded answer, framed, to the connection's writer; with `sent`, keeps a copy
/// for the packet cache.
#[derive(Clone)]
struct Framed {
    tx: mpsc::Sender<Vec<u8>>,
    sent: Option<Arc<Mutex<Option<Vec<u8>>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Framed {
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
        let (bytes, info) = encode(response)?;
        let len = u16::try_from(bytes.len()).map_err(|_| NetError::from("answer too long"))?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&bytes);
        if let Some(slot) = &self.sent
            && let Ok(mut s) = slot.lock()
        {
            *s = Some(bytes);
        }
        self.tx
            .send(framed)
            .await
            .map_err(|_| NetError::from("connection closed"))?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_registry_closes_the_idlest_and_a_client_has_its_share() {
        let r = Arc::new(Registry::default());
        let limits = Limits {
            total: 3,
            per_client: 2,
            idle: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        let c: IpAddr = [192, 0, 2, 3].into();
        let first = r.admit(a, limits, t0).unwrap();
        let second = r.admit(b, limits, t0 + Duration::from_secs(1)).unwrap();
        let _third = r.admit(b, limits, t0 + Duration::from_secs(2)).unwrap();
        assert!(r.admit(b, limits, t0).is_none(), "b has its two");
        // a's connection is touched: b's older one is now the idlest and makes room.
        r.touch(first.id, t0 + Duration::from_secs(5));
        let _fourth = r.admit(c, limits, t0 + Duration::from_secs(6)).unwrap();
        assert_eq!(r.len(), 3);
        assert!(!r.lock().conns.contains_key(&second.id));
        // A closed slot leaves the registry.
        drop(first);
        assert_eq!(r.len(), 2);
    }
}
