//! SCIM 2.0 (SPEC §12) as Okta and Entra ID call it: users and groups provisioned into
//! the directory in service, membership from groups, deprovisioning that always succeeds
//! and revokes the user's devices, RFC 7644 errors.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::api::{api_gate_with, client, get, post_json, tokens};

/// A token allowed SCIM only.
fn scim_token() -> (String, String) {
    let (secret, hash) = dnsgate::access::new_secret();
    let entry = format!(
        "[[tokens]]\nname = \"idp\"\nhash = \"{hash}\"\n\
         policies = [{{ effect = \"allow\", permissions = [\"dnsgate.scim.*\"], resources = [\"*\"] }}]\n"
    );
    (secret, entry)
}

/// A SCIM request as identity providers send it: `application/scim+json`.
async fn scim(
    addr: SocketAddr,
    method: &str,
    path: &str,
    secret: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = client()
        .request(method, format!("http://{addr}{path}"))
        .bearer_auth(secret);
    if let Some(b) = body {
        r = r
            .header("content-type", "application/scim+json")
            .body(b.to_string());
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    if status != 204 {
        assert_eq!(
            r.headers()["content-type"],
            "application/scim+json",
            "{path}"
        );
    }
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

/// A gate with a group policy for `kids`, the SCIM token, and an API device owned by
/// `owner` with a DoH token.
async fn gate() -> (crate::Gate, SocketAddr, String, crate::api::Tokens) {
    let t = tokens();
    let (secret, entry) = scim_token();
    let (g, addr) = api_gate_with(
        &t,
        "\n[[policies]]\nname = \"kids games\"\naction = \"block\"\ngroup = \"kids\"\n\
         traffic = 'dns.fqdn == \"games.test\"'\n",
        &entry,
    )
    .await;
    (g, addr, secret, t)
}

async fn explain_token(addr: SocketAddr, admin: &str, token: &str) -> Value {
    post_json(
        addr,
        "/api/v1/explain",
        admin,
        json!({"name": "games.test", "token": token}),
    )
    .await
    .1
}

#[tokio::test]
async fn okta_provisions_a_user_into_a_group_and_deactivates_it() {
    let (g, addr, idp, t) = gate().await;
    // Okta looks the user up first: no match is an empty ListResponse.
    let (status, found) = scim(
        addr,
        "GET",
        "/scim/v2/Users?filter=userName%20eq%20%22Alice%40example.com%22&startIndex=1&count=100",
        &idp,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(found["totalResults"], 0);
    assert_eq!(found["Resources"], json!([]));
    assert_eq!(
        found["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );
    let okta_user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "Alice@example.com",
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "emails": [{"primary": true, "value": "Alice@example.com", "type": "work"}],
        "displayName": "Alice Liddell",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    });
    let (status, user) = scim(
        addr,
        "POST",
        "/scim/v2/Users",
        &idp,
        Some(okta_user.clone()),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let uid = user["id"].as_str().unwrap().to_owned();
    assert!(user.get("password").is_none(), "{user}");
    assert_eq!(user["meta"]["resourceType"], "User");
    // The same userName again, in another case: 409 uniqueness.
    let mut again = okta_user.clone();
    again["userName"] = json!("alice@EXAMPLE.com");
    let (status, e) = scim(addr, "POST", "/scim/v2/Users", &idp, Some(again)).await;
    assert_eq!(
        (status, e["scimType"].as_str()),
        (409, Some("uniqueness")),
        "{e}"
    );
    assert_eq!(
        e["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(e["status"], "409");
    // Found by filter now, in any case.
    let (_, found) = scim(
        addr,
        "GET",
        "/scim/v2/Users?filter=userName%20eq%20%22alice%40example.com%22",
        &idp,
        None,
    )
    .await;
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0]["id"], uid.as_str());
    // A group, then Okta's membership PATCH.
    let (status, group) = scim(
        addr,
        "POST",
        "/scim/v2/Groups",
        &idp,
        Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "kids", "members": []})),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let gid = group["id"].as_str().unwrap().to_owned();
    let (status, group) = scim(
        addr,
        "PATCH",
        &format!("/scim/v2/Groups/{gid}"),
        &idp,
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members",
                            "value": [{"value": uid, "display": "Alice@example.com"}]}]
        })),
    )
    .await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["members"][0]["value"], uid.as_str());
    // The directory in service has her, in the group (its id the SCIM id).
    let (status, shown) = get(addr, "/api/v1/users/alice@example.com", Some(&t.admin)).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["source"], "scim");
    assert_eq!(shown["groups"], json!([gid]));
    // Her phone, made through the API, is named by its token and gets the kids' policy.
    let (status, phone) = post_json(
        addr,
        "/api/v1/devices",
        &t.admin,
        json!({"id": "alice-phone", "user": "alice@example.com", "doh_token": "alice-phone-doh-token-1"}),
    )
    .await;
    assert_eq!(status, 201, "{phone}");
    let v = explain_token(addr, &t.admin, "alice-phone-doh-token-1").await;
    assert_eq!(v["query"]["user"], "alice@example.com", "{v}");
    assert_eq!(v["decision"]["policy"], "kids games", "{v}");
    // Okta deactivates: no path, a value object. Always succeeds; the device is revoked.
    let (status, user) = scim(
        addr,
        "PATCH",
        &format!("/scim/v2/Users/{uid}"),
        &idp,
        Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": false}}]
        })),
    )
    .await;
    assert_eq!(
        (status, user["active"].as_bool()),
        (200, Some(false)),
        "{user}"
    );
    let v = explain_token(addr, &t.admin, "alice-phone-doh-token-1").await;
    assert_eq!(v["decision"]["action"], "refused", "{v}");
    let (_, phone) = get(addr, "/api/v1/devices/alice-phone", Some(&t.admin)).await;
    assert_eq!(phone["revoked"], true, "{phone}");
    let (_, shown) = get(addr, "/api/v1/users/alice@example.com", Some(&t.admin)).await;
    assert_eq!(shown["active"], false, "{shown}");
    // Every SCIM write is in the audit log, chained as the others.
    let audit = std::fs::read_to_string(g.dir.path().join("audit.jsonl")).unwrap();
    let actions: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["token"] == "idp")
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["result"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "scim.users.create ok",
            // The same userName again: 409, audited as denied.
            "scim.users.create denied",
            "scim.groups.create ok",
            "scim.groups.update ok",
            "scim.users.update ok"
        ]
    );
}

#[tokio::test]
async fn entra_id_provisions_patches_with_its_quirks_and_deletes() {
    let (_g, addr, idp, t) = gate().await;
    let (status, user) = scim(
        addr,
        "POST",
        "/scim/v2/Users",
        &idp,
        Some(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": "bob-object-id",
            "userName": "bob@contoso.test",
            "active": true,
            "emails": [{"primary": true, "type": "work", "value": "bob@contoso.test"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "Bob Smith", "familyName": "Smith", "givenName": "Bob"},
            "roles": []
        })),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let uid = user["id"].as_str().unwrap().to_owned();
    // A group with an externalId: that is its id in the directory (identity.groups.id).
    let (status, group) = scim(
        addr,
        "POST",
        "/scim/v2/Groups",
        &idp,
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "externalId": "entra-kids", "displayName": "kids",
                    "meta": {"resourceType": "Group"}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let gid = group["id"].as_str().unwrap().to_owned();
    // Entra ID's capitalised ops, `$ref: null` members, attribute paths with filters.
    let patch = |ops: Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
    let (status, _) = scim(
        addr,
        "PATCH",
        &format!("/scim/v2/Groups/{gid}"),
        &idp,
        Some(patch(
            json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": uid}]}]),
        )),
    )
    .await;
    assert_eq!(status, 200);
    let (_, shown) = get(addr, "/api/v1/users/bob@contoso.test", Some(&t.admin)).await;
    assert_eq!(shown["groups"], json!(["entra-kids"]), "{shown}");
    assert_eq!(shown["name"], "Bob Smith");
    // Entra ID's membership check and its group lookup by name.
    let (_, found) = scim(
        addr,
        "GET",
        &format!("/scim/v2/Groups?filter=id%20eq%20%22{gid}%22%20and%20members%20eq%20%22{uid}%22&excludedAttributes=members"),
        &idp,
        None,
    )
    .await;
    assert_eq!(found["totalResults"], 1, "{found}");
    let (_, found) = scim(
        addr,
        "GET",
        "/scim/v2/Groups?filter=displayName%20eq%20%22kids%22",
        &idp,
        None,
    )
    .await;
    assert_eq!(found["Resources"][0]["externalId"], "entra-kids");
    let (status, user) = scim(
        addr,
        "PATCH",
        &format!("/scim/v2/Users/{uid}"),
        &idp,
        Some(patch(json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "bob.smith@contoso.test"},
            {"op": "Replace", "path": "displayName", "value": "Robert Smith"}
        ]))),
    )
    .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["emails"][0]["value"], "bob.smith@contoso.test");
    // Removed from the group through a filtered path.
    let (status, group) = scim(
        addr,
        "PATCH",
        &format!("/scim/v2/Groups/{gid}"),
        &idp,
        Some(patch(
            json!([{"op": "Remove", "path": format!("members[value eq \"{uid}\"]")}]),
        )),
    )
    .await;
    assert_eq!((status, group["members"].clone()), (200, json!([])));
    // A device of Bob's, then Entra ID's soft delete: `"active": "False"` as a string.
    let (status, _) = post_json(
        addr,
        "/api/v1/devices",
        &t.admin,
        json!({"id": "bob-laptop", "user": "bob@contoso.test", "doh_token": "bob-laptop-doh-token-22"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, user) = scim(
        addr,
        "PATCH",
        &format!("/scim/v2/Users/{uid}"),
        &idp,
        Some(patch(
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )),
    )
    .await;
    assert_eq!(
        (status, user["active"].as_bool()),
        (200, Some(false)),
        "{user}"
    );
    let v = explain_token(addr, &t.admin, "bob-laptop-doh-token-22").await;
    assert_eq!(v["decision"]["action"], "refused", "{v}");
    // Then the hard delete: 204, then 404; the device still loads (its user a tombstone).
    assert_eq!(
        scim(addr, "DELETE", &format!("/scim/v2/Users/{uid}"), &idp, None)
            .await
            .0,
        204
    );
    let (status, e) = scim(addr, "GET", &format!("/scim/v2/Users/{uid}"), &idp, None).await;
    assert_eq!((status, e["status"].as_str()), (404, Some("404")));
    let (status, laptop) = get(addr, "/api/v1/devices/bob-laptop", Some(&t.admin)).await;
    assert_eq!(
        (status, laptop["revoked"].as_bool()),
        (200, Some(true)),
        "{laptop}"
    );
    // The name may be provisioned again.
    let (status, _) = scim(
        addr,
        "POST",
        "/scim/v2/Users",
        &idp,
        Some(json!({"userName": "bob@contoso.test", "active": true})),
    )
    .await;
    assert_eq!(status, 201);
    // A group deleted; users keep going.
    assert_eq!(
        scim(
            addr,
            "DELETE",
            &format!("/scim/v2/Groups/{gid}"),
            &idp,
            None
        )
        .await
        .0,
        204
    );
}

#[tokio::test]
async fn scim_needs_its_permission_and_respects_the_files() {
    let (_g, addr, idp, t) = gate().await;
    // No token: 401 with the SCIM error body; a token without dnsgate.scim.*: 403.
    let r = client()
        .get(format!("http://{addr}/scim/v2/Users"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let (status, e) = scim(addr, "GET", "/scim/v2/Users", &t.ads_only, None).await;
    assert_eq!((status, e["status"].as_str()), (403, Some("403")));
    // A user of the identities file cannot be provisioned over (409 uniqueness), nor is
    // a non-e-mail userName taken (400 invalidValue).
    let (status, e) = scim(
        addr,
        "POST",
        "/scim/v2/Users",
        &idp,
        Some(json!({"userName": "kid@example.com"})),
    )
    .await;
    assert_eq!((status, e["scimType"].as_str()), (409, Some("uniqueness")));
    let (status, e) = scim(
        addr,
        "POST",
        "/scim/v2/Users",
        &idp,
        Some(json!({"userName": "not-an-email"})),
    )
    .await;
    assert_eq!(
        (status, e["scimType"].as_str()),
        (400, Some("invalidValue"))
    );
    // SCIM's users are read-only through the rest of the API.
    let (status, made) = scim(
        addr,
        "POST",
        "/scim/v2/Users",
        &idp,
        Some(json!({"userName": "carol@example.com"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(
        crate::api::delete(addr, "/api/v1/users/carol@example.com", &t.admin).await,
        409
    );
    let (status, spc) = scim(addr, "GET", "/scim/v2/ServiceProviderConfig", &idp, None).await;
    assert_eq!(
        (status, spc["patch"]["supported"].as_bool()),
        (200, Some(true))
    );
}
