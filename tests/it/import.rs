//! `dnsgate import cloudflare` (SPEC §13) on realistic Gateway exports
//! (tests/data/cloudflare): what it carries over loads with `check` and decides as the
//! rules did; what it cannot is named on standard error.

use std::process::Command;

use serde_json::Value;

use crate::cli::{BIN, dnsgate};

fn data(name: &str) -> String {
    format!(
        "{}/tests/data/cloudflare/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn cloudflare_rules_and_lists_become_policies_that_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("imported");
    let run = Command::new(BIN)
        .args([
            "import",
            "cloudflare",
            "--rules",
            &data("rules.json"),
            "--lists",
            &data("lists.json"),
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    // What was left behind, each named.
    for needle in [
        "list `Admin Serial Numbers` (2e8b5c1d-9a7f-4e3b-b6c5-d4e3f2a1b0c9): type SERIAL is not used by DNS rules",
        "rule `Block uploads`: filters [\"http\"] are not DNS; not imported",
        "rule `Block a destination`: traffic `any(app.ids[*] in {505})` does not compile here",
        "rule `Quarantine risky users`: action `isolate` has no DNS equivalent",
        "rule `Allow admins everywhere`: device posture",
        "rule `Block gambling`: block_page_enabled: dnsgate has no block page",
        "rule `Corp zone to the domain controllers`: resolver 10.0.0.53 is reached through Cloudflare's private network",
        "imported 6 rules and 3 lists",
    ] {
        assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
    }
    let policies = std::fs::read_to_string(out.join("policies.toml")).unwrap();
    // `$<list id>` became `$<list name>`; resolvers became upstreams; the posture rule is
    // disabled.
    assert!(
        policies.contains("$gambling-sites") && !policies.contains("$6ff1c4c6"),
        "{policies}"
    );
    assert!(
        policies.contains(r#"upstreams = ["udp://10.0.0.53:53", "udp://10.0.1.53:53", "udp://[2001:db8::53]:5353"]"#),
        "{policies}"
    );
    let gambling = std::fs::read_to_string(out.join("lists/gambling-sites.txt")).unwrap();
    assert!(gambling.lines().any(|l| l == "bets.example"), "{gambling}");

    // Included by a configuration, it loads.
    let cfg = crate::cli::write_config(
        dir.path(),
        "include = [\"imported/policies.toml\"]\n[server]\nallow_networks = [\"0.0.0.0/0\"]\n[upstream]\nservers = [\"udp://127.0.0.1:9\"]\n",
    );
    let (code, stdout, stderr) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // And decides as the rules did.
    let explain = |args: &[&str]| -> Value {
        let mut all = vec!["explain", "-c", cfg.as_str()];
        all.extend_from_slice(args);
        all.push("--json");
        let (code, stdout, stderr) = dnsgate(&all);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str(&stdout).unwrap()
    };
    let v = explain(&["www.casino.example", "--resolved", "192.0.2.1"]);
    assert_eq!(
        (
            v["decision"]["action"].as_str(),
            v["decision"]["policy"].as_str()
        ),
        (Some("block"), Some("Block gambling")),
        "{v}"
    );
    // A branch office (an IP list) gets the override; others the resolver policy (DNS
    // policies are decided before resolver policies, as in Gateway).
    let v = explain(&["wiki.corp.example", "--client", "192.0.2.77"]);
    assert_eq!(
        (
            v["decision"]["policy"].as_str(),
            v["decision"]["ips"].clone()
        ),
        (Some("Internal wiki"), serde_json::json!(["10.20.30.40"])),
        "{v}"
    );
    let v = explain(&["wiki.corp.example", "--client", "203.0.113.5"]);
    assert_eq!(
        v["decision"]["policy"], "Corp zone to the domain controllers",
        "{v}"
    );
    let v = explain(&[
        "wiki.example",
        "--client",
        "192.0.2.77",
        "--resolved",
        "192.0.2.1",
    ]);
    assert_eq!(v["decision"]["action"], "allow", "{v}");
}

#[test]
fn an_export_that_is_not_json_or_has_nothing_to_import_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("rules.json");
    std::fs::write(&bad, "not json").unwrap();
    let (code, _, stderr) = dnsgate(&[
        "import",
        "cloudflare",
        "--rules",
        bad.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("is not JSON"), "{stderr}");
    std::fs::write(
        &bad,
        r#"{"result": [{"name": "web", "action": "block", "filters": ["http"], "traffic": ""}]}"#,
    )
    .unwrap();
    let (code, _, stderr) = dnsgate(&[
        "import",
        "cloudflare",
        "--rules",
        bad.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("rule `web`: filters") && stderr.contains("nothing could be imported"),
        "{stderr}"
    );
}
