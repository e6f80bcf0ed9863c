//! Policy behaviour end to end (SPEC §3–§5): evaluation order, every action and block
//! mode, lists and categories, identity, the rule builder, schedules and GeoIP.

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::client::{self, Opts, cnames, ede, ips, query};
use crate::{Gate, gate};

/// Sends a query from a chosen loopback source address (identity by source IP).
async fn query_from(g: &Gate, src: &str, name: &str, qtype: RecordType) -> Message {
    let (id, wire) = client::build(name, qtype, Opts::default());
    let sock = tokio::net::UdpSocket::bind(format!("{src}:0"))
        .await
        .unwrap();
    sock.send_to(&wire, g.addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, id);
    m
}

fn is_blocked_null(m: &Message) -> bool {
    m.metadata.response_code == ResponseCode::NoError
        && ips(m) == ["0.0.0.0"]
        && ede(m).map(|e| e.0) == Some(15)
}

const ADS_LIST: &str = "[[lists]]\nname = \"ads\"\npath = \"ads.txt\"\n\n";

#[tokio::test]
async fn block_modes_answer_as_configured_with_ede_15_and_the_reason() {
    let body = format!(
        "{ADS_LIST}[[policies]]\nname = \"ads\"\naction = \"block\"\ntraffic = 'any(dns.domains[*] in $ads)'\nblock_reason = \"Advertising is blocked\"\n"
    );
    let g = gate(&body, &[("ads.txt", "ads.test\n")]).await;
    let a = query(g.addr, "tracker.ads.test.", RecordType::A).await;
    assert!(is_blocked_null(&a), "{a:?}");
    assert_eq!(ede(&a), Some((15, "Advertising is blocked".into())));
    assert_eq!(a.answers[0].ttl, 60);
    let aaaa = query(g.addr, "ads.test.", RecordType::AAAA).await;
    assert_eq!(ips(&aaaa), ["::"]);
    let mx = query(g.addr, "ads.test.", RecordType::MX).await;
    assert_eq!(mx.metadata.response_code, ResponseCode::NoError);
    assert!(mx.answers.is_empty(), "other types: NODATA");
    let https = query(g.addr, "ads.test.", RecordType::HTTPS).await;
    assert!(https.answers.is_empty());
    assert_eq!(ede(&https).map(|e| e.0), Some(15));
    assert_eq!(
        g.upstream.queries(),
        0,
        "a pre-resolution block never asks upstream"
    );
    // Unlisted names resolve normally.
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );

    for (mode, rcode) in [
        ("nxdomain", ResponseCode::NXDomain),
        ("refused", ResponseCode::Refused),
    ] {
        let body = format!(
            "[block]\nmode = \"{mode}\"\n{ADS_LIST}[[policies]]\nname = \"ads\"\naction = \"block\"\ntraffic = 'any(dns.domains[*] in $ads)'\n"
        );
        let g = gate(&body, &[("ads.txt", "ads.test\n")]).await;
        let m = query(g.addr, "ads.test.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, rcode, "{mode}");
        assert_eq!(ede(&m).map(|e| e.0), Some(15), "{mode}");
    }

    let body = format!(
        "[block]\nmode = \"ips\"\nips = [\"192.0.2.250\"]\nttl = 30\n{ADS_LIST}[[policies]]\nname = \"ads\"\naction = \"block\"\ntraffic = 'any(dns.domains[*] in $ads)'\n"
    );
    let g = gate(&body, &[("ads.txt", "ads.test\n")]).await;
    let m = query(g.addr, "ads.test.", RecordType::A).await;
    assert_eq!(ips(&m), ["192.0.2.250"]);
    assert_eq!(m.answers[0].ttl, 30);
    let m = query(g.addr, "ads.test.", RecordType::AAAA).await;
    assert!(m.answers.is_empty(), "no IPv6 block page: NODATA");
}

#[tokio::test]
async fn a_policys_own_block_mode_beats_the_default() {
    let body = "[[policies]]\nname = \"nx\"\naction = \"block\"\nblock_mode = \"nxdomain\"\ntraffic = 'dns.fqdn == \"ads.test\"'\n\n\
                [[policies]]\nname = \"null\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"tracker.ads.test\"'\n";
    let g = gate(body, &[]).await;
    assert_eq!(
        query(g.addr, "ads.test.", RecordType::A)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    assert!(is_blocked_null(
        &query(g.addr, "tracker.ads.test.", RecordType::A).await
    ));
}

#[tokio::test]
async fn fqdn_matches_exactly_and_domains_match_subdomains() {
    let body = format!(
        "{ADS_LIST}[[policies]]\nname = \"exact\"\naction = \"block\"\ntraffic = 'dns.fqdn in $ads'\n"
    );
    let g = gate(&body, &[("ads.txt", "ads.test\n")]).await;
    assert!(
        is_blocked_null(&query(g.addr, "ADS.test.", RecordType::A).await),
        "case-insensitive"
    );
    assert_eq!(
        ips(&query(g.addr, "tracker.ads.test.", RecordType::A).await),
        ["192.0.2.31"]
    );
}

#[tokio::test]
async fn pre_block_beats_post_allow_whatever_the_precedence() {
    let body = "[[policies]]\nname = \"allow jp answers\"\nprecedence = 10\naction = \"allow\"\ntraffic = 'any(dns.resolved_ips[*] in {192.0.2.0/24})'\n\n\
                [[policies]]\nname = \"block jp by name\"\nprecedence = 200\naction = \"block\"\ntraffic = 'dns.fqdn == \"jp.test\"'\n";
    let g = gate(body, &[]).await;
    assert!(is_blocked_null(
        &query(g.addr, "jp.test.", RecordType::A).await
    ));
}

#[tokio::test]
async fn first_decisive_match_wins_by_precedence_then_file_order() {
    let body = "[[policies]]\nname = \"block later\"\nprecedence = 20\naction = \"block\"\ntraffic = 'dns.fqdn == \"www.test\"'\n\n\
                [[policies]]\nname = \"allow first\"\nprecedence = 10\naction = \"allow\"\ntraffic = 'dns.fqdn == \"www.test\"'\n\n\
                [[policies]]\nname = \"tie a\"\nprecedence = 30\naction = \"block\"\nblock_mode = \"nxdomain\"\ntraffic = 'dns.fqdn == \"us.test\"'\n\n\
                [[policies]]\nname = \"tie b\"\nprecedence = 30\naction = \"block\"\ntraffic = 'dns.fqdn == \"us.test\"'\n";
    let g = gate(body, &[]).await;
    let m = query(g.addr, "www.test.", RecordType::A).await;
    assert_eq!(ips(&m), ["192.0.2.10"]);
    assert!(ede(&m).is_none());
    assert_eq!(
        query(g.addr, "us.test.", RecordType::A)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
}

#[tokio::test]
async fn post_resolution_block_on_resolved_ips_and_cnames() {
    let body = "[[policies]]\nname = \"no 203.0.113\"\naction = \"block\"\ntraffic = 'any(dns.resolved_ips[*] in {203.0.113.0/24})'\n\n\
                [[policies]]\nname = \"no alias to www\"\naction = \"block\"\nblock_mode = \"nxdomain\"\ntraffic = 'any(dns.response.cname[*] == \"www.test\")'\n";
    let g = gate(body, &[]).await;
    let m = query(g.addr, "us.test.", RecordType::A).await;
    assert!(is_blocked_null(&m));
    assert!(
        g.upstream.queries() > 0,
        "post-resolution: the name was resolved first"
    );
    let m = query(g.addr, "alias.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        ips(&query(g.addr, "jp.test.", RecordType::A).await),
        ["192.0.2.55"]
    );
}

#[tokio::test]
async fn disabled_and_out_of_schedule_policies_are_skipped() {
    let body = "[[policies]]\nname = \"off\"\nenabled = false\naction = \"block\"\ntraffic = 'dns.fqdn == \"www.test\"'\n\n\
                [[policies]]\nname = \"never\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"www.test\"'\nschedule = { time_zone = \"UTC\" }\n\n\
                [[policies]]\nname = \"always\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"jp.test\"'\n\
                schedule = { time_zone = \"Asia/Tokyo\", mon = \"00:00-24:00\", tue = \"00:00-24:00\", wed = \"00:00-24:00\", thu = \"00:00-24:00\", fri = \"00:00-24:00\", sat = \"00:00-24:00\", sun = \"00:00-24:00\" }\n";
    let g = gate(body, &[]).await;
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    assert!(is_blocked_null(
        &query(g.addr, "jp.test.", RecordType::A).await
    ));
}

#[tokio::test]
async fn override_by_ips_and_by_host() {
    let body = "[[policies]]\nname = \"ips\"\naction = \"override\"\ntraffic = 'dns.fqdn == \"www.test\"'\noverride_ips = [\"192.0.2.77\", \"2001:db8::77\"]\n\n\
                [[policies]]\nname = \"v4 only\"\naction = \"override\"\ntraffic = 'dns.fqdn == \"us.test\"'\noverride_ips = [\"192.0.2.78\"]\n\n\
                [[policies]]\nname = \"host\"\naction = \"override\"\ntraffic = 'dns.fqdn == \"jp.test\"'\noverride_host = \"safe.example.net\"\n";
    let g = gate(body, &[]).await;
    let m = query(g.addr, "www.test.", RecordType::A).await;
    assert_eq!(ips(&m), ["192.0.2.77"]);
    assert_eq!(ede(&m).map(|e| e.0), Some(4));
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::AAAA).await),
        ["2001:db8::77"]
    );
    let m = query(g.addr, "us.test.", RecordType::AAAA).await;
    assert!(
        m.answers.is_empty() && m.metadata.response_code == ResponseCode::NoError,
        "NODATA for a family not given"
    );
    let m = query(g.addr, "jp.test.", RecordType::A).await;
    assert_eq!(cnames(&m), ["safe.example.net."]);
    assert_eq!(ips(&m), ["192.0.2.99"]);
    assert_eq!(ede(&m).map(|e| e.0), Some(4));
}

#[tokio::test]
async fn safesearch_rewrites_search_engines_and_leaves_other_names() {
    let body = "[[policies]]\nname = \"safe\"\nprecedence = 1\naction = \"safesearch\"\n\n\
                [[policies]]\nname = \"block www\"\nprecedence = 2\naction = \"block\"\ntraffic = 'dns.fqdn == \"www.test\"'\n";
    let g = gate(body, &[]).await;
    let m = query(g.addr, "www.google.com.", RecordType::A).await;
    assert_eq!(cnames(&m), ["forcesafesearch.google.com."]);
    assert_eq!(ips(&m), ["216.239.38.120"]);
    assert_eq!(ede(&m).map(|e| e.0), Some(17));
    assert_eq!(m.answers[0].name.to_string(), "www.google.com.");
    let m = query(g.addr, "www.google.com.", RecordType::AAAA).await;
    assert_eq!(ips(&m), ["2001:4860:4802:32::78"]);
    let m = query(g.addr, "www.bing.com.", RecordType::A).await;
    assert_eq!(cnames(&m), ["strict.bing.com."]);
    let m = query(g.addr, "www.youtube.com.", RecordType::A).await;
    assert_eq!(cnames(&m), ["restrict.youtube.com."]);
    // Other names resolve normally, and later policies still apply to them.
    let m = query(g.addr, "mail.google.com.", RecordType::A).await;
    assert_eq!(ips(&m), ["142.250.0.2"]);
    assert!(ede(&m).is_none());
    assert!(is_blocked_null(
        &query(g.addr, "www.test.", RecordType::A).await
    ));
}

#[tokio::test]
async fn ytrestricted_rewrites_only_youtube() {
    let g = gate(
        "[[policies]]\nname = \"yt\"\naction = \"ytrestricted\"\n",
        &[],
    )
    .await;
    let m = query(g.addr, "www.youtube.com.", RecordType::A).await;
    assert_eq!(cnames(&m), ["restrict.youtube.com."]);
    assert_eq!(ede(&m).map(|e| e.0), Some(17));
    assert_eq!(
        ips(&query(g.addr, "www.google.com.", RecordType::A).await),
        ["142.250.0.1"]
    );
}

#[tokio::test]
async fn resolve_policy_sends_matching_names_to_its_upstreams() {
    let other = crate::upstream::start().await;
    let body = format!(
        "[[policies]]\nname = \"internal\"\naction = \"resolve\"\ntraffic = 'dns.fqdn == \"internal.test\"'\nupstreams = [\"udp://{}\"]\n",
        other.addr
    );
    let g = gate(&body, &[]).await;
    assert_eq!(
        ips(&query(g.addr, "internal.test.", RecordType::A).await),
        ["192.0.2.40"]
    );
    assert_eq!(other.queries(), 1);
    assert_eq!(g.upstream.queries(), 0);
    query(g.addr, "www.test.", RecordType::A).await;
    assert_eq!(other.queries(), 1);
    assert_eq!(g.upstream.queries(), 1);
}

#[tokio::test]
async fn categories_from_lists_in_every_format() {
    let body = "[[lists]]\nname = \"hosts\"\npath = \"hosts.txt\"\nformat = \"hosts\"\n\n\
                [[lists]]\nname = \"abp\"\npath = \"abp.txt\"\nformat = \"adblock\"\n\n\
                [[categories]]\nid = 7\nname = \"Ads\"\nlists = [\"hosts\"]\n\n\
                [[categories]]\nid = 9\nname = \"Threats\"\nlists = [\"abp\"]\nsecurity = true\n\n\
                [[policies]]\nname = \"content\"\naction = \"block\"\ntraffic = 'any(dns.content_category[*] in {7})'\n\n\
                [[policies]]\nname = \"security\"\naction = \"block\"\nblock_mode = \"nxdomain\"\ntraffic = 'any(dns.security_category[*] in {9})'\n";
    let g = gate(
        body,
        &[
            ("hosts.txt", "0.0.0.0 jp.test\n127.0.0.1 localhost\n"),
            ("abp.txt", "||ads.test^\n@@||good.ads.test^\n"),
        ],
    )
    .await;
    assert!(is_blocked_null(
        &query(g.addr, "jp.test.", RecordType::A).await
    ));
    assert_eq!(
        query(g.addr, "tracker.ads.test.", RecordType::A)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    // The @@ exception takes good.ads.test back out.
    assert_eq!(
        ips(&query(g.addr, "good.ads.test.", RecordType::A).await),
        ["192.0.2.32"]
    );
}

#[tokio::test]
async fn real_world_lists_load_and_block() {
    // Vendored in the repository; see tests/data/lists-real/README.md.
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/lists-real");
    let body = format!(
        "[[lists]]\nname = \"hosts\"\npath = \"{data}/adservers-hosts.txt\"\nformat = \"hosts\"\n\n\
         [[lists]]\nname = \"nocoin\"\npath = \"{data}/nocoin-adblock.txt\"\nformat = \"adblock\"\n\n\
         [[policies]]\nname = \"block\"\naction = \"block\"\ntraffic = 'any(dns.domains[*] in $hosts) or any(dns.domains[*] in $nocoin)'\n"
    );
    let g = gate(&body, &[]).await;
    let hosts = std::fs::read_to_string(format!("{data}/adservers-hosts.txt")).unwrap();
    let listed = hosts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .find(|n| n.contains('.') && *n != "0.0.0.0")
        .unwrap()
        .to_owned();
    assert!(
        is_blocked_null(&query(g.addr, &format!("{listed}."), RecordType::A).await),
        "{listed}"
    );
    assert!(is_blocked_null(
        &query(g.addr, &format!("sub.{listed}."), RecordType::A).await
    ));
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
}

const IDENTITIES: &str = r#"
[[groups]]
id = "g-fin"
name = "finance"
email = "finance@example.com"

[[users]]
email = "con.tact+1@example.com"
name = "contact"
groups = ["g-fin"]
saml_attributes = { department = ["Marketing"] }

[[users]]
email = "bob@example.com"
name = "bob"

[[devices]]
id = "laptop"
user = "con.tact+1@example.com"
ips = ["127.0.0.2"]

[[devices]]
id = "phone"
user = "bob@example.com"
ips = ["127.0.0.3"]

[[locations]]
name = "office"
networks = ["127.0.0.0/30"]
"#;

#[tokio::test]
async fn identity_groups_saml_device_and_location() {
    let body = "[identity]\ndirectory = \"identities.toml\"\n\n\
                [[policies]]\nname = \"finance\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"www.test\"'\nidentity = 'any(identity.groups.name[*] == \"finance\")'\n\n\
                [[policies]]\nname = \"marketing\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"jp.test\"'\nidentity = 'any(identity.saml_attributes[\"department\"][*] == \"Marketing\")'\n\n\
                [[policies]]\nname = \"phone\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"us.test\" and identity.device_id == \"phone\"'\n\n\
                [[policies]]\nname = \"office\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"pt.test\" and dns.location == \"office\"'\n";
    let g = gate(body, &[("identities.toml", IDENTITIES)]).await;
    assert!(is_blocked_null(
        &query_from(&g, "127.0.0.2", "www.test.", RecordType::A).await
    ));
    assert_eq!(
        ips(&query_from(&g, "127.0.0.3", "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    assert_eq!(
        ips(&query_from(&g, "127.0.0.1", "www.test.", RecordType::A).await),
        ["192.0.2.10"],
        "unknown device: empty identity"
    );
    assert!(is_blocked_null(
        &query_from(&g, "127.0.0.2", "jp.test.", RecordType::A).await
    ));
    assert!(is_blocked_null(
        &query_from(&g, "127.0.0.3", "us.test.", RecordType::A).await
    ));
    assert_eq!(
        ips(&query_from(&g, "127.0.0.2", "us.test.", RecordType::A).await),
        ["203.0.113.9"]
    );
    // Location: 127.0.0.0/30 holds .1-.3 but not .5.
    assert!(is_blocked_null(
        &query_from(&g, "127.0.0.1", "pt.test.", RecordType::A).await
    ));
    assert_eq!(
        ips(&query_from(&g, "127.0.0.5", "pt.test.", RecordType::A).await),
        ["198.51.100.7"]
    );
}

#[tokio::test]
async fn extended_emails_match_variants_in_block_but_not_allow_policies() {
    // The user is con.tact+1@example.com, a variant of contact@example.com.
    let body = "[identity]\ndirectory = \"identities.toml\"\n\n\
                [[policies]]\nname = \"allow exact\"\nprecedence = 1\naction = \"allow\"\ntraffic = 'dns.fqdn == \"www.test\"'\nidentity = 'identity.email == \"contact@example.com\"'\n\n\
                [[policies]]\nname = \"block variants\"\nprecedence = 2\naction = \"block\"\ntraffic = 'dns.fqdn == \"www.test\" or dns.fqdn == \"jp.test\"'\nidentity = 'identity.email == \"contact@example.com\"'\n";
    let g = gate(body, &[("identities.toml", IDENTITIES)]).await;
    // The allow does not match the variant; the block does.
    assert!(is_blocked_null(
        &query_from(&g, "127.0.0.2", "www.test.", RecordType::A).await
    ));
    assert!(is_blocked_null(
        &query_from(&g, "127.0.0.2", "jp.test.", RecordType::A).await
    ));
    assert_eq!(
        ips(&query_from(&g, "127.0.0.3", "jp.test.", RecordType::A).await),
        ["192.0.2.55"]
    );

    let body = body.replace("[identity]\n", "[identity]\nmatch_extended_emails = true\n");
    let g = gate(&body, &[("identities.toml", IDENTITIES)]).await;
    // With match_extended_emails the allow matches the variant too, and it comes first.
    assert_eq!(
        ips(&query_from(&g, "127.0.0.2", "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
}

#[tokio::test]
async fn rule_builder_include_require_exclude() {
    let body = "[identity]\ndirectory = \"identities.toml\"\n\n\
                [[policies]]\nname = \"builder\"\naction = \"block\"\n\
                include = [{ domain = [\"test\"] }]\n\
                require = [{ email_domain = [\"@example.com\"] }]\n\
                exclude = [{ group = [\"finance\"] }, { host = [\"www.test\"] }]\n";
    let g = gate(body, &[("identities.toml", IDENTITIES)]).await;
    // bob: example.com, not finance: blocked, except the excluded host.
    assert!(is_blocked_null(
        &query_from(&g, "127.0.0.3", "jp.test.", RecordType::A).await
    ));
    assert_eq!(
        ips(&query_from(&g, "127.0.0.3", "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    // contact is in finance: excluded.
    assert_eq!(
        ips(&query_from(&g, "127.0.0.2", "jp.test.", RecordType::A).await),
        ["192.0.2.55"]
    );
    // No identity: the require fails.
    assert_eq!(
        ips(&query_from(&g, "127.0.0.1", "jp.test.", RecordType::A).await),
        ["192.0.2.55"]
    );
}

const GEOIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/test-country.mmdb");

#[tokio::test]
async fn geoip_of_resolved_addresses_blocks_by_country_and_continent() {
    let body = format!(
        "[geoip]\ndatabase = \"{GEOIP}\"\n\n\
         [[policies]]\nname = \"no JP\"\naction = \"block\"\ntraffic = 'any(dns.dst.geo.country[*] == \"JP\")'\n\n\
         [[policies]]\nname = \"no NA\"\naction = \"block\"\nblock_mode = \"nxdomain\"\ntraffic = 'any(dns.dst.geo.continent[*] == \"NA\")'\n"
    );
    let g = gate(&body, &[]).await;
    assert!(is_blocked_null(
        &query(g.addr, "jp.test.", RecordType::A).await
    ));
    assert_eq!(
        query(g.addr, "us.test.", RecordType::A)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    // One JP address among others is enough for any().
    assert!(is_blocked_null(
        &query(g.addr, "mixed.test.", RecordType::A).await
    ));
    assert_eq!(
        ips(&query(g.addr, "pt.test.", RecordType::A).await),
        ["198.51.100.7"]
    );
    assert_eq!(
        ips(&query(g.addr, "v6de.test.", RecordType::AAAA).await),
        ["2001:db8::77"]
    );
}

#[tokio::test]
async fn reload_swaps_policies_and_a_bad_reload_keeps_the_old_ones() {
    let g = gate("", &[]).await;
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    let cfg = g.config_path();
    let original = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{original}[[policies]]\nname = \"b\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"www.test\"'\n")).unwrap();
    g.running.shared.reload().await.unwrap();
    assert!(is_blocked_null(
        &query(g.addr, "www.test.", RecordType::A).await
    ));
    std::fs::write(&cfg, format!("{original}[[policies]]\nname = \"b\"\naction = \"block\"\ntraffic = 'dns.fqdn == 1.2.3.4'\n")).unwrap();
    let errs = g.running.shared.reload().await.unwrap_err();
    assert!(!errs.is_empty());
    assert!(
        is_blocked_null(&query(g.addr, "www.test.", RecordType::A).await),
        "old policies still serve"
    );
}

/// The negative-caching TTL a client derives from an authority SOA (RFC 2308 §5).
fn negative_ttl(m: &Message) -> Option<u32> {
    m.authorities.iter().find_map(|r| match &r.data {
        hickory_proto::rr::RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
        _ => None,
    })
}

#[tokio::test]
async fn negative_block_answers_carry_an_soa_with_the_block_ttl() {
    let body = "[block]\nttl = 45\n\n\
                [[policies]]\nname = \"nx\"\naction = \"block\"\nblock_mode = \"nxdomain\"\ntraffic = 'dns.fqdn == \"ads.test\"'\n\n\
                [[policies]]\nname = \"null\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"tracker.ads.test\"'\n";
    let g = gate(body, &[]).await;
    // NXDOMAIN: without an SOA a client cannot cache the negative answer at all (RFC 2308 §5).
    let nx = query(g.addr, "ads.test.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(ede(&nx).map(|e| e.0), Some(15));
    let soa = nx
        .authorities
        .iter()
        .find(|r| r.record_type() == RecordType::SOA)
        .expect("SOA in the authority section");
    assert_eq!(soa.ttl, 45, "{nx:?}");
    assert_eq!(
        negative_ttl(&nx),
        Some(45),
        "min(SOA TTL, MINIMUM) is the block TTL: {nx:?}"
    );
    // NODATA (null mode, a type with no null address).
    let nodata = query(g.addr, "tracker.ads.test.", RecordType::MX).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(ede(&nodata).map(|e| e.0), Some(15));
    assert_eq!(negative_ttl(&nodata), Some(45), "{nodata:?}");
    // The positive null answer keeps the block TTL too.
    let a = query(g.addr, "tracker.ads.test.", RecordType::A).await;
    assert_eq!(ips(&a), ["0.0.0.0"]);
    assert_eq!(a.answers[0].ttl, 45);
}

#[tokio::test]
async fn override_host_targets_resolve_through_the_querys_resolve_upstreams() {
    // The default upstream is dead; a resolve policy sends *.test to a live one. An override
    // from old.test to www.test must reach www.test through that same live upstream.
    let dead = crate::closed_port();
    let up = crate::upstream::start().await;
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"udp://{dead}\"]\ntimeout_ms = 500\n\
         [[policies]]\nname = \"internal\"\naction = \"resolve\"\ntraffic = 'any(dns.domains[*] == \"test\")'\nupstreams = [\"udp://{}\"]\n\
         [[policies]]\nname = \"moved\"\naction = \"override\"\ntraffic = 'dns.fqdn == \"old.test\"'\noverride_host = \"www.test\"\n",
        up.addr
    );
    let g = crate::gate_with(up, &cfg, &[]).await;
    let m = query(g.addr, "old.test.", RecordType::A).await;
    assert_eq!(cnames(&m), ["www.test."]);
    assert_eq!(ips(&m), ["192.0.2.10"]);
    assert_eq!(ede(&m).map(|e| e.0), Some(4));
    // A target that cannot be resolved is a SERVFAIL with the upstream's EDE, not a bare CNAME.
    let cfg2 = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"udp://{dead}\"]\ntimeout_ms = 500\n\
         [[policies]]\nname = \"moved\"\naction = \"override\"\ntraffic = 'dns.fqdn == \"old.test\"'\noverride_host = \"www.test\"\n"
    );
    let g2 = crate::gate_with(crate::upstream::start().await, &cfg2, &[]).await;
    let m = query(g2.addr, "old.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(ede(&m).map(|e| e.0), Some(23));
}
