//! The Access-style rule builder (SPEC §4.6): `include`, `require` and `exclude` tables.
//!
//! Each table is turned into policy-language source and compiled by the same compiler as
//! `traffic`, so the builder cannot drift from the language: `{ domain = ["a.com"] }` is
//! exactly `any(dns.domains[*] in {"a.com"})`. Values inside one table are ORed.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use crate::config::SelectorConfig;
use crate::lists::{List, ListKind};

/// Quotes a string literal for the policy language.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A regex for `matches`, as a raw string (`r#"..."#`): a quoted regex hands its
/// backslashes to the regex engine as written, so `quote` would double them.
fn quote_regex(re: &str) -> String {
    let mut hashes = String::new();
    while re.contains(&format!("\"{hashes}")) {
        hashes.push('#');
    }
    format!("r{hashes}\"{re}\"{hashes}")
}

fn set(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| quote(v)).collect();
    format!("{{{}}}", items.join(" "))
}

/// Why a selector table cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// `email_domain = [""]` or `["@"]`.
    #[error("email_domain needs a domain such as \"@example.com\"")]
    EmptyEmailDomain,
    /// A `src_ip` value that is neither an address nor a network.
    #[error("src_ip `{0}` is not an IP address or network")]
    BadNetwork(String),
    /// A `list` that does not exist.
    #[error("unknown list `{0}`")]
    UnknownList(String),
    /// A string list, which has no field to test against.
    #[error("list `{0}` holds strings; the rule builder takes domain, ip and email lists")]
    StringList(String),
    /// A table with no selector.
    #[error(
        "empty selector: name at least one of email, email_domain, group, domain, host, category, location, src_ip, country, device, list"
    )]
    Empty,
}

/// Builds the expression source of one selector table. Errors are messages for the table.
pub fn selector_source(
    sel: &SelectorConfig,
    lists: &HashMap<String, Arc<List>>,
) -> Result<String, Error> {
    let mut terms: Vec<String> = Vec::new();
    if let Some(v) = &sel.email {
        terms.push(format!("identity.email in {}", set(v.as_slice())));
    }
    if let Some(v) = &sel.email_domain {
        for d in v.as_slice() {
            let d = d.trim_start_matches('@').to_ascii_lowercase();
            if d.is_empty() {
                return Err(Error::EmptyEmailDomain);
            }
            terms.push(format!(
                "identity.email matches {}",
                quote_regex(&format!("@{}$", regex::escape(&d)))
            ));
        }
    }
    if let Some(v) = &sel.group {
        let s = set(v.as_slice());
        terms.push(format!(
            "any(identity.groups.name[*] in {s}) or any(identity.groups.id[*] in {s})"
        ));
    }
    if let Some(v) = &sel.domain {
        terms.push(format!("any(dns.domains[*] in {})", set(v.as_slice())));
    }
    if let Some(v) = &sel.host {
        terms.push(format!("dns.fqdn in {}", set(v.as_slice())));
    }
    if let Some(v) = &sel.category {
        let mut ids = String::new();
        for (i, id) in v.as_slice().iter().enumerate() {
            if i > 0 {
                ids.push(' ');
            }
            let _ = write!(ids, "{id}");
        }
        terms.push(format!(
            "any(dns.content_category[*] in {{{ids}}}) or any(dns.security_category[*] in {{{ids}}})"
        ));
    }
    if let Some(v) = &sel.location {
        terms.push(format!("dns.location in {}", set(v.as_slice())));
    }
    if let Some(v) = &sel.src_ip {
        for net in v.as_slice() {
            let ok = net.parse::<ipnet::IpNet>().is_ok() || net.parse::<std::net::IpAddr>().is_ok();
            if !ok {
                return Err(Error::BadNetwork(net.clone()));
            }
        }
        terms.push(format!("dns.src_ip in {{{}}}", v.as_slice().join(" ")));
    }
    if let Some(v) = &sel.country {
        terms.push(format!("dns.src.geo.country in {}", set(v.as_slice())));
    }
    if let Some(v) = &sel.device {
        terms.push(format!("identity.device_id in {}", set(v.as_slice())));
    }
    if let Some(v) = &sel.list {
        for name in v.as_slice() {
            let list = lists
                .get(name)
                .ok_or_else(|| Error::UnknownList(name.clone()))?;
            terms.push(match list.kind() {
                ListKind::Domain => format!("any(dns.domains[*] in ${name})"),
                ListKind::Ip => format!("dns.src_ip in ${name}"),
                ListKind::Email => format!("identity.email in ${name}"),
                ListKind::String => {
                    return Err(Error::StringList(name.clone()));
                }
            });
        }
    }
    if terms.is_empty() {
        return Err(Error::Empty);
    }
    Ok(terms
        .iter()
        .map(|t| format!("({t})"))
        .collect::<Vec<_>>()
        .join(" or "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OneOrMany;

    #[test]
    fn tables_become_ored_terms() {
        let sel = SelectorConfig {
            email: Some(OneOrMany::Many(vec!["a@x.com".into(), "b\"@x.com".into()])),
            domain: Some(OneOrMany::One("example.com".into())),
            ..Default::default()
        };
        let src = selector_source(&sel, &HashMap::new()).unwrap();
        assert_eq!(
            src,
            r#"(identity.email in {"a@x.com" "b\"@x.com"}) or (any(dns.domains[*] in {"example.com"}))"#
        );
    }

    #[test]
    fn email_domain_anchors_at_the_end() {
        let sel = SelectorConfig {
            email_domain: Some(OneOrMany::One("@team.com".into())),
            ..Default::default()
        };
        assert_eq!(
            selector_source(&sel, &HashMap::new()).unwrap(),
            r#"(identity.email matches r"@team\.com$")"#
        );
    }

    #[test]
    fn empty_table_and_unknown_list_are_errors() {
        assert!(selector_source(&SelectorConfig::default(), &HashMap::new()).is_err());
        let sel = SelectorConfig {
            list: Some(OneOrMany::One("nope".into())),
            ..Default::default()
        };
        assert_eq!(
            selector_source(&sel, &HashMap::new()),
            Err(Error::UnknownList("nope".into()))
        );
        let sel = SelectorConfig {
            src_ip: Some(OneOrMany::One("10.0.0.0/33".into())),
            ..Default::default()
        };
        assert!(selector_source(&sel, &HashMap::new()).is_err());
    }
}
