//! Every field of SPEC §3, through `compile`, in three situations: with identity and
//! answers, in the pre phase, and for an anonymous client elsewhere.

use super::super::fixtures::{alice, answers, ok, query};
use crate::geoip::GeoInfo;

/// (expression, with identity and answers, pre phase, anonymous client elsewhere)
const CASES: &[(&str, bool, bool, bool)] = &[
    // dns.fqdn: names compare case-insensitively and without a trailing dot.
    (r#"dns.fqdn == "WWW.ads.Example.com.""#, true, true, true),
    (r#"dns.fqdn == "ads.example.com""#, false, false, false),
    (r#"dns.fqdn != "ads.example.com""#, true, true, true),
    (
        r#"dns.fqdn in {"x.com" "www.ads.example.com."}"#,
        true,
        true,
        true,
    ),
    (r#"dns.fqdn matches "^WWW\.ads""#, true, true, true),
    (r#"dns.fqdn contains "ADS.""#, true, true, true),
    (
        r#"dns.fqdn contains "ads.example.com.""#,
        false,
        false,
        false,
    ),
    (r#"dns.fqdn < "x" and dns.fqdn >= "www""#, true, true, true),
    // dns.domains: the name and its parents.
    (r#"any(dns.domains[*] == "example.com")"#, true, true, true),
    (r#"any(dns.domains[*] == "ample.com")"#, false, false, false),
    (
        r#"any(dns.domains[*] in {"a.com" "example.com"})"#,
        true,
        true,
        true,
    ),
    (
        r#"any(dns.domains[*] in {"ads.example.com" "b.c"})"#,
        true,
        true,
        true,
    ),
    (
        r#"any(dns.domains[*] in {"s.example.com" "xample.com" "www"})"#,
        false,
        false,
        false,
    ),
    (
        r#"any(dns.domains[*] in {"a1.com" "a2.com" "a3.com" "a4.com" "a5.com" "a6.com" "a7.com" "a8.com" "example.com"})"#,
        true,
        true,
        true,
    ),
    (
        r#"any(dns.domains[*] in {"a1.com" "a2.com" "a3.com" "a4.com" "a5.com" "a6.com" "a7.com" "a8.com" "xample.com"})"#,
        false,
        false,
        false,
    ),
    (
        r#"all(dns.domains[*] in {"com" "example.com" "ads.example.com" "www.ads.example.com"})"#,
        true,
        true,
        true,
    ),
    (
        r#"any(dns.domains[*] == "a.com" or dns.domains[*] == "Example.COM")"#,
        true,
        true,
        true,
    ),
    (
        r#"any(dns.domains[*] == "com" and dns.query_rtype == "A")"#,
        false,
        false,
        false,
    ),
    (r#"all(dns.domains[*] contains "com")"#, true, true, true),
    (
        r#"all(dns.domains[*] matches "example")"#,
        false,
        false,
        false,
    ),
    (
        r#"any(lower(dns.domains[*]) == "EXAMPLE.com")"#,
        true,
        true,
        true,
    ),
    // dns.query_rtype: codes are uppercase.
    (r#"dns.query_rtype == "aaaa""#, true, true, true),
    (r#"dns.query_rtype in {"A" "AAAA"}"#, true, true, true),
    (r#"lower(dns.query_rtype) == "aaaa""#, true, true, true),
    (r#"lower(dns.query_rtype) matches "^a+$""#, true, true, true),
    (
        r#"lower(dns.query_rtype) matches "^A+$""#,
        false,
        false,
        false,
    ),
    (r#"dns.query_rtype matches "^a+$""#, true, true, true),
    // dns.content_category / dns.security_category.
    ("any(dns.content_category[*] in {1})", true, true, true),
    (
        "any(dns.content_category[*] in {2..6 8})",
        false,
        false,
        false,
    ),
    ("any(dns.content_category[*] in {5..8})", true, true, true),
    ("all(dns.content_category[*] < 10)", true, true, true),
    ("any(dns.content_category[*] ge 7)", true, true, true),
    ("any(dns.content_category[*] != 1)", true, true, true),
    ("any(dns.security_category[*] == 80)", true, true, true),
    ("any(dns.security_category[*] > 80)", false, false, false),
    ("all(dns.content_category[*] in {1 7})", true, true, true),
    ("all(dns.content_category[*] == 1)", false, false, false),
    (
        "not any(dns.security_category[*] in {1..79 81..100})",
        true,
        true,
        true,
    ),
    // dns.src_ip.
    ("dns.src_ip == 192.168.1.10", true, true, true),
    ("dns.src_ip == ::ffff:192.168.1.10", true, true, true),
    ("dns.src_ip != 192.168.1.11", true, true, true),
    (
        "dns.src_ip in {10.0.0.0/8 192.168.0.0/16}",
        true,
        true,
        true,
    ),
    (
        "dns.src_ip in {10.0.0.0/8, ::1, 192.168.1.9}",
        false,
        false,
        false,
    ),
    ("dns.src_ip in {::ffff:192.168.1.0/120}", true, true, true),
    // dns.location (compared as written; none for the anonymous client).
    (r#"dns.location == "office""#, true, true, false),
    (r#"dns.location == "Office""#, false, false, false),
    (r#"lower(dns.location) == "Office""#, true, true, false),
    (r#"dns.location == """#, false, false, true),
    // identity.*: empty without a known device.
    (
        r#"identity.email == "Alice.Smith+dev@example.com""#,
        true,
        true,
        false,
    ),
    (
        r#"identity.email == "alicesmith@example.com""#,
        false,
        false,
        false,
    ),
    (
        r#"identity.email in {"bob@example.com" "alice.smith+dev@example.com"}"#,
        true,
        true,
        false,
    ),
    (
        r#"identity.email matches "@example\.COM$""#,
        true,
        true,
        false,
    ),
    (r#"identity.email != "x@example.com""#, true, true, true),
    (r#"identity.name == "Alice""#, true, true, false),
    (r#"identity.name == "alice""#, false, false, false),
    (r#"lower(identity.name) == "alice""#, true, true, false),
    (r#"identity.name contains "lic""#, true, true, false),
    (r#"identity.device_id == "alice-laptop""#, true, true, false),
    (
        r#"any(identity.groups.name[*] == "finance")"#,
        true,
        true,
        false,
    ),
    (
        r#"any(identity.groups.name[*] == "everyone")"#,
        false,
        false,
        false,
    ),
    (
        r#"any(identity.groups.id[*] in {"grp-all" "grp-x"})"#,
        true,
        true,
        false,
    ),
    (
        r#"any(identity.groups.email[*] == "FINANCE@example.com")"#,
        true,
        true,
        false,
    ),
    (
        r#"all(identity.groups.email[*] contains "@example.com")"#,
        true,
        true,
        true,
    ),
    (
        r#"any(identity.saml_attributes["department"][*] == "Marketing")"#,
        true,
        true,
        false,
    ),
    (
        r#"any(identity.saml_attributes["department"][*] == "marketing")"#,
        false,
        false,
        false,
    ),
    (
        r#"any(lower(identity.saml_attributes["department"][*]) == "marketing")"#,
        true,
        true,
        false,
    ),
    (
        r#"any(identity.saml_attributes["team"][*] == "x")"#,
        false,
        false,
        false,
    ),
    (
        r#"all(identity.saml_attributes["team"][*] == "x")"#,
        true,
        true,
        true,
    ),
    // Post fields: empty arrays before resolution.
    (
        "any(dns.authoritative_ns_ips[*] in {198.51.100.0/24})",
        true,
        false,
        false,
    ),
    (
        "any(dns.authoritative_ns_ips[*] == 192.0.2.1)",
        false,
        false,
        false,
    ),
    (
        "any(dns.resolved_ips[*] in {192.0.2.0/24})",
        true,
        false,
        false,
    ),
    (
        "any(dns.resolved_ips[*] == 2001:db8::1)",
        true,
        false,
        false,
    ),
    (
        "all(dns.resolved_ips[*] in {192.0.2.0/24})",
        false,
        true,
        true,
    ),
    (
        "all(dns.resolved_ips[*] in {192.0.2.0/24 2001:db8::/32})",
        true,
        true,
        true,
    ),
    (r#"any(dns.dst.geo.country[*] == "jp")"#, true, false, false),
    (
        r#"any(dns.dst.geo.country[*] in {"US" "PT"})"#,
        false,
        false,
        false,
    ),
    (
        r#"any(dns.dst.geo.continent[*] == "EU")"#,
        true,
        false,
        false,
    ),
    (
        r#"any(dns.response.cname[*] == "CDN.example.net.")"#,
        true,
        false,
        false,
    ),
    (
        r#"any(dns.response.mx[*] matches "^MX\d\.")"#,
        true,
        false,
        false,
    ),
    (
        r#"any(dns.response.txt[*] contains "spf1")"#,
        true,
        false,
        false,
    ),
    (
        r#"any(dns.response.txt[*] contains "SPF1")"#,
        false,
        false,
        false,
    ),
    (
        r#"any(dns.response.ptr[*] == "host.example.org")"#,
        true,
        false,
        false,
    ),
    // dns.src.geo.*: the client's.
    (r#"dns.src.geo.country == "pt""#, true, true, false),
    (r#"dns.src.geo.continent in {"EU" "NA"}"#, true, true, false),
    (r#"dns.src.geo.country == """#, false, false, true),
    (r#"dns.src.geo.country == "PRT""#, false, false, false),
    (r#"dns.src.geo.country != "PRT""#, true, true, true),
    (r#"dns.src.geo.country in {"" "US"}"#, false, false, true),
    (r#"dns.src.geo.continent matches "^e""#, true, true, false),
    (r#"lower(dns.src.geo.country) == "PT""#, true, true, false),
    (
        r#"any(dns.dst.geo.country[*] matches "^J")"#,
        true,
        false,
        false,
    ),
    (
        r#"any(lower(dns.dst.geo.country[*]) in {"de"})"#,
        true,
        false,
        false,
    ),
    (r#"any(dns.dst.geo.country[*] != "JP")"#, true, false, false),
    (
        r#"all(dns.dst.geo.continent[*] in {"AS" "EU"})"#,
        true,
        true,
        true,
    ),
    // Logic.
    (
        r#"dns.query_rtype == "A" xor dns.query_rtype == "AAAA""#,
        true,
        true,
        true,
    ),
    (
        r#"dns.query_rtype == "AAAA" ^^ dns.fqdn contains "ads""#,
        false,
        false,
        false,
    ),
    (
        r#"not dns.query_rtype == "A" && !(dns.fqdn == "x" || dns.fqdn == "y")"#,
        true,
        true,
        true,
    ),
    ("", true, true, true),
];

#[test]
fn every_field_evaluates_in_each_phase() {
    let id = alice();
    let post = answers();
    let full = query(Some(&id), Some(&post));
    let pre = query(Some(&id), None);
    let mut anon = query(None, None);
    anon.location = None;
    anon.src_geo = GeoInfo::default();
    for &(src, want_full, want_pre, want_anon) in CASES {
        let expr = ok(src);
        assert_eq!(expr.eval(&full), want_full, "{src} (full)");
        assert_eq!(expr.eval(&pre), want_pre, "{src} (pre)");
        assert_eq!(expr.eval(&anon), want_anon, "{src} (anonymous)");
    }
}

#[test]
fn every_field_is_covered() {
    for f in crate::policy::fields::Field::ALL {
        assert!(
            CASES.iter().any(|(src, ..)| ok(src).uses(f)),
            "{} untested",
            f.name()
        );
    }
}
