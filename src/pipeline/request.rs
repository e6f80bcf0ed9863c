//! The one value every listener builds for a query, and `explain` and `dnsgate test` build
//! from their arguments: who asked, how, when, and what the message said.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::rr::{DNSClass, Name, RecordType};
use jiff::Timestamp;

use crate::clock::{Clock, Instant};
use crate::label::Protocol;
use crate::resolve::Question;

/// What the client said about its device besides its address (SPEC §10: a DoH path
/// token, or a label in the DoT SNI / DoH host). Plain DNS has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DeviceHint {
    /// Nothing but the source address.
    #[default]
    None,
    /// A secret token naming a device (`dnsgate explain --token`, DoH paths).
    Token(Box<str>),
    /// A label naming a device (DoT SNI, DoH host; `device =` in a policy test): its id.
    /// Not a secret.
    Label(Box<str>),
}

/// What the message asked, as far as the pipeline cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A standard query with its (first) question.
    Query(Question),
    /// Not a standard query (another opcode): NOTIMP.
    NotQuery,
    /// An EDNS version we do not speak (RFC 6891 §6.1.3): BADVERS.
    BadVersion,
    /// The message could not be read: FORMERR.
    Malformed,
}

/// One query as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    /// The client address (IPv4-mapped IPv6 made IPv4).
    pub src: IpAddr,
    /// The transport it came in on.
    pub protocol: Protocol,
    /// The local address it arrived at, if known.
    pub listener: Option<SocketAddr>,
    /// The device the client named, if any.
    pub device: DeviceHint,
    /// When it arrived (the server's one clock): latency is measured from here.
    pub arrival: Instant,
    /// The wall-clock time of arrival: schedules are judged at this time.
    pub time: Timestamp,
    /// What it asked.
    pub message: Message,
}

impl Request {
    /// A request arriving now on `clock`.
    pub fn new(clock: &Clock, src: IpAddr, protocol: Protocol, message: Message) -> Self {
        Self {
            src: src.to_canonical(),
            protocol,
            listener: None,
            device: DeviceHint::None,
            arrival: clock.now(),
            time: clock.wall(),
            message,
        }
    }

    /// A standard IN query for `name`/`qtype`, for `explain` and policy tests.
    pub fn query(clock: &Clock, src: IpAddr, name: Name, qtype: RecordType) -> Self {
        let q = Question {
            name,
            qtype,
            qclass: DNSClass::IN,
            dnssec_ok: false,
            checking_disabled: false,
        };
        Self::new(clock, src, Protocol::Udp, Message::Query(q))
    }

    /// The question, if the message had one we read.
    pub fn question(&self) -> Option<&Question> {
        match &self.message {
            Message::Query(q) => Some(q),
            _ => None,
        }
    }
}
