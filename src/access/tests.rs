//! Tests of tokens: patterns, decisions, the file, authentication, minting.

use std::path::Path;

use jiff::Timestamp;

use super::*;

fn perm(s: &str) -> Permission {
    s.parse().unwrap()
}

fn res(s: &str) -> Resource {
    s.parse().unwrap()
}

fn ts(s: &str) -> Timestamp {
    parse_expiry(s).unwrap()
}

fn target<'a>(kind: &'a str, name: &'a str, group: Option<&'a str>) -> Target<'a> {
    Target { kind, name, group }
}

fn stmt(effect: Effect, perms: &[&str], resources: &[&str]) -> Statement {
    Statement {
        effect,
        permissions: perms.iter().map(|p| perm(p)).collect(),
        resources: resources.iter().map(|r| res(r)).collect(),
    }
}

fn token(policies: Vec<Statement>) -> Token {
    Token {
        name: "t".into(),
        hash: digest("x"),
        expires: None,
        policies,
    }
}

fn parse(text: &str) -> Result<Tokens, Vec<Diagnostic>> {
    Tokens::parse(Path::new("tokens.toml"), text)
}

/// The diagnostics of a file that must not load, as `line:col: message`.
fn errors(text: &str) -> Vec<String> {
    parse(text)
        .unwrap_err()
        .iter()
        .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
        .collect()
}

#[test]
fn permissions_are_three_segments_with_whole_segment_stars() {
    for ok in [
        "dnsgate.lists.update",
        "dnsgate.*.read",
        "dnsgate.lists.*",
        "dnsgate.*.*",
        "dnsgate.cache.flush",
        "dnsgate.devices.revoke",
        "dnsgate.*.flush",
    ] {
        assert_eq!(perm(ok).to_string(), ok);
    }
    for bad in [
        "dnsgate.lists",
        "dnsgate.*",
        "dnsgate.lists.update.more",
        "dnsgate.lists.",
        "lists.update",
        "*.lists.update",
        "other.lists.update",
        "dnsgate.li*.read",
        "dnsgate.lists.up*",
        "dnsgate.**",
        "dnsgate.**.read",
        "dnsgate.list.read",
        "dnsgate.lists.write",
        "dnsgate.lists.flush",
        "dnsgate.users.revoke",
        "",
    ] {
        assert!(bad.parse::<Permission>().is_err(), "{bad} parsed");
    }
}

#[test]
fn a_star_matches_one_whole_segment_only() {
    assert!(perm("dnsgate.*.read").matches(Kind::Lists, Verb::Read));
    assert!(perm("dnsgate.*.read").matches(Kind::Policies, Verb::Read));
    assert!(!perm("dnsgate.*.read").matches(Kind::Lists, Verb::Update));
    assert!(perm("dnsgate.lists.*").matches(Kind::Lists, Verb::Delete));
    assert!(!perm("dnsgate.lists.*").matches(Kind::Policies, Verb::Delete));
    assert!(perm("dnsgate.*.*").matches(Kind::Scim, Verb::Create));
    assert!(!perm("dnsgate.lists.update").matches(Kind::Lists, Verb::Read));
}

#[test]
fn permission_coverage_is_by_the_permissions_matched() {
    assert!(perm("dnsgate.*.*").covers(&perm("dnsgate.lists.*")));
    assert!(perm("dnsgate.lists.*").covers(&perm("dnsgate.lists.update")));
    assert!(!perm("dnsgate.lists.update").covers(&perm("dnsgate.lists.*")));
    assert!(!perm("dnsgate.lists.*").covers(&perm("dnsgate.*.read")));
    // Only the cache is flushed: `dnsgate.*.flush` is `dnsgate.cache.flush`.
    assert!(perm("dnsgate.cache.*").covers(&perm("dnsgate.*.flush")));
}

#[test]
fn resources_match_by_name_kind_and_group() {
    let ads = target("list", "ads", None);
    let kids_device = target("device", "tablet", Some("kids"));
    assert!(res("*").matches(&ads));
    assert!(res("list:ads").matches(&ads));
    assert!(
        res("list:ads").matches(&target("lists", "ads", None)),
        "plural kind"
    );
    assert!(!res("list:ads").matches(&target("list", "other", None)));
    assert!(!res("list:ads").matches(&target("policy", "ads", None)));
    assert!(res("list:*").matches(&ads));
    assert!(!res("list:*").matches(&kids_device));
    assert!(res("policy:kids-games").matches(&target("policies", "kids-games", None)));
    assert!(res("user:bob@x.test").matches(&target("user", "bob@x.test", None)));
    assert!(res("group:kids").matches(&kids_device));
    assert!(res("group:kids").matches(&target("querylog", "", Some("kids"))));
    assert!(!res("group:kids").matches(&ads));
    assert!(!res("group:kids").matches(&target("device", "x", Some("adults"))));
    assert!(res("group:*").matches(&kids_device));
    assert!(!res("group:*").matches(&ads));
    for bad in [
        "",
        "ads",
        "lists:ads",
        "list:",
        "cache:x",
        "list:ad*",
        "nope:*",
    ] {
        assert!(bad.parse::<Resource>().is_err(), "{bad} parsed");
    }
}

#[test]
fn resource_coverage() {
    assert!(res("*").covers(&res("group:kids")));
    assert!(res("list:*").covers(&res("list:ads")));
    assert!(res("list:*").covers(&res("list:*")));
    assert!(!res("list:ads").covers(&res("list:*")));
    assert!(!res("list:*").covers(&res("*")));
    assert!(!res("list:*").covers(&res("policy:ads")));
    assert!(res("group:*").covers(&res("group:kids")));
    assert!(!res("group:kids").covers(&res("group:*")));
    assert!(!res("group:kids").covers(&res("device:tablet")));
    assert!(!res("device:*").covers(&res("group:kids")));
}

#[test]
fn deny_beats_allow_and_nothing_is_allowed_by_default() {
    let t = token(vec![
        stmt(Effect::Allow, &["dnsgate.lists.*"], &["*"]),
        stmt(Effect::Deny, &["dnsgate.lists.delete"], &["list:ads"]),
    ]);
    let ads = target("list", "ads", None);
    assert!(t.may("lists", "update", &ads));
    assert!(!t.may("lists", "delete", &ads));
    assert!(t.may("lists", "delete", &target("list", "other", None)));
    assert!(!t.may("policies", "read", &ads), "no allow matches");
    assert!(!t.may("lists", "bogus", &ads), "unknown verb");
    assert!(!token(vec![]).may("lists", "read", &ads));
    // A pattern is allowed only where each permission it stands for is.
    assert!(!t.allows(&perm("dnsgate.lists.*"), &ads));
    assert!(t.allows(&perm("dnsgate.lists.*"), &target("list", "other", None)));
    // Deny order does not matter.
    let reversed = token(t.policies.iter().rev().cloned().collect());
    assert!(!reversed.may("lists", "delete", &ads));
}

#[test]
fn a_statement_needs_its_permission_and_its_resource() {
    let t = token(vec![stmt(
        Effect::Allow,
        &["dnsgate.lists.update", "dnsgate.*.read"],
        &["list:ads", "group:kids"],
    )]);
    assert!(t.may("lists", "update", &target("list", "ads", None)));
    assert!(t.may("devices", "read", &target("device", "x", Some("kids"))));
    assert!(!t.may("devices", "update", &target("device", "x", Some("kids"))));
    assert!(!t.may("lists", "update", &target("list", "other", None)));
}

const FILE: &str = r#"
[[tokens]]
name = "ci-lists"
hash = "HASH"
expires = "2027-01-01T00:00:00Z"
policies = [
  { effect = "allow", permissions = ["dnsgate.lists.update", "dnsgate.policies.*", "dnsgate.*.read"], resources = ["list:ads", "group:kids", "*"] },
  { effect = "deny",  permissions = ["dnsgate.lists.delete"], resources = ["*"] },
]

[[tokens]]
name = "forever"
hash = "HASH2"
policies = []
"#;

fn file() -> String {
    FILE.replace("HASH2", &digest("dgt_second_secret"))
        .replace("HASH", &digest("dgt_first_secret"))
}

#[test]
fn the_spec_example_loads() {
    let tokens = parse(&file()).unwrap();
    assert_eq!(tokens.len(), 2);
    let t = tokens.get("ci-lists").unwrap();
    assert_eq!(t.expires, Some(ts("2027-01-01T00:00:00Z")));
    assert_eq!(t.policies.len(), 2);
    assert_eq!(t.policies[1].effect, Effect::Deny);
    assert_eq!(tokens.get("forever").unwrap().expires, None);
    assert_eq!(
        tokens.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["ci-lists", "forever"]
    );
}

#[test]
fn expiry_takes_rfc3339_or_a_date_at_midnight_utc() {
    assert_eq!(ts("2027-01-01"), ts("2027-01-01T00:00:00Z"));
    assert_eq!(ts("2027-01-01T02:00:00+02:00"), ts("2027-01-01T00:00:00Z"));
    for bad in [
        "2027-01-01T00:00:00",
        "2027-13-01",
        "tomorrow",
        "2027-1-1",
        "",
    ] {
        assert!(parse_expiry(bad).is_err(), "{bad} parsed");
    }
    let bare = "[[tokens]]\nname = \"a\"\nhash = \"H\"\nexpires = 2027-01-01\npolicies = []\n"
        .replace('H', &digest("s"));
    let t = parse(&bare).unwrap();
    assert_eq!(t.get("a").unwrap().expires, Some(ts("2027-01-01")));
}

#[test]
fn authenticate_finds_the_right_secret_until_it_expires() {
    let tokens = parse(&file()).unwrap();
    let before = ts("2026-06-01T00:00:00Z");
    let t = tokens.authenticate("dgt_first_secret", before).unwrap();
    assert_eq!(t.name, "ci-lists");
    assert!(tokens.authenticate("dgt_first_secreT", before).is_none());
    assert!(tokens.authenticate("", before).is_none());
    assert!(tokens.authenticate(&"x".repeat(10_000), before).is_none());
    // Expired at (not only after) its expiry; a token without one never expires.
    assert!(
        tokens
            .authenticate("dgt_first_secret", ts("2027-01-01"))
            .is_none()
    );
    assert!(
        tokens
            .authenticate("dgt_first_secret", ts("2030-01-01"))
            .is_none()
    );
    assert!(
        tokens
            .authenticate("dgt_second_secret", ts("2300-01-01"))
            .is_some()
    );
}

#[test]
fn new_secrets_are_well_formed_unique_and_hashed() {
    let (a, ha) = new_secret();
    let (b, _) = new_secret();
    assert_ne!(a, b);
    assert_eq!(ha, digest(&a));
    let rest = a.strip_prefix("dgt_").unwrap();
    let (id, secret) = rest.split_once('_').unwrap();
    assert_eq!(id.len(), 8);
    assert!(
        id.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );
    assert!(secret.len() >= 32 && secret.bytes().all(|c| c.is_ascii_alphanumeric()));
    // ≥ 160 bits: 43 base62 characters carry 43 × log2(62) ≈ 256.
    assert!(secret.len() as f64 * 62f64.log2() >= 160.0);
    assert_eq!(
        digest("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn diagnostics_point_at_the_bad_value() {
    let h = digest("s");
    let text = format!(
        "[[tokens]]\nname = \"a\"\nhash = \"{h}\"\npolicies = [\n  {{ effect = \"allow\", permissions = [\"dnsgate.lists.updat\"], resources = [\"*\"] }},\n  {{ effect = \"permit\", permissions = [\"dnsgate.*.read\"], resources = [\"list:ads\", \"lists:ads\"] }},\n]\nexpires = \"soon\"\n"
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    // In file order, each at the opening quote of its value.
    assert!(
        errs[0].starts_with("5:38: unknown verb `updat`"),
        "{errs:#?}"
    );
    assert!(
        errs[1].starts_with("6:14: unknown effect `permit`"),
        "{errs:#?}"
    );
    assert!(
        errs[2].starts_with("6:83: `lists:ads` is not a resource"),
        "{errs:#?}"
    );
    assert!(
        errs[3].starts_with("8:11: `soon` is not a time"),
        "{errs:#?}"
    );
}

#[test]
fn diagnostics_for_names_hashes_shapes_and_unknown_keys() {
    let h = digest("s");
    let errs = errors(&format!(
        "[[tokens]]\nname = \"a b\"\nhash = \"{h}\"\n\n[[tokens]]\nname = \"c\"\nhash = \"{h}\"\n\n[[tokens]]\nname = \"c\"\nhash = \"ABC\"\npolicies = [{{ effect = \"deny\", permissions = [], resources = [\"*\"] }}]\n"
    ));
    assert_eq!(
        errs,
        [
            "2:8: `a b` is not a token name: 1 to 64 of letters, digits, `.`, `_`, `-`",
            "7:8: token `c` has the same hash as an earlier token",
            "10:8: a second token named `c`",
            "11:8: `hash` must be a SHA-256 digest: 64 lowercase hex digits",
            "12:46: a statement needs at least one permission",
        ]
    );
    let errs = errors("[[tokens]]\nname = \"a\"\nhash = \"x\"\nscope = 1\n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("4:1: unknown field `scope`"),
        "{errs:?}"
    );
    let errs = errors("[[tokens]]\nname = \"a\"\npolicies = []\n");
    assert!(errs[0].contains("missing field `hash`"), "{errs:?}");
}

#[test]
fn a_token_written_as_toml_reads_back_the_same() {
    let tokens = parse(&file()).unwrap();
    for t in tokens.iter() {
        let again = parse(&t.to_toml()).unwrap();
        assert_eq!(again.get(&t.name), Some(t), "{}", t.to_toml());
    }
    // Names and patterns that need escaping survive too.
    let mut t = token(vec![stmt(
        Effect::Allow,
        &["dnsgate.users.read"],
        &["user:o\"brien@x.test"],
    )]);
    t.name = "quote-test".into();
    assert_eq!(parse(&t.to_toml()).unwrap().get("quote-test"), Some(&t));
    // serde's form is accepted as well (the API will persist tokens with it).
    #[derive(serde::Serialize)]
    struct File<'a> {
        tokens: Vec<&'a Token>,
    }
    let all: Vec<&Token> = tokens.iter().collect();
    let text = toml::to_string(&File { tokens: all }).unwrap();
    let again = parse(&text).unwrap();
    assert_eq!(
        again.iter().collect::<Vec<_>>(),
        tokens.iter().collect::<Vec<_>>(),
        "{text}"
    );
}

fn creator() -> Token {
    Token {
        name: "admin".into(),
        hash: digest("admin"),
        expires: Some(ts("2030-01-01")),
        policies: vec![
            stmt(Effect::Allow, &["dnsgate.tokens.create"], &["*"]),
            stmt(
                Effect::Allow,
                &["dnsgate.lists.*", "dnsgate.*.read"],
                &["list:*", "group:kids"],
            ),
            stmt(
                Effect::Allow,
                &["dnsgate.policies.update"],
                &["policy:kids-games"],
            ),
            stmt(Effect::Deny, &["dnsgate.lists.delete"], &["list:core"]),
        ],
    }
}

fn spec(policies: Vec<Statement>, expires: Option<&str>) -> TokenSpec {
    TokenSpec {
        name: "child".into(),
        expires: expires.map(ts),
        policies,
    }
}

const NOW: &str = "2026-01-01";

#[test]
fn minting_within_the_creators_rights() {
    let (secret, t) = mint(
        &creator(),
        spec(
            vec![
                stmt(
                    Effect::Allow,
                    &["dnsgate.lists.update", "dnsgate.devices.read"],
                    &["list:ads", "group:kids"][..1],
                ),
                stmt(Effect::Allow, &["dnsgate.devices.read"], &["group:kids"]),
                stmt(
                    Effect::Allow,
                    &["dnsgate.policies.update"],
                    &["policy:kids-games"],
                ),
                stmt(Effect::Deny, &["dnsgate.*.*"], &["list:secret"]),
            ],
            Some("2029-01-01"),
        ),
        ts(NOW),
    )
    .unwrap();
    assert_eq!(t.hash, digest(&secret));
    assert_eq!(t.name, "child");
    assert_eq!(t.expires, Some(ts("2029-01-01")));
    // The creator's deny is copied (once), after the requested statements.
    assert_eq!(t.policies.len(), 5);
    assert_eq!(t.policies[4], creator().policies[3]);
    assert!(!t.may("lists", "delete", &target("list", "core", None)));
    assert!(t.may("lists", "update", &target("list", "ads", None)));
    // A new token's allows may be covered by several of the creator's statements.
    mint(
        &creator(),
        spec(
            vec![stmt(Effect::Allow, &["dnsgate.lists.*"], &["list:ads"])],
            None,
        ),
        ts(NOW),
    )
    .unwrap();
}

#[test]
fn minting_refuses_a_broader_permission_or_resource() {
    let refused = |perms: &[&str], resources: &[&str]| {
        mint(
            &creator(),
            spec(vec![stmt(Effect::Allow, perms, resources)], None),
            ts(NOW),
        )
        .unwrap_err()
    };
    assert!(matches!(
        refused(&["dnsgate.lists.*", "dnsgate.policies.delete"], &["list:ads"]),
        MintError::NotCovered { permission, .. } if permission == perm("dnsgate.policies.delete")
    ));
    assert!(matches!(
        refused(&["dnsgate.*.update"], &["list:ads"]),
        MintError::NotCovered { .. }
    ));
    assert!(matches!(
        refused(&["dnsgate.lists.read"], &["*"]),
        MintError::NotCovered { resource, .. } if resource == Resource::Any
    ));
    // `group:kids` covers kids' objects, not every device; `list:*` not a group's.
    assert!(matches!(
        refused(&["dnsgate.devices.read"], &["device:*"]),
        MintError::NotCovered { .. }
    ));
    assert!(matches!(
        refused(&["dnsgate.lists.update"], &["group:adults"]),
        MintError::NotCovered { .. }
    ));
    assert!(matches!(
        refused(&["dnsgate.policies.update"], &["policy:*"]),
        MintError::NotCovered { .. }
    ));
    // Denies may ask for anything: they only take away.
    mint(
        &creator(),
        spec(vec![stmt(Effect::Deny, &["dnsgate.*.*"], &["*"])], None),
        ts(NOW),
    )
    .unwrap();
}

#[test]
fn minting_clamps_or_refuses_the_expiry() {
    let (_, t) = mint(&creator(), spec(vec![], None), ts(NOW)).unwrap();
    assert_eq!(
        t.expires,
        creator().expires,
        "no expiry asked: the creator's"
    );
    assert_eq!(
        mint(&creator(), spec(vec![], Some("2031-01-01")), ts(NOW)).unwrap_err(),
        MintError::ExpiresAfterCreator {
            requested: ts("2031-01-01"),
            limit: ts("2030-01-01")
        }
    );
    assert!(matches!(
        mint(&creator(), spec(vec![], Some("2025-01-01")), ts(NOW)),
        Err(MintError::AlreadyExpired(_))
    ));
    assert_eq!(
        mint(&creator(), spec(vec![], None), ts("2030-01-01")).unwrap_err(),
        MintError::CreatorExpired
    );
    let mut forever = creator();
    forever.expires = None;
    let (_, t) = mint(&forever, spec(vec![], Some("2300-01-01")), ts(NOW)).unwrap();
    assert_eq!(t.expires, Some(ts("2300-01-01")));
    assert_eq!(
        mint(&forever, spec(vec![], None), ts(NOW))
            .unwrap()
            .1
            .expires,
        None
    );
}

#[test]
fn minting_needs_tokens_create_and_a_valid_name() {
    let mut c = creator();
    c.policies.remove(0);
    assert_eq!(
        mint(&c, spec(vec![], None), ts(NOW)).unwrap_err(),
        MintError::NotPermitted("child".into())
    );
    let mut s = spec(vec![], None);
    s.name = "bad name".into();
    assert!(matches!(
        mint(&creator(), s, ts(NOW)),
        Err(MintError::BadName(_))
    ));
}

#[test]
fn tokens_refuse_duplicate_names_and_hashes() {
    let mut tokens = Tokens::default();
    tokens.insert(token(vec![])).unwrap();
    assert!(matches!(
        tokens.insert(token(vec![])),
        Err(InsertError::DuplicateName(_))
    ));
    let mut other = token(vec![]);
    other.name = "u".into();
    assert!(matches!(
        tokens.insert(other),
        Err(InsertError::DuplicateHash(_))
    ));
}
