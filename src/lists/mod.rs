//! Lists (SPEC §2 `[[lists]]`): domain, IP, e-mail and string sets, parsed from the
//! domains, hosts, adblock and plain formats.
//!
//! Domain lists match by label suffix with hash probes, never by scanning, so a
//! 1,000,000-entry list costs one probe per label of the query name.

use std::net::IpAddr;

/// The value type of a list (`type = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// DNS names.
    Domain,
    /// IP addresses and CIDR networks.
    Ip,
    /// E-mail addresses.
    Email,
    /// Arbitrary strings.
    String,
}

/// The file format of a list (`format = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// One name per line; `#` comments.
    Domains,
    /// `/etc/hosts` lines: `0.0.0.0 name [name...]`.
    Hosts,
    /// Adblock Plus / AdGuard: `||name^`, `@@||name^` exceptions.
    Adblock,
    /// One value per line (IPs/CIDRs, e-mails, strings; names too).
    Plain,
}

/// What parsing a list found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseStats {
    /// Entries added (blocks and exceptions).
    pub entries: usize,
    /// Lines skipped because a DNS filter cannot use them.
    pub skipped: usize,
    /// The first few skipped lines: (1-based line number, why).
    pub warnings: Vec<(usize, String)>,
}

/// A loaded list.
#[derive(Debug)]
pub enum List {
    /// A domain list.
    Domain(DomainList),
    /// An IP list.
    Ip(IpSet),
    /// An e-mail list.
    Email(EmailSet),
    /// A string list.
    String(StringSet),
}

impl List {
    /// Parses list text of the given kind and format. Never fails: unusable lines are
    /// skipped and counted.
    pub fn parse(kind: ListKind, format: ListFormat, text: &str) -> (Self, ParseStats) {
        let _ = (kind, format, text);
        (Self::String(StringSet::default()), ParseStats::default())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        0
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kind of the list.
    pub fn kind(&self) -> ListKind {
        match self {
            Self::Domain(_) => ListKind::Domain,
            Self::Ip(_) => ListKind::Ip,
            Self::Email(_) => ListKind::Email,
            Self::String(_) => ListKind::String,
        }
    }
}

/// A domain list with adblock-style exceptions.
#[derive(Debug, Default)]
pub struct DomainList {}

impl DomainList {
    /// `name` (lowercase, no trailing dot) is listed itself and not excepted.
    pub fn matches_exact(&self, _name: &str) -> bool {
        false
    }

    /// `name` or one of its parents is listed, and neither it nor a parent is excepted.
    pub fn matches_suffix(&self, _name: &str) -> bool {
        false
    }
}

/// A set of IP addresses and networks.
#[derive(Debug, Default)]
pub struct IpSet {}

impl IpSet {
    /// Whether `ip` is in the set (IPv4-mapped IPv6 addresses match IPv4 entries).
    pub fn contains(&self, _ip: IpAddr) -> bool {
        false
    }
}

/// A set of e-mail addresses, with their canonical forms for extended matching.
#[derive(Debug, Default)]
pub struct EmailSet {}

impl EmailSet {
    /// Whether `email` (lowercase) is listed; with `variants`, also when its canonical form
    /// (see [`crate::identity::canonical_email`]) equals a listed address's.
    pub fn contains(&self, _email: &str, _variants: bool) -> bool {
        false
    }
}

/// A set of strings, compared exactly.
#[derive(Debug, Default)]
pub struct StringSet {}

impl StringSet {
    /// Whether `s` is listed.
    pub fn contains(&self, _s: &str) -> bool {
        false
    }
}
