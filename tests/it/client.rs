//! A small real DNS client for the tests: builds a query with hickory-proto, sends it over
//! UDP or TCP on loopback, and returns the parsed response.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How to ask.
#[derive(Clone, Copy)]
pub(crate) struct Opts {
    /// Include an OPT record with this payload size.
    pub edns: Option<u16>,
    /// Set the DO bit.
    pub dnssec_ok: bool,
    /// Use TCP.
    pub tcp: bool,
    /// Set the CD (checking disabled) header bit.
    pub checking_disabled: bool,
    /// Set the AD (authentic data) header bit: "I understand AD" (RFC 6840 §5.7).
    pub authentic_data: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            edns: Some(1232),
            dnssec_ok: false,
            tcp: false,
            checking_disabled: false,
            authentic_data: false,
        }
    }
}

/// Encodes a query.
pub(crate) fn build(name: &str, qtype: RecordType, opts: Opts) -> (u16, Vec<u8>) {
    let id: u16 = rand::random();
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.checking_disabled = opts.checking_disabled;
    m.metadata.authentic_data = opts.authentic_data;
    m.add_query(Query::query(Name::from_utf8(name).unwrap(), qtype));
    if let Some(payload) = opts.edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        e.set_dnssec_ok(opts.dnssec_ok);
        m.set_edns(e);
    }
    (id, m.to_vec().unwrap())
}

/// Sends raw bytes over UDP and waits (bounded) for one datagram back.
pub(crate) async fn udp_raw(server: SocketAddr, wire: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(server).await.unwrap();
    sock.send(wire).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// Sends a query and returns the response (panics after 10 s: a test bound, not a check).
pub(crate) async fn query_with(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    opts: Opts,
) -> Message {
    let (id, wire) = build(name, qtype, opts);
    let bytes = if opts.tcp {
        let io = async {
            let mut s = TcpStream::connect(server).await.unwrap();
            let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&wire);
            s.write_all(&framed).await.unwrap();
            let len = s.read_u16().await.unwrap() as usize;
            let mut body = vec![0u8; len];
            s.read_exact(&mut body).await.unwrap();
            body
        };
        tokio::time::timeout(Duration::from_secs(10), io)
            .await
            .expect("tcp answer within 10 s")
    } else {
        udp_raw(server, &wire, Duration::from_secs(10))
            .await
            .expect("udp answer within 10 s")
    };
    let msg = Message::from_vec(&bytes).expect("response parses");
    assert_eq!(msg.metadata.id, id, "response id");
    msg
}

/// Sends a hand-built message over UDP; returns the parsed response and its raw bytes
/// (panics after 10 s: a test bound, not a check).
pub(crate) async fn exchange(server: SocketAddr, msg: &Message) -> (Message, Vec<u8>) {
    let bytes = udp_raw(server, &msg.to_vec().unwrap(), Duration::from_secs(10))
        .await
        .expect("udp answer within 10 s");
    let resp = Message::from_vec(&bytes).expect("response parses");
    assert_eq!(resp.metadata.id, msg.metadata.id, "response id");
    (resp, bytes)
}

/// Sends a query over UDP with EDNS.
pub(crate) async fn query(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    query_with(server, name, qtype, Opts::default()).await
}

/// The EDE (code, text) of a response, if any.
pub(crate) fn ede(msg: &Message) -> Option<(u16, String)> {
    let edns = msg.edns.as_ref()?;
    edns.options().options.iter().find_map(|(_, o)| match o {
        EdnsOption::Unknown(15, data) if data.len() >= 2 => Some((
            u16::from_be_bytes([data[0], data[1]]),
            String::from_utf8_lossy(&data[2..]).into_owned(),
        )),
        _ => None,
    })
}

/// The A/AAAA addresses of the answer, as strings.
pub(crate) fn ips(msg: &Message) -> Vec<String> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The CNAME targets of the answer.
pub(crate) fn cnames(msg: &Message) -> Vec<String> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.to_string()),
            _ => None,
        })
        .collect()
}
