//! DNS over HTTPS (RFC 8484), HTTP/2 and HTTP/1.1 on a TLS connection the TCP accept loop
//! handed over: `GET <path>?dns=<base64url>` and `POST <path>` with an
//! `application/dns-message` body, each answered through the one pipeline.
//!
//! The device: a path token (`<path>/<token>`) first, then a label in the host the client
//! asked for (`<label>.<hostname>`), else the source address (SPEC §10). Tokens are
//! secrets: request paths are never logged. DNS errors are still HTTP 200 carrying the
//! rcode; `Cache-Control: private, max-age=` the answer's smallest TTL (a negative
//! answer's SOA TTL is already capped at its MINIMUM).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use data_encoding::BASE64URL_NOPAD;
use hickory_server::net::NetError;
use hickory_server::net::xfer::Protocol as HProtocol;
use hickory_server::server::{Request as HRequest, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Shared;
use super::fast::{self, Fast, remember};
use super::serve::Handler;
use super::tcp::{Slot, device_label};
use super::wire;
use crate::clock::Instant;
use crate::label::Protocol;
use crate::pipeline::DeviceHint;

/// The media type of DNS messages (RFC 8484 §6).
const DNS_MESSAGE: &str = "application/dns-message";
/// The largest DNS message taken.
const MAX_MESSAGE: usize = 65_535;

/// One connection's context.
struct Conn {
    shared: Arc<Shared>,
    handler: Handler,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    slot: Slot,
    /// Requests being answered.
    in_flight: AtomicUsize,
    /// When the last request began or ended, in milliseconds after `opened`.
    last: AtomicU64,
    opened: Instant,
}

impl Conn {
    fn since_opened(&self) -> u64 {
        let now = self.shared.clock.now();
        u64::try_from(now.saturating_duration_since(self.opened).as_millis()).unwrap_or(u64::MAX)
    }

    /// Notes a request beginning (`true`) or ending.
    fn activity(&self, begins: bool) {
        if begins {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            self.slot.touch(self.shared.clock.now());
        } else {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        self.last.store(self.since_opened(), Ordering::Relaxed);
    }

    /// Resolves once no request has been open for `idle`.
    async fn idled(&self, idle: Duration) {
        loop {
            let quiet = Duration::from_millis(
                self.since_opened()
                    .saturating_sub(self.last.load(Ordering::Relaxed)),
            );
            if self.in_flight.load(Ordering::Relaxed) == 0 && quiet >= idle {
                return;
            }
            tokio::time::sleep(idle.saturating_sub(quiet).max(Duration::from_millis(50))).await;
        }
    }
}

/// Serves HTTP/2 or HTTP/1.1 on `io` until the client closes it, it has no request for
/// `idle`, or its slot is wanted for another (then HTTP/2 says GOAWAY first).
pub(super) async fn connection<S>(
    shared: Arc<Shared>,
    handler: Handler,
    io: S,
    (peer, local): (SocketAddr, Option<SocketAddr>),
    slot: Slot,
    idle: Duration,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let opened = shared.clock.now();
    let conn = Arc::new(Conn {
        shared,
        handler,
        peer,
        local,
        slot,
        in_flight: AtomicUsize::new(0),
        last: AtomicU64::new(0),
        opened,
    });
    let c = conn.clone();
    let service = hyper::service::service_fn(move |req| {
        let conn = c.clone();
        async move {
            // Ended however the request ends (answered, or reset by the client).
            struct Open<'a>(&'a Conn);
            impl Drop for Open<'_> {
                fn drop(&mut self) {
                    self.0.activity(false);
                }
            }
            conn.activity(true);
            let _open = Open(&conn);
            Ok::<_, Infallible>(handle(&conn, req).await)
        }
    });
    let builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    let serving = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(serving);
    let ended = tokio::select! {
        r = serving.as_mut() => Some(r),
        () = conn.idled(idle) => None,
        () = conn.slot.closed() => None,
    };
    let result = match ended {
        Some(r) => r,
        None => {
            // Idle, or making room: GOAWAY (HTTP/2) or close after the current response,
            // and a few seconds for the answers still being made.
            serving.as_mut().graceful_shutdown();
            tokio::time::timeout(Duration::from_secs(5), serving)
                .await
                .unwrap_or(Ok(()))
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "DoH connection ended");
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// One HTTP request.
async fn handle(conn: &Conn, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let rt = conn.shared.live.load_full();
    let Some(doh) = rt.settings.doh.as_ref() else {
        return status(StatusCode::NOT_FOUND);
    };
    // The path, or the path and a token below it.
    let path = req.uri().path();
    let token = if path == doh.path {
        None
    } else {
        match path
            .strip_prefix(doh.path.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            Some(t) if !t.is_empty() && !t.contains('/') => Some(t.to_owned()),
            _ => return status(StatusCode::NOT_FOUND),
        }
    };
    let host = req.uri().host().map(str::to_owned).or_else(|| {
        req.headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name).to_owned())
    });
    let device = match (token, host) {
        (Some(t), _) => DeviceHint::Token(t.into()),
        (None, Some(h)) => rt
            .hostname
            .as_deref()
            .and_then(|name| device_label(&h, name))
            .map_or(DeviceHint::None, |l| DeviceHint::Label(l.into())),
        (None, None) => DeviceHint::None,
    };
    let wire = match *req.method() {
        Method::GET => {
            let dns = req.uri().query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("dns="))
                    .map(str::to_owned)
            });
            match dns.and_then(|d| {
                BASE64URL_NOPAD
                    .decode(d.trim_end_matches('=').as_bytes())
                    .ok()
            }) {
                Some(w) => w,
                None => return status(StatusCode::BAD_REQUEST),
            }
        }
        Method::POST => {
            let typed = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case(DNS_MESSAGE));
            if !typed {
                return status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
            }
            match Limited::new(req.into_body(), MAX_MESSAGE).collect().await {
                Ok(b) => b.to_bytes().to_vec(),
                Err(_) => return status(StatusCode::PAYLOAD_TOO_LARGE),
            }
        }
        _ => return status(StatusCode::METHOD_NOT_ALLOWED),
    };
    let arrival = conn.shared.clock.now();
    // The packet cache first: a replay needs no decoding and no pipeline.
    let mut miss = None;
    let mut out = Vec::new();
    let peer = conn.peer.ip();
    if fast::stream(
        &conn.shared,
        &rt,
        &wire,
        peer,
        &device,
        Protocol::Doh,
        arrival,
        &mut out,
        &mut miss,
    ) == Fast::Reply
    {
        return dns_message(out);
    }
    drop(rt);
    let Ok(request) = HRequest::from_bytes(wire, conn.peer, HProtocol::Tcp) else {
        return status(StatusCode::BAD_REQUEST);
    };
    if request.metadata.message_type == hickory_proto::op::MessageType::Response {
        return status(StatusCode::BAD_REQUEST);
    }
    let out = Arc::new(Mutex::new(None));
    // Boxed: the pipeline's future is large, and hyper moves this one into a task of its
    // own per request (a measured 7% of DoH CPU went to copying it).
    let served = Box::pin(conn.handler.serve(
        &request,
        Some(arrival),
        conn.local,
        Some((Protocol::Doh, &device)),
        Collect { out: out.clone() },
    ))
    .await;
    let Some(bytes) = out.lock().ok().and_then(|mut o| o.take()) else {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    };
    if let Some(miss) = miss {
        remember(&conn.shared, miss, &served, &bytes);
    }
    dns_message(bytes)
}

/// The HTTP response carrying the DNS message `bytes`, cacheable privately for its
/// smallest TTL.
fn dns_message(bytes: Vec<u8>) -> Response<Full<Bytes>> {
    let max_age = wire::ttls(&bytes)
        .and_then(|t| t.iter().map(|x| x.1).min())
        .unwrap_or(0);
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(DNS_MESSAGE),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("private, max-age={max_age}")) {
        r.headers_mut().insert(CACHE_CONTROL, v);
    }
    r
}

/// Keeps the encoded answer for the HTTP response.
#[derive(Clone)]
struct Collect {
    out: Arc<Mutex<Option<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Collect {
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
        let (bytes, info) = super::tcp::encode(response)?;
        if let Ok(mut o) = self.out.lock() {
            *o = Some(bytes);
        }
        Ok(info)
    }
}
