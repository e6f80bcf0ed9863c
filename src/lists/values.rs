//! E-mail and string sets, and the one-value-per-line reader behind IP, e-mail and
//! string lists.
//!
//! These lists are small next to domain lists (a directory, a few hundred networks), so
//! plain hash sets of boxed strings are enough. An [`EmailSet`] precomputes the canonical
//! form of every address at load time, so an extended-address match (SPEC §5) is one extra
//! probe rather than a scan.
//!
//! Every format reads the same way for these kinds: one value per line, blank lines and
//! `#` comment lines ignored (and `!` comments and `[...]` headers in `adblock` format,
//! where they are comment syntax). `hosts` and `adblock` syntax means nothing for an IP,
//! e-mail or string, so a line that is not a single value is skipped and counted rather
//! than guessed at: a hosts file given as an IP list loads empty, with warnings.

use hashbrown::HashSet;

use super::ip::{IpSet, parse_network};
use super::parse::clip;
use super::{List, ListFormat, ListKind, ParseStats};
use crate::identity::canonical_email;

/// A set of e-mail addresses, with their canonical forms for extended matching.
#[derive(Debug, Default, Clone)]
pub struct EmailSet {
    exact: HashSet<Box<str>>,
    canonical: HashSet<Box<str>>,
}

impl EmailSet {
    /// Adds an address (lowercased); returns whether it was new. Anything that is not
    /// `local@domain` without spaces is refused with `None`.
    pub fn insert(&mut self, email: &str) -> Option<bool> {
        let email = email.to_ascii_lowercase();
        let (local, domain) = email.split_once('@')?;
        let valid = !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && !email.contains(|c: char| c.is_whitespace() || c.is_control());
        if !valid {
            return None;
        }
        self.canonical
            .insert(canonical_email(&email).into_boxed_str());
        Some(self.exact.insert(email.into_boxed_str()))
    }

    /// Whether `email` (lowercase) is listed; with `variants`, also when its canonical form
    /// (see [`crate::identity::canonical_email`]) equals a listed address's.
    pub fn contains(&self, email: &str, variants: bool) -> bool {
        self.exact.contains(email)
            || (variants && self.canonical.contains(canonical_email(email).as_str()))
    }

    /// Number of listed addresses.
    pub fn len(&self) -> usize {
        self.exact.len()
    }

    /// Whether no address is listed.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }
}

/// A set of strings, compared exactly.
#[derive(Debug, Default, Clone)]
pub struct StringSet {
    set: HashSet<Box<str>>,
}

impl StringSet {
    /// Adds a string as given; returns whether it was new.
    pub fn insert(&mut self, s: &str) -> bool {
        self.set.insert(Box::from(s))
    }

    /// Whether `s` is listed.
    pub fn contains(&self, s: &str) -> bool {
        self.set.contains(s)
    }

    /// Number of listed strings.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether no string is listed.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Parses an IP, e-mail or string list (see the module docs for the line syntax).
pub(super) fn parse_values(kind: ListKind, format: ListFormat, text: &str) -> (List, ParseStats) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut stats = ParseStats::default();
    let mut networks = Vec::new();
    let mut emails = EmailSet::default();
    let mut strings = StringSet::default();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        let adblock_comment = format == ListFormat::Adblock
            && (line.starts_with('!') || (line.starts_with('[') && line.ends_with(']')));
        if line.is_empty() || line.starts_with('#') || adblock_comment {
            continue;
        }
        // A string may hold `#` and spaces; an address or e-mail may be followed by a
        // comment but never holds a space itself.
        let value = match kind {
            ListKind::String => line,
            _ => line.find('#').map_or(line, |hash| &line[..hash]).trim_end(),
        };
        let added = match kind {
            ListKind::Ip => parse_network(value)
                .map(|net| networks.push(net))
                .map(|()| true),
            ListKind::Email => emails.insert(value),
            ListKind::String => Some(strings.insert(value)),
            ListKind::Domain => None,
        };
        match added {
            Some(true) => stats.entries += 1,
            Some(false) => {}
            None => {
                let what = match kind {
                    ListKind::Ip => "not an IP address or network",
                    _ => "not an e-mail address",
                };
                stats.skip(number, format_args!("{what}: {}", clip(value)));
            }
        }
    }
    let list = match kind {
        ListKind::Ip => List::Ip(IpSet::from_networks(networks)),
        ListKind::Email => List::Email(emails),
        _ => List::String(strings),
    };
    (list, stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_match_is_exact_unless_variants_requested() {
        let (list, stats) = parse_values(
            ListKind::Email,
            ListFormat::Plain,
            "Contact@Example.com\n# c\n",
        );
        assert_eq!((stats.entries, stats.skipped), (1, 0));
        let List::Email(set) = list else {
            panic!("not an e-mail list")
        };
        assert!(set.contains("contact@example.com", false));
        assert!(!set.contains("con.tact+1@example.com", false));
        assert!(set.contains("con.tact+1@example.com", true));
        assert!(!set.contains("other@example.com", true));
    }

    #[test]
    fn listed_variant_matches_canonical_address() {
        let mut set = EmailSet::default();
        assert_eq!(set.insert("a.b+news@example.com"), Some(true));
        assert!(set.contains("ab@example.com", true));
        assert!(!set.contains("ab@example.com", false));
    }

    #[test]
    fn bad_emails_are_skipped() {
        let text =
            "no-at-sign\n@example.com\nuser@\na b@example.com\nx@y@z\nok@example.com # who\n";
        let (list, stats) = parse_values(ListKind::Email, ListFormat::Plain, text);
        assert_eq!((list.len(), stats.entries, stats.skipped), (1, 1, 5));
    }

    #[test]
    fn ip_list_takes_addresses_and_networks() {
        let text = "# office\n192.0.2.0/24\n2001:db8::1 # router\n\nnot-an-ip\n10.0.0.0/33\n";
        let (list, stats) = parse_values(ListKind::Ip, ListFormat::Plain, text);
        assert_eq!((stats.entries, stats.skipped), (2, 2));
        assert_eq!(stats.warnings[0].0, 5);
        let List::Ip(set) = list else {
            panic!("not an IP list")
        };
        assert!(set.contains("192.0.2.9".parse().expect("ip")));
        assert!(set.contains("2001:db8::1".parse().expect("ip")));
    }

    #[test]
    fn ip_list_in_hosts_or_adblock_syntax_skips_its_rules() {
        let (list, stats) = parse_values(
            ListKind::Ip,
            ListFormat::Hosts,
            "0.0.0.0 ads.example.com\n10.0.0.1\n",
        );
        assert_eq!((list.len(), stats.skipped), (1, 1));
        let (list, stats) = parse_values(
            ListKind::Ip,
            ListFormat::Adblock,
            "[Adblock]\n! c\n||1.2.3.4^\n5.6.7.8\n",
        );
        assert_eq!((list.len(), stats.skipped), (1, 1));
    }

    #[test]
    fn strings_are_trimmed_and_exact() {
        let (list, stats) = parse_values(
            ListKind::String,
            ListFormat::Plain,
            "  Hello World \n# c\nC# notes\nx\nx\n",
        );
        assert_eq!((stats.entries, stats.skipped), (3, 0));
        let List::String(set) = list else {
            panic!("not a string list")
        };
        assert!(set.contains("Hello World"));
        assert!(set.contains("C# notes"));
        assert!(!set.contains("hello world"));
    }
}
