//! The admin API's permission matrix against the real binary (`dnsgate run`): each token
//! (all rights, a list writer with a deny, a group's administrator, a reader, a CI token
//! that may update one list, a minter) tries each kind of change on objects of each scope;
//! every answer is the one its permissions give, and every attempt is one line of an
//! unbroken audit chain.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::api::client;
use crate::cli::Server;

struct Token {
    name: &'static str,
    secret: String,
}

fn token_file(specs: &[(&'static str, &str)]) -> (Vec<Token>, String) {
    let mut file = String::new();
    let mut tokens = Vec::new();
    for (name, statements) in specs {
        let (secret, hash) = dnsgate::access::new_secret();
        file.push_str(&format!(
            "[[tokens]]\nname = \"{name}\"\nhash = \"{hash}\"\npolicies = [{statements}]\n\n"
        ));
        tokens.push(Token { name, secret });
    }
    (tokens, file)
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    secret: &str,
    body: Option<Value>,
) -> u16 {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = client()
        .request(method, format!("http://{addr}{path}"))
        .bearer_auth(secret);
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn every_token_gets_what_its_permissions_give_and_every_attempt_is_chained() {
    let dir = tempfile::tempdir().unwrap();
    let (tokens, file) = token_file(&[
        (
            "root",
            r#"{ effect = "allow", permissions = ["dnsgate.*.*"], resources = ["*"] }"#,
        ),
        (
            "lists-writer",
            r#"{ effect = "allow", permissions = ["dnsgate.lists.*"], resources = ["*"] }, { effect = "deny", permissions = ["dnsgate.lists.delete"], resources = ["*"] }"#,
        ),
        (
            "kids-admin",
            r#"{ effect = "allow", permissions = ["dnsgate.*.*"], resources = ["group:kids"] }"#,
        ),
        (
            "reader",
            r#"{ effect = "allow", permissions = ["dnsgate.*.read"], resources = ["*"] }"#,
        ),
        (
            "ci",
            r#"{ effect = "allow", permissions = ["dnsgate.lists.update"], resources = ["list:ads-api"] }"#,
        ),
        (
            "minter",
            r#"{ effect = "allow", permissions = ["dnsgate.tokens.create", "dnsgate.lists.read"], resources = ["token:*", "list:*"] }"#,
        ),
    ]);
    crate::write_files(
        dir.path(),
        &[
            ("tokens.toml", &file),
            ("ads.txt", "ads.test\n"),
            (
                "identities.toml",
                "[[groups]]\nid = \"g-kids\"\nname = \"kids\"\n[[users]]\nemail = \"kid@example.com\"\ngroups = [\"g-kids\"]\n",
            ),
        ],
    );
    let cfg = crate::cli::write_config(
        dir.path(),
        "[server]\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\n\
         [upstream]\nservers = [\"udp://127.0.0.1:9\"]\n\
         [api]\nlisten = \"127.0.0.1:0\"\ntokens = \"tokens.toml\"\naudit_log = \"audit.jsonl\"\n\
         [identity]\ndirectory = \"identities.toml\"\n\
         [[lists]]\nname = \"ads\"\npath = \"ads.txt\"\n\
         [[policies]]\nname = \"ads\"\naction = \"block\"\ntraffic = 'any(dns.domains[*] in $ads)'\n",
    );
    let server = Server::start(&cfg);
    let line = server.wait_for_log("admin API listening");
    let addr: SocketAddr = line
        .split("addr=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let secret = |name: &str| {
        tokens
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .secret
            .clone()
    };
    let root = secret("root");

    // Objects of each scope, made by root (not part of the matrix).
    let mut setup = 0;
    for (kind, body) in [
        ("lists", json!({"name": "ads-api", "entries": ["a.test"]})),
        (
            "lists",
            json!({"name": "kids-api", "group": "kids", "entries": ["k.test"]}),
        ),
        (
            "policies",
            json!({"name": "kids-pol", "action": "block", "group": "kids",
                            "traffic": "any(dns.domains[*] in $kids-api)"}),
        ),
    ] {
        assert_eq!(
            call(addr, "POST", &format!("/api/v1/{kind}"), &root, Some(body)).await,
            201
        );
        setup += 1;
    }
    for t in &tokens {
        for (name, group) in [("del", None), ("kdel", Some("kids"))] {
            let mut body = json!({"name": format!("{name}-{}", t.name), "entries": ["d.test"]});
            if let Some(g) = group {
                body["group"] = json!(g);
            }
            assert_eq!(
                call(addr, "POST", "/api/v1/lists", &root, Some(body)).await,
                201
            );
            setup += 1;
        }
    }

    // (operation, expected status for root, lists-writer, kids-admin, reader, ci, minter).
    type Op = (&'static str, &'static str, String, Option<Value>);
    let ops = |t: &str| -> Vec<(Op, [u16; 6])> {
        vec![
            (
                ("read a list", "GET", "/api/v1/lists/ads-api".into(), None),
                [200, 200, 404, 200, 404, 200],
            ),
            (
                (
                    "update a named list",
                    "POST",
                    "/api/v1/lists/ads-api/entries".into(),
                    Some(json!({"add": [format!("{t}.test")]})),
                ),
                [200, 200, 404, 403, 200, 403],
            ),
            (
                (
                    "update the group's list",
                    "POST",
                    "/api/v1/lists/kids-api/entries".into(),
                    Some(json!({"add": [format!("{t}.kids.test")]})),
                ),
                [200, 200, 200, 403, 404, 403],
            ),
            (
                (
                    "create a list for everyone",
                    "POST",
                    "/api/v1/lists".into(),
                    Some(json!({"name": format!("all-{t}"), "entries": ["x.test"]})),
                ),
                [201, 201, 403, 403, 403, 403],
            ),
            (
                (
                    "create a list for the group",
                    "POST",
                    "/api/v1/lists".into(),
                    Some(
                        json!({"name": format!("kid-{t}"), "group": "kids", "entries": ["x.test"]}),
                    ),
                ),
                [201, 201, 201, 403, 403, 403],
            ),
            (
                (
                    "create a list in another group",
                    "POST",
                    "/api/v1/lists".into(),
                    Some(
                        json!({"name": format!("teen-{t}"), "group": "teens", "entries": ["x.test"]}),
                    ),
                ),
                [201, 201, 403, 403, 403, 403],
            ),
            (
                (
                    "delete a list",
                    "DELETE",
                    format!("/api/v1/lists/del-{t}"),
                    None,
                ),
                [204, 403, 404, 403, 404, 403],
            ),
            (
                (
                    "delete the group's list",
                    "DELETE",
                    format!("/api/v1/lists/kdel-{t}"),
                    None,
                ),
                [204, 403, 204, 403, 404, 403],
            ),
            (
                (
                    "disable the group's policy",
                    "PUT",
                    "/api/v1/policies/kids-pol".into(),
                    Some(
                        json!({"name": "kids-pol", "action": "block", "group": "kids", "enabled": false,
                             "traffic": "any(dns.domains[*] in $kids-api)"}),
                    ),
                ),
                [200, 404, 200, 403, 404, 404],
            ),
            (
                (
                    "move the group's policy out of it",
                    "PUT",
                    "/api/v1/policies/kids-pol".into(),
                    Some(
                        json!({"name": "kids-pol", "action": "block", "enabled": true,
                             "traffic": "dns.fqdn == \"k.test\""}),
                    ),
                ),
                // Root moves it, then puts it back below.
                [200, 404, 403, 403, 404, 404],
            ),
            (
                (
                    "flush the cache",
                    "POST",
                    "/api/v1/cache/flush".into(),
                    None,
                ),
                [200, 403, 403, 403, 403, 403],
            ),
            (
                (
                    "mint a token within its rights",
                    "POST",
                    "/api/v1/tokens".into(),
                    Some(
                        json!({"name": format!("minted-{t}"), "policies": [{"effect": "allow", "permissions": ["dnsgate.lists.read"], "resources": ["list:ads"]}]}),
                    ),
                ),
                [201, 403, 403, 403, 403, 201],
            ),
            (
                (
                    "mint a token beyond its rights",
                    "POST",
                    "/api/v1/tokens".into(),
                    Some(
                        json!({"name": format!("greedy-{t}"), "policies": [{"effect": "allow", "permissions": ["dnsgate.lists.update"], "resources": ["*"]}]}),
                    ),
                ),
                [201, 403, 403, 403, 403, 403],
            ),
        ]
    };
    let order = [
        "root",
        "lists-writer",
        "kids-admin",
        "reader",
        "ci",
        "minter",
    ];
    let mut failures = Vec::new();
    let mut attempts = 0;
    for (i, name) in order.iter().enumerate() {
        let s = secret(name);
        for ((what, method, path, body), expected) in ops(name) {
            let got = call(addr, method, &path, &s, body).await;
            if method != "GET" {
                attempts += 1;
            }
            if got != expected[i] {
                failures.push(format!(
                    "{name}: {what} ({method} {path}): {got}, expected {}",
                    expected[i]
                ));
            }
            if *name == "root" && what.starts_with("move") {
                // Back into the group, for the next tokens.
                let back = json!({"name": "kids-pol", "action": "block", "group": "kids",
                                  "traffic": "any(dns.domains[*] in $kids-api)"});
                assert_eq!(
                    call(addr, "PUT", "/api/v1/policies/kids-pol", &root, Some(back)).await,
                    200
                );
                setup += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // One audit line per write attempt (setup included), each chained to the one before.
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let lines: Vec<&str> = audit.lines().collect();
    assert_eq!(lines.len(), setup + attempts, "{audit}");
    let mut prev = Value::Null;
    for (i, l) in lines.iter().enumerate() {
        let e: Value = serde_json::from_str(l).unwrap();
        assert_eq!(e["prev"], prev, "line {} is chained", i + 1);
        assert!(
            ["ok", "denied", "invalid"].contains(&e["result"].as_str().unwrap()),
            "{l}"
        );
        prev = json!(
            data_encoding::HEXLOWER
                .encode(ring::digest::digest(&ring::digest::SHA256, l.as_bytes()).as_ref())
        );
    }
    let denied = lines
        .iter()
        .filter(|l| l.contains("\"result\":\"denied\""))
        .count();
    let refusals: usize = order
        .iter()
        .enumerate()
        .map(|(i, name)| {
            ops(name)
                .iter()
                .filter(|((_, m, _, _), e)| *m != "GET" && matches!(e[i], 403 | 404))
                .count()
        })
        .sum();
    assert_eq!(denied, refusals, "every refusal is audited as denied");
}
