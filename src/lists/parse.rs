//! Parsers for domain lists in the `domains`, `hosts` and `adblock` formats (`plain`
//! behaves like `domains` for domain lists).
//!
//! Each parser walks the text line by line on borrowed slices; a name is copied only into
//! the list's arena (and, when it has uppercase letters or is in Unicode, through one
//! reused buffer). The list is reserved from the line count first, so a million-line list
//! neither rehashes nor regrows. A name in Unicode is entered in its punycode form.
//!
//! Nothing is an error: a line a DNS filter cannot use is skipped and counted with its
//! line number (blocky's parsers), because real lists mix formats and carry browser-only
//! rules. The tolerances:
//! - `domains`: one name per line, `#` and `!` comments, inline `# comment`. A line that
//!   is really a hosts line (`0.0.0.0 name`) is read as one; several bare names are not.
//! - `hosts`: the address column is dropped and every name after it is an entry, except
//!   `localhost`, `local`, `broadcasthost`, `ip6-*` and the like, as Pi-hole does. A line
//!   holding a bare name is accepted as a name.
//! - `adblock`: see [`DomainParser::adblock_line`].

use super::domain::{BLOCK, DomainList, EXCEPT};
use super::name::{NameError, is_local_host, normalize};
use super::{ListFormat, ParseStats};

/// Adblock modifiers that do not narrow a rule below "this host", so the rule still means
/// "block (or except) the name".
///
/// The party modifiers are a deliberate choice: DNS cannot tell a first-party visit from
/// a third-party load, and lists such as NoCoin mark nearly every host `$third-party`
/// while meaning "block this host", so we block the name (a direct visit to it is blocked
/// too). AdGuard Home's engine is stricter and drops such rules; we do not, or NoCoin would
/// load almost empty. `$important` is accepted but gives a block no priority over an
/// exception here. Everything else narrows the rule (`$script`, `$domain=`, `$dnstype=`,
/// `$client=`...) or rewrites other rules (`$badfilter`), and the line is skipped.
const DNS_MODIFIERS: &[&str] = &[
    "third-party",
    "3p",
    "~third-party",
    "~3p",
    "first-party",
    "1p",
    "~first-party",
    "~1p",
    "important",
    "all",
    "document",
    "doc",
    "match-case",
];

/// Parses a domain list.
pub(super) fn parse_domains(format: ListFormat, text: &str) -> (DomainList, ParseStats) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
    let mut parser = DomainParser {
        list: DomainList::with_capacity(lines, text.len()),
        stats: ParseStats::default(),
        buf: String::new(),
    };
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        match format {
            ListFormat::Adblock => parser.adblock_line(number, line),
            ListFormat::Hosts => parser.name_line(number, line, true),
            ListFormat::Domains | ListFormat::Plain => parser.name_line(number, line, false),
        }
    }
    parser.list.shrink_to_fit();
    (parser.list, parser.stats)
}

/// A list being built, and what was skipped.
struct DomainParser {
    list: DomainList,
    stats: ParseStats,
    /// Reused for lowercasing names that have uppercase letters.
    buf: String,
}

impl DomainParser {
    /// Normalises and inserts one name, counting it if new. `hosts` applies the hosts-file
    /// rule that skips the machine's own names.
    fn insert(&mut self, raw: &str, flag: u8, hosts: bool) -> Result<(), NameError> {
        let name = normalize(raw, &mut self.buf)?;
        if hosts && is_local_host(name) {
            return Err(NameError::LocalHost);
        }
        if self.list.insert_normalized(name, flag)? {
            self.stats.entries += 1;
        }
        Ok(())
    }

    /// [`Self::insert`], counting a refused name as skipped.
    fn add(&mut self, number: usize, raw: &str, hosts: bool) {
        if let Err(error) = self.insert(raw, BLOCK, hosts) {
            self.stats
                .skip(number, format_args!("{error}: {}", clip(raw)));
        }
    }

    /// A `domains` or `hosts` line: `name`, or `address name [name...]`.
    fn name_line(&mut self, number: usize, line: &str, hosts: bool) {
        // Fast path for the lines that make up nearly every list, `name` and
        // `0.0.0.0 name`: validation already rejects whitespace and `#`, so a clean line
        // needs no comment or token scan. Anything else takes the full path below, which
        // also reports why a line is skipped.
        let address = line
            .strip_prefix("0.0.0.0 ")
            .or_else(|| line.strip_prefix("127.0.0.1 "));
        let (candidate, hosts_line) = match address {
            Some(name) => (name, true),
            None => (line, hosts),
        };
        if !candidate.is_empty() && self.insert(candidate, BLOCK, hosts_line).is_ok() {
            return;
        }
        let line = line.find('#').map_or(line, |hash| &line[..hash]);
        let mut tokens = line.split_ascii_whitespace();
        let Some(first) = tokens.next() else { return };
        if first.starts_with('!') {
            return;
        }
        match tokens.next() {
            None if hosts && is_address(first) => {
                self.stats.skip(
                    number,
                    format_args!("address without host names: {}", clip(first)),
                );
            }
            None => self.add(number, first, hosts),
            Some(second) if is_address(first) => {
                for name in std::iter::once(second).chain(tokens) {
                    self.add(number, name, true);
                }
            }
            Some(_) => {
                self.stats.skip(
                    number,
                    format_args!("several names without an address: {}", clip(line)),
                );
            }
        }
    }

    /// An adblock line. Taken: `||name^` and `||name` (blocks), `@@||name^` (exceptions),
    /// a bare `name` or `name^`, and hosts lines, each with only [`DNS_MODIFIERS`].
    /// Skipped and counted: cosmetic and scriptlet rules (`##`, `#@#`, `#$#`, `$$`...),
    /// regex rules (`/.../`), URL and path rules (`/path`, `|http://`, `||host/path`,
    /// `||host^*?x=`), wildcards inside a name, IP addresses, and rules whose modifiers
    /// narrow them to content types, pages or clients (`$script`, `$websocket`,
    /// `$domain=`, `$csp`, `$badfilter`...): blocking or excepting the whole name for
    /// those would over-block (or over-allow), so such rules are ignored, as AdGuard
    /// Home ignores them. Not counted: blank lines, `!` and `#` comments, `[Adblock ...]`.
    fn adblock_line(&mut self, number: usize, line: &str) {
        // Fast path for the rule DNS lists are made of, `||name^` (optionally
        // `$third-party`): if what lies between is a valid name, the line holds no
        // cosmetic marker, path or other modifier, since validation rejects all of them.
        let plain = line.strip_suffix("$third-party").unwrap_or(line);
        let host = plain
            .strip_prefix("||")
            .and_then(|rest| rest.strip_suffix('^'));
        if host.is_some_and(|host| self.insert(host, BLOCK, false).is_ok()) {
            return;
        }
        let line = line.trim();
        if line.is_empty()
            || line.starts_with('!')
            || (line.starts_with('[') && line.ends_with(']'))
        {
            return;
        }
        if is_cosmetic(line) {
            return self
                .stats
                .skip(number, format_args!("cosmetic rule: {}", clip(line)));
        }
        if line.starts_with('#') {
            return;
        }
        let (rule, flag) = line
            .strip_prefix("@@")
            .map_or((line, BLOCK), |rule| (rule, EXCEPT));
        if rule.starts_with('/') {
            let what = if is_regex(rule) {
                "regex rule"
            } else {
                "URL or path rule"
            };
            return self
                .stats
                .skip(number, format_args!("{what}: {}", clip(line)));
        }
        let (pattern, modifiers) = rule.split_once('$').unwrap_or((rule, ""));
        if pattern.is_empty() {
            return self.stats.skip(
                number,
                format_args!("rule with only modifiers: {}", clip(line)),
            );
        }
        let narrowing = modifiers
            .split(',')
            .map(str::trim)
            .find(|m| !is_dns_modifier(m));
        if let Some(modifier) = narrowing {
            let modifier = clip(modifier.split('=').next().unwrap_or(modifier));
            return self.stats.skip(
                number,
                format_args!("modifier ${modifier} does not apply to DNS: {}", clip(line)),
            );
        }
        let (name, anchored) = if let Some(host) = pattern.strip_prefix("||") {
            let host = host.strip_suffix('|').unwrap_or(host);
            (host.strip_suffix('^').unwrap_or(host), true)
        } else if pattern.starts_with('|') || pattern.contains("://") {
            return self
                .stats
                .skip(number, format_args!("URL rule: {}", clip(line)));
        } else if flag == BLOCK && pattern.contains(|c: char| c.is_ascii_whitespace()) {
            return self.name_line(number, pattern, true);
        } else {
            (pattern.strip_suffix('^').unwrap_or(pattern), false)
        };
        if name.contains(['^', '/']) {
            return self
                .stats
                .skip(number, format_args!("URL or path rule: {}", clip(line)));
        }
        match self.insert(name, flag, false) {
            Ok(()) => {}
            // A bare pattern is a URL substring to an ad blocker; only a whole name is a
            // domain rule.
            Err(error) if !anchored && error != NameError::IpAddress => {
                self.stats.skip(
                    number,
                    format_args!("URL pattern, not a name: {}", clip(line)),
                );
            }
            Err(error) => self
                .stats
                .skip(number, format_args!("{error}: {}", clip(line))),
        }
    }
}

/// Whether a hosts-file address column: an IP address, perhaps with a `%zone`.
fn is_address(token: &str) -> bool {
    token == "0.0.0.0"
        || token == "127.0.0.1"
        || token
            .split('%')
            .next()
            .is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_ok())
}

/// Element hiding, scriptlet and HTML filtering rules: `##`, `#@#`, `#?#`, `#$#`, `#%#`
/// (and their `#@` exceptions), `$$`, `$@$`.
fn is_cosmetic(line: &str) -> bool {
    line.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'#' && matches!(w[1], b'#' | b'@' | b'?' | b'$' | b'%'))
        || line.contains("$$")
        || line.contains("$@$")
}

fn is_regex(rule: &str) -> bool {
    rule.len() > 1 && (rule.ends_with('/') || rule.contains("/$"))
}

fn is_dns_modifier(modifier: &str) -> bool {
    modifier.is_empty()
        || DNS_MODIFIERS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(modifier))
}

/// At most 80 characters of `s`, for warnings.
pub(super) fn clip(s: &str) -> &str {
    s.char_indices().nth(80).map_or(s, |(end, _)| &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(format: ListFormat, text: &str) -> (DomainList, ParseStats) {
        parse_domains(format, text)
    }

    fn blocked(list: &DomainList) -> Vec<&str> {
        let mut names: Vec<&str> = list.blocked().collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn domains_format_takes_names_and_skips_comments() {
        let text = "# header\n! also a comment\n\nExample.COM.\n*.wild.org\nads.net # inline\n1.2.3.4\nbad name here\n";
        let (list, stats) = parse(ListFormat::Domains, text);
        assert_eq!(blocked(&list), ["ads.net", "example.com", "wild.org"]);
        assert_eq!((stats.entries, stats.skipped), (3, 2));
        assert_eq!(stats.warnings[0].0, 7);
        assert!(
            stats.warnings[0].1.contains("IP address"),
            "{:?}",
            stats.warnings
        );
        assert!(list.matches_suffix("x.wild.org"));
    }

    #[test]
    fn domains_format_reads_hosts_lines() {
        let (list, stats) = parse(ListFormat::Plain, "0.0.0.0 a.com\nb.com\n");
        assert_eq!(blocked(&list), ["a.com", "b.com"]);
        assert_eq!(stats.skipped, 0);
    }

    #[test]
    fn hosts_format_drops_address_and_takes_every_name() {
        let text = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n\
                    0.0.0.0 0.0.0.0\n255.255.255.255 broadcasthost\n\
                    0.0.0.0 a.com b.com # two\n:: c.com\nfe80::1%lo0 d.com\n\
                    127.0.0.1\nbare.org\nx.com y.com\n\t0.0.0.0\tTab.Com\r\n";
        let (list, stats) = parse(ListFormat::Hosts, text);
        assert_eq!(
            blocked(&list),
            ["a.com", "b.com", "bare.org", "c.com", "d.com", "tab.com"]
        );
        // localhost x2, ip6-* x2, 0.0.0.0, broadcasthost, bare address, two bare names.
        assert_eq!(stats.skipped, 8, "{:?}", stats.warnings);
        assert_eq!(stats.entries, 6);
    }

    #[test]
    fn adblock_takes_domain_rules_with_dns_modifiers() {
        let text = "[Adblock Plus 2.0]\n! Title: x\n||a.com^\n||b.com^$third-party\n||c.com\n\
                    ||d.com$third-party\n||e.com^$important,3p\nf.com\ng.com^\n||*.h.com^\n\
                    0.0.0.0 i.com\n||J.Com^|\n";
        let (list, stats) = parse(ListFormat::Adblock, text);
        let want = [
            "a.com", "b.com", "c.com", "d.com", "e.com", "f.com", "g.com", "h.com", "i.com",
            "j.com",
        ];
        assert_eq!(blocked(&list), want);
        assert_eq!(stats.skipped, 0, "{:?}", stats.warnings);
    }

    #[test]
    fn adblock_exception_takes_subdomain_back() {
        let (list, stats) = parse(
            ListFormat::Adblock,
            "||example.com^\n@@||cdn.example.com^\n",
        );
        assert_eq!(
            (list.len(), list.exceptions_len(), stats.entries),
            (1, 1, 2)
        );
        assert!(list.matches_suffix("ads.example.com"));
        assert!(!list.matches_suffix("cdn.example.com"));
        assert!(!list.matches_suffix("img.cdn.example.com"));
    }

    #[test]
    fn adblock_skips_browser_only_rules_and_counts_them() {
        let rules = [
            "example.com##.ad",
            "##.banner",
            "example.com#@#.ad",
            "example.com#$#body { color: red }",
            "example.com#%#//scriptlet('abort')",
            "example.com$$script[tag-content=\"x\"]",
            "/banner/*/img^",
            "/^https?:\\/\\/ads\\./$script",
            "|http://example.com/",
            "||cryptobara.com/client/worker.js",
            "||dekoder.ws^*?proxy=",
            "||go.megabanners.cf^$websocket",
            "||authedwebmine.cz^$third-party,domain=~webmine.cz",
            "||x.com^$badfilter",
            "@@||api.nyda.pro^$websocket",
            "$websocket,domain=a.com|b.com",
            "||minero-proxy-*.now.sh^$third-party",
            "||23.83.114.131^$third-party",
            "-coin-hive.js",
            ".info^$domain=sleeptimer.org",
            "http://example.com/",
        ];
        let (list, stats) = parse(ListFormat::Adblock, &rules.join("\n"));
        assert!(
            list.is_empty() && list.exceptions_len() == 0,
            "{:?}",
            list.blocked().collect::<Vec<_>>()
        );
        assert_eq!(stats.skipped, rules.len());
        assert_eq!(stats.warnings.len(), ParseStats::MAX_WARNINGS);
        assert!(
            stats.warnings[0].1.starts_with("cosmetic rule"),
            "{:?}",
            stats.warnings[0]
        );
        assert!(
            stats.warnings[7].1.starts_with("regex rule"),
            "{:?}",
            stats.warnings[7]
        );
        assert!(
            stats.warnings[11].1.starts_with("modifier $websocket"),
            "{:?}",
            stats.warnings[11]
        );
    }

    #[test]
    fn adblock_comments_and_blank_lines_are_not_counted() {
        let (list, stats) = parse(ListFormat::Adblock, "! c\n# c\n\n[Adblock Plus 2.0]\n   \n");
        assert!(list.is_empty());
        assert_eq!(stats, ParseStats::default());
    }

    #[test]
    fn warnings_carry_line_numbers_and_are_capped() {
        let text = "bad/name\n".repeat(50);
        let (_, stats) = parse(ListFormat::Domains, &text);
        assert_eq!(stats.skipped, 50);
        assert_eq!(stats.warnings.len(), ParseStats::MAX_WARNINGS);
        assert_eq!(
            stats.warnings[3],
            (4, "URL or path, not a name: bad/name".to_owned())
        );
    }

    #[test]
    fn duplicate_lines_count_once() {
        let (list, stats) = parse(ListFormat::Domains, "a.com\nA.com\na.com.\n");
        assert_eq!((list.len(), stats.entries, stats.skipped), (1, 1, 0));
    }
}
