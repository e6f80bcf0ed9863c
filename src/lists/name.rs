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
//!
//! A name written in Unicode (`bücher.example`) is converted to the ASCII (punycode) form
//! queries carry (`xn--bcher-kva.example`) by [`name_to_ascii`] (UTS 46), then checked like any
//! other; ASCII names never go through the conversion, so the usual line costs nothing more.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

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
    /// A name in Unicode that UTS 46 cannot convert to ASCII.
    #[error("not a valid internationalised name (IDNA)")]
    Idna,
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

/// The ASCII form of a name written in Unicode: UTS 46 (IDNA) mapping, lowercase, each
/// label in punycode, as a query for it carries the name. An ASCII name is returned as it
/// is (not lowercased, and `_` or `xn--` labels are left alone): only Unicode needs this.
///
/// Hyphen placement and lengths are not checked here; [`normalize`] checks the result
/// the way it checks every name, and a query name is checked when it is built.
pub fn name_to_ascii(name: &str) -> Result<Cow<'_, str>, NameError> {
    if name.is_ascii() {
        return Ok(Cow::Borrowed(name));
    }
    Uts46::new()
        .to_ascii(
            name.as_bytes(),
            AsciiDenyList::EMPTY,
            Hyphens::Allow,
            DnsLength::Ignore,
        )
        .map_err(|_| NameError::Idna)
}

/// Normalises `raw` into a list entry: strips one trailing dot and a leading `*.`,
/// converts a Unicode name to ASCII, validates, and lowercases into `buf` only when
/// needed.
pub(crate) fn normalize<'a>(raw: &'a str, buf: &'a mut String) -> Result<&'a str, NameError> {
    let name = raw.strip_suffix('.').unwrap_or(raw);
    let name = name.strip_prefix("*.").unwrap_or(name);
    // The check stops at the first non-ASCII byte with `Idna`: only then is the name
    // converted, so an ASCII line costs no extra pass.
    let upper = match check(name) {
        Err(NameError::Idna) => {
            let ascii = name_to_ascii(name)?;
            // UTS 46 maps the ideographic full stop and its kin to `.`: strip a trailing one.
            let ascii = ascii.strip_suffix('.').unwrap_or(&ascii);
            check(ascii)?;
            buf.clear();
            buf.push_str(ascii);
            let converted: &'a String = buf;
            return Ok(converted.as_str());
        }
        checked => checked?,
    };
    if upper {
        buf.clear();
        buf.push_str(name);
        buf.make_ascii_lowercase();
        let lowered: &'a String = buf;
        Ok(lowered.as_str())
    } else {
        Ok(name)
    }
}

/// Validates an ASCII name; returns whether it has uppercase letters. A non-ASCII byte
/// is [`NameError::Idna`], which [`normalize`] takes as "convert, then check again".
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
            // Unicode: `normalize` converts the name to ASCII and checks that instead.
            c if !c.is_ascii() => return Err(NameError::Idna),
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
    fn unicode_names_become_their_lowercase_punycode() {
        assert_eq!(
            norm("bücher.example").as_deref(),
            Ok("xn--bcher-kva.example")
        );
        assert_eq!(
            norm("*.BÜCHER.Example.").as_deref(),
            Ok("xn--bcher-kva.example")
        );
        assert_eq!(norm("日本。example").as_deref(), Ok("xn--wgv71a.example"));
        assert_eq!(
            norm("ПРИМЕР.испытание").as_deref(),
            Ok("xn--e1afmkfd.xn--80akhbyknj4f")
        );
        // ASCII names are left to the hostname rules (`_` is allowed), not to UTS 46.
        assert_eq!(norm("pt_br.example").as_deref(), Ok("pt_br.example"));
        assert_eq!(name_to_ascii("A.example").as_deref(), Ok("A.example"));
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
        assert_eq!(norm("xn--ü.example"), Err(NameError::Idna));
        assert_eq!(norm("bü cher.example"), Err(NameError::Whitespace));
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
