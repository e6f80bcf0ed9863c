//! `dnsgate token new`, run as a user would: the secret on the first line, then an entry
//! the tokens file loader accepts, granting exactly what was asked.

use std::path::Path;

use dnsgate::access::{Target, Tokens, digest};

use crate::cli::dnsgate;

/// Runs `dnsgate token new ARGS…`, checks it succeeded, and returns the secret and the
/// entry loaded as a tokens file.
fn new_token(args: &[&str]) -> (String, Tokens) {
    let mut all = vec!["token", "new"];
    all.extend_from_slice(args);
    let (code, out, err) = dnsgate(&all);
    assert_eq!(code, 0, "{err}");
    let (secret, entry) = out.split_once('\n').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    std::fs::write(&path, entry).unwrap();
    let tokens = Tokens::load(&path)
        .unwrap_or_else(|d| panic!("{}\n{entry}", dnsgate::diag::Diagnostics(d)));
    (secret.to_owned(), tokens)
}

fn list(name: &str) -> Target<'_> {
    Target {
        kind: "list",
        name,
        group: None,
    }
}

#[test]
fn token_new_prints_a_secret_then_an_entry_that_loads() {
    let (secret, tokens) = new_token(&[
        "ci",
        "--allow",
        "dnsgate.lists.update@list:ads",
        "--expires",
        "2030-01-01",
    ]);
    let shape = regex::Regex::new("^dgt_[a-z0-9]{8}_[A-Za-z0-9]{32,}$").unwrap();
    assert!(shape.is_match(&secret), "{secret}");
    let token = tokens.get("ci").unwrap();
    assert_eq!(token.hash, digest(&secret));
    assert_eq!(token.expires, Some("2030-01-01T00:00:00Z".parse().unwrap()));
    assert!(token.may("lists", "update", &list("ads")));
    assert!(!token.may("lists", "update", &list("other")));
    assert!(!token.may("lists", "delete", &list("ads")));
    let before = "2029-12-31T23:59:59Z".parse().unwrap();
    assert_eq!(
        tokens.authenticate(&secret, before).map(|t| &t.name),
        Some(&token.name)
    );
    assert!(
        tokens
            .authenticate(&secret, "2030-01-01T00:00:00Z".parse().unwrap())
            .is_none()
    );
}

#[test]
fn each_allow_is_a_statement_and_without_a_resource_it_is_everything() {
    let (_, tokens) = new_token(&[
        "ops",
        "--allow",
        "dnsgate.*.read",
        "--allow",
        "dnsgate.users.update@user:bob@x.test",
    ]);
    let token = tokens.get("ops").unwrap();
    assert_eq!(token.policies.len(), 2);
    assert_eq!(token.expires, None);
    assert!(token.may(
        "policies",
        "read",
        &Target {
            kind: "policy",
            name: "p",
            group: None
        }
    ));
    let bob = Target {
        kind: "user",
        name: "bob@x.test",
        group: None,
    };
    assert!(token.may("users", "update", &bob));
    assert!(!token.may(
        "users",
        "update",
        &Target {
            name: "eve@x.test",
            ..bob
        }
    ));
}

#[test]
fn without_allow_a_token_grants_nothing() {
    let (secret, tokens) = new_token(&["nobody"]);
    let token = tokens.get("nobody").unwrap();
    assert!(token.policies.is_empty());
    assert!(!token.may("lists", "read", &list("ads")));
    // Two runs never print the same secret.
    assert_ne!(secret, new_token(&["nobody"]).0);
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    for (args, says) in [
        (
            &["ci", "--allow", "dnsgate.lists.updat"][..],
            "unknown verb `updat`",
        ),
        (&["ci", "--allow", "dnsgate.lists"], "not a permission"),
        (
            &["ci", "--allow", "dnsgate.lists.update@lists:ads"],
            "`lists:ads` is not a resource",
        ),
        (&["ci", "--expires", "someday"], "`someday` is not a time"),
        (&["ci", "--expires", "2001-01-01"], "has passed"),
        (&["a b"], "token name"),
    ] {
        let mut all = vec!["token", "new"];
        all.extend_from_slice(args);
        let (code, out, err) = dnsgate(&all);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn the_printed_entry_appends_to_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    let mut file = String::new();
    for name in ["a", "b"] {
        let (_, out, _) = dnsgate(&["token", "new", name, "--allow", "dnsgate.cache.flush"]);
        file.push_str(out.split_once('\n').unwrap().1);
        file.push('\n');
    }
    std::fs::write(&path, &file).unwrap();
    let tokens = Tokens::load(Path::new(&path)).unwrap();
    assert_eq!(tokens.len(), 2);
}
