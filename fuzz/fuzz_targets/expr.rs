//! The policy expression language: lexer, parser, compiler, and the compiled expression's
//! evaluation, tracing and indexing, on any text.
//!
//! Input: one expression (UTF-8; anything else is skipped). It is compiled against one
//! list of each kind (so `$name` references resolve) with GeoIP on, then evaluated for a
//! pre-resolution and a post-resolution query with and without an identity.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use dnsgate::geoip::{Code, GeoInfo};
use dnsgate::identity::{Group, Identity, canonical_email};
use dnsgate::lists::{List, ListFormat, ListKind};
use dnsgate::policy::expr::{self, CompileEnv, Limits};
use dnsgate::policy::fields::{ListMemo, PostFacts, QueryFacts, domains};
use libfuzzer_sys::fuzz_target;

static LISTS: LazyLock<HashMap<String, Arc<List>>> = LazyLock::new(|| {
    let list = |kind, format, text: &str| Arc::new(List::parse(kind, format, text).0);
    HashMap::from([
        (
            "ads".to_owned(),
            list(
                ListKind::Domain,
                ListFormat::Adblock,
                "||ads.example.com^\n@@||ok.ads.example.com^\nexample.net\n",
            ),
        ),
        (
            "bad_ips".to_owned(),
            list(
                ListKind::Ip,
                ListFormat::Plain,
                "192.0.2.0/24\n2001:db8::/32\n",
            ),
        ),
        (
            "vips".to_owned(),
            list(
                ListKind::Email,
                ListFormat::Plain,
                "alice.smith@example.com\n",
            ),
        ),
        (
            "words".to_owned(),
            list(
                ListKind::String,
                ListFormat::Plain,
                "v=spf1 -all\nfinance\n",
            ),
        ),
    ])
});

fn geo(country: &str, continent: &str) -> GeoInfo {
    GeoInfo {
        country: Code::new(country),
        continent: Code::new(continent),
    }
}

static ALICE: LazyLock<Identity> = LazyLock::new(|| {
    let email = "alice.smith+dev@example.com".to_owned();
    Identity {
        device_id: "alice-laptop".to_owned(),
        email_canonical: canonical_email(&email),
        email,
        name: "Alice".to_owned(),
        groups: vec![Group {
            id: "grp-finance".to_owned(),
            name: "finance".to_owned(),
            email: "finance@example.com".to_owned(),
        }],
        saml_attributes: HashMap::from([("department".to_owned(), vec!["Sales".to_owned()])]),
    }
});

static POST: LazyLock<PostFacts> = LazyLock::new(|| PostFacts {
    resolved_ips: vec![[192, 0, 2, 1].into(), "2001:db8::1".parse().unwrap()],
    dst_geo: vec![geo("JP", "AS"), GeoInfo::default()],
    cnames: vec!["cdn.example.net".to_owned()],
    mx: vec!["mx1.example.com".to_owned()],
    txt: vec!["v=spf1 -all".to_owned()],
    ptr: vec!["host.example.org".to_owned()],
});

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let env = CompileEnv {
        lists: &LISTS,
        email_variants: data.len().is_multiple_of(2),
        has_geoip: true,
        limits: Limits::default(),
    };
    let _ = expr::parse(src, env.limits);
    let Ok(e) = expr::compile(src, &env) else {
        return;
    };
    let required = e.required_names();
    let _ = e.phase();
    assert_eq!(e.source(), src);
    // `not (src)` is its negation (when it is not nested too deep to compile).
    let negated = format!("not ({src})");
    let not = if e.is_empty() {
        None
    } else {
        match expr::compile(&negated, &env) {
            Ok(n) => Some(n),
            Err(errors) => {
                assert!(
                    errors.iter().any(|e| e.message.contains("levels deep")),
                    "{src:?} compiles, {negated:?} does not: {errors:?}"
                );
                None
            }
        }
    };
    // The fixed name, and the names the expression spells (so name tests can hold).
    let quoted = src.split('"').skip(1).step_by(2).take(4);
    let names = std::iter::once("www.ok.ads.example.com".to_owned()).chain(
        quoted
            .map(|q| q.to_ascii_lowercase().trim_end_matches('.').to_owned())
            .filter(|q| {
                !q.is_empty()
                    && q.split('.').all(|l| {
                        !l.is_empty()
                            && l.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    })
            }),
    );
    for fqdn in names {
        for (identity, post) in [(None, None), (Some(&*ALICE), Some(&*POST))] {
            let memo = ListMemo::default();
            let facts = QueryFacts {
                fqdn: &fqdn,
                rtype: "AAAA",
                src_ip: [192, 168, 1, 10].into(),
                location: Some("office"),
                identity,
                content_categories: &[1, 7],
                security_categories: &[80],
                src_geo: geo("PT", "EU"),
                post,
                memo: &memo,
            };
            let matched = e.eval(&facts);
            let trace = e.trace(&facts);
            // An expression is the `and` of its clauses.
            if !trace.is_empty() {
                assert_eq!(
                    matched,
                    trace.iter().all(|c| c.matched),
                    "{src:?}: {trace:?}"
                );
            }
            if let Some(n) = &not {
                assert_eq!(n.eval(&facts), !matched, "{src:?} for {fqdn}");
            }
            // The policy index skips an expression for names it does not require: it must
            // never hold for them.
            if let (true, Some(required)) = (matched, &required) {
                let found = domains(&fqdn).enumerate().any(|(depth, d)| {
                    required
                        .iter()
                        .any(|&(n, exact)| n == d && (!exact || depth == 0))
                });
                assert!(
                    found,
                    "{src:?} holds for {fqdn}, which is not in {required:?}"
                );
            }
        }
    }
});
