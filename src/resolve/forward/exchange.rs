//! One question to one server: over a pooled UDP socket (retried over TCP when the answer
//! is truncated or too big), or over TCP.
//!
//! Off-path spoofing is answered with every bit of entropy a query can carry (RFC 5452):
//! a random id, a random source port (a socket serves at most [`SOCKET_USES`] queries),
//! the name in random case (DNS 0x20) compared exactly in the answer, and the question
//! required in every answer. A reused socket is drained before it asks again, so forged
//! replies sprayed at it while it was idle never meet the next question.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::Name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};
use tracing::debug;

use super::{EDNS_PAYLOAD, POOL_IDLE, POOL_MAX, Pooled, Response, SOCKET_USES};
use crate::clock::Clock;
use crate::resolve::{Error, Question};

/// Largest UDP response taken; we advertise [`EDNS_PAYLOAD`], so a bigger one is a broken
/// upstream, and one that fills the buffer was cut: it is asked again over TCP.
pub(super) const UDP_BUFFER: usize = 4096;

/// How one UDP exchange ended, besides an answer.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The answer (over UDP, or over TCP after a truncated or oversized one).
    Answer(Response),
    /// The server answered with the right id but the name in another case: it does not
    /// preserve case (the answer was then asked for again without 0x20).
    CaseIgnored(Response),
}

/// Asks `q` of the UDP server `addr` (a pooled socket if one is fresh, else a new one);
/// with `randomize`, in random case.
pub(super) async fn udp(
    addr: SocketAddr,
    pool: &std::sync::Mutex<Vec<Pooled>>,
    q: &Question,
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
    let mut asked = if randomize {
        random_case(&q.name)
    } else {
        q.name.clone()
    };
    let mut case_ignored = false;
    // Errors and timeouts drop the socket (with whatever may still arrive on it).
    let (mut id, wire) = encode_query(q, &asked)?;
    s.sock.send(&wire).await.map_err(net)?;
    let (msg, len) = loop {
        let len = match timeout_at(deadline, s.sock.recv(&mut s.buf)).await {
            Err(_) => return Err(Error::Timeout),
            Ok(r) => r.map_err(net)?,
        };
        if len > UDP_BUFFER {
            debug!(%addr, "oversized UDP answer, asking over TCP");
            return tcp(addr, q, deadline).await.map(Outcome::Answer);
        }
        // Anything that is not the answer to our question is ignored, not an error: it
        // may be a late answer or a spoofing attempt.
        let Ok(msg) = Message::from_vec(&s.buf[..len]) else {
            continue;
        };
        match check(&msg, id, q, &asked) {
            Check::Answer => break (msg, len),
            Check::Other => continue,
            // The right id, the name in another case: a server that does not keep the
            // case (a forger would have to guess the id as well). Ask again as written.
            Check::CaseDiffers if !case_ignored => {
                case_ignored = true;
                asked = q.name.clone();
                let (again, wire) = encode_query(q, &asked)?;
                id = again;
                s.sock.send(&wire).await.map_err(net)?;
            }
            Check::CaseDiffers => continue,
        }
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
        return tcp(addr, q, deadline).await.map(Outcome::Answer);
    }
    let r = Response {
        msg: restore_case(msg, &asked, &q.name),
        wire_len: len,
    };
    Ok(if case_ignored {
        Outcome::CaseIgnored(r)
    } else {
        Outcome::Answer(r)
    })
}

/// Asks `q` of `addr` over TCP (not spoofable off path: the name goes as written).
pub(super) async fn tcp(
    addr: SocketAddr,
    q: &Question,
    deadline: Instant,
) -> Result<Response, Error> {
    let (id, wire) = encode_query(q, &q.name)?;
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
            if matches!(
                check(&msg, id, q, &q.name),
                Check::Answer | Check::CaseDiffers
            ) {
                return Ok(Response { msg, wire_len: len });
            }
        }
    };
    timeout_at(deadline, io)
        .await
        .unwrap_or(Err(Error::Timeout))
}

/// Reads and drops every datagram waiting on `sock`; returns how many there were.
pub(super) fn drain(sock: &UdpSocket, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while sock.try_recv(buf).is_ok() {
        n += 1;
    }
    n
}

pub(super) fn net(e: std::io::Error) -> Error {
    Error::Network(e.to_string())
}

fn encode_query(q: &Question, name: &Name) -> Result<(u16, Vec<u8>), Error> {
    let id: u16 = rand::random();
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
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

/// Whether `msg` answers our query `id` for `q`, asked as `asked`. The question is always
/// required: a reply without one (even a FORMERR) could be anybody's.
fn check(msg: &Message, id: u16, q: &Question, asked: &Name) -> Check {
    if msg.metadata.id != id
        || msg.metadata.message_type != MessageType::Response
        || msg.queries.len() != 1
    {
        return Check::Other;
    }
    let got = &msg.queries[0];
    // (`Name` equality ignores case.)
    if got.name() != &q.name || got.query_type() != q.qtype || got.query_class() != q.qclass {
        return Check::Other;
    }
    if same_case(got.name(), asked) {
        Check::Answer
    } else {
        Check::CaseDiffers
    }
}

/// Whether two names are spelled byte for byte alike.
fn same_case(a: &Name, b: &Name) -> bool {
    a.iter().eq(b.iter())
}

/// `name` with each letter's case flipped at random (DNS 0x20).
pub(super) fn random_case(name: &Name) -> Name {
    let mut text = name.to_ascii().into_bytes();
    let mut bits: u64 = rand::random();
    for (i, b) in text.iter_mut().enumerate() {
        if i % 64 == 63 {
            bits = rand::random();
        }
        if b.is_ascii_alphabetic() && bits & 1 == 1 {
            *b ^= 0x20;
        }
        bits >>= 1;
    }
    String::from_utf8(text)
        .ok()
        .and_then(|t| Name::from_ascii(t).ok())
        .unwrap_or_else(|| name.clone())
}

/// The answer as if the name had been asked as written: the question and the records
/// owned by the name get `name`'s spelling back (clients see their own case, and the
/// cache holds no random one).
fn restore_case(mut msg: Message, asked: &Name, name: &Name) -> Message {
    if same_case(asked, name) {
        return msg;
    }
    for q in &mut msg.queries {
        q.set_name(name.clone());
    }
    for r in msg
        .answers
        .iter_mut()
        .chain(&mut msg.authorities)
        .chain(&mut msg.additionals)
    {
        if &r.name == asked && same_case(&r.name, asked) {
            r.name = name.clone();
        }
    }
    msg
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
    fn random_case_keeps_the_name_and_changes_the_spelling() {
        let name = Name::from_str("a-long-name.with-many-letters.example.").unwrap();
        let spellings: std::collections::HashSet<String> =
            (0..20).map(|_| random_case(&name).to_ascii()).collect();
        assert!(spellings.len() > 10, "{spellings:?}");
        for s in &spellings {
            assert!(s.eq_ignore_ascii_case(&name.to_ascii()), "{s}");
        }
    }

    #[test]
    fn an_answer_must_echo_the_question_in_the_case_asked() {
        let q = question("www.example.");
        // (`from_ascii` keeps the case; `from_str` would lowercase through IDNA.)
        let asked = Name::from_ascii("wWw.ExaMple.").unwrap();
        let reply = |id, name: &str, with_question: bool| {
            let mut m = Message::new(id, MessageType::Response, OpCode::Query);
            if with_question {
                m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
            }
            m
        };
        assert_eq!(
            check(&reply(7, "wWw.ExaMple.", true), 7, &q, &asked),
            Check::Answer
        );
        assert_eq!(
            check(&reply(7, "www.example.", true), 7, &q, &asked),
            Check::CaseDiffers
        );
        assert_eq!(
            check(&reply(8, "wWw.ExaMple.", true), 7, &q, &asked),
            Check::Other
        );
        assert_eq!(
            check(&reply(7, "other.example.", true), 7, &q, &asked),
            Check::Other
        );
        // A FORMERR without a question is not taken on the id alone.
        let mut formerr = reply(7, "", false);
        formerr.metadata.response_code = hickory_proto::op::ResponseCode::FormErr;
        assert_eq!(check(&formerr, 7, &q, &asked), Check::Other);
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
