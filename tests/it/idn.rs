//! Internationalised names: a name written in Unicode (`bücher.example`) in a list, an
//! expression, a rule-builder table, `dnsgate explain` or a policy test case means its
//! ASCII (punycode) form, which is what queries carry (`xn--bcher-kva.example`). Phishing
//! lists are full of Unicode homographs; before, such entries were skipped ("use
//! punycode") or compiled into comparisons that never matched.

use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};

use crate::cli::{dnsgate, write_config};
use crate::client::{ede, query};
use crate::{gate, write_files};

/// The reason of a block (EDE 15), or `None` for an answer no policy blocked.
fn blocked_by(m: &Message) -> Option<String> {
    ede(m).filter(|(code, _)| *code == 15).map(|(_, text)| text)
}

/// One block policy per way of naming a name, each giving its own name as the reason.
const POLICIES: &str = r#"
[[lists]]
name = "phish-domains"
path = "domains.txt"
format = "domains"

[[lists]]
name = "phish-hosts"
path = "hosts.txt"
format = "hosts"

[[lists]]
name = "phish-adblock"
path = "adblock.txt"
format = "adblock"

[[policies]]
name = "lists"
action = "block"
block_reason = "lists"
traffic = 'any(dns.domains[*] in $phish-domains) or any(dns.domains[*] in $phish-hosts) or any(dns.domains[*] in $phish-adblock)'

[[policies]]
name = "fqdn"
action = "block"
block_reason = "fqdn"
traffic = 'dns.fqdn == "Straßenbahn.example" or dns.fqdn in {"ελλάδα.example" "日本.example."}'

[[policies]]
name = "domains"
action = "block"
block_reason = "domains"
traffic = 'any(dns.domains[*] == "café.example")'

[[policies]]
name = "builder"
action = "block"
block_reason = "builder"
include = [{ domain = ["münchen.example"] }, { host = ["zürich.example"] }]

[[policies]]
name = "moved"
action = "override"
traffic = 'dns.fqdn == "umzug.example"'
override_host = "bücher。test"

[[policies]]
name = "moved too"
action = "override"
traffic = 'dns.fqdn == "umzug2.example"'
override_host = "pt_br.test"
"#;

const LISTS: [(&str, &str); 3] = [
    (
        "domains.txt",
        "# Unicode, as phishing feeds publish them\nbücher.example\n*.ПРИМЕР.example\n",
    ),
    ("hosts.txt", "0.0.0.0 köln.example\n"),
    ("adblock.txt", "||açaí.example^\n"),
];

#[tokio::test]
async fn unicode_names_in_lists_expressions_and_the_builder_match_their_punycode_queries() {
    let g = gate(POLICIES, &LISTS).await;
    for (qname, policy) in [
        ("xn--bcher-kva.example.", "lists"),     // bücher, domains format
        ("www.xn--bcher-kva.example.", "lists"), // and its subdomains
        ("xn--e1afmkfd.example.", "lists"),      // ПРИМЕР: uppercase Cyrillic, *.
        ("xn--kln-sna.example.", "lists"),       // köln, hosts format
        ("xn--aa-4iaz.example.", "lists"),       // açaí, adblock format
        ("xn--straenbahn-83a.example.", "fqdn"), // Straßenbahn (UTS 46 keeps ß)
        ("xn--hxakic4aa.example.", "fqdn"),      // ελλάδα, in a set
        ("xn--wgv71a.example.", "fqdn"),         // 日本, with a trailing dot
        ("shop.xn--caf-dma.example.", "domains"), // café
        ("a.xn--mnchen-3ya.example.", "builder"), // münchen, builder domain
        ("xn--zrich-kva.example.", "builder"),   // zürich, builder host
    ] {
        let m = query(g.addr, qname, RecordType::A).await;
        assert_eq!(blocked_by(&m).as_deref(), Some(policy), "{qname}: {m:?}");
    }
    // override_host reads names the same way: the whole name, `_` allowed.
    for (qname, target) in [
        ("umzug.example.", "xn--bcher-kva.test."),
        ("umzug2.example.", "pt_br.test."),
    ] {
        let m = query(g.addr, qname, RecordType::A).await;
        let cnames: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::CNAME(c) => Some(c.0.to_ascii()),
                _ => None,
            })
            .collect();
        assert_eq!(cnames, [target], "{qname}: {m:?}");
    }
    // The ASCII look-alikes are other names.
    for qname in ["bucher.example.", "munchen.example.", "cafe.example."] {
        let m = query(g.addr, qname, RecordType::A).await;
        assert_eq!(blocked_by(&m), None, "{qname}");
    }
}

#[test]
fn a_name_that_is_not_valid_idna_is_an_error_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    // "xn--" promises punycode; a label that also holds Unicode cannot be decoded.
    let cfg = write_config(
        dir.path(),
        "[[policies]]\nname = \"bad\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"xn--ü.example\"'\n",
    );
    let (code, _out, err) = dnsgate(&["check", "-c", &cfg]);
    assert_ne!(code, 0);
    let at = format!("{cfg}:");
    let line = err
        .lines()
        .find(|l| l.starts_with(&at))
        .unwrap_or_else(|| panic!("{err}"));
    // The literal's quote: the expression starts at column 12, `dns.fqdn == ` is 12 long.
    assert!(line.contains(":4:24: "), "{line}");
    assert!(line.contains("xn--ü.example"), "{line}");
    assert!(line.contains("IDNA"), "{line}");
}

#[test]
fn a_list_line_that_is_not_valid_idna_is_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[("l.txt", "ok.example\nxn--ü.example\nbücher.example\n")],
    );
    let cfg = write_config(
        dir.path(),
        "[[lists]]\nname = \"l\"\npath = \"l.txt\"\n\n\
         [[policies]]\nname = \"l\"\naction = \"block\"\ntraffic = 'dns.fqdn in $l'\n",
    );
    let (code, out, err) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(2 entries)"), "{out}");
    let warning = err
        .lines()
        .find(|l| l.contains("list lines skipped"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(warning.contains("skipped=1"), "{warning}");
    assert!(
        warning.contains("IDNA") && warning.contains("xn--ü.example"),
        "{warning}"
    );
}

#[test]
fn explain_and_policy_tests_take_names_in_unicode() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[[policies]]\nname = \"books\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"xn--bcher-kva.example\"'\n",
    );
    let (code, out, err) = dnsgate(&["explain", "-c", &cfg, "BÜCHER.example", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["query"]["name"], "xn--bcher-kva.example", "{out}");
    assert_eq!(v["decision"]["policy"], "books", "{out}");
    // The whole name is converted at once: UTS 46 makes `。` a dot. hickory's
    // per-label conversion kept it inside one label (`xn--bcher-kva\.example`).
    let (code, out, err) = dnsgate(&["explain", "-c", &cfg, "bücher。example", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"]["policy"], "books", "{out}");
    // An ASCII name is taken as lists take it, `_` included; it was refused before.
    let (code, _, err) = dnsgate(&["explain", "-c", &cfg, "pt_br.example", "--json"]);
    assert_eq!(code, 0, "{err}");

    write_files(
        dir.path(),
        &[(
            "tests.toml",
            "config = \"dnsgate.toml\"\n\n[[case]]\nname = \"unicode\"\nquery = \"bücher.example\"\nexpect = { action = \"block\", policy = \"books\" }\n",
        )],
    );
    let tests = dir.path().join("tests.toml");
    let (code, out, err) = dnsgate(&["test", tests.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 passed, 0 failed"), "{out}");
}
