//! The closed vocabularies that leave the process — in metric labels, query-log lines and
//! `explain` — each an enum with its label strings in one table, so a label cannot be
//! misspelt in one place or forgotten in another.
//!
//! This is the bottom layer: everything may name it, it names nothing of ours.

use hickory_proto::op::ResponseCode;

/// What was done with a query (`action` in `dnsgate_queries_total` and the query log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryAction {
    /// The real answer, no policy decided (or an allow policy did).
    Allow,
    /// A block answer.
    Block,
    /// An override answer.
    Override,
    /// A safe-search rewrite.
    SafeSearch,
    /// A YouTube restricted-mode rewrite.
    YtRestricted,
    /// The real answer, from the upstreams a `resolve` policy picked.
    Resolve,
    /// Refused before any policy ran (outsider, zone transfer, other class).
    Refused,
    /// No answer could be had, or the query could not be read.
    Error,
}

impl QueryAction {
    /// Every action, in label order.
    pub const ALL: [Self; 8] = [
        Self::Allow,
        Self::Block,
        Self::Override,
        Self::SafeSearch,
        Self::YtRestricted,
        Self::Resolve,
        Self::Refused,
        Self::Error,
    ];

    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Block => "block",
            Self::Override => "override",
            Self::SafeSearch => "safesearch",
            Self::YtRestricted => "ytrestricted",
            Self::Resolve => "resolve",
            Self::Refused => "refused",
            Self::Error => "error",
        }
    }

    /// Parses a label.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether the answer is a real one (resolved, not made up by us): a replay of it is
    /// a cache hit.
    pub fn is_resolved(self) -> bool {
        matches!(self, Self::Allow | Self::Resolve)
    }
}

/// When a policy decided: before resolution or after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Known from the question, the client and its identity.
    Pre,
    /// Known only once the name has been resolved.
    Post,
}

impl Phase {
    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pre => "pre",
            Self::Post => "post",
        }
    }
}

/// The transport a query came in on (`protocol` in `dnsgate_queries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Plain DNS over UDP.
    Udp,
    /// Plain DNS over TCP.
    Tcp,
    /// DNS over TLS (RFC 7858).
    Dot,
    /// DNS over HTTPS (RFC 8484).
    Doh,
}

impl Protocol {
    /// Every protocol, in label order.
    pub const ALL: [Self; 4] = [Self::Udp, Self::Tcp, Self::Dot, Self::Doh];

    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Dot => "dot",
            Self::Doh => "doh",
        }
    }
}

/// The response codes we send, as labels (`rcode` in `dnsgate_responses_total`, the query
/// log); anything else is `OTHER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rcode {
    /// NOERROR
    NoError,
    /// FORMERR
    FormErr,
    /// SERVFAIL
    ServFail,
    /// NXDOMAIN
    NxDomain,
    /// NOTIMP
    NotImp,
    /// REFUSED
    Refused,
    /// BADVERS
    BadVers,
    /// Any other code.
    Other,
}

impl Rcode {
    /// Every label, in order.
    pub const ALL: [Self; 8] = [
        Self::NoError,
        Self::FormErr,
        Self::ServFail,
        Self::NxDomain,
        Self::NotImp,
        Self::Refused,
        Self::BadVers,
        Self::Other,
    ];

    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoError => "NOERROR",
            Self::FormErr => "FORMERR",
            Self::ServFail => "SERVFAIL",
            Self::NxDomain => "NXDOMAIN",
            Self::NotImp => "NOTIMP",
            Self::Refused => "REFUSED",
            Self::BadVers => "BADVERS",
            Self::Other => "OTHER",
        }
    }
}

impl From<ResponseCode> for Rcode {
    fn from(rcode: ResponseCode) -> Self {
        match rcode {
            ResponseCode::NoError => Self::NoError,
            ResponseCode::FormErr => Self::FormErr,
            ResponseCode::ServFail => Self::ServFail,
            ResponseCode::NXDomain => Self::NxDomain,
            ResponseCode::NotImp => Self::NotImp,
            ResponseCode::Refused => Self::Refused,
            ResponseCode::BADVERS => Self::BadVers,
            _ => Self::Other,
        }
    }
}

/// Extended DNS Error codes we send (RFC 8914 §5).
pub mod ede {
    /// 3: Stale Answer.
    pub const STALE: u16 = 3;
    /// 0 Other Error (a CNAME loop, too many queries for one question).
    pub const OTHER: u16 = 0;
    /// 19: Stale NXDOMAIN Answer.
    pub const STALE_NXDOMAIN: u16 = 19;
    /// 4: Forged Answer.
    pub const FORGED: u16 = 4;
    /// 1: Unsupported DNSKEY Algorithm (the zone is treated as insecure).
    pub const UNSUPPORTED_DNSKEY_ALGORITHM: u16 = 1;
    /// 2: Unsupported DS Digest Type (the zone is treated as insecure).
    pub const UNSUPPORTED_DS_DIGEST: u16 = 2;
    /// 5: DNSSEC Indeterminate (validation could not be finished).
    pub const DNSSEC_INDETERMINATE: u16 = 5;
    /// 6: DNSSEC Bogus.
    pub const DNSSEC_BOGUS: u16 = 6;
    /// 7: Signature Expired.
    pub const SIGNATURE_EXPIRED: u16 = 7;
    /// 8: Signature Not Yet Valid.
    pub const SIGNATURE_NOT_YET_VALID: u16 = 8;
    /// 9: DNSKEY Missing (no DNSKEY for a DS or an RRSIG).
    pub const DNSKEY_MISSING: u16 = 9;
    /// 10: RRSIGs Missing.
    pub const RRSIGS_MISSING: u16 = 10;
    /// 12: NSEC Missing (no proof of non-existence).
    pub const NSEC_MISSING: u16 = 12;
    /// 27: Unsupported NSEC3 Iterations Value (RFC 9276; the answer is treated as insecure).
    pub const UNSUPPORTED_NSEC3_ITERATIONS: u16 = 27;
    /// 15: Blocked.
    pub const BLOCKED: u16 = 15;
    /// 17: Filtered.
    pub const FILTERED: u16 = 17;
    /// 18: Prohibited.
    pub const PROHIBITED: u16 = 18;
    /// 22: No Reachable Authority.
    pub const NO_REACHABLE_AUTHORITY: u16 = 22;
    /// 23: Network Error.
    pub const NETWORK_ERROR: u16 = 23;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_cover_every_code() {
        for a in QueryAction::ALL {
            assert_eq!(QueryAction::parse(a.as_str()), Some(a));
        }
        for (i, r) in Rcode::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i, "ALL is in declaration order");
        }
        assert_eq!(Rcode::from(ResponseCode::NXDomain).as_str(), "NXDOMAIN");
        assert_eq!(Rcode::from(ResponseCode::YXDomain), Rcode::Other);
        assert!(QueryAction::Resolve.is_resolved() && !QueryAction::Block.is_resolved());
    }
}
