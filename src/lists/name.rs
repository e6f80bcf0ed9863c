//! DNS name normalisation and validation for list entries.
//!
//! Every format funnels its names through [`normalize`], so a domain set holds one
//! spelling per name (ASCII lowercase, no trailing dot, no leading `*.`) and suffix
//! probes can compare bytes. The check is a single pass over the bytes that also notes
//! whether there is an uppercase letter; only then is the name copied, lowercased, into a
//! buffer the caller reuses, so the usual all-lowercase line costs no allocation.
//!
//! What counts as a name is deliberately the hostname rule of RFC 952/1123 relaxed the
//! way real block lists need: `_` is allowed anywhere (`_dmarc`, `pt_br.statcounter.com`
//! appear in lists and resolve), labels are 1–63 bytes, the whole name at most 253, a label
//! may not start or end with `-`, and the last label may not be all digits (RFC 3696 §2),
//! which keeps IPv4 addresses and adblock fragments such as `-coin-hive.js` out.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a token is not usable as a DNS name in a domain list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Nothing left after stripping `*.` and the trailing dot.
    #[error("empty name")]
    Empty,
    /// Longer than 253 bytes.
    #[error("name longer than 253 bytes")]
    TooLong,
    /// Two dots in a row, or a leading dot.
    #[error("empty label")]
    EmptyLabel,
    /// A label longer than 63 bytes.
    #[error("label longer than 63 bytes")]
    LabelTooLong,
    /// A label starting or ending with `-`.
    #[error("label starts or ends with '-'")]
    Hyphen,
    /// An IPv4 or IPv6 address where a name belongs.
    #[error("IP address in a domain list")]
    IpAddress,
    /// The last label is all digits.
    #[error("numeric top-level label")]
    NumericTld,
    /// A `*` other than a leading `*.`.
    #[error("wildcard inside a name")]
    Wildcard,
    /// A `/`: a URL or path, not a name.
    #[error("URL or path, not a name")]
    Path,
    /// Whitespace inside the name.
    #[error("whitespace inside a name")]
    Whitespace,
    /// A non-ASCII character (internationalised names must be listed in punycode).
    #[error("non-ASCII name (use punycode)")]
    NonAscii,
    /// Another character that cannot be in a hostname.
    #[error("character {0:?} not allowed in a name")]
    BadChar(char),
    /// A name such as `localhost` that hosts files map for the machine itself.
    #[error("local host name")]
    LocalHost,
    /// The list has grown past what one domain set can address (4 GiB of names).
    #[error("list too large")]
    TooLarge,
}

/// Normalises `raw` into a list entry: strips one trailing dot and a leading `*.`,
/// validates, and lowercases into `buf` only when needed.
pub(crate) fn normalize<'a>(raw: &'a str, buf: &'a mut String) -> Result<&'a str, NameError> {
    let name = raw.strip_suffix('.').unwrap_or(raw);
    let name = name.strip_prefix("*.").unwrap_or(name);
    if check(name)? {
        buf.clear();
        buf.push_str(name);
        buf.make_ascii_lowercase();
        let lowered: &'a String = buf;
        Ok(lowered.as_str())
    } else {
        Ok(name)
    }
}

/// Validates a name; returns whether it has uppercase letters.
fn check(name: &str) -> Result<bool, NameError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err(NameError::Empty);
    }
    let mut upper = false;
    let mut label_start = 0;
    let mut numeric_label = true;
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'a'..=b'z' | b'_' => numeric_label = false,
            b'0'..=b'9' => {}
            b'A'..=b'Z' => {
                upper = true;
                numeric_label = false;
            }
            b'-' if i == label_start => return Err(NameError::Hyphen),
            b'-' => numeric_label = false,
            b'.' => {
                check_label(&bytes[label_start..i])?;
                label_start = i + 1;
                numeric_label = true;
            }
            b'*' => return Err(NameError::Wildcard),
            b'/' => return Err(NameError::Path),
            b':' if name.parse::<Ipv6Addr>().is_ok() => return Err(NameError::IpAddress),
            c if c.is_ascii_whitespace() => return Err(NameError::Whitespace),
            c if !c.is_ascii() => return Err(NameError::NonAscii),
            c => return Err(NameError::BadChar(char::from(c))),
        }
    }
    check_label(&bytes[label_start..])?;
    if numeric_label {
        return Err(if name.parse::<Ipv4Addr>().is_ok() {
            NameError::IpAddress
        } else {
            NameError::NumericTld
        });
    }
    if bytes.len() > 253 {
        return Err(NameError::TooLong);
    }
    Ok(upper)
}

fn check_label(label: &[u8]) -> Result<(), NameError> {
    match label {
        [] => Err(NameError::EmptyLabel),
        [.., b'-'] => Err(NameError::Hyphen),
        l if l.len() > 63 => Err(NameError::LabelTooLong),
        _ => Ok(()),
    }
}

/// Names that hosts files map for the machine itself; Pi-hole skips them so a
/// hosts file used as a block list cannot block `localhost`.
pub(crate) fn is_local_host(name: &str) -> bool {
    matches!(
        name,
        "localhost" | "localhost.localdomain" | "local" | "broadcasthost"
    ) || name.starts_with("ip6-")
}

/// The name and each parent, longest first, by label: `a.b.com`, `b.com`, `com`.
pub(crate) fn suffixes(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(name);
    std::iter::from_fn(move || {
        let current = rest?;
        rest = current
            .iter()
            .position(|&b| b == b'.')
            .map(|dot| &current[dot + 1..]);
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, NameError> {
        let mut buf = String::new();
        normalize(raw, &mut buf).map(str::to_owned)
    }

    #[test]
    fn lowercases_and_strips_trailing_dot_and_wildcard() {
        assert_eq!(norm("Ads.Example.COM.").as_deref(), Ok("ads.example.com"));
        assert_eq!(norm("*.example.com").as_deref(), Ok("example.com"));
        assert_eq!(
            norm("pt_br.statcounter.com").as_deref(),
            Ok("pt_br.statcounter.com")
        );
        assert_eq!(
            norm("xn--bcher-kva.example").as_deref(),
            Ok("xn--bcher-kva.example")
        );
        assert_eq!(
            norm("r1---sn-abc.googlevideo.com").as_deref(),
            Ok("r1---sn-abc.googlevideo.com")
        );
        assert_eq!(norm("zip").as_deref(), Ok("zip"));
    }

    #[test]
    fn rejects_what_is_not_a_name() {
        assert_eq!(norm("1.2.3.4"), Err(NameError::IpAddress));
        assert_eq!(norm("::1"), Err(NameError::IpAddress));
        assert_eq!(norm("2001:db8::1"), Err(NameError::IpAddress));
        assert_eq!(norm("1.2.3"), Err(NameError::NumericTld));
        assert_eq!(norm("a..b"), Err(NameError::EmptyLabel));
        assert_eq!(norm(".info"), Err(NameError::EmptyLabel));
        assert_eq!(norm("-coin-hive.js"), Err(NameError::Hyphen));
        assert_eq!(norm("a-.com"), Err(NameError::Hyphen));
        assert_eq!(norm("a.*.com"), Err(NameError::Wildcard));
        assert_eq!(norm("example.com/x"), Err(NameError::Path));
        assert_eq!(norm("a b.com"), Err(NameError::Whitespace));
        assert_eq!(norm("bücher.de"), Err(NameError::NonAscii));
        assert_eq!(norm("a:80"), Err(NameError::BadChar(':')));
        assert_eq!(norm("."), Err(NameError::Empty));
        assert_eq!(norm(&"a".repeat(64)), Err(NameError::LabelTooLong));
        let long = vec!["abcdefghi"; 26].join(".");
        assert_eq!(norm(&long), Err(NameError::TooLong));
    }

    #[test]
    fn local_host_names_are_recognised() {
        for name in [
            "localhost",
            "localhost.localdomain",
            "local",
            "broadcasthost",
            "ip6-allnodes",
        ] {
            assert!(is_local_host(name), "{name}");
        }
        assert!(!is_local_host("localhost.example.com"));
    }

    #[test]
    fn suffixes_walk_labels_longest_first() {
        let got: Vec<&[u8]> = suffixes(b"a.b.com").collect();
        assert_eq!(got, [&b"a.b.com"[..], b"b.com", b"com"]);
    }
}
