//! The admin API (SPEC §12), first part: bearer tokens with scoped permissions, objects of
//! the configuration in service filtered to what a token may read, secrets never shown,
//! cache flush and reload through the one runtime swap, each write attempt audited in a
//! chained log before it applies, and the OpenAPI document.

use std::net::SocketAddr;

use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::client::{ips, query};
use crate::{Gate, gate_with};

/// Tokens by role: (name, secret, the `[[tokens]]` entry).
pub(crate) struct Tokens {
    pub(crate) admin: String,
    pub(crate) reader: String,
    pub(crate) ads_only: String,
    pub(crate) flusher: String,
    pub(crate) expired: String,
    pub(crate) minter: String,
    pub(crate) file: String,
}

pub(crate) fn tokens() -> Tokens {
    let mut file = String::new();
    let mut make = |name: &str, statements: &str, expires: Option<&str>| {
        let (secret, hash) = dnsgate::access::new_secret();
        file.push_str(&format!(
            "[[tokens]]\nname = \"{name}\"\nhash = \"{hash}\"\n"
        ));
        if let Some(e) = expires {
            file.push_str(&format!("expires = \"{e}\"\n"));
        }
        file.push_str(&format!("policies = [{statements}]\n\n"));
        secret
    };
    let admin = make(
        "admin",
        r#"{ effect = "allow", permissions = ["dnsgate.*.*"], resources = ["*"] }"#,
        None,
    );
    let reader = make(
        "reader",
        r#"{ effect = "allow", permissions = ["dnsgate.*.read"], resources = ["*"] }"#,
        None,
    );
    let ads_only = make(
        "ads-only",
        r#"{ effect = "allow", permissions = ["dnsgate.lists.read"], resources = ["list:ads"] }"#,
        None,
    );
    let flusher = make(
        "flusher",
        r#"{ effect = "allow", permissions = ["dnsgate.cache.flush", "dnsgate.config.update"], resources = ["*"] }, { effect = "deny", permissions = ["dnsgate.config.update"], resources = ["*"] }"#,
        None,
    );
    let expired = make(
        "expired",
        r#"{ effect = "allow", permissions = ["dnsgate.*.*"], resources = ["*"] }"#,
        Some("2020-01-01T00:00:00Z"),
    );
    let minter = make(
        "minter",
        r#"{ effect = "allow", permissions = ["dnsgate.tokens.create", "dnsgate.lists.read"], resources = ["token:*", "list:ads"] }"#,
        None,
    );
    Tokens {
        minter,
        admin,
        reader,
        ads_only,
        flusher,
        expired,
        file,
    }
}

pub(crate) const IDENTITIES: &str = r#"
[[groups]]
id = "g-kids"
name = "kids"

[[users]]
email = "kid@example.com"
groups = ["g-kids"]

[[devices]]
id = "kidphone"
user = "kid@example.com"
doh_token = "a-very-secret-doh-token"

[[devices]]
id = "laptop"
ips = ["127.0.0.9"]
"#;

/// A gate with `[api]` on 127.0.0.1:0, two lists, two policies and an identities file;
/// the API's address.
pub(crate) async fn api_gate(t: &Tokens) -> (Gate, SocketAddr) {
    api_gate_with(t, "", "").await
}

/// [`api_gate`] with more policies and more tokens (`[[tokens]]` entries).
pub(crate) async fn api_gate_with(
    t: &Tokens,
    policies: &str,
    more_tokens: &str,
) -> (Gate, SocketAddr) {
    api_gate_custom(t, "", policies, more_tokens, &[]).await
}

/// [`api_gate_with`] with more `[identity]` keys and more files in the test's directory.
pub(crate) async fn api_gate_custom(
    t: &Tokens,
    identity_keys: &str,
    policies: &str,
    more_tokens: &str,
    more_files: &[(&str, &str)],
) -> (Gate, SocketAddr) {
    // The state directory (the API's overlays) in the test's own directory.
    let config = "[server]\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\n\n[upstream]\nservers = [\"udp://{UPSTREAM}\"]\n\n\
         [api]\nlisten = \"127.0.0.1:0\"\ntokens = \"tokens.toml\"\naudit_log = \"audit.jsonl\"\n\n\
         [identity]\ndirectory = \"identities.toml\"\n{IDENTITY}\n\
         [[lists]]\nname = \"ads\"\npath = \"ads.txt\"\n\n[[lists]]\nname = \"other\"\npath = \"other.txt\"\n\n\
         [[policies]]\nname = \"ads\"\naction = \"block\"\ntraffic = 'any(dns.domains[*] in $ads)'\n\n\
         [[policies]]\nname = \"other\"\naction = \"block\"\ntraffic = 'any(dns.domains[*] in $other)'\n"
        .replace("{IDENTITY}", identity_keys)
        + policies;
    let token_file = t.file.clone() + more_tokens;
    let up = crate::upstream::start().await;
    let g = gate_with(
        up,
        &config,
        &[
            &[
                ("tokens.toml", token_file.as_str()),
                ("identities.toml", IDENTITIES),
                ("ads.txt", "ads.test\n"),
                ("other.txt", "other.test\n"),
            ],
            more_files,
        ]
        .concat(),
    )
    .await;
    let api = dnsgate::api::start(g.running.shared.clone())
        .await
        .unwrap()
        .expect("[api] is configured");
    (g, api.addr)
}

pub(crate) fn client() -> reqwest::Client {
    // Plain HTTP on loopback; reqwest still wants a TLS provider chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

pub(crate) async fn get(addr: SocketAddr, path: &str, secret: Option<&str>) -> (u16, Value) {
    let mut r = client().get(format!("http://{addr}{path}"));
    if let Some(s) = secret {
        r = r.bearer_auth(s);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

pub(crate) async fn post(addr: SocketAddr, path: &str, secret: &str) -> (u16, Value) {
    let r = client()
        .post(format!("http://{addr}{path}"))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

pub(crate) fn names(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|o| o[key].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let t = tokens();
    let (_g, addr) = api_gate(&t).await;
    // The OpenAPI document needs no token.
    let (status, doc) = get(addr, "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/api/v1/policies"]["get"].is_object(), "{doc}");
    // No token: 401 with WWW-Authenticate and the error body.
    let r = client()
        .get(format!("http://{addr}/api/v1/policies"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(body["error"]["details"].is_array());
    // An expired token is no token.
    assert_eq!(get(addr, "/api/v1/policies", Some(&t.expired)).await.0, 401);
    // A valid one reads.
    let (status, policies) = get(addr, "/api/v1/policies", Some(&t.reader)).await;
    assert_eq!(status, 200);
    assert_eq!(names(&policies, "name"), ["ads", "other"]);
    assert_eq!(policies[0]["source"], "file");
    assert_eq!(policies[0]["traffic"], "any(dns.domains[*] in $ads)");
    // Guessing is limited: after enough wrong secrets, wrong ones are turned away
    // unexamined (401 `rate_limited`).
    let mut limited = false;
    for i in 0..30 {
        let (status, body) =
            get(addr, "/api/v1/policies", Some(&format!("dgt_nobody00_{i}"))).await;
        if body["error"]["code"] == "rate_limited" {
            assert_eq!(status, 401);
            limited = true;
            break;
        }
        assert_eq!(status, 401);
    }
    assert!(limited, "wrong secrets are rate-limited");
    // A right secret from that address still gets in: guessing cannot lock it out.
    assert_eq!(get(addr, "/api/v1/policies", Some(&t.reader)).await.0, 200);
    let (status, body) = get(addr, "/api/v1/policies", Some("dgt_nobody00_x")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("rate_limited"))
    );
}

#[tokio::test]
async fn listings_show_only_what_the_token_may_read_and_never_secrets() {
    let t = tokens();
    let (_g, addr) = api_gate(&t).await;
    let (_, lists) = get(addr, "/api/v1/lists", Some(&t.ads_only)).await;
    assert_eq!(names(&lists, "name"), ["ads"]);
    assert_eq!(lists[0]["entry_count"], 1);
    assert_eq!(
        get(addr, "/api/v1/lists/ads", Some(&t.ads_only)).await.0,
        200
    );
    // What it may not read is as if absent.
    assert_eq!(
        get(addr, "/api/v1/lists/other", Some(&t.ads_only)).await.0,
        404
    );
    let (status, policies) = get(addr, "/api/v1/policies", Some(&t.ads_only)).await;
    assert_eq!((status, policies), (200, Value::Array(vec![])));
    assert_eq!(
        get(addr, "/api/v1/policies/ads", Some(&t.ads_only)).await.0,
        404
    );
    // The reader sees both lists, the identities, and no DoH token.
    let (_, lists) = get(addr, "/api/v1/lists", Some(&t.reader)).await;
    assert_eq!(names(&lists, "name"), ["ads", "other"]);
    let (_, devices) = get(addr, "/api/v1/devices", Some(&t.reader)).await;
    assert_eq!(names(&devices, "id"), ["kidphone", "laptop"]);
    assert_eq!(devices[0]["doh_token_set"], true);
    assert_eq!(devices[1]["doh_token_set"], false);
    assert!(!devices.to_string().contains("a-very-secret-doh-token"));
    let (status, user) = get(addr, "/api/v1/users/KID@example.com", Some(&t.reader)).await;
    assert_eq!(status, 200, "users are keyed by e-mail, any case");
    assert_eq!(user["groups"][0], "g-kids");
    let (_, groups) = get(addr, "/api/v1/groups", Some(&t.reader)).await;
    assert_eq!(names(&groups, "name"), ["kids"]);
    assert_eq!(get(addr, "/api/v1/nonsense", Some(&t.reader)).await.0, 404);
}

#[tokio::test]
async fn flush_and_reload_are_permitted_audited_and_chained() {
    let t = tokens();
    let (g, addr) = api_gate(&t).await;
    // A cached answer...
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    assert_eq!(g.upstream.queries(), 1);
    // ...that a reader may not flush (403, audited as denied)...
    let (status, body) = post(addr, "/api/v1/cache/flush", &t.reader).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    assert_eq!(g.upstream.queries(), 1);
    // ...and the flusher may: the next answer is asked again.
    let (status, body) = post(addr, "/api/v1/cache/flush", &t.flusher).await;
    assert_eq!((status, body["flushed"].as_bool()), (200, Some(true)));
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["192.0.2.10"]
    );
    assert_eq!(g.upstream.queries(), 2);
    // The flusher's deny outweighs its allow for reloads.
    assert_eq!(post(addr, "/api/v1/reload", &t.flusher).await.0, 403);
    // The admin reloads: a list changed on disk is in service after it.
    std::fs::write(g.dir.path().join("other.txt"), "other.test\nwww.test\n").unwrap();
    let (status, body) = post(addr, "/api/v1/reload", &t.admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["0.0.0.0"]
    );
    // A broken configuration is refused with the check messages; the old one serves.
    let path = g.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("in $other", "in $missing")).unwrap();
    let (status, body) = post(addr, "/api/v1/reload", &t.admin).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid");
    let d = &body["error"]["details"][0];
    assert!(d["path"].as_str().unwrap().ends_with("dnsgate.toml"), "{d}");
    assert!(
        d["line"].as_u64().unwrap() > 1 && d["col"].as_u64().unwrap() > 1,
        "{d}"
    );
    assert!(d["message"].as_str().unwrap().contains("missing"), "{d}");
    assert_eq!(
        ips(&query(g.addr, "www.test.", RecordType::A).await),
        ["0.0.0.0"]
    );

    // Every attempt is in the audit log, in order, each line chained to the one before.
    let audit = std::fs::read_to_string(g.dir.path().join("audit.jsonl")).unwrap();
    let lines: Vec<&str> = audit.lines().collect();
    let entries: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["token"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("reader", "cache.flush", "denied"),
        ("flusher", "cache.flush", "ok"),
        ("flusher", "config.reload", "denied"),
        ("admin", "config.reload", "ok"),
        ("admin", "config.reload", "invalid"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(summary, expected);
    assert_eq!(entries[0]["prev"], Value::Null);
    for i in 1..lines.len() {
        let digest = data_encoding::HEXLOWER
            .encode(ring::digest::digest(&ring::digest::SHA256, lines[i - 1].as_bytes()).as_ref());
        assert_eq!(entries[i]["prev"], digest, "line {} is chained", i + 1);
        assert_eq!(entries[i]["source_ip"], "127.0.0.1");
    }
}

/// Tokens must not cross a network in clear text: `[api] listen` off loopback without a
/// certificate is a load error at its place; a tokens file that does not load names its.
#[test]
fn the_api_off_loopback_needs_https_and_bad_tokens_are_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::cli::write_config(dir.path(), "[api]\nlisten = \"0.0.0.0:8053\"\n");
    let (code, _, err) = crate::cli::dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 1);
    assert!(
        err.contains("dnsgate.toml:2:10") && err.contains("needs cert and key"),
        "{err}"
    );
    crate::write_files(
        dir.path(),
        &[(
            "tokens.toml",
            "[[tokens]]\nname = \"x\"\nhash = \"00\"\npolicies = [{ effect = \"maybe\", permissions = [], resources = [] }]\n",
        )],
    );
    let cfg = crate::cli::write_config(
        dir.path(),
        "[api]\nlisten = \"127.0.0.1:8053\"\ntokens = \"tokens.toml\"\n",
    );
    let (code, _, err) = crate::cli::dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 1);
    assert!(err.contains("tokens.toml:4:"), "{err}");
}

pub(crate) async fn post_json(
    addr: SocketAddr,
    path: &str,
    secret: &str,
    body: Value,
) -> (u16, Value) {
    let r = client()
        .post(format!("http://{addr}{path}"))
        .bearer_auth(secret)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

/// `POST /api/v1/explain` takes a policy test case's input and answers what `dnsgate
/// explain --json` prints, for the configuration in service.
#[tokio::test]
async fn explain_through_the_api_is_the_cli_explanation() {
    let t = tokens();
    let (g, addr) = api_gate(&t).await;
    let (status, v) = post_json(
        addr,
        "/api/v1/explain",
        &t.reader,
        serde_json::json!({"name": "x.ads.test", "client": "127.0.0.9"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["decision"]["action"], "block");
    assert_eq!(v["decision"]["policy"], "ads");
    assert_eq!(v["query"]["device"], "laptop", "the device of 127.0.0.9");
    assert_eq!(v["policies"][0]["result"], "matched");
    // The very JSON the command line prints.
    let cli = tokio::process::Command::new(crate::cli::BIN)
        .args([
            "explain",
            "-c",
            g.config_path().to_str().unwrap(),
            "x.ads.test",
        ])
        .args(["--client", "127.0.0.9", "--json"])
        .output()
        .await
        .unwrap();
    let cli: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!(cli["decision"], v["decision"]);
    assert_eq!(cli["policies"], v["policies"]);
    // An unknown device is 404, bad input 400 with a reason; a token without
    // explain.read gets 403.
    let ask = |body: Value| post_json(addr, "/api/v1/explain", &t.reader, body);
    let (status, v) = ask(serde_json::json!({"name": "www.test", "device": "nobody"})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, v) = ask(serde_json::json!({"name": "www.test", "type": "NOTATYPE"})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid"))
    );
    let both = serde_json::json!({"name": "www.test", "device": "laptop", "token": "x"});
    assert_eq!(ask(both).await.0, 400);
    let (status, _) = post_json(
        addr,
        "/api/v1/explain",
        &t.ads_only,
        serde_json::json!({"name": "www.test"}),
    )
    .await;
    assert_eq!(status, 403);
}

pub(crate) async fn put_json(
    addr: SocketAddr,
    path: &str,
    secret: &str,
    body: &Value,
) -> (u16, Value) {
    let r = client()
        .put(format!("http://{addr}{path}"))
        .bearer_auth(secret)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

/// A file policy is read-only through the API but for `enabled`, an audited overlay kept
/// under the state directory: it applies through the runtime swap and survives reloads.
#[tokio::test]
async fn a_file_policy_may_be_disabled_and_nothing_else_changed() {
    let t = tokens();
    let (g, addr) = api_gate(&t).await;
    assert_eq!(
        ips(&query(g.addr, "x.ads.test.", RecordType::A).await),
        ["0.0.0.0"]
    );
    let (_, mut policy) = get(addr, "/api/v1/policies/ads", Some(&t.admin)).await;
    // Another key changed: 409 read_only, nothing changes.
    let mut other = policy.clone();
    other["traffic"] = Value::from("dns.fqdn == \"x\"");
    let (status, body) = put_json(addr, "/api/v1/policies/ads", &t.admin, &other).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("read_only"))
    );
    // A reader may not.
    policy["enabled"] = Value::Bool(false);
    let (status, _) = put_json(addr, "/api/v1/policies/ads", &t.reader, &policy).await;
    assert_eq!(status, 403);
    // The admin disables it: the next query is not blocked.
    let (status, body) = put_json(addr, "/api/v1/policies/ads", &t.admin, &policy).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], false);
    let m = query(g.addr, "x.ads.test.", RecordType::A).await;
    assert!(ips(&m).is_empty(), "the upstream's NXDOMAIN now: {m:?}");
    let (_, shown) = get(addr, "/api/v1/policies/ads", Some(&t.reader)).await;
    assert_eq!(shown["enabled"], false);
    // Kept across a reload (and a restart: it is in the state directory's overlays).
    assert_eq!(post(addr, "/api/v1/reload", &t.admin).await.0, 200);
    assert!(ips(&query(g.addr, "x.ads.test.", RecordType::A).await).is_empty());
    let audit = std::fs::read_to_string(g.dir.path().join("audit.jsonl")).unwrap();
    let updates: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "policies.update")
        .collect();
    // The admin's read-only refusal (409), the reader's (403), the admin's change.
    let seen: Vec<(&str, &str)> = updates
        .iter()
        .map(|u| (u["token"].as_str().unwrap(), u["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [("admin", "denied"), ("reader", "denied"), ("admin", "ok")],
        "{audit}"
    );
    assert_eq!(updates[2]["object"], "policy:ads");
    assert_ne!(updates[2]["before"], updates[2]["after"]);
}

/// Revoking a device stops its DoH token at once (REFUSED + EDE 18, as an unknown token);
/// a new token is shown once and works, the old one does not.
#[tokio::test]
async fn a_device_is_revoked_and_given_a_new_token() {
    let t = tokens();
    let (_g, addr) = api_gate(&t).await;
    let explain = |token: String| {
        let secret = t.reader.clone();
        async move {
            post_json(
                addr,
                "/api/v1/explain",
                &secret,
                serde_json::json!({"name": "www.test", "token": token}),
            )
            .await
            .1
        }
    };
    let v = explain("a-very-secret-doh-token".into()).await;
    assert_eq!(v["query"]["device"], "kidphone", "{v}");
    // The reader may not revoke.
    assert_eq!(
        post(addr, "/api/v1/devices/kidphone/revoke", &t.reader)
            .await
            .0,
        403
    );
    let (status, body) = post(addr, "/api/v1/devices/kidphone/revoke", &t.admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["revoked"].as_bool(), body["doh_token_set"].as_bool()),
        (Some(true), Some(false))
    );
    let v = explain("a-very-secret-doh-token".into()).await;
    assert_eq!(v["decision"]["action"], "refused", "{v}");
    assert_eq!(v["decision"]["ede"], 18);
    // A new token: shown once, then only as set.
    let (status, body) = post(addr, "/api/v1/devices/kidphone/token", &t.admin).await;
    assert_eq!(status, 200, "{body}");
    let new = body["doh_token"].as_str().unwrap().to_owned();
    assert_eq!(new.len(), 32);
    let v = explain(new.clone()).await;
    assert_eq!(v["query"]["device"], "kidphone", "{v}");
    assert_eq!(
        explain("a-very-secret-doh-token".into()).await["decision"]["action"],
        "refused"
    );
    let (_, shown) = get(addr, "/api/v1/devices/kidphone", Some(&t.reader)).await;
    assert_eq!(
        (shown["doh_token_set"].as_bool(), shown["revoked"].as_bool()),
        (Some(true), Some(false))
    );
    assert!(!shown.to_string().contains(&new));
    assert_eq!(
        post(addr, "/api/v1/devices/nobody/revoke", &t.admin)
            .await
            .0,
        404
    );
}

/// schemathesis (PyPI; `.ci/run` installs it) against the served OpenAPI document, every
/// operation generated from its schema: no 5xx, every response matching its documented
/// status and schema, and no operation that answers without a valid token
/// (`ignored_auth`). A fixed seed makes a failure reproducible.
#[tokio::test]
async fn schemathesis_finds_no_server_error_schema_mismatch_or_ignored_auth() {
    if std::process::Command::new("st")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("schemathesis is missing: pip install schemathesis (.ci/run installs it)");
    }
    let t = tokens();
    let (g, addr) = api_gate(&t).await;
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(240),
        tokio::process::Command::new("st")
            .args(["run", &format!("http://{addr}/api/v1/openapi.json")])
            .args(["-H", &format!("Authorization: Bearer {}", t.admin)])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ignored_auth",
            ])
            .args(["--max-examples", "25", "--seed", "20261129", "--no-color"])
            // Its cache (`.schemathesis/`) goes in the test's directory, not the checkout.
            .current_dir(g.dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("schemathesis finishes within 4 minutes")
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Tested: 46"),
        "every operation was tested:\n{text}"
    );
}

pub(crate) async fn delete(addr: SocketAddr, path: &str, secret: &str) -> u16 {
    client()
        .delete(format!("http://{addr}{path}"))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Tokens made through the API: only within the maker's own rights, the secret shown once,
/// kept under the state directory, listed without hashes, and deleted (file tokens only in
/// their file).
#[tokio::test]
async fn tokens_are_minted_within_the_makers_rights_and_deleted() {
    let t = tokens();
    let (_g, addr) = api_gate(&t).await;
    let ci = |resource: &str| {
        serde_json::json!({"name": "ci", "policies": [
            {"effect": "allow", "permissions": ["dnsgate.lists.read"], "resources": [resource]}
        ]})
    };
    // Without dnsgate.tokens.create: 403.
    assert_eq!(
        post_json(addr, "/api/v1/tokens", &t.reader, ci("list:ads"))
            .await
            .0,
        403
    );
    // Beyond the minter's own rights (every list): 403, saying why.
    let (status, body) = post_json(addr, "/api/v1/tokens", &t.minter, ci("*")).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may not grant"),
        "{body}"
    );
    // Within them: 201 and the secret, which works at once.
    let (status, body) = post_json(addr, "/api/v1/tokens", &t.minter, ci("list:ads")).await;
    assert_eq!(status, 201, "{body}");
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("dgt_"), "{secret}");
    assert_eq!(body["source"], "api");
    let (status, lists) = get(addr, "/api/v1/lists", Some(&secret)).await;
    assert_eq!(status, 200);
    assert_eq!(names(&lists, "name"), ["ads"]);
    // The same name again: 409.
    assert_eq!(
        post_json(addr, "/api/v1/tokens", &t.minter, ci("list:ads"))
            .await
            .0,
        409
    );
    // Listed without hashes, each with its source.
    let (_, all) = get(addr, "/api/v1/tokens", Some(&t.admin)).await;
    let entry = all
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "ci")
        .unwrap();
    assert_eq!(
        (entry["source"].as_str(), entry["hash_set"].as_bool()),
        (Some("api"), Some(true))
    );
    assert!(entry.get("hash").is_none());
    assert_eq!(get(addr, "/api/v1/tokens/ci", Some(&t.admin)).await.0, 200);
    // A file token cannot be deleted here; an API token can, and stops at once.
    assert_eq!(delete(addr, "/api/v1/tokens/reader", &t.admin).await, 409);
    assert_eq!(delete(addr, "/api/v1/tokens/ci", &t.reader).await, 403);
    assert_eq!(delete(addr, "/api/v1/tokens/ci", &t.admin).await, 204);
    assert_eq!(get(addr, "/api/v1/lists", Some(&secret)).await.0, 401);
}

/// A policy with a `group` applies only to clients in that identity group, and a token
/// scoped to `group:kids` manages the kids' policies and no others (the rest is as if
/// absent).
#[tokio::test]
async fn a_group_policy_applies_to_its_group_and_a_group_token_manages_only_it() {
    let t = tokens();
    let (secret, hash) = dnsgate::access::new_secret();
    let kids_admin = format!(
        "[[tokens]]\nname = \"kids-admin\"\nhash = \"{hash}\"\n\
         policies = [{{ effect = \"allow\", permissions = [\"dnsgate.policies.*\"], resources = [\"group:kids\"] }}, \
         {{ effect = \"allow\", permissions = [\"dnsgate.explain.read\"], resources = [\"*\"] }}]\n"
    );
    let (_g, addr) = api_gate_with(
        &t,
        "\n[[policies]]\nname = \"kids games\"\naction = \"block\"\ngroup = \"kids\"\n\
         traffic = 'dns.fqdn == \"games.test\"'\n",
        &kids_admin,
    )
    .await;
    let explain = |device: &'static str| {
        let secret = secret.clone();
        async move {
            post_json(
                addr,
                "/api/v1/explain",
                &secret,
                serde_json::json!({"name": "games.test", "device": device}),
            )
            .await
            .1
        }
    };
    let kid = explain("kidphone").await;
    assert_eq!(kid["decision"]["policy"], "kids games", "{kid}");
    let laptop = explain("laptop").await;
    assert_eq!(laptop["decision"]["action"], "allow", "{laptop}");
    // The kids' administrator sees and changes the kids' policy only.
    let (_, visible) = get(addr, "/api/v1/policies", Some(&secret)).await;
    assert_eq!(names(&visible, "name"), ["kids games"]);
    assert_eq!(visible[0]["group"], "kids");
    let (_, mut ads) = get(addr, "/api/v1/policies/ads", Some(&t.admin)).await;
    ads["enabled"] = Value::Bool(false);
    assert_eq!(
        put_json(addr, "/api/v1/policies/ads", &secret, &ads)
            .await
            .0,
        404
    );
    let (_, mut kids) = get(addr, "/api/v1/policies/kids%20games", Some(&secret)).await;
    kids["enabled"] = Value::Bool(false);
    let (status, body) = put_json(addr, "/api/v1/policies/kids%20games", &secret, &kids).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(explain("kidphone").await["decision"]["action"], "allow");
}

/// A device's last query time is shown (`last_seen`, RFC 3339; `null` before its first),
/// and a reload keeps it.
#[tokio::test]
async fn devices_show_when_they_were_last_seen() {
    let t = tokens();
    let (g, addr) = api_gate(&t).await;
    let seen = |devices: &Value, id: &str| {
        devices
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .unwrap()["last_seen"]
            .clone()
    };
    let (_, devices) = get(addr, "/api/v1/devices", Some(&t.reader)).await;
    assert_eq!(seen(&devices, "laptop"), Value::Null);
    // The laptop (127.0.0.9) asks.
    let (_, wire) = crate::client::build("www.test.", RecordType::A, Default::default());
    let sock = tokio::net::UdpSocket::bind("127.0.0.9:0").await.unwrap();
    sock.send_to(&wire, g.addr).await.unwrap();
    let mut buf = [0u8; 1500];
    tokio::time::timeout(std::time::Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let (_, devices) = get(addr, "/api/v1/devices", Some(&t.reader)).await;
    let when: jiff::Timestamp = seen(&devices, "laptop")
        .as_str()
        .expect("seen")
        .parse()
        .unwrap();
    let age = jiff::Timestamp::now().as_second() - when.as_second();
    assert!((0..=5).contains(&age), "{when}");
    assert_eq!(seen(&devices, "kidphone"), Value::Null);
    assert_eq!(post(addr, "/api/v1/reload", &t.admin).await.0, 200);
    let (_, devices) = get(addr, "/api/v1/devices", Some(&t.reader)).await;
    assert_eq!(seen(&devices, "laptop"), Value::String(when.to_string()));
}
