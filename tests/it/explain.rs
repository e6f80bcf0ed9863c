//! `dnsgate explain` (SPEC §1) beyond `cli::explain_says_which_policy_decided_and_why`:
//! resolving by itself against a live upstream, identity by DoH token, and the rule
//! builder's client-side selectors (country, continent, lists of every kind, device).

use std::time::Duration;

use crate::cli::{BIN, dnsgate, write_config};
use crate::{upstream, write_files};

const GEOIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/test-country.mmdb");

/// Runs `dnsgate explain --json` without blocking the runtime (the test upstream lives on
/// it) and returns the parsed output. Bounded: 30 s, then the child is killed.
async fn explain_async(args: &[&str]) -> serde_json::Value {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("explain")
        .args(args)
        .arg("--json")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("explain finishes within 30 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "explain {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("explain --json prints JSON ({e}): {stdout}"))
}

/// Runs `dnsgate explain --json` (no upstream needed) and returns the parsed output.
fn explain(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    all.push("--json");
    let (code, out, err) = dnsgate(&all);
    assert_eq!(code, 0, "explain {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("explain --json prints JSON ({e}): {out}"))
}

/// (action, deciding policy or "-") of an explain result.
fn decision(v: &serde_json::Value) -> (String, String) {
    let d = &v["decision"];
    (
        d["action"].as_str().unwrap_or("?").to_owned(),
        d["policy"].as_str().unwrap_or("-").to_owned(),
    )
}

fn resolving_config(dir: &std::path::Path, up: std::net::SocketAddr) -> String {
    write_config(
        dir,
        &format!(
            "[server]\nallow_networks = [\"0.0.0.0/0\", \"::/0\"]\n[upstream]\nservers = [\"udp://{up}\"]\ntimeout_ms = 2000\n\
             [geoip]\ndatabase = \"{GEOIP}\"\n\
             [[policies]]\nname = \"JP answers\"\naction = \"block\"\ntraffic = 'any(dns.dst.geo.country[*] == \"JP\")'\n"
        ),
    )
}

/// The query name as given, fully qualified: this path already resolved before the
/// explain-fqdn fix; it guards the resolution itself.
#[tokio::test]
async fn explain_resolves_a_fully_qualified_name_itself_and_runs_post_policies() {
    let up = upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = resolving_config(dir.path(), up.addr);

    let v = explain_async(&["-c", &cfg, "jp.test."]).await;
    assert_eq!(decision(&v), ("block".into(), "JP answers".into()), "{v:#}");
    assert_eq!(v["decision"]["phase"], "post", "{v:#}");
    assert_eq!(
        v["resolved_ips"],
        serde_json::json!(["192.0.2.55"]),
        "{v:#}"
    );
    assert!(up.queries() >= 1, "explain asked the upstream");

    // A name whose answer is not in JP: resolved, the post policy does not match.
    let v = explain_async(&["-c", &cfg, "pt.test.", "A"]).await;
    assert_eq!(decision(&v), ("allow".into(), "-".into()), "{v:#}");
    assert_eq!(
        v["resolved_ips"],
        serde_json::json!(["198.51.100.7"]),
        "{v:#}"
    );
    let rows = v["policies"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v:#}");
    assert_eq!(rows[0]["phase"], "post");
    assert_eq!(rows[0]["result"], "not matched");
}

/// A user types names without the trailing dot; explain must resolve them all the same.
#[tokio::test]
async fn explain_resolves_a_name_given_without_a_trailing_dot() {
    let up = upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = resolving_config(dir.path(), up.addr);

    let v = explain_async(&["-c", &cfg, "jp.test"]).await;
    assert_eq!(decision(&v), ("block".into(), "JP answers".into()), "{v:#}");
    assert_eq!(v["decision"]["phase"], "post", "{v:#}");
    assert_eq!(
        v["resolved_ips"],
        serde_json::json!(["192.0.2.55"]),
        "{v:#}"
    );
    assert!(v["note"].is_null(), "no resolution failure: {v:#}");

    let v = explain_async(&["-c", &cfg, "mixed.test", "A"]).await;
    assert_eq!(decision(&v), ("block".into(), "JP answers".into()), "{v:#}");
    let mut got: Vec<String> = v["resolved_ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    got.sort();
    assert_eq!(got, ["192.0.2.56", "203.0.113.10"]);

    let v = explain_async(&["-c", &cfg, "us.test"]).await;
    assert_eq!(decision(&v), ("allow".into(), "-".into()), "{v:#}");
    assert_eq!(
        v["resolved_ips"],
        serde_json::json!(["203.0.113.9"]),
        "{v:#}"
    );
}

const TOKEN_IDENTITIES: &str = r#"
[[groups]]
id = "g-fin"
name = "finance"

[[users]]
email = "alice@example.com"
name = "alice"
groups = ["g-fin"]

[[users]]
email = "bob@example.com"
name = "bob"

[[devices]]
id = "alice-phone"
user = "alice@example.com"
doh_token = "s3cr3t-t0ken"

[[devices]]
id = "bob-phone"
user = "bob@example.com"
doh_token = "bobs-token"
"#;

#[test]
fn explain_token_identifies_the_device_and_its_users_groups() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("identities.toml", TOKEN_IDENTITIES)]);
    let cfg = write_config(
        dir.path(),
        "[upstream]\nservers = [\"udp://127.0.0.1:9\"]\n[identity]\ndirectory = \"identities.toml\"\n\
         [[policies]]\nname = \"finance\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"www.test\"'\n\
         identity = 'any(identity.groups.name[*] == \"finance\")'\n",
    );

    let v = explain(&["-c", &cfg, "www.test", "--token", "s3cr3t-t0ken"]);
    assert_eq!(decision(&v), ("block".into(), "finance".into()), "{v:#}");
    assert_eq!(v["query"]["device"], "alice-phone", "{v:#}");
    assert_eq!(v["query"]["user"], "alice@example.com", "{v:#}");

    // Without the token the client (127.0.0.1) is no known device: the policy does not match.
    let v = explain(&["-c", &cfg, "www.test"]);
    assert_eq!(decision(&v), ("allow".into(), "-".into()), "{v:#}");
    assert!(v["query"]["device"].is_null(), "{v:#}");
    assert_eq!(v["policies"][0]["result"], "not matched", "{v:#}");

    // Another user's token, and an unknown token: no finance group, no block.
    let v = explain(&["-c", &cfg, "www.test", "--token", "bobs-token"]);
    assert_eq!(decision(&v), ("allow".into(), "-".into()), "{v:#}");
    assert_eq!(v["query"]["device"], "bob-phone", "{v:#}");
    // A token naming no device is refused (SPEC §10, `unknown_client = "refuse"`).
    let v = explain(&["-c", &cfg, "www.test", "--token", "nobody's"]);
    assert_eq!(decision(&v), ("refused".into(), "-".into()), "{v:#}");
    assert!(v["query"]["device"].is_null(), "{v:#}");
}

const BUILDER_IDENTITIES: &str = r#"
[[users]]
email = "alice@example.com"
name = "alice"

[[users]]
email = "bob@example.com"
name = "bob"

[[devices]]
id = "alice-laptop"
user = "alice@example.com"
ips = ["192.0.2.10"]
doh_token = "alice-token"

[[devices]]
id = "bob-laptop"
user = "bob@example.com"
ips = ["192.0.2.11"]
"#;

fn builder_config(dir: &std::path::Path) -> String {
    write_files(
        dir,
        &[
            ("identities.toml", BUILDER_IDENTITIES),
            ("ads.txt", "ads.test\n"),
            ("clients.txt", "# bad clients\n203.0.113.0/25\n"),
            ("vips.txt", "alice@example.com\n"),
        ],
    );
    write_config(
        dir,
        &format!(
            "[server]\nallow_networks = [\"0.0.0.0/0\", \"::/0\"]\n[upstream]\nservers = [\"udp://127.0.0.1:9\"]\n\
             [geoip]\ndatabase = \"{GEOIP}\"\n[identity]\ndirectory = \"identities.toml\"\n\
             [[lists]]\nname = \"ads\"\npath = \"ads.txt\"\n\
             [[lists]]\nname = \"clients\"\ntype = \"ip\"\npath = \"clients.txt\"\n\
             [[lists]]\nname = \"vips\"\ntype = \"email\"\npath = \"vips.txt\"\n\
             [[policies]]\nname = \"country\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"www.test\"'\ninclude = [{{ country = [\"PT\", \"DE\"] }}]\n\
             [[policies]]\nname = \"continent\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"jp.test\" and dns.src.geo.continent == \"EU\"'\n\
             [[policies]]\nname = \"domain list\"\naction = \"block\"\ninclude = [{{ list = \"ads\" }}]\n\
             [[policies]]\nname = \"ip list\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"us.test\"'\ninclude = [{{ list = \"clients\" }}]\n\
             [[policies]]\nname = \"email list\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"pt.test\"'\nrequire = [{{ list = \"vips\" }}]\n\
             [[policies]]\nname = \"device\"\naction = \"block\"\ntraffic = 'dns.fqdn == \"mixed.test\"'\ninclude = [{{ device = [\"alice-laptop\"] }}]\n"
        ),
    )
}

#[test]
fn rule_builder_country_selector_uses_the_clients_geoip() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = builder_config(dir.path());
    // 198.51.100.0/24 is PT, 2001:db8::/32 DE, 203.0.113.0/24 US, 192.0.2.0/24 JP.
    for (client, want) in [
        ("198.51.100.20", "block"),
        ("2001:db8::5", "block"),
        ("203.0.113.200", "allow"),
        ("192.0.2.99", "allow"),
    ] {
        let v = explain(&["-c", &cfg, "www.test", "--client", client]);
        let (action, policy) = decision(&v);
        assert_eq!(action, want, "www.test from {client}: {v:#}");
        if want == "block" {
            assert_eq!(policy, "country");
        }
    }
    // The selector is about the client, not the name: another name from PT is not blocked.
    let v = explain(&["-c", &cfg, "us.test", "--client", "198.51.100.20"]);
    assert_eq!(decision(&v).0, "allow", "{v:#}");
}

#[test]
fn client_continent_field_decides() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = builder_config(dir.path());
    for (client, want) in [
        ("198.51.100.20", "block"),
        ("2001:db8::5", "block"),
        ("203.0.113.200", "allow"),
        ("192.0.2.99", "allow"),
    ] {
        let v = explain(&["-c", &cfg, "jp.test", "--client", client]);
        assert_eq!(decision(&v).0, want, "jp.test from {client}: {v:#}");
        if want == "block" {
            assert_eq!(decision(&v).1, "continent");
        }
    }
}

#[test]
fn rule_builder_list_selector_takes_domain_ip_and_email_lists() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = builder_config(dir.path());

    // Domain list: the name and its subdomains, from any client.
    for name in ["ads.test", "tracker.ads.test"] {
        let v = explain(&["-c", &cfg, name]);
        assert_eq!(
            decision(&v),
            ("block".into(), "domain list".into()),
            "{name}: {v:#}"
        );
    }
    let v = explain(&["-c", &cfg, "notads.test"]);
    assert_eq!(decision(&v).0, "allow", "{v:#}");

    // IP list: the client's address against the listed networks (203.0.113.0/25).
    let v = explain(&["-c", &cfg, "us.test", "--client", "203.0.113.5"]);
    assert_eq!(decision(&v), ("block".into(), "ip list".into()), "{v:#}");
    let v = explain(&["-c", &cfg, "us.test", "--client", "203.0.113.200"]);
    assert_eq!(decision(&v).0, "allow", "outside the /25: {v:#}");

    // E-mail list: the user behind the device (by address or by token).
    let v = explain(&["-c", &cfg, "pt.test", "--client", "192.0.2.10"]);
    assert_eq!(decision(&v), ("block".into(), "email list".into()), "{v:#}");
    let v = explain(&["-c", &cfg, "pt.test", "--token", "alice-token"]);
    assert_eq!(decision(&v), ("block".into(), "email list".into()), "{v:#}");
    let v = explain(&["-c", &cfg, "pt.test", "--client", "192.0.2.11"]);
    assert_eq!(decision(&v).0, "allow", "bob is not listed: {v:#}");
    let v = explain(&["-c", &cfg, "pt.test", "--client", "192.0.2.12"]);
    assert_eq!(decision(&v).0, "allow", "no device, no user: {v:#}");
}

#[test]
fn rule_builder_device_selector_matches_the_device_id() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = builder_config(dir.path());
    let v = explain(&["-c", &cfg, "mixed.test", "--client", "192.0.2.10"]);
    assert_eq!(decision(&v), ("block".into(), "device".into()), "{v:#}");
    assert_eq!(v["query"]["device"], "alice-laptop");
    let v = explain(&["-c", &cfg, "mixed.test", "--token", "alice-token"]);
    assert_eq!(decision(&v), ("block".into(), "device".into()), "{v:#}");
    let v = explain(&["-c", &cfg, "mixed.test", "--client", "192.0.2.11"]);
    assert_eq!(decision(&v).0, "allow", "{v:#}");
    assert_eq!(v["query"]["device"], "bob-laptop");
}

/// An `external` policy (SPEC §11) before a block policy for the same name.
fn external_config(dir: &std::path::Path, url: &str, on_error: &str) -> String {
    write_files(dir, &[("risk.secret", "s3cret\n")]);
    write_config(
        dir,
        &format!(
            "[[policies]]\nname = \"risk\"\nprecedence = 10\naction = \"external\"\n\
             traffic = 'any(dns.domains[*] == \"ext.test\")'\n\
             external = {{ url = \"{url}\", on_error = \"{on_error}\", secret_file = \"risk.secret\", timeout_ms = 2000 }}\n\n\
             [[policies]]\nname = \"later\"\nprecedence = 20\naction = \"block\"\nblock_mode = \"nxdomain\"\n\
             traffic = 'dns.fqdn == \"www.ext.test\"'\n"
        ),
    )
}

/// Without `--external`, explain shows the request an external policy would send and does
/// not send it: a stub decides, else `on_error`, as when the endpoint cannot be reached.
#[test]
fn explain_shows_the_external_request_and_takes_stubs() {
    let dir = tempfile::tempdir().unwrap();
    // Nobody listens there: were it asked, the verdict would be a network error.
    let cfg = external_config(dir.path(), "http://127.0.0.1:9/dns", "block");
    let v = explain(&["-c", &cfg, "www.ext.test", "--client", "127.0.0.5"]);
    assert_eq!(decision(&v), ("block".into(), "risk".into()), "{v:#}");
    let row = &v["policies"][0];
    assert_eq!(row["name"], "risk");
    let e = &row["external"];
    assert_eq!(e["url"], "http://127.0.0.1:9/dns");
    assert_eq!(e["request"]["policy"], "risk");
    assert_eq!(e["request"]["query"]["name"], "www.ext.test");
    assert_eq!(e["request"]["query"]["type"], "A");
    assert_eq!(e["request"]["client"]["ip"], "127.0.0.5");
    assert!(
        e["request"]["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{e}"
    );
    assert!(
        e["verdict"]["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("not asked")),
        "{e}"
    );
    // A stub: `continue` lets the later policy decide; `allow` decides for the policy.
    let v = explain(&["-c", &cfg, "www.ext.test", "--stub", "risk=continue"]);
    assert_eq!(decision(&v), ("block".into(), "later".into()), "{v:#}");
    assert_eq!(v["decision"]["rcode"], "NXDOMAIN");
    let v = explain(&["-c", &cfg, "www.ext.test", "--stub", "risk=allow"]);
    assert_eq!(decision(&v), ("allow".into(), "risk".into()), "{v:#}");
    assert_eq!(v["policies"][0]["external"]["verdict"]["source"], "stubbed");
    // A stub for a policy that is not external, or a verdict that is not one: an error.
    let (code, _, err) = dnsgate(&[
        "explain",
        "-c",
        &cfg,
        "www.ext.test",
        "--stub",
        "later=block",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("not an external policy"), "{err}");
    let (code, _, err) = dnsgate(&[
        "explain",
        "-c",
        &cfg,
        "www.ext.test",
        "--stub",
        "risk=maybe",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("allow, block or continue"), "{err}");
}

/// A one-request HTTP endpoint on loopback: answers `reply` (JSON) and hands back the
/// request it got (head and body).
async fn one_shot_endpoint(reply: &'static str) -> (String, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/dns", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut c, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = c.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
            assert!(n > 0, "the request ended early");
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
            reply.len()
        );
        c.write_all(answer.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&got).into_owned()
    });
    (url, task)
}

/// With `--external`, explain sends the signed request, as serving does, and the reply
/// decides (a block with its reason as the EDE text).
#[tokio::test]
async fn explain_external_asks_the_endpoint() {
    let (url, request) =
        one_shot_endpoint(r#"{"action":"block","reason":"training not done","ttl":30}"#).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = external_config(dir.path(), &url, "continue");
    let v = explain_async(&["-c", &cfg, "www.ext.test", "--external"]).await;
    assert_eq!(decision(&v), ("block".into(), "risk".into()), "{v:#}");
    assert_eq!(v["decision"]["reason"], "training not done");
    assert_eq!(v["decision"]["ede"], 15);
    let verdict = &v["policies"][0]["external"]["verdict"];
    assert_eq!(verdict["source"], "asked", "{verdict}");
    assert_eq!(
        verdict["holds_s"].as_u64().map(|h| (29..=30).contains(&h)),
        Some(true)
    );
    // The request carried the signature of its time and body, keyed by the secret less its
    // trailing newline.
    let got = request.await.unwrap();
    let (head, body) = got.split_once("\r\n\r\n").unwrap();
    let sig = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-dnsgate-signature:")
                .map(|v| v.trim().to_owned())
        })
        .expect("a signature header");
    let (t, v1) = sig
        .strip_prefix("t=")
        .and_then(|r| r.split_once(",v1="))
        .unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
    let tag = ring::hmac::sign(&key, format!("{t}.{body}").as_bytes());
    assert_eq!(v1, data_encoding::HEXLOWER.encode(tag.as_ref()));
    let sent: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(sent["query"]["name"], "www.ext.test");
}
