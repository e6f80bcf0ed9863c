//! The admin API's writes (SPEC §12): objects made, changed and deleted through the API,
//! kept under `state_dir`, validated exactly as a reload, confined by identity group, and
//! the same in service as the same objects written in a file.

use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::api::{api_gate_with, delete, get, names, post_json, put_json, tokens};
use crate::client::{ips, query};

#[tokio::test]
async fn objects_are_made_changed_and_deleted_and_validated_as_a_reload() {
    let t = tokens();
    let (g, addr) = api_gate_with(&t, "", "").await;
    let admin = &t.admin;
    assert_eq!(
        ips(&query(g.addr, "jp.test.", RecordType::A).await),
        ["192.0.2.55"]
    );
    // A list that holds its own entries, and a policy that uses it.
    let (status, list) = post_json(
        addr,
        "/api/v1/lists",
        admin,
        json!({"name": "made", "entries": ["jp.test"], "description": "through the API"}),
    )
    .await;
    assert_eq!(status, 201, "{list}");
    assert_eq!(
        (list["source"].as_str(), list["entry_count"].as_u64()),
        (Some("api"), Some(1))
    );
    let (status, policy) = post_json(
        addr,
        "/api/v1/policies",
        admin,
        json!({"name": "made", "action": "block", "traffic": "any(dns.domains[*] in $made)"}),
    )
    .await;
    assert_eq!(status, 201, "{policy}");
    assert_eq!(
        ips(&query(g.addr, "jp.test.", RecordType::A).await),
        ["0.0.0.0"]
    );
    // Kept under state_dir, in the shape of an included file.
    let kept = std::fs::read_to_string(g.dir.path().join("state/api/config.toml")).unwrap();
    assert!(
        kept.contains("[[policies]]") && kept.contains("jp.test"),
        "{kept}"
    );
    // Entries added through the list's own route.
    let (status, list) = post_json(
        addr,
        "/api/v1/lists/made/entries",
        admin,
        json!({"add": ["pt.test"], "remove": []}),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["entries"], json!(["jp.test", "pt.test"]));
    assert_eq!(
        ips(&query(g.addr, "pt.test.", RecordType::A).await),
        ["0.0.0.0"]
    );
    // A file object's name is taken (409); a file list is read-only (409); keys that name
    // files, URLs, secrets or servers come only from files (400 forbidden_key).
    let (status, body) = post_json(
        addr,
        "/api/v1/policies",
        admin,
        json!({"name": "ads", "action": "allow"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    let (status, body) = post_json(
        addr,
        "/api/v1/lists/ads/entries",
        admin,
        json!({"add": ["x.test"]}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("read_only"))
    );
    assert_eq!(delete(addr, "/api/v1/lists/ads", admin).await, 409);
    for body in [
        json!({"name": "etc", "path": "/etc/passwd"}),
        json!({"name": "remote", "url": "http://127.0.0.1:1/list"}),
    ] {
        let (status, e) = post_json(addr, "/api/v1/lists", admin, body).await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (400, Some("forbidden_key"))
        );
    }
    let (status, e) = post_json(
        addr,
        "/api/v1/policies",
        admin,
        json!({"name": "fwd", "action": "resolve", "upstreams": ["127.0.0.1:1"]}),
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("forbidden_key"))
    );
    // A change that does not load is refused with the check messages, and nothing changes.
    let (status, e) = post_json(
        addr,
        "/api/v1/policies",
        admin,
        json!({"name": "broken", "action": "block", "traffic": "dns.fqdn == "}),
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("invalid")),
        "{e}"
    );
    let d = &e["error"]["details"][0];
    assert!(d["path"].as_str().unwrap().ends_with("config.toml"), "{d}");
    assert!(d["line"].as_u64().unwrap() >= 1, "{d}");
    let (_, all) = get(addr, "/api/v1/policies", Some(admin)).await;
    assert_eq!(names(&all, "name"), ["ads", "other", "made"]);
    // A list still used cannot go (400: the configuration would not load without it).
    let (status, _) = (delete(addr, "/api/v1/lists/made", admin).await, ());
    assert_eq!(status, 400);
    // Replaced whole: disabled, the names it blocked resolve again.
    let mut off = policy.clone();
    off["enabled"] = json!(false);
    let (status, now) = put_json(addr, "/api/v1/policies/made", admin, &off).await;
    assert_eq!(
        (status, now["enabled"].as_bool()),
        (200, Some(false)),
        "{now}"
    );
    assert_eq!(
        ips(&query(g.addr, "pt.test.", RecordType::A).await),
        ["198.51.100.7"]
    );
    // The key names the object: it cannot change through PUT.
    let mut renamed = policy.clone();
    renamed["name"] = json!("other-name");
    assert_eq!(
        put_json(addr, "/api/v1/policies/made", admin, &renamed)
            .await
            .0,
        400
    );
    // Deleted: the policy, then its list.
    assert_eq!(delete(addr, "/api/v1/policies/made", admin).await, 204);
    assert_eq!(delete(addr, "/api/v1/lists/made", admin).await, 204);
    assert_eq!(get(addr, "/api/v1/lists/made", Some(admin)).await.0, 404);
    let (_, all) = get(addr, "/api/v1/policies", Some(admin)).await;
    assert_eq!(names(&all, "name"), ["ads", "other"]);

    // Every attempt is audited, whatever stopped it.
    let audit = std::fs::read_to_string(g.dir.path().join("audit.jsonl")).unwrap();
    let results: Vec<(String, String)> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("lists.create", "ok"),
        ("policies.create", "ok"),
        ("lists.update", "ok"),
        // 409: a file object's name, a file list's entries, a file list.
        ("policies.create", "denied"),
        ("lists.update", "denied"),
        ("lists.delete", "denied"),
        // 400 forbidden_key, then changes that do not load.
        ("lists.create", "invalid"),
        ("lists.create", "invalid"),
        ("policies.create", "invalid"),
        ("policies.create", "invalid"),
        ("lists.delete", "invalid"),
        ("policies.update", "ok"),
        // The key cannot change.
        ("policies.update", "invalid"),
        ("policies.delete", "ok"),
        ("lists.delete", "ok"),
    ]
    .map(|(a, r)| (a.to_owned(), r.to_owned()));
    assert_eq!(results, expected);
}

#[tokio::test]
async fn identities_are_made_through_the_api_and_their_secrets_never_shown() {
    let t = tokens();
    let (g, addr) = api_gate_with(&t, "", "").await;
    let admin = &t.admin;
    for (kind, body) in [
        ("groups", json!({"id": "g-teens", "name": "teens"})),
        (
            "users",
            json!({"email": "Teen@Example.com", "name": "Teen", "groups": ["g-teens"]}),
        ),
        (
            "devices",
            json!({"id": "teen-phone", "user": "teen@example.com", "group": "teens",
                   "ips": ["127.0.0.77"], "doh_token": "teen-phone-secret-token"}),
        ),
        (
            "locations",
            json!({"name": "annex", "networks": ["127.0.5.0/24"]}),
        ),
    ] {
        let (status, made) = post_json(addr, &format!("/api/v1/{kind}"), admin, body).await;
        assert_eq!(status, 201, "{kind}: {made}");
        assert_eq!(made["source"], "api");
    }
    // Users are keyed by e-mail, in any case.
    let (status, user) = get(addr, "/api/v1/users/TEEN@example.COM", Some(&t.reader)).await;
    assert_eq!(
        (status, user["name"].as_str()),
        (200, Some("Teen")),
        "{user}"
    );
    // The device's token is write-only: set, never shown, kept as a digest.
    let (_, device) = get(addr, "/api/v1/devices/teen-phone", Some(&t.reader)).await;
    assert_eq!(device["doh_token_set"], true, "{device}");
    let kept = std::fs::read_to_string(g.dir.path().join("state/api/identities.toml")).unwrap();
    assert!(
        !kept.contains("teen-phone-secret-token")
            && !device.to_string().contains("teen-phone-secret-token")
    );
    assert!(kept.contains("doh_token_sha256"), "{kept}");
    // The identity is in service: explain by the token names the device and its user.
    let (_, v) = post_json(
        addr,
        "/api/v1/explain",
        admin,
        json!({"name": "www.test", "token": "teen-phone-secret-token"}),
    )
    .await;
    assert_eq!(v["query"]["device"], "teen-phone", "{v}");
    // Replaced without a token: the old one is kept.
    let mut changed = device.clone();
    changed["ips"] = json!(["127.0.0.78"]);
    let (status, now) = put_json(addr, "/api/v1/devices/teen-phone", admin, &changed).await;
    assert_eq!(
        (status, now["doh_token_set"].as_bool()),
        (200, Some(true)),
        "{now}"
    );
    // A device of a group belongs to a user in it: else the change does not load.
    let (status, e) = post_json(
        addr,
        "/api/v1/devices",
        admin,
        json!({"id": "odd", "user": "kid@example.com", "group": "teens"}),
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("invalid")),
        "{e}"
    );
    assert!(
        e["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not in group `teens`"),
        "{e}"
    );
    // A user a device names cannot go; the device first, then the user.
    assert_eq!(
        delete(addr, "/api/v1/users/teen@example.com", admin).await,
        400
    );
    assert_eq!(delete(addr, "/api/v1/devices/teen-phone", admin).await, 204);
    assert_eq!(
        delete(addr, "/api/v1/users/teen@example.com", admin).await,
        204
    );
    // File identities are read-only.
    assert_eq!(delete(addr, "/api/v1/devices/laptop", admin).await, 409);
}

/// A token scoped to `group:kids` changes the kids' DNS and nobody else's: it makes only
/// objects of its group, cannot move one out of it, and its lists serve only its policies.
#[tokio::test]
async fn a_group_token_is_confined_to_its_group() {
    let t = tokens();
    let (secret, hash) = dnsgate::access::new_secret();
    let kids_admin = format!(
        "[[tokens]]\nname = \"kids-admin\"\nhash = \"{hash}\"\n\
         policies = [{{ effect = \"allow\", permissions = [\"dnsgate.*.*\"], resources = [\"group:kids\"] }}]\n"
    );
    let (g, addr) = api_gate_with(&t, "", &kids_admin).await;
    let kids = &secret;
    // Objects of its group: yes. Without a group, or of another: 403.
    let (status, _) = post_json(
        addr,
        "/api/v1/lists",
        kids,
        json!({"name": "kid-games", "group": "kids", "entries": ["us.test"]}),
    )
    .await;
    assert_eq!(status, 201);
    for (kind, body) in [
        ("lists", json!({"name": "everyone", "entries": ["x.test"]})),
        (
            "lists",
            json!({"name": "teen", "group": "teens", "entries": ["x.test"]}),
        ),
        (
            "policies",
            json!({"name": "all", "action": "block", "traffic": "dns.fqdn == \"x.test\""}),
        ),
    ] {
        let (status, e) = post_json(addr, &format!("/api/v1/{kind}"), kids, body).await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{e}"
        );
    }
    let (status, made) = post_json(
        addr,
        "/api/v1/policies",
        kids,
        json!({"name": "kid games", "action": "block", "group": "kids", "precedence": 0,
               "traffic": "any(dns.domains[*] in $kid-games)"}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    // Precedence 0 runs first, but only for the kids: the laptop (no group) still gets
    // the answer, the kid's phone does not.
    assert_eq!(
        ips(&query(g.addr, "us.test.", RecordType::A).await),
        ["203.0.113.9"]
    );
    let (_, v) = post_json(
        addr,
        "/api/v1/explain",
        &t.admin,
        json!({"name": "us.test", "device": "kidphone"}),
    )
    .await;
    assert_eq!(v["decision"]["policy"], "kid games", "{v}");
    // Moving its policy out of the group is a change it may not make (after, not before).
    let mut moved = made.clone();
    moved["group"] = json!("teens");
    let (status, _) = put_json(addr, "/api/v1/policies/kid%20games", kids, &moved).await;
    assert_eq!(status, 403);
    // Its devices are named by a secret, never by addresses: a network claimed for a kid's
    // device would make everyone behind it that kid.
    let (status, e) = post_json(
        addr,
        "/api/v1/devices",
        kids,
        json!({"id": "kid-tablet", "user": "kid@example.com", "group": "kids", "ips": ["0.0.0.0/0"]}),
    )
    .await;
    assert_eq!(status, 403, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("`ips`"),
        "{e}"
    );
    let (status, e) = post_json(
        addr,
        "/api/v1/devices",
        kids,
        json!({"id": "kid-tablet", "user": "kid@example.com", "group": "kids", "doh_token": "kid-tablet-token-0123456789"}),
    )
    .await;
    assert_eq!(status, 201, "{e}");
    // Others' objects are absent to it.
    assert_eq!(get(addr, "/api/v1/lists/ads", Some(kids)).await.0, 404);
    assert_eq!(delete(addr, "/api/v1/policies/ads", kids).await, 404);
    let (_, visible) = get(addr, "/api/v1/lists", Some(kids)).await;
    assert_eq!(names(&visible, "name"), ["kid-games"]);
    // Even the administrator cannot make a policy of everyone use the kids' list: whoever
    // changes that list would change everyone's DNS.
    let (status, e) = post_json(
        addr,
        "/api/v1/policies",
        &t.admin,
        json!({"name": "all games", "action": "block", "traffic": "any(dns.domains[*] in $kid-games)"}),
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("invalid")),
        "{e}"
    );
    assert!(
        e["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("of group `kids`"),
        "{e}"
    );
}

/// The same objects through the API and through a file give the same explanation for
/// every query of a set.
#[tokio::test]
async fn a_change_through_the_api_is_the_same_change_through_a_file() {
    let t = tokens();
    let objects = [
        (
            "lists",
            json!({"name": "made", "entries": ["made.test", "shop.example"]}),
        ),
        (
            "policies",
            json!({"name": "made", "action": "block", "precedence": 5,
                            "traffic": "any(dns.domains[*] in $made)", "block_reason": "made"}),
        ),
        (
            "policies",
            json!({"name": "kids", "action": "block", "group": "kids",
                            "traffic": "dns.fqdn == \"games.test\""}),
        ),
        (
            "policies",
            json!({"name": "override", "action": "override", "override_ips": ["192.0.2.99"],
                            "traffic": "dns.fqdn == \"ads.test\""}),
        ),
    ];
    let (_api, by_api) = api_gate_with(&t, "", "").await;
    for (kind, body) in &objects {
        let (status, made) =
            post_json(by_api, &format!("/api/v1/{kind}"), &t.admin, body.clone()).await;
        assert_eq!(status, 201, "{made}");
    }
    // The same objects, as TOML, in the configuration file.
    let mut toml_text = String::new();
    for (kind, body) in &objects {
        let table: toml::Table = serde_json::from_value(body.clone()).unwrap();
        let mut doc = toml::Table::new();
        doc.insert(
            kind.to_string(),
            toml::Value::Array(vec![toml::Value::Table(table)]),
        );
        toml_text.push('\n');
        toml_text.push_str(&toml::to_string(&doc).unwrap());
    }
    let (_file, by_file) = api_gate_with(&t, &toml_text, "").await;
    let mut compared = 0;
    for name in [
        "made.test",
        "www.shop.example",
        "games.test",
        "ads.test",
        "other.test",
        "www.test",
    ] {
        for device in [None, Some("kidphone"), Some("laptop")] {
            let mut q = json!({"name": name, "type": "A"});
            if let Some(d) = device {
                q["device"] = json!(d);
            }
            let (_, a) = post_json(by_api, "/api/v1/explain", &t.admin, q.clone()).await;
            let (_, f) = post_json(by_file, "/api/v1/explain", &t.admin, q.clone()).await;
            assert_eq!(a["decision"], f["decision"], "{q}");
            assert!(a["decision"].is_object(), "{a}");
            compared += 1;
        }
    }
    assert_eq!(compared, 18);
}

/// Last-seen times are kept across restarts, and with `revoke_inactive_after` a device
/// quiet for that long is revoked at start (then hourly), audited as dnsgate's own
/// change; one seen lately is not.
#[tokio::test]
async fn devices_quiet_too_long_are_revoked_and_their_last_seen_survives_a_restart() {
    let t = tokens();
    let now = jiff::Timestamp::now().as_second() as u64;
    let forty_days_ago = now - 40 * 86_400;
    let saved = format!(
        r#"{{"devices": {{"laptop": {{"last_seen": {forty_days_ago}, "known_since": {forty_days_ago}}},
                         "kidphone": {{"last_seen": {}, "known_since": {forty_days_ago}}}}}}}"#,
        now - 86_400
    );
    let (g, addr) = crate::api::api_gate_custom(
        &t,
        "revoke_inactive_after = \"30d\"\n",
        "",
        "",
        &[("state/api/last_seen.json", &saved)],
    )
    .await;
    // The time kept is the time shown (restored at start).
    let (_, phone) = get(addr, "/api/v1/devices/kidphone", Some(&t.admin)).await;
    let shown: jiff::Timestamp = phone["last_seen"]
        .as_str()
        .expect("restored")
        .parse()
        .unwrap();
    assert_eq!(shown.as_second() as u64, now - 86_400);
    // The laptop, quiet for 40 days, is revoked; the phone, seen yesterday, is not.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, laptop) = get(addr, "/api/v1/devices/laptop", Some(&t.admin)).await;
        if laptop["revoked"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not revoked: {laptop}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, phone) = get(addr, "/api/v1/devices/kidphone", Some(&t.admin)).await;
    assert_eq!(phone["revoked"], false);
    let audit = std::fs::read_to_string(g.dir.path().join("audit.jsonl")).unwrap();
    let line: Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(
        (
            &line["action"],
            &line["object"],
            &line["token"],
            &line["source_ip"]
        ),
        (
            &json!("devices.revoke_inactive"),
            &json!("device:laptop"),
            &Value::Null,
            &json!("0.0.0.0")
        )
    );
}

#[tokio::test]
async fn a_dry_run_revokes_nothing() {
    let t = tokens();
    let now = jiff::Timestamp::now().as_second() as u64;
    let old = now - 40 * 86_400;
    let saved =
        format!(r#"{{"devices": {{"laptop": {{"last_seen": {old}, "known_since": {old}}}}}}}"#);
    let (g, addr) = crate::api::api_gate_custom(
        &t,
        "revoke_inactive_after = \"30d\"\ndry_run = true\n",
        "",
        "",
        &[("state/api/last_seen.json", &saved)],
    )
    .await;
    // The first round saves the phone (new to the file), then checks.
    let path = g.dir.path().join("state/api/last_seen.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&path).unwrap().contains("kidphone") {
        assert!(std::time::Instant::now() < deadline, "never saved");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, laptop) = get(addr, "/api/v1/devices/laptop", Some(&t.admin)).await;
    assert_eq!(laptop["revoked"], false, "{laptop}");
    assert!(
        !g.dir.path().join("audit.jsonl").exists()
            || !std::fs::read_to_string(g.dir.path().join("audit.jsonl"))
                .unwrap()
                .contains("revoke_inactive")
    );
}

#[test]
fn revoke_inactive_after_needs_the_api_and_a_duration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dnsgate.toml");
    for (text, expected) in [
        (
            "[upstream]\nservers = [\"127.0.0.1:53\"]\n[identity]\nrevoke_inactive_after = \"30d\"\n",
            "4:25: revoke_inactive_after needs [api]",
        ),
        (
            "[upstream]\nservers = [\"127.0.0.1:53\"]\n[api]\n[identity]\nrevoke_inactive_after = \"soon\"\n",
            "5:25: revoke_inactive_after:",
        ),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let diags = dnsgate::runtime::Runtime::load(&cfg).unwrap_err();
        let got = format!("{}:{}: {}", diags[0].line, diags[0].col, diags[0].message);
        assert!(got.starts_with(expected), "{got}");
    }
}
