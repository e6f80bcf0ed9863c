//! Wording of the errors about names: unknown fields and lists (with a did-you-mean),
//! arrays used without `any()`, and lists used with the wrong kind of field.
//!
//! Rules are often copied from Cloudflare's dashboard or typed by hand into TOML, so the
//! message should say what to write instead, not just what is wrong.

use super::ast::{Operand, PredOp, Predicate};
use crate::lists::ListKind;
use crate::policy::fields::Field;

/// Levenshtein distance over bytes (names are ASCII), with a cap on the work.
fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate, if it is close enough to be a typo.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    if word.len() > 64 {
        return None;
    }
    candidates
        .filter(|c| c.len() <= 64)
        .map(|c| (distance(word, c), c))
        .filter(|&(d, c)| d <= 3 && d * 3 <= c.len())
        .min_by_key(|&(d, c)| (d, c))
        .map(|(_, c)| c)
}

/// "unknown field `dns.fqdnn` (did you mean `dns.fqdn`?)"
pub(super) fn unknown_field(name: &str) -> String {
    let prefixed = ["dns.", "identity."]
        .iter()
        .find_map(|p| Field::from_name(&format!("{p}{name}")))
        .map(Field::name);
    match prefixed.or_else(|| closest(name, Field::ALL.iter().map(|f| f.name()))) {
        Some(s) => format!("unknown field `{name}` (did you mean `{s}`?)"),
        None => format!("unknown field `{name}`"),
    }
}

/// "unknown list `$adz` (did you mean `$ads`?)"
pub(super) fn unknown_list<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    match closest(name, known) {
        Some(s) => format!("unknown list `${name}` (did you mean `${s}`?)"),
        None => format!("unknown list `${name}`"),
    }
}

/// The predicate rewritten over `[*]` inside `any()`: what the user probably meant.
pub(super) fn array_hint(p: &Predicate) -> String {
    let lhs = Operand {
        star: true,
        ..p.lhs.clone()
    };
    let full = Predicate {
        lhs: lhs.clone(),
        op: p.op.clone(),
    }
    .to_string();
    if full.len() <= 80 {
        return format!("any({full})");
    }
    let op = match &p.op {
        PredOp::Cmp(op, _) => op.symbol(),
        PredOp::InSet(_) | PredOp::InList(..) => "in",
        PredOp::Matches(..) => "matches",
        PredOp::Contains(..) => "contains",
        PredOp::Wildcard { strict: false, .. } => "wildcard",
        PredOp::Wildcard { strict: true, .. } => "strict wildcard",
        PredOp::BitAnd(_) => "&",
    };
    format!("any({lhs} {op} ...)")
}

/// ("a domain", which fields that kind of list goes with).
pub(super) fn list_hint(kind: ListKind) -> (&'static str, &'static str) {
    match kind {
        ListKind::Domain => (
            "a domain",
            "domain lists go with dns.fqdn, dns.domains[*] and dns.response.cname/mx/ptr[*]",
        ),
        ListKind::Ip => (
            "an ip",
            "ip lists go with dns.src_ip and dns.resolved_ips[*]",
        ),
        ListKind::Email => (
            "an e-mail",
            "e-mail lists go with identity.email and identity.groups.email[*]",
        ),
        ListKind::String => ("a string", "string lists go with string fields"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("dns.fqdnn", "dns.fqdn"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions_are_close_or_absent() {
        assert_eq!(
            unknown_field("dns.fqdnn"),
            "unknown field `dns.fqdnn` (did you mean `dns.fqdn`?)"
        );
        assert_eq!(
            unknown_field("fqdn"),
            "unknown field `fqdn` (did you mean `dns.fqdn`?)"
        );
        assert_eq!(
            unknown_field("dns.domain"),
            "unknown field `dns.domain` (did you mean `dns.domains`?)"
        );
        assert_eq!(unknown_field("http.host"), "unknown field `http.host`");
        assert_eq!(
            unknown_list("adz", ["ads", "malware"].into_iter()),
            "unknown list `$adz` (did you mean `$ads`?)"
        );
        assert_eq!(unknown_list("x", ["ads"].into_iter()), "unknown list `$x`");
    }
}
