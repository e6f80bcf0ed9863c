//! Getting real answers: forwarding to upstreams ([`forward`]) or resolving from the root
//! ([`recurse`]) behind a shared message cache ([`cache`]) with negative caching (RFC 2308)
//! and serve-stale (RFC 8767); DNSSEC validation of what was fetched ([`dnssec`]).
//!
//! Whole response messages are kept — rcode, CNAME chain, authority SOA — because the
//! client must see exactly what the upstream said, only with TTLs counted down.

pub mod cache;
pub mod dnssec;
mod exchange;
pub mod forward;
pub mod recurse;
pub mod validate;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use hickory_proto::rr::{DNSClass, Name, RecordType};

use crate::label::ede;

pub use cache::{Cache, CachedMessage, Resolved};
pub use exchange::client_tls;
pub use forward::Forwarder;
pub use recurse::{Recursor, RecursorConfig, RootHints};

/// An upstream response, its size on the wire, and who gave it.
#[derive(Debug)]
pub struct Response {
    /// The message.
    pub msg: hickory_proto::op::Message,
    /// Its encoded size, for weighing it in the cache.
    pub wire_len: usize,
    /// The authoritative servers whose answers made it (recursive mode; empty when
    /// forwarded): `dns.authoritative_ns_ips`.
    pub servers: Vec<IpAddr>,
    /// An Extended DNS Error to send with it (an insecure answer's EDE 1, 2 or 27).
    pub ede: Option<(u16, String)>,
}

impl Response {
    /// A response as it came from one server.
    pub fn new(msg: hickory_proto::op::Message, wire_len: usize) -> Self {
        Self {
            msg,
            wire_len,
            servers: Vec::new(),
            ede: None,
        }
    }
}

/// Where real answers come from: the one seam the message cache sits in front of. The
/// forwarder today; the recursor and encrypted upstreams join it as variants, so the
/// cache's serve-stale, coalescing and negative caching are written once.
#[derive(Debug)]
#[non_exhaustive]
// Built once per configuration and held in an `Arc`: the size of the variants is no cost.
#[allow(clippy::large_enum_variant)]
pub enum Upstream {
    /// Forwarding to configured servers.
    Forward(Forwarder),
    /// Resolving from the root.
    Recurse(Recursor),
}

impl Upstream {
    /// Resolves one question to a whole response message.
    pub async fn query(&self, q: &Question) -> Result<Response, Error> {
        match self {
            Self::Forward(f) => f.query(q).await,
            Self::Recurse(r) => r.query(q).await,
        }
    }

    /// A stable identity of this upstream's configuration: the cache partition, so a
    /// reload with the same upstreams keeps its answers and a changed one does not see them.
    pub fn fingerprint(&self) -> u64 {
        match self {
            Self::Forward(f) => f.fingerprint(),
            Self::Recurse(r) => r.fingerprint(),
        }
    }

    /// Whether `other` is configured the same (a reload then keeps this one, with what it
    /// learned about its servers).
    pub fn same_config(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Forward(a), Self::Forward(b)) => a.same_config(b),
            (Self::Recurse(a), Self::Recurse(b)) => a.same_config(b),
            _ => false,
        }
    }
}

/// Whether answers are validated (SPEC §9 `dnssec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dnssec {
    /// Validate (RFC 4033-4035): AD on secure data, SERVFAIL on bogus.
    Validate,
    /// Pass data on as it came.
    Off,
}

/// The transport of an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    /// DNS over UDP, retried over TCP when truncated.
    Udp,
    /// DNS over TCP.
    Tcp,
    /// DNS over TLS (RFC 7858), the certificate verified for this name.
    Tls(Box<str>),
    /// DNS over HTTPS (RFC 8484): this URL (POST). When its host is a name, the address
    /// is looked up through the group's plain upstreams.
    Https(Box<str>),
}

/// One upstream server, as configured: `udp://IP:PORT`, `tcp://IP:PORT`, or a bare
/// `IP[:PORT]` (udp). Port 53 by default.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamSpec {
    /// Transport.
    pub transport: Transport,
    /// Address.
    pub addr: SocketAddr,
}

/// Why an upstream address did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecError {
    /// A scheme not supported in this release.
    #[error(
        "upstream `{0}`: {1} upstreams are not supported yet (use udp://, tcp://, tls:// or https://)"
    )]
    Unsupported(String, &'static str),
    /// Not an address.
    #[error(
        "upstream `{0}` is not udp://IP:PORT, tcp://IP:PORT, tls://IP[:PORT][#NAME] or IP[:PORT]"
    )]
    Invalid(String),
}

impl FromStr for UpstreamSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (transport, rest) = if let Some(r) = s.strip_prefix("udp://") {
            (Transport::Udp, r)
        } else if let Some(r) = s.strip_prefix("tcp://") {
            (Transport::Tcp, r)
        } else if let Some(r) = s.strip_prefix("tls://") {
            // tls://IP[:PORT][#NAME]: port 853; the certificate must name NAME (else the IP).
            let (addr, name) = match r.split_once('#') {
                Some((a, n)) if !n.is_empty() => (a, Some(n)),
                Some(_) => return Err(SpecError::Invalid(s.into())),
                None => (r, None),
            };
            let addr = addr.trim_end_matches('/');
            let sock = addr
                .parse::<SocketAddr>()
                .or_else(|_| addr.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 853)))
                .or_else(|_| {
                    addr.strip_prefix('[')
                        .and_then(|r| r.strip_suffix(']'))
                        .and_then(|r| r.parse::<IpAddr>().ok())
                        .map(|ip| SocketAddr::new(ip, 853))
                        .ok_or(())
                })
                .map_err(|_| SpecError::Invalid(s.into()))?;
            let name = name.map_or_else(|| sock.ip().to_string(), str::to_owned);
            return Ok(Self {
                transport: Transport::Tls(name.into()),
                addr: sock,
            });
        } else if let Some(r) = s.strip_prefix("https://") {
            // https://HOST[:PORT]/PATH
            let (authority, path) = r.split_once('/').unwrap_or((r, ""));
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                    match p.parse::<u16>() {
                        Ok(port) if !h.contains(':') || h.starts_with('[') => (h, port),
                        _ => (authority, 443),
                    }
                }
                _ => (authority, 443),
            };
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if bare.is_empty() || path.is_empty() {
                return Err(SpecError::Invalid(s.into()));
            }
            // An IP host is the address; a name is looked up when first needed.
            let ip = bare
                .parse::<IpAddr>()
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            return Ok(Self {
                transport: Transport::Https(s.trim_end_matches('/').into()),
                addr: SocketAddr::new(ip, port),
            });
        } else if s.contains("://") {
            return Err(SpecError::Invalid(s.into()));
        } else {
            (Transport::Udp, s)
        };
        let rest = rest.trim_end_matches('/');
        let addr = rest
            .parse::<SocketAddr>()
            .or_else(|_| rest.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .or_else(|_| {
                rest.strip_prefix('[')
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|r| r.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, 53))
                    .ok_or(())
            })
            .map_err(|_| SpecError::Invalid(s.into()))?;
        Ok(Self { transport, addr })
    }
}

/// Parses a configured list of upstreams. Schemes this release cannot speak yet (none today;
/// kept for quic://) are skipped with a warning as long as a usable upstream remains, so a
/// configuration copied from SPEC §2 still loads; anything malformed is an error.
pub fn parse_specs<'a>(
    items: impl IntoIterator<Item = &'a toml::Spanned<String>>,
    mut error: impl FnMut(&toml::Spanned<String>, SpecError),
) -> Vec<UpstreamSpec> {
    let mut specs = Vec::new();
    let mut unsupported = Vec::new();
    for item in items {
        match item.get_ref().parse::<UpstreamSpec>() {
            Ok(s) => specs.push(s),
            Err(e @ SpecError::Unsupported(..)) => unsupported.push((item, e)),
            Err(e) => error(item, e),
        }
    }
    if specs.is_empty() {
        for (item, e) in unsupported {
            error(item, e);
        }
    } else {
        for (_, e) in unsupported {
            tracing::warn!("{e}; ignored");
        }
    }
    specs
}

impl fmt::Display for UpstreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.transport {
            Transport::Udp => write!(f, "udp://{}", self.addr),
            Transport::Tcp => write!(f, "tcp://{}", self.addr),
            Transport::Tls(name) => write!(f, "tls://{}#{name}", self.addr),
            Transport::Https(url) => f.write_str(url),
        }
    }
}

/// The question sent upstream, and the cache key's core.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question {
    /// The name, as the client wrote it (hickory's `Name` compares case-insensitively).
    pub name: Name,
    /// The type.
    pub qtype: RecordType,
    /// The class.
    pub qclass: DNSClass,
    /// The client asked for DNSSEC records (EDNS DO bit).
    pub dnssec_ok: bool,
    /// The client disabled DNSSEC checking (CD bit): passed upstream, and a separate
    /// cache entry, since a validating upstream answers such queries differently.
    pub checking_disabled: bool,
}

/// Why no answer could be had from upstream. "No answer" (timeout, network) and "a
/// wrong answer" (bogus) are kept apart: a stale answer may stand in for the first, never
/// for the second.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// No upstream answered in time.
    #[error("no upstream answered within the timeout")]
    Timeout,
    /// Every upstream failed at the network level (refused, unreachable, bad reply).
    #[error("upstream network error: {0}")]
    Network(String),
    /// The question could not be resolved for another reason (a CNAME loop, the limit of
    /// outgoing queries, no server with authority): its EDE code and why.
    #[error("{reason}")]
    Failed {
        /// The Extended DNS Error code.
        ede: u16,
        /// What failed.
        reason: String,
    },
    /// An answer came but failed DNSSEC validation: its EDE code (6-10, 12) and why.
    #[error("{reason}")]
    Bogus {
        /// The Extended DNS Error code that says how it failed.
        ede: u16,
        /// What failed, naming the zone.
        reason: String,
    },
}

impl Error {
    /// Whether the failure was a timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// Whether an answer came and was judged wrong (never papered over with stale data).
    pub fn is_bogus(&self) -> bool {
        matches!(self, Self::Bogus { .. })
    }

    /// The Extended DNS Error code for this failure (RFC 8914): 22 No Reachable Authority
    /// for timeouts, 23 Network Error for other failures to get an answer, the validation
    /// failure's own code for bogus answers.
    pub fn ede_code(&self) -> u16 {
        match self {
            Self::Timeout => ede::NO_REACHABLE_AUTHORITY,
            Self::Network(_) => ede::NETWORK_ERROR,
            Self::Bogus { ede, .. } | Self::Failed { ede, .. } => *ede,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_specs_parse() {
        let u: UpstreamSpec = "udp://127.0.0.1:5353".parse().unwrap();
        assert_eq!((u.transport, u.addr.port()), (Transport::Udp, 5353));
        let u: UpstreamSpec = "tcp://[::1]:53".parse().unwrap();
        assert_eq!(u.transport, Transport::Tcp);
        let u: UpstreamSpec = "9.9.9.9".parse().unwrap();
        assert_eq!(u.to_string(), "udp://9.9.9.9:53");
        let u: UpstreamSpec = "[::1]".parse().unwrap();
        assert_eq!(u.addr.port(), 53);
        let u: UpstreamSpec = "tls://1.1.1.1#cloudflare-dns.com".parse().unwrap();
        assert_eq!(u.to_string(), "tls://1.1.1.1:853#cloudflare-dns.com");
        let u: UpstreamSpec = "tls://[::1]:8853".parse().unwrap();
        assert_eq!(u.transport, Transport::Tls("::1".into()));
        let u: UpstreamSpec = "https://dns.example/dns-query".parse().unwrap();
        assert_eq!(u.addr.port(), 443);
        assert!(u.addr.ip().is_unspecified());
        let u: UpstreamSpec = "https://127.0.0.1:8443/dns-query".parse().unwrap();
        assert_eq!(u.addr, "127.0.0.1:8443".parse().unwrap());
        let u: UpstreamSpec = "https://[::1]:8443/q".parse().unwrap();
        assert_eq!(u.addr, "[::1]:8443".parse().unwrap());
        assert!("https://dns.example".parse::<UpstreamSpec>().is_err());
        assert!(matches!(
            "dns.google".parse::<UpstreamSpec>(),
            Err(SpecError::Invalid(..))
        ));
    }

    #[test]
    fn unsupported_upstreams_are_skipped_only_when_another_remains() {
        let sp = |v: &[&str]| {
            v.iter()
                .map(|s| toml::Spanned::new(0..0, s.to_string()))
                .collect::<Vec<_>>()
        };
        let mut errors = 0;
        let specs = parse_specs(
            &sp(&["udp://127.0.0.1:53", "https://dns.example/dns-query"]),
            |_, _| errors += 1,
        );
        assert_eq!((specs.len(), errors), (2, 0));
        let specs = parse_specs(&sp(&["bogus://x", "https://"]), |_, _| errors += 1);
        assert_eq!((specs.len(), errors), (0, 2));
        let specs = parse_specs(&sp(&["udp://127.0.0.1:53", "bogus://x"]), |_, _| {
            errors += 1
        });
        assert_eq!((specs.len(), errors), (1, 3));
    }
}
