//! Tests of the identity directory: loading `identities.toml` with its diagnostics, and
//! the lookups a query makes. In their own file because they outweigh the code.

use std::path::Path;

use ipnet::IpNet;

use super::*;
use crate::diag::Diagnostic;
use crate::netmap::canonical_net;

fn parse(text: &str) -> Result<Directory, Vec<Diagnostic>> {
    Directory::parse(Path::new("identities.toml"), text)
}

/// Each diagnostic as `line:col: message`.
fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors"),
        Err(diags) => diags
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
            .collect(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const EXAMPLE: &str = r#"# The SPEC §5 example, and more.
[[groups]]
id = "grp-finance"
name = "finance"
email = "Finance@Example.com"

[[groups]]
id = "grp-eng"

[[users]]
email = "Alice@Example.com"
name = "alice"
groups = ["grp-finance", "grp-eng", "grp-finance"]
saml_attributes = { department = ["Marketing"], level = ["3", "4"] }

[[users]]
email = "con.tact+1@example.com"
name = "Contact"

[[devices]]
id = "alice-laptop"
user = "alice@example.com"
ips = ["192.168.1.10", "2001:db8:1::10"]
doh_token = "random-secret"

[[devices]]
id = "alice-phone"
user = "ALICE@example.com"
ips = ["::ffff:192.168.1.11"]

[[devices]]
id = "contact-vpn"
user = "con.tact+1@example.com"
ips = ["10.20.0.0/16"]
doh_token = "other-secret"

[[devices]]
id = "printer"
ips = ["192.168.1.0/28"]

[[devices]]
id = "kiosk"
ips = ["10.20.30.0/24"]

[[locations]]
name = "office"
networks = ["192.168.1.0/24", "2001:db8:1::/48"]

[[locations]]
name = "office-guest"
networks = ["192.168.1.128/25"]

[[locations]]
name = "vpn"
networks = ["10.0.0.0/8"]

[[locations]]
name = "internet"
networks = ["0.0.0.0/0"]
"#;

#[test]
fn example_directory_resolves_every_lookup() {
    let dir = parse(EXAMPLE).unwrap();
    assert_eq!(
        (
            dir.len_groups(),
            dir.len_users(),
            dir.len_devices(),
            dir.len_locations()
        ),
        (2, 2, 5, 4)
    );
    assert!(!dir.is_empty());

    let laptop = dir.identity_for_ip(ip("192.168.1.10")).unwrap();
    let finance = Group {
        id: "grp-finance".into(),
        name: "finance".into(),
        email: "finance@example.com".into(),
    };
    // A group without a name is named by its id.
    let eng = Group {
        id: "grp-eng".into(),
        name: "grp-eng".into(),
        email: String::new(),
    };
    let expected = Identity {
        device_id: "alice-laptop".into(),
        email: "alice@example.com".into(),
        email_canonical: "alice@example.com".into(),
        name: "alice".into(),
        groups: vec![finance, eng],
        saml_attributes: HashMap::from([
            ("department".into(), vec!["Marketing".into()]),
            ("level".into(), vec!["3".into(), "4".into()]),
        ]),
        last_seen: Default::default(),
    };
    assert_eq!(**laptop, expected);
    // Every way to reach the laptop gives the same shared identity.
    for other in [
        dir.identity_for_ip(ip("::ffff:192.168.1.10")),
        dir.identity_for_ip(ip("2001:db8:1::10")),
        dir.identity_for_token("random-secret"),
    ] {
        assert!(Arc::ptr_eq(laptop, other.unwrap()));
    }

    let phone = dir.identity_for_ip(ip("192.168.1.11")).unwrap();
    assert_eq!(
        (phone.device_id.as_str(), phone.email.as_str()),
        ("alice-phone", "alice@example.com")
    );

    // An exact address beats the printer's /28, which holds the rest of it.
    let printer = dir.identity_for_ip(ip("192.168.1.12")).unwrap();
    assert_eq!(
        **printer,
        Identity {
            device_id: "printer".into(),
            ..Identity::default()
        }
    );
    assert!(dir.identity_for_ip(ip("192.168.1.16")).is_none());

    // Longest prefix: the kiosk's /24 inside the contact's /16.
    assert_eq!(
        dir.identity_for_ip(ip("10.20.30.40")).unwrap().device_id,
        "kiosk"
    );
    let contact = dir.identity_for_ip(ip("10.20.1.1")).unwrap();
    assert_eq!(contact.device_id, "contact-vpn");
    assert_eq!(contact.email, "con.tact+1@example.com");
    assert_eq!(contact.email_canonical, "contact@example.com");
    assert!(Arc::ptr_eq(
        contact,
        dir.identity_for_token("other-secret").unwrap()
    ));

    assert!(dir.identity_for_ip(ip("10.21.0.1")).is_none());
    assert!(dir.identity_for_ip(ip("2001:db8:1::11")).is_none());
    assert!(dir.identity_for_token("Random-Secret").is_none());
    assert!(dir.identity_for_token("").is_none());

    assert_eq!(dir.location_for_ip(ip("192.168.1.5")), Some("office"));
    assert_eq!(
        dir.location_for_ip(ip("192.168.1.200")),
        Some("office-guest")
    );
    assert_eq!(
        dir.location_for_ip(ip("::ffff:192.168.1.200")),
        Some("office-guest")
    );
    assert_eq!(dir.location_for_ip(ip("2001:db8:1:2::1")), Some("office"));
    assert_eq!(dir.location_for_ip(ip("10.1.2.3")), Some("vpn"));
    assert_eq!(dir.location_for_ip(ip("8.8.8.8")), Some("internet"));
    assert_eq!(dir.location_for_ip(ip("2001:db8:2::1")), None);
}

#[test]
fn load_reads_the_file() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), EXAMPLE).unwrap();
    let dir = Directory::load(file.path()).unwrap();
    assert_eq!(dir.len_devices(), 5);
}

#[test]
fn missing_file_is_one_diagnostic() {
    let path = Path::new("/nonexistent/identities.toml");
    let diags = Directory::load(path).unwrap_err();
    assert_eq!(diags.len(), 1);
    assert_eq!(
        (diags[0].path.as_path(), diags[0].line, diags[0].col),
        (path, 1, 1)
    );
    assert!(
        diags[0]
            .message
            .starts_with("cannot read identity directory"),
        "{diags:?}"
    );
}

#[test]
fn empty_directory_knows_nobody() {
    for text in [
        "",
        "# nothing yet\n",
        "groups = []\nusers = []\ndevices = []\nlocations = []\n",
    ] {
        let dir = parse(text).unwrap();
        assert!(dir.is_empty(), "{text:?}");
        assert_eq!(dir.len_devices(), 0);
        assert!(dir.identity_for_ip(ip("192.0.2.1")).is_none());
        assert!(dir.identity_for_ip(ip("2001:db8::1")).is_none());
        assert!(dir.identity_for_token("x").is_none());
        assert!(dir.location_for_ip(ip("192.0.2.1")).is_none());
    }
    assert!(Directory::default().is_empty());
}

#[test]
fn every_problem_is_reported_at_its_position() {
    let text = r#"[[groups]]
id = "g1"

[[groups]]
id = "g1"

[[users]]
email = "a@example.com"
groups = ["g1", "g2"]

[[users]]
email = "A@example.com"

[[devices]]
id = "d1"
user = "nobody@example.com"
ips = ["10.0.0.1", "10.0.0.300", "10.0.0.0/33", "10.1.2.3/8"]
doh_token = "t"

[[devices]]
id = "d1"

[[devices]]
id = "d2"
ips = ["10.0.0.1", "::ffff:10.0.0.1", "10.9.0.0/16", "10.9.0.0/16"]
doh_token = "t"

[[locations]]
name = "office"
networks = ["192.168.0.0/16", "nope"]

[[locations]]
name = "lab"
networks = ["192.168.0.0/16"]

[[locations]]
name = "office"
"#;
    assert_eq!(
        errors(text),
        [
            "5:6: duplicate group id `g1` (first defined on line 2)",
            "9:17: unknown group id `g2`",
            "12:9: duplicate user `a@example.com` (first defined on line 8)",
            "16:8: unknown user `nobody@example.com`",
            "17:20: `10.0.0.300` is not an IP address",
            "17:34: `10.0.0.0/33` is not an IP network",
            "17:49: `10.1.2.3/8` has host bits set (the network is `10.0.0.0/8`)",
            "21:6: duplicate device id `d1` (first defined on line 15)",
            "25:8: `10.0.0.1` is already claimed by device `d1` (line 17)",
            "25:20: `10.0.0.1` is already claimed by device `d1` (line 17)",
            "25:54: `10.9.0.0/16` is listed twice for device `d2` (also on line 25)",
            "26:13: doh_token is already used by device `d1` (line 18)",
            "30:31: `nope` is not an IP address",
            "34:13: `192.168.0.0/16` is already claimed by location `office` (line 30)",
            "37:8: duplicate location `office` (first defined on line 29)",
        ]
    );
}

#[test]
fn toml_syntax_errors_are_positioned() {
    assert_eq!(
        errors("[[devices]]\nid = \"a\nips = []\n"),
        ["2:8: invalid basic string, expected `\"`"]
    );
    let got = errors("[[devices]]\nid = \"a\"\nips = [\n");
    assert!(got[0].starts_with("3:8: "), "{got:?}");
}

#[test]
fn unknown_keys_are_reported_in_every_entry() {
    let text = "bogus = 1\n\n[[devices]]\nid = \"a\"\nip = \"10.0.0.1\"\n\n[[devices]]\nid = \"b\"\ntoken = \"x\"\n";
    assert_eq!(
        errors(text),
        [
            "1:1: unknown key `bogus`, expected `groups`, `users`, `devices` or `locations`",
            "5:1: unknown field `ip`, expected one of `id`, `user`, `ips`, `doh_token`, `doh_token_sha256`, `dot_name`, `group`",
            "9:1: unknown field `token`, expected one of `id`, `user`, `ips`, `doh_token`, `doh_token_sha256`, `dot_name`, `group`",
        ]
    );
}

#[test]
fn wrong_types_and_missing_fields_are_positioned() {
    assert_eq!(
        errors("[[devices]]\nid = 5\n"),
        ["2:6: invalid type: integer `5`, expected a string"]
    );
    assert_eq!(
        errors("devices = 3\n"),
        ["1:11: `devices` must be an array of tables: [[devices]]"]
    );
    assert_eq!(
        errors("[[users]]\nemail = \"a@example.com\"\nsaml_attributes = { department = \"x\" }\n"),
        ["3:34: invalid type: string \"x\", expected a sequence"]
    );
    // A missing key is reported at the entry's `[[devices]]` header.
    assert_eq!(
        errors("\n[[devices]]\nuser = \"a@example.com\"\n"),
        ["2:1: missing field `id`"]
    );
}

#[test]
fn empty_names_addresses_and_tokens_are_errors() {
    let text = "[[groups]]\nid = \" \"\n\n[[users]]\nemail = \"alice\"\n\n[[devices]]\nid = \"\"\n\n[[devices]]\nid = \"x\"\ndoh_token = \"\"\n\n[[locations]]\nname = \"\"\n";
    assert_eq!(
        errors(text),
        [
            "2:6: group id must not be empty",
            "5:9: `alice` is not an e-mail address",
            "8:6: device id must not be empty",
            "12:13: doh_token must not be empty",
            "15:8: location name must not be empty",
        ]
    );
}

#[test]
fn a_broken_entry_does_not_cascade_into_unknown_references() {
    // The group entry fails to parse, so its id is unknown: the user's reference to it
    // must not add a second, misleading error. Same for users and devices.
    let text = "[[groups]]\nid = \"g\"\nmail = \"x\"\n\n[[users]]\nemail = \"a@example.com\"\ngroups = [\"g\"]\nnmae = \"a\"\n\n[[devices]]\nid = \"d\"\nuser = \"a@example.com\"\n";
    assert_eq!(
        errors(text),
        [
            "3:1: unknown field `mail`, expected one of `id`, `name`, `email`",
            "8:1: unknown field `nmae`, expected one of `email`, `name`, `groups`, `saml_attributes`, `active`",
        ]
    );
}

#[test]
fn ipv4_mapped_entries_and_sources_are_ipv4() {
    let text = "[[devices]]\nid = \"a\"\nips = [\"::ffff:10.0.0.0/120\"]\n\n[[locations]]\nname = \"l\"\nnetworks = [\"::ffff:10.0.0.0/104\"]\n";
    let dir = parse(text).unwrap();
    assert_eq!(dir.identity_for_ip(ip("10.0.0.7")).unwrap().device_id, "a");
    assert_eq!(
        dir.identity_for_ip(ip("::ffff:10.0.0.7"))
            .unwrap()
            .device_id,
        "a"
    );
    assert!(dir.identity_for_ip(ip("10.0.1.7")).is_none());
    assert_eq!(dir.location_for_ip(ip("10.200.0.1")), Some("l"));
    assert_eq!(
        canonical_net("::ffff:10.0.0.0/104".parse().unwrap()),
        "10.0.0.0/8".parse::<IpNet>().unwrap()
    );
    // Below /96 a mapped prefix is an IPv6 network, not an IPv4 one.
    let wide: IpNet = "::ffff:0:0/95".parse().unwrap();
    assert_eq!(canonical_net(wide), wide);
}

#[test]
fn canonical_email_folds_extended_addresses() {
    // SPEC §5: `con.tact+1@example.com` is a variant of `contact@example.com`.
    assert_eq!(
        canonical_email("con.tact+1@example.com"),
        "contact@example.com"
    );
    assert_eq!(
        canonical_email("contact@example.com"),
        "contact@example.com"
    );
    assert_eq!(
        canonical_email("Con.Tact+Tag+More@Example.COM"),
        "contact@example.com"
    );
    // Only the local part loses its dots.
    assert_eq!(
        canonical_email("a.b@mail.example.com"),
        "ab@mail.example.com"
    );
    assert_eq!(canonical_email("NoAt"), "noat");
}

#[test]
fn dot_names_are_single_labels_unique_and_win_over_ids() {
    let bad = errors(
        "[[devices]]\nid = \"a\"\ndot_name = \"two.labels\"\n\n[[devices]]\nid = \"b\"\ndot_name = \"Same-Name-1234567890\"\n\n[[devices]]\nid = \"c\"\ndot_name = \"same-name-1234567890\"\n",
    );
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        bad[0].starts_with("3:12: dot_name `two.labels` is not one DNS label"),
        "{bad:?}"
    );
    assert!(
        bad[1].starts_with("11:12: dot_name `same-name-1234567890` is used by another device"),
        "{bad:?}"
    );
    let dir = Directory::parse(
        std::path::Path::new("identities.toml"),
        "[[devices]]\nid = \"phone\"\ndot_name = \"x-secret-label-0001\"\n\n[[devices]]\nid = \"x-secret-label-0001\"\n",
    )
    .unwrap();
    let (by_name, secret) = dir.identity_for_label("X-Secret-Label-0001").unwrap();
    assert_eq!((by_name.device_id.as_str(), secret), ("phone", true));
    let (by_id, secret) = dir.identity_for_label("PHONE").unwrap();
    assert_eq!((by_id.device_id.as_str(), secret), ("phone", false));
    assert!(dir.identity_for_label("nobody").is_none());
}

#[test]
fn tokens_may_be_given_as_their_sha256() {
    // printf 'kid-secret-token' | sha256sum
    let hash = super::token_digest("kid-secret-token");
    assert_eq!(
        hash,
        "a0ab5b83b4ae3010caa460dbf395f75ab921b3015c6e3550a06c49f9cdf28e99"
    );
    let dir = Directory::parse(
        std::path::Path::new("identities.toml"),
        &format!(
            "[[devices]]\nid = \"kid\"\ndoh_token_sha256 = \"{}\"\n\n[[devices]]\nid = \"mum\"\ndoh_token = \"mums-token\"\n",
            hash.to_uppercase()
        ),
    )
    .unwrap();
    assert_eq!(
        dir.identity_for_token("kid-secret-token")
            .unwrap()
            .device_id,
        "kid"
    );
    assert_eq!(
        dir.identity_for_token("mums-token").unwrap().device_id,
        "mum"
    );
    assert!(
        dir.identity_for_token(&hash).is_none(),
        "the hash is not the token"
    );
    let bad = errors(&format!(
        "[[devices]]\nid = \"a\"\ndoh_token_sha256 = \"xyz\"\n\n[[devices]]\nid = \"b\"\ndoh_token = \"t\"\ndoh_token_sha256 = \"{hash}\"\n\n[[devices]]\nid = \"c\"\ndoh_token_sha256 = \"{}\"\n",
        super::token_digest("t")
    ));
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad[0].contains("64 hex digits"), "{bad:?}");
    assert!(bad[1].contains("not both"), "{bad:?}");
}

#[test]
fn locations_may_have_a_token_and_a_dot_name() {
    let dir = Directory::parse(
        std::path::Path::new("identities.toml"),
        "[[locations]]\nname = \"office\"\nnetworks = [\"10.1.0.0/16\"]\ndoh_token = \"office-token\"\ndot_name = \"office-label-0123456789\"\n",
    )
    .unwrap();
    assert_eq!(dir.location_for_token("office-token"), Some("office"));
    assert_eq!(
        dir.location_for_label("Office-Label-0123456789"),
        Some("office")
    );
    assert_eq!(dir.location_for_token("other"), None);
}

#[test]
fn several_files_make_one_directory_and_name_each_other_across() {
    let f = |path: &'static str, text: &'static str| IdentityFile {
        path: Path::new(path),
        text,
        managed: false,
    };
    let file = "[[groups]]\nid = \"g1\"\nname = \"kids\"\n\n[[users]]\nemail = \"kid@x.test\"\ngroups = [\"g1\"]\n";
    let api = "[[devices]]\nid = \"tablet\"\nuser = \"kid@x.test\"\ngroup = \"kids\"\nips = [\"10.0.0.5\"]\n";
    let dir =
        Directory::parse_all(&[f("identities.toml", file), f("api/identities.toml", api)]).unwrap();
    let id = dir.identity_for_device("tablet").unwrap();
    assert_eq!(id.email, "kid@x.test");
    assert_eq!(id.groups[0].name, "kids");
    // A duplicate across files names the other file's line.
    let dup = "[[users]]\nemail = \"KID@x.test\"\n";
    let diags = Directory::parse_all(&[f("identities.toml", file), f("api/identities.toml", dup)])
        .unwrap_err();
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].path, Path::new("api/identities.toml"));
    assert_eq!(
        diags[0].message,
        "duplicate user `kid@x.test` (first defined on line 6 of identities.toml)"
    );
    // A device's group must be one of its user's.
    let other = "[[devices]]\nid = \"t\"\nuser = \"kid@x.test\"\ngroup = \"teens\"\n";
    let diags =
        Directory::parse_all(&[f("identities.toml", file), f("api/identities.toml", other)])
            .unwrap_err();
    assert_eq!(
        diags[0].message,
        "device `t`: its user `kid@x.test` is not in group `teens`"
    );
}

#[test]
fn a_deprovisioned_users_devices_keep_their_ids_and_lose_the_rest() {
    let text = "[[groups]]\nid = \"g1\"\nname = \"kids\"\n\n[[users]]\nemail = \"gone@x.test\"\nname = \"Gone\"\ngroups = [\"g1\"]\nactive = false\n\n[[devices]]\nid = \"old-phone\"\nuser = \"gone@x.test\"\ngroup = \"kids\"\nips = [\"10.0.0.9\"]\n";
    let dir = parse(text).unwrap();
    let id = dir.identity_for_device("old-phone").unwrap();
    assert_eq!(id.device_id, "old-phone");
    assert!(id.email.is_empty() && id.name.is_empty() && id.groups.is_empty());
}

#[test]
fn a_membership_the_identity_provider_removed_is_a_warning_for_a_devices_group() {
    let scim = "[[groups]]\nid = \"g1\"\nname = \"kids\"\n\n[[users]]\nemail = \"kid@x.test\"\ngroups = []\n";
    let api = "[[devices]]\nid = \"t\"\nuser = \"kid@x.test\"\ngroup = \"kids\"\n";
    let dir = Directory::parse_all(&[
        IdentityFile {
            path: Path::new("api/identities.toml"),
            text: api,
            managed: false,
        },
        IdentityFile {
            path: Path::new("api/scim.toml"),
            text: scim,
            managed: true,
        },
    ])
    .unwrap();
    assert_eq!(dir.identity_for_device("t").unwrap().email, "kid@x.test");
}
