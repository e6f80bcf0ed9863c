//! One question to one server: over a pooled UDP socket (retried over TCP when the answer
//! is truncated or too big), or over TCP.
//!
//! Off-path spoofing is answered with every bit of entropy a query can carry (RFC 5452):
//! a random id, a random source port (a socket serves at most [`SOCKET_USES`] queries),
//! the name in random case (DNS 0x20) compared exactly in the answer, and the question
//! required in every answer. A reused socket is drained before it asks again, so forged
//! replies sprayed at it while it was idle never meet the next question.

mod dot;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::Name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};
use tracing::debug;

use std::time::Duration;

use crate::clock::Clock;
use crate::resolve::{Error, Question, Response};

/// The EDNS payload size we advertise upstream and downstream (DNS flag day 2020).
pub const EDNS_PAYLOAD: u16 = 1232;
/// Queries one UDP socket serves before it is closed and a new port taken.
pub const SOCKET_USES: u16 = 16;
/// Idle sockets kept per server.
const POOL_MAX: usize = 256;
/// An idle socket older than this is closed rather than reused: open ports that sit
/// waiting are what off-path attackers probe for (SADDNS).
const POOL_IDLE: Duration = Duration::from_secs(2);

/// A connected socket to one server and its receive buffer, between queries.
#[derive(Debug)]
pub(crate) struct Pooled {
    sock: UdpSocket,
    buf: Vec<u8>,
    uses: u16,
    idle_since: Instant,
}

/// Idle sockets to one server.
pub(crate) type Pool = std::sync::Mutex<Vec<Pooled>>;

/// Largest UDP response taken; we advertise [`EDNS_PAYLOAD`], so a bigger one is a broken
/// upstream, and one that fills the buffer was cut: it is asked again over TCP.
pub(crate) const UDP_BUFFER: usize = 4096;

/// How one UDP exchange ended, besides an answer.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The answer (over UDP, or over TCP after a truncated or oversized one).
    Answer(Response),
    /// The server answered with the right id but the name in another case: it does not
    /// preserve case (the answer was then asked for again without 0x20).
    CaseIgnored(Response),
}

/// Asks `q` of the UDP server `addr` (a pooled socket if one is fresh, else a new one);
/// with `randomize`, in random case; `rd`: recursion desired (forwarding), or not (asking
/// an authoritative server).
pub(crate) async fn udp(
    addr: SocketAddr,
    pool: &Pool,
    q: &Question,
    rd: bool,
    deadline: Instant,
    clock: &Clock,
    randomize: bool,
) -> Result<Outcome, Error> {
    let idle_for = |s: &Pooled| clock.now().saturating_duration_since(s.idle_since);
    // The newest idle socket; if even that has idled too long, so have all the others.
    let idle = pool.lock().ok().and_then(|mut p| {
        let s = p.pop()?;
        if idle_for(&s) < POOL_IDLE {
            Some(s)
        } else {
            p.clear();
            None
        }
    });
    let mut s = match idle {
        Some(s) => s,
        None => {
            let bind: SocketAddr = if addr.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = UdpSocket::bind(bind).await.map_err(net)?;
            sock.connect(addr).await.map_err(net)?;
            Pooled {
                sock,
                buf: vec![0u8; UDP_BUFFER + 1],
                uses: 0,
                idle_since: clock.now(),
            }
        }
    };
    // Whatever arrived while the socket sat idle was not asked for by this question.
    let stray = drain(&s.sock, &mut s.buf);
    if stray > 0 {
        debug!(%addr, stray, "discarded datagrams that arrived on an idle upstream socket");
    }
    // The query as written, then (0x20) its name's letters flipped at random in the bytes.
    let (_, plain) = encode_query(q, &q.name, rd)?;
    let Some(name_end) = name_end(&plain) else {
        return Err(Error::Network("cannot encode query".into()));
    };
    let mut sent = plain.clone();
    if randomize {
        flip_case(&mut sent[..name_end]);
    }
    let mut case_ignored = false;
    // Errors and timeouts drop the socket (with whatever may still arrive on it).
    ::metrics::counter!(crate::metrics::OUTGOING_QUERIES_TOTAL, "protocol" => "udp").increment(1);
    s.sock.send(&sent).await.map_err(net)?;
    let len = loop {
        let len = match timeout_at(deadline, s.sock.recv(&mut s.buf)).await {
            Err(_) => return Err(Error::Timeout),
            Ok(r) => r.map_err(net)?,
        };
        if len > UDP_BUFFER {
            debug!(%addr, "oversized UDP answer, asking over TCP");
            return tcp(addr, q, rd, deadline).await.map(Outcome::Answer);
        }
        // Anything that is not the answer to our question is ignored, not an error: it
        // may be a late answer or a spoofing attempt.
        match check_wire(&s.buf[..len], &sent, name_end) {
            Check::Answer => break len,
            Check::Other => continue,
            // The right id, the name in another case: a server that does not keep the
            // case (a forger would have to guess the id as well). Ask again as written,
            // with a new id.
            Check::CaseDiffers if !case_ignored => {
                case_ignored = true;
                sent.clone_from(&plain);
                sent[..2].copy_from_slice(&rand::random::<u16>().to_be_bytes());
                s.sock.send(&sent).await.map_err(net)?;
            }
            Check::CaseDiffers => continue,
        }
    };
    // The name as the client wrote it, back in the answer's question; the records' owner
    // names point there (compression), so they read it too.
    s.buf[QUESTION_AT..name_end].copy_from_slice(&plain[QUESTION_AT..name_end]);
    let Ok(msg) = Message::from_vec(&s.buf[..len]) else {
        return Err(Error::Network("bad response".into()));
    };
    s.uses += 1;
    if s.uses < SOCKET_USES {
        if let Ok(mut p) = pool.lock() {
            // The oldest are at the front: close those idle too long.
            if p.first().is_some_and(|o| idle_for(o) >= POOL_IDLE) {
                p.retain(|o| idle_for(o) < POOL_IDLE);
            }
            if p.len() < POOL_MAX {
                s.idle_since = clock.now();
                p.push(s);
            }
        }
    }
    if msg.metadata.truncation {
        debug!(%addr, "truncated answer, retrying over TCP");
        return tcp(addr, q, rd, deadline).await.map(Outcome::Answer);
    }
    let r = Response::new(msg, len);
    Ok(if case_ignored {
        Outcome::CaseIgnored(r)
    } else {
        Outcome::Answer(r)
    })
}

/// Asks `q` of `addr` over TCP (not spoofable off path: the name goes as written).
pub(crate) async fn tcp(
    addr: SocketAddr,
    q: &Question,
    rd: bool,
    deadline: Instant,
) -> Result<Response, Error> {
    let (id, wire) = encode_query(q, &q.name, rd)?;
    ::metrics::counter!(crate::metrics::OUTGOING_QUERIES_TOTAL, "protocol" => "tcp").increment(1);
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
            let msg = Message::from_vec(&body)
                .map_err(|e| Error::Network(format!("bad response: {e}")))?;
            if check(&msg, id, q) {
                return Ok(Response::new(msg, len));
            }
        }
    };
    timeout_at(deadline, io)
        .await
        .unwrap_or(Err(Error::Timeout))
}

/// The pipelined DoT connections to one server.
pub(crate) type TlsPool = dot::Pool;

/// Asks `q` of the DoT server `addr` whose certificate must name `name`, pipelined on a
/// connection of `pool` (RFC 7858 §3.4). A certificate that does not verify is an error,
/// never a fall back to plain DNS.
pub(crate) async fn tls(
    addr: SocketAddr,
    name: &str,
    config: &std::sync::Arc<rustls::ClientConfig>,
    pool: &TlsPool,
    q: &Question,
    deadline: Instant,
) -> Result<Response, Error> {
    let (id, wire) = encode_query(q, &q.name, true)?;
    let mut framed = Vec::with_capacity(wire.len() + 2);
    framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
    framed.extend_from_slice(&wire);
    ::metrics::counter!(crate::metrics::OUTGOING_QUERIES_TOTAL, "protocol" => "tls").increment(1);
    let server = dot::Server { addr, name, config };
    let body = timeout_at(deadline, pool.ask(server, &framed))
        .await
        .unwrap_or(Err(Error::Timeout))?;
    let len = body.len();
    let msg = Message::from_vec(&body).map_err(|e| Error::Network(format!("bad response: {e}")))?;
    if !check(&msg, id, q) {
        return Err(Error::Network(format!(
            "DoT {addr}: answer to another question"
        )));
    }
    Ok(Response::new(msg, len))
}

async fn connect_tls(
    addr: SocketAddr,
    name: &str,
    config: &std::sync::Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
        .map_err(|e| Error::Network(format!("TLS name `{name}`: {e}")))?;
    let tcp = TcpStream::connect(addr).await.map_err(net)?;
    let _ = tcp.set_nodelay(true);
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(server_name, tcp)
        .await
        .map_err(|e| Error::Network(format!("TLS with {addr} ({name}): {e}")))
}

/// Asks `q` of the DoH server at `url` (RFC 8484 POST) through `client`.
pub(crate) async fn https(
    client: &reqwest::Client,
    url: &str,
    q: &Question,
    deadline: Instant,
) -> Result<Response, Error> {
    // RFC 8484 §4.1: id 0, so answers are cacheable by HTTP caches.
    let (_, mut wire) = encode_query(q, &q.name, true)?;
    wire[..2].copy_from_slice(&[0, 0]);
    ::metrics::counter!(crate::metrics::OUTGOING_QUERIES_TOTAL, "protocol" => "https").increment(1);
    let io = async {
        let r = client
            .post(url)
            .header("content-type", "application/dns-message")
            .header("accept", "application/dns-message")
            .body(wire)
            .send()
            .await
            .map_err(|e| Error::Network(format!("DoH {url}: {e}")))?;
        if !r.status().is_success() {
            return Err(Error::Network(format!("DoH {url}: HTTP {}", r.status())));
        }
        let body = r
            .bytes()
            .await
            .map_err(|e| Error::Network(format!("DoH {url}: {e}")))?;
        let msg = Message::from_vec(&body)
            .map_err(|e| Error::Network(format!("DoH {url}: bad response: {e}")))?;
        if msg.queries.len() != 1
            || msg.queries[0].name() != &q.name
            || msg.queries[0].query_type() != q.qtype
        {
            return Err(Error::Network(format!(
                "DoH {url}: answer to another question"
            )));
        }
        Ok(Response::new(msg, body.len()))
    };
    timeout_at(deadline, io)
        .await
        .unwrap_or(Err(Error::Timeout))
}

/// The client TLS configuration for DoT upstreams: the system's root certificates (the
/// Debian/Ubuntu bundle, or RHEL's) plus those of `ca_file`.
pub fn client_tls(
    ca_file: Option<&std::path::Path>,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for bundle in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        if let Ok(iter) = CertificateDer::pem_file_iter(bundle) {
            for cert in iter.flatten() {
                let _ = roots.add(cert);
            }
            break;
        }
    }
    if let Some(file) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in it", file.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", file.display()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"dot".to_vec()];
    Ok(std::sync::Arc::new(config))
}

/// Reads and drops every datagram waiting on `sock`; returns how many there were.
pub(crate) fn drain(sock: &UdpSocket, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while sock.try_recv(buf).is_ok() {
        n += 1;
    }
    n
}

/// Where the question starts in a message.
const QUESTION_AT: usize = 12;

/// The end of the (uncompressed) question name in our own query `wire`.
fn name_end(wire: &[u8]) -> Option<usize> {
    let mut at = QUESTION_AT;
    loop {
        let len = usize::from(*wire.get(at)?);
        at += 1;
        if len == 0 {
            return Some(at);
        }
        if len > 63 {
            return None;
        }
        at += len;
    }
}

/// Flips the case of the question name's letters at random (DNS 0x20), in place.
fn flip_case(wire: &mut [u8]) {
    let mut at = QUESTION_AT;
    let (mut bits, mut left) = (rand::random::<u64>(), 64);
    while let Some(&len) = wire.get(at) {
        let len = usize::from(len);
        if len == 0 || len > 63 {
            break;
        }
        for b in wire.iter_mut().skip(at + 1).take(len) {
            if b.is_ascii_alphabetic() {
                if left == 0 {
                    (bits, left) = (rand::random(), 64);
                }
                if bits & 1 == 1 {
                    *b ^= 0x20;
                }
                bits >>= 1;
                left -= 1;
            }
        }
        at += 1 + len;
    }
}

/// What a received datagram is to our query `sent` (whose name ends at `name_end`), read
/// from the bytes: the id, a response with one question, the name exactly as sent (or in
/// another case), the same type and class.
fn check_wire(got: &[u8], sent: &[u8], name_end: usize) -> Check {
    let question_end = name_end + 4;
    if got.len() < question_end
        || got[..2] != sent[..2]
        || got[2] & 0x80 == 0
        || got[4..6] != [0, 1]
        || got[name_end..question_end] != sent[name_end..question_end]
    {
        return Check::Other;
    }
    let (name, ours) = (&got[QUESTION_AT..name_end], &sent[QUESTION_AT..name_end]);
    if name == ours {
        Check::Answer
    } else if name.eq_ignore_ascii_case(ours) {
        Check::CaseDiffers
    } else {
        Check::Other
    }
}

pub(crate) fn net(e: std::io::Error) -> Error {
    Error::Network(e.to_string())
}

fn encode_query(q: &Question, name: &Name, rd: bool) -> Result<(u16, Vec<u8>), Error> {
    let id: u16 = rand::random();
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = rd;
    m.metadata.checking_disabled = q.checking_disabled;
    // RFC 6840 §5.7: ask for the AD bit, so a validating upstream says what it validated.
    m.metadata.authentic_data = true;
    let mut query = Query::query(name.clone(), q.qtype);
    query.set_query_class(q.qclass);
    m.add_query(query);
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    edns.set_dnssec_ok(q.dnssec_ok);
    m.set_edns(edns);
    let wire = m
        .to_vec()
        .map_err(|e| Error::Network(format!("cannot encode query: {e}")))?;
    Ok((id, wire))
}

/// What a received message is to our query.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// Our answer: id, question and the name's case as asked.
    Answer,
    /// Our id and question, the name in another case.
    CaseDiffers,
    /// Not ours.
    Other,
}

/// Whether `msg` answers our TCP query `id` for `q` (the question always required).
fn check(msg: &Message, id: u16, q: &Question) -> bool {
    msg.metadata.id == id
        && msg.metadata.message_type == MessageType::Response
        && msg.queries.len() == 1
        && msg.queries[0].name() == &q.name
        && msg.queries[0].query_type() == q.qtype
        && msg.queries[0].query_class() == q.qclass
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::{DNSClass, RecordType};

    use super::*;

    fn question(name: &str) -> Question {
        Question {
            name: Name::from_str(name).unwrap(),
            qtype: RecordType::A,
            qclass: DNSClass::IN,
            dnssec_ok: false,
            checking_disabled: false,
        }
    }

    #[test]
    fn flipped_case_keeps_the_name_and_changes_the_spelling() {
        let q = question("a-long-name.with-many-letters.example.");
        let (_, plain) = encode_query(&q, &q.name, true).unwrap();
        let end = name_end(&plain).unwrap();
        let spellings: std::collections::HashSet<Vec<u8>> = (0..20)
            .map(|_| {
                let mut w = plain.clone();
                flip_case(&mut w);
                assert_eq!(w[end..], plain[end..], "only the name changes");
                w[..end].to_vec()
            })
            .collect();
        assert!(spellings.len() > 10);
        for s in &spellings {
            assert!(s.eq_ignore_ascii_case(&plain[..end]));
        }
    }

    #[test]
    fn an_answer_must_echo_the_question_in_the_case_asked() {
        let q = question("www.example.");
        let (_, mut sent) =
            encode_query(&q, &Name::from_ascii("wWw.ExaMple.").unwrap(), true).unwrap();
        sent[..2].copy_from_slice(&7u16.to_be_bytes());
        let end = name_end(&sent).unwrap();
        let reply = |id: u16, name: &str, qtype: RecordType, with_question: bool| {
            let mut m = Message::new(id, MessageType::Response, OpCode::Query);
            if with_question {
                m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
            }
            m.to_vec().unwrap()
        };
        let a = RecordType::A;
        assert_eq!(
            check_wire(&reply(7, "wWw.ExaMple.", a, true), &sent, end),
            Check::Answer
        );
        assert_eq!(
            check_wire(&reply(7, "www.example.", a, true), &sent, end),
            Check::CaseDiffers
        );
        assert_eq!(
            check_wire(&reply(8, "wWw.ExaMple.", a, true), &sent, end),
            Check::Other
        );
        assert_eq!(
            check_wire(&reply(7, "other.example.", a, true), &sent, end),
            Check::Other
        );
        assert_eq!(
            check_wire(
                &reply(7, "wWw.ExaMple.", RecordType::AAAA, true),
                &sent,
                end
            ),
            Check::Other
        );
        // A FORMERR without a question is not taken on the id alone.
        let mut formerr = Message::new(7, MessageType::Response, OpCode::Query);
        formerr.metadata.response_code = hickory_proto::op::ResponseCode::FormErr;
        assert_eq!(
            check_wire(&formerr.to_vec().unwrap(), &sent, end),
            Check::Other
        );
        // Over TCP, the question is required too.
        let m = Message::from_vec(&reply(7, "www.example.", a, true)).unwrap();
        assert!(check(&m, 7, &q));
        assert!(!check(&formerr, 7, &q));
    }

    #[tokio::test]
    async fn stray_datagrams_on_an_idle_socket_are_drained() {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let forger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..3 {
            forger
                .send_to(b"forged", sock.local_addr().unwrap())
                .unwrap();
        }
        // Let the kernel queue them.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let mut buf = [0u8; 64];
        assert_eq!(drain(&sock, &mut buf), 3);
        assert_eq!(drain(&sock, &mut buf), 0);
    }
}
