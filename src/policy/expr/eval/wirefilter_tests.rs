//! Issue 14: the answers agreed with Cloudflare's wirefilter engine, one table row per
//! difference the differential run found (fixed to match, or kept as a dnsgate extension),
//! on the fixture query `www.ads.example.com AAAA` from 192.168.1.10 with answers
//! 192.0.2.1 and 2001:db8::1 and content categories 1 and 7.

use super::super::fixtures::{alice, answers, ok, query};

/// (expression, agreed answer, what wirefilter says when it differs)
const AGREED: &[(&str, bool, &str)] = &[
    // 1. IPv4-mapped addresses are folded into IPv4; an IPv6 set covering
    //    ::ffff:0:0/96 covers the folded addresses too (wirefilter does not fold).
    ("dns.src_ip in {::ffff:0:0/96}", true, "false"),
    ("dns.src_ip in {::/0}", true, "false"),
    ("dns.src_ip in {::ffff:192.168.0.0/112}", true, "false"),
    ("dns.src_ip in {::ffff:10.0.0.0/104}", false, ""),
    ("dns.src_ip in {2001:db8::/32}", false, ""),
    (
        "dns.src_ip in {::ffff:192.168.1.0..::ffff:192.168.1.20}",
        true,
        "false",
    ),
    ("all(dns.resolved_ips[*] in {::/0})", true, "false"),
    ("any(dns.resolved_ips[*] in {::ffff:0:0/96})", true, "false"),
    ("dns.src_ip == ::ffff:192.168.1.10", true, "false"),
    // 2. Escapes in quoted strings are wirefilter's: \xHH and \OOO are bytes.
    (r#"dns.fqdn == "www\x2eads.example.com""#, true, ""),
    (r#"dns.fqdn == "www\056ads\056example\056com""#, true, ""),
    (
        r#"dns.fqdn in {"a.com" "www\x2eads.example.com"}"#,
        true,
        "",
    ),
    (r#"dns.fqdn contains "\x2eexample\x2e""#, true, ""),
    (r#"any(dns.domains[*] == "example\x2ecom")"#, true, ""),
    // 3. A quoted regex hands `\\` to the regex engine: a literal backslash.
    (r#"dns.fqdn matches "\\.""#, false, ""),
    (r#"dns.fqdn matches "ads\.example""#, true, ""),
    (r#"dns.fqdn matches r"^www\.ads""#, true, ""),
    (r##"dns.fqdn matches r#"^www\.ads"#"##, true, ""),
    (r#"dns.fqdn matches "^[a-z]+\.ads""#, true, ""),
    // ASCII classes, as wirefilter's regexes (Unicode off).
    (r#"identity.name matches "^\w+$""#, true, ""),
    // 4. Accepted there, so accepted here: IP ordering within a family...
    ("dns.src_ip >= 10.0.0.0", true, ""),
    ("dns.src_ip > 192.168.1.10", false, ""),
    (
        "dns.src_ip <= 192.168.1.10 and dns.src_ip >= 192.168.1.10",
        true,
        "",
    ),
    ("dns.src_ip < ::1 or dns.src_ip >= ::", false, ""),
    ("dns.src_ip ge ::ffff:192.168.0.0", true, "false"),
    // ...IP ranges in sets...
    ("dns.src_ip in {10.0.0.0..10.255.255.255}", false, ""),
    ("dns.src_ip in {192.168.0.0..192.168.255.255}", true, ""),
    (
        "any(dns.resolved_ips[*] in {2001:db8::..2001:db8::ff})",
        true,
        "",
    ),
    // ...array indexing (a missing element: false, and true for `!=`)...
    (r#"dns.domains[0] == "www.ads.example.com""#, true, ""),
    (r#"dns.domains[1] == "ads.example.com""#, true, ""),
    (r#"dns.domains[3] == "com""#, true, ""),
    (r#"dns.domains[4] == "com""#, false, ""),
    (r#"dns.domains[4] != "com""#, true, ""),
    (r#"dns.domains[1] in {"x" "ads.example.com"}"#, true, ""),
    ("dns.resolved_ips[1] == 2001:db8::1", true, ""),
    (r#"identity.groups.name[0] == "finance""#, true, ""),
    (
        r#"identity.saml_attributes["department"][1] == "Sales""#,
        true,
        "",
    ),
    ("dns.content_category[1] == 7", true, ""),
    ("dns.content_category[2] != 7", true, ""),
    ("dns.content_category[2] == 7", false, ""),
    ("dns.content_category[2] < 7", false, ""),
    ("dns.resolved_ips[2] != ::1", true, ""),
    // ...`wildcard` (ASCII case-insensitive) and `strict wildcard`...
    (r#"dns.fqdn wildcard "*.example.com""#, true, ""),
    (r#"dns.fqdn wildcard "*.EXAMPLE.com""#, true, ""),
    (r#"dns.fqdn wildcard "*.ads""#, false, ""),
    (r#"dns.fqdn wildcard "www.*.com""#, true, ""),
    (r#"dns.fqdn strict wildcard "*.example.com""#, true, ""),
    (r#"dns.fqdn strict wildcard "*.EXAMPLE.com""#, false, ""),
    (r#"identity.name strict wildcard "A*""#, true, ""),
    (r#"identity.name strict wildcard "a*""#, false, ""),
    (r#"any(dns.response.cname[*] wildcard "cdn.*")"#, true, ""),
    // ...hex, octal (a leading 0) and negative integers, and `&`.
    ("any(dns.content_category[*] == 0x7)", true, ""),
    ("any(dns.content_category[*] == 07)", true, ""),
    ("any(dns.content_category[*] == 010)", false, ""),
    ("all(dns.content_category[*] > -1)", true, ""),
    ("all(dns.content_category[*] in {-5..7})", true, ""),
    ("any(dns.content_category[*] in {-5..-1})", false, ""),
    ("any(dns.content_category[*] & 2)", true, ""),
    ("any(dns.content_category[*] bitwise_and 8)", false, ""),
    // 5. A network with host bits set is read as its network (with a warning).
    ("dns.src_ip in {192.168.1.99/24}", true, "refused"),
    // Extensions, kept: names compare case-insensitively and without a trailing dot...
    (r#"dns.fqdn == "WWW.ADS.Example.com.""#, true, "false"),
    (r#"dns.fqdn matches "^WWW""#, true, "false"),
    // ...unless `(?-i)` opts a regex out of case folding...
    (r#"dns.fqdn matches "(?-i)^WWW""#, false, ""),
    // ...any() over a compound condition, comma-separated sets, lower().
    (
        r#"any(dns.domains[*] == "com" and dns.query_rtype == "AAAA")"#,
        true,
        "refused",
    ),
    (
        r#"dns.fqdn in {"a.com", "www.ads.example.com"}"#,
        true,
        "refused",
    ),
    (r#"lower(identity.name) == "alice""#, true, "refused"),
];

#[test]
fn wirefilter_answers_hold() {
    let id = alice();
    let post = answers();
    let facts = query(Some(&id), Some(&post));
    for &(src, want, _) in AGREED {
        assert_eq!(ok(src).eval(&facts), want, "{src}");
    }
    // A client seen as ::ffff:192.168.1.10 (a dual-stack socket) is 192.168.1.10.
    let mapped = super::super::QueryFacts {
        src_ip: "::ffff:192.168.1.10".parse().unwrap(),
        ..facts
    };
    for &(src, want, _) in AGREED.iter().filter(|(s, ..)| s.contains("src_ip")) {
        assert_eq!(ok(src).eval(&mapped), want, "{src} (mapped client)");
    }
}

#[test]
fn an_empty_expression_is_true() {
    assert!(ok("").eval(&query(None, None)));
}

/// Issue 14, difference 5: wirefilter refuses `10.1.2.3/8`; dnsgate reads it as
/// `10.0.0.0/8` and says so with a positioned warning, so configurations that load today
/// keep loading.
#[test]
fn networks_with_host_bits_compile_with_a_warning() {
    let e = ok("dns.src_ip in {10.0.0.0/8 10.1.2.3/8}");
    let w: Vec<_> = e
        .warnings()
        .iter()
        .map(|w| (w.offset, w.message.as_str()))
        .collect();
    assert_eq!(
        w,
        [(
            26,
            "`10.1.2.3/8` has host bits set: it is read as `10.0.0.0/8` (Cloudflare refuses it)"
        )]
    );
    assert!(ok("dns.src_ip in {10.0.0.0/8}").warnings().is_empty());
}
