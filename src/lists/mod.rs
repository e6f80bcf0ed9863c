//! Lists (SPEC §2 `[[lists]]`): domain, IP, e-mail and string sets, parsed from the
//! domains, hosts, adblock and plain formats.
//!
//! Domain lists match by label suffix with hash probes, never by scanning, so a
//! 1,000,000-entry list costs one probe per label of the query name.
//!
//! Files: `name` (what a DNS name is, normalisation), `domain` ([`DomainList`], the arena
//! set), `parse` (domains / hosts / adblock), `ip` ([`IpSet`]), `values` (e-mail and
//! string sets, one-value-per-line lists), `url/` (lists fetched over HTTP(S): disk copies,
//! conditional refreshes, swaps). Parsing never fails (SPEC §7 keeps a bad list
//! *file* an error, but a bad *line* is skipped and counted, as blocky does): the caller
//! decides what to do with [`ParseStats`].

use std::fmt;

mod domain;
mod ip;
mod name;
mod parse;
#[cfg(test)]
mod tests;
pub mod url;
mod values;

pub use domain::DomainList;
pub use ip::IpSet;
pub use name::{NameError, name_to_ascii};
pub use values::{EmailSet, StringSet};

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
    /// Distinct entries added (blocks and exceptions); repeated lines count once.
    pub entries: usize,
    /// Lines skipped because a DNS filter cannot use them (on a hosts line, each unusable
    /// name counts). Comments and blank lines are not counted.
    pub skipped: usize,
    /// The first [`ParseStats::MAX_WARNINGS`] skipped lines: (1-based line number, why).
    pub warnings: Vec<(usize, String)>,
}

impl ParseStats {
    /// How many warnings are kept; the rest are only counted.
    pub const MAX_WARNINGS: usize = 20;

    /// Counts a skipped line, keeping its warning while there is room. The message is
    /// formatted only then, so a list of a million junk lines allocates 20 strings.
    pub(crate) fn skip(&mut self, line: usize, why: fmt::Arguments<'_>) {
        self.skipped += 1;
        if self.warnings.len() < Self::MAX_WARNINGS {
            self.warnings.push((line, why.to_string()));
        }
    }
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
    ///
    /// Domain lists read every format (`plain` as `domains`). IP, e-mail and string lists
    /// read every format as one value per line: `hosts` and `adblock` rules mean nothing
    /// for them, so such lines are skipped and counted rather than guessed at.
    pub fn parse(kind: ListKind, format: ListFormat, text: &str) -> (Self, ParseStats) {
        match kind {
            ListKind::Domain => {
                let (list, stats) = parse::parse_domains(format, text);
                (Self::Domain(list), stats)
            }
            ListKind::Ip | ListKind::Email | ListKind::String => {
                values::parse_values(kind, format, text)
            }
        }
    }

    /// Number of entries: what [`ParseStats::entries`] counted (for a domain list, blocked
    /// names plus exceptions; for an IP list, addresses and networks before merging).
    pub fn len(&self) -> usize {
        match self {
            Self::Domain(list) => list.len() + list.exceptions_len(),
            Self::Ip(set) => set.len(),
            Self::Email(set) => set.len(),
            Self::String(set) => set.len(),
        }
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
