//! The OpenAPI 3 document of the API, served at `/api/v1/openapi.json` without a token (it
//! holds nothing secret, and clients and test tools read it first).

use axum::Json;
use serde_json::{Value, json};

/// The kinds of objects served, with the key each is named by.
const OBJECTS: [(&str, &str); 7] = [
    ("policies", "name"),
    ("lists", "name"),
    ("categories", "id"),
    ("users", "email"),
    ("groups", "id"),
    ("devices", "id"),
    ("locations", "name"),
];

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// `GET /api/v1/openapi.json`.
pub(super) async fn document() -> Json<Value> {
    Json(build())
}

fn build() -> Value {
    let mut paths = serde_json::Map::new();
    let common = |ok: Value| {
        json!({
            "200": ok,
            "401": error_response("no valid bearer token (`rate_limited` after too many failures from one address)"),
            "404": error_response("no such object, or one the token may not read")
        })
    };
    let object_body = json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Object"}}}});
    for (kind, key) in OBJECTS {
        let mut create = common(json!({"description": "unused"}));
        if let Some(o) = create.as_object_mut() {
            o.remove("200");
        }
        create["201"] = json!({
            "description": "the object as it now is",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Object"}}}
        });
        create["400"] = error_response(
            "invalid (the `check` messages of a change that does not load) or forbidden_key (path, url, secret_file, external, upstreams)",
        );
        create["403"] = error_response("a creation outside the token's scope");
        create["409"] = error_response("conflict: an object of that key exists");
        create["503"] = error_response("the audit log or the API's state cannot be written");
        paths.insert(
            format!("/api/v1/{kind}"),
            json!({
                "get": {
                    "summary": format!("The {kind} the token may read"),
                    "operationId": format!("list_{kind}"),
                    "security": [{"bearer": []}],
                    "responses": common(json!({
                        "description": format!("the {kind}"),
                        "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Object"}}}}
                    }))
                },
                "post": {
                    "summary": format!("Make one of the {kind} (kept under state_dir, validated as a reload)"),
                    "operationId": format!("create_{kind}"),
                    "security": [{"bearer": []}],
                    "requestBody": object_body,
                    "responses": create
                }
            }),
        );
        let mut delete = common(json!({"description": "unused"}));
        if let Some(o) = delete.as_object_mut() {
            o.remove("200");
        }
        delete["204"] = json!({"description": "deleted"});
        delete["400"] = error_response(
            "invalid: the configuration would not load without it (it is still used)",
        );
        delete["403"] = error_response("the token may read it but not delete it");
        delete["409"] = error_response("read_only: an object of the configuration files");
        delete["503"] = error_response("the audit log or the API's state cannot be written");
        let mut put = common(json!({
            "description": "the object as it now is",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Object"}}}
        }));
        put["400"] = error_response("not a JSON object, or a change that does not load");
        put["403"] = error_response("the token may read it but not change it");
        put["409"] = error_response(
            "read_only: a file object, of which only a policy's `enabled` may change",
        );
        put["400"] = error_response(
            "invalid (not a JSON object, a changed key, or a change that does not load) or forbidden_key",
        );
        put["503"] = error_response("the audit log or the overlays cannot be written");
        paths.insert(
            format!("/api/v1/{kind}/{{{key}}}"),
            json!({
                "parameters": [{"name": key, "in": "path", "required": true, "schema": {"type": "string"}}],
                "get": {
                    "summary": format!("One of the {kind}, by {key}"),
                    "operationId": format!("get_{kind}"),
                    "security": [{"bearer": []}],
                    "responses": common(json!({
                        "description": "the object",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Object"}}}
                    }))
                },
                "put": {
                    "summary": format!("Change one of the {kind} (of a file policy, only `enabled`)"),
                    "operationId": format!("put_{kind}"),
                    "security": [{"bearer": []}],
                    "requestBody": object_body,
                    "responses": put
                },
                "delete": {
                    "summary": format!("Delete one of the {kind} made through the API"),
                    "operationId": format!("delete_{kind}"),
                    "security": [{"bearer": []}],
                    "responses": delete
                }
            }),
        );
    }
    let mut entries = common(json!({
        "description": "the list as it now is",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Object"}}}
    }));
    entries["400"] = error_response("not `{add, remove}`, or entries that do not load");
    entries["403"] = error_response("the token may read the list but not change it");
    entries["409"] = error_response("read_only: a list that reads a file or a URL");
    entries["503"] = error_response("the audit log or the API's state cannot be written");
    paths.insert(
        "/api/v1/lists/{name}/entries".into(),
        json!({"post": {
            "summary": "Add and remove entries of a list made through the API (permission dnsgate.lists.update)",
            "operationId": "list_entries",
            "security": [{"bearer": []}],
            "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": false,
                "properties": {
                    "add": {"type": "array", "items": {"type": "string"}},
                    "remove": {"type": "array", "items": {"type": "string"}}
                }
            }}}},
            "responses": entries
        }}),
    );
    let write = |summary: &str, id: &str, result: Value| {
        let mut responses = common(json!({
            "description": "done",
            "content": {"application/json": {"schema": result}}
        }));
        responses["403"] = error_response("the token may not do this");
        responses["503"] = error_response("the audit log cannot be written");
        json!({"post": {
            "summary": summary, "operationId": id, "security": [{"bearer": []}],
            "responses": responses
        }})
    };
    paths.insert(
        "/api/v1/cache/flush".into(),
        write(
            "Forget every cached answer (permission dnsgate.cache.flush)",
            "flush_cache",
            json!({"type": "object", "properties": {"flushed": {"type": "boolean"}}, "required": ["flushed"]}),
        ),
    );
    let mut reload = write(
        "Reload the configuration files, as SIGHUP does (permission dnsgate.config.update)",
        "reload",
        json!({"type": "object", "properties": {"reloaded": {"type": "boolean"}, "generation": {"type": "integer"}}, "required": ["reloaded"]}),
    );
    reload["post"]["responses"]["400"] =
        error_response("the configuration does not load; the running one keeps serving");
    paths.insert("/api/v1/reload".into(), reload);
    let token_schema = json!({"$ref": "#/components/schemas/Object"});
    let mut create = common(json!({"description": "unused"}));
    if let Some(o) = create.as_object_mut() {
        o.remove("200");
    }
    create["201"] = json!({
        "description": "the token, with its `secret` (shown this once)",
        "content": {"application/json": {"schema": token_schema}}
    });
    create["400"] = error_response("not a token: a bad name, permission, resource or date");
    create["403"] = error_response("beyond the creating token's own rights");
    create["409"] = error_response("a token of that name exists");
    create["503"] = error_response("the audit log or the tokens cannot be written");
    let mut list = common(json!({
        "description": "the tokens the caller may read (hashes never shown)",
        "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Object"}}}}
    }));
    list["404"] = error_response("unused");
    paths.insert(
        "/api/v1/tokens".into(),
        json!({
            "get": {"summary": "The tokens the caller may read", "operationId": "list_tokens",
                    "security": [{"bearer": []}], "responses": list},
            "post": {
                "summary": "Make a token within the caller's own rights (permission dnsgate.tokens.create)",
                "operationId": "create_token",
                "security": [{"bearer": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["name"], "additionalProperties": false,
                    "properties": {
                        "name": {"type": "string"},
                        "expires": {"type": "string"},
                        "policies": {"type": "array", "items": {
                            "type": "object", "additionalProperties": false,
                            "required": ["effect", "permissions", "resources"],
                            "properties": {
                                "effect": {"type": "string", "enum": ["allow", "deny"]},
                                "permissions": {"type": "array", "items": {"type": "string"}},
                                "resources": {"type": "array", "items": {"type": "string"}}
                            }
                        }}
                    }
                }}}},
                "responses": create
            }
        }),
    );
    let mut delete = common(json!({"description": "unused"}));
    if let Some(o) = delete.as_object_mut() {
        o.remove("200");
    }
    delete["204"] = json!({"description": "deleted"});
    delete["403"] = error_response("the token may not delete it");
    delete["409"] = error_response("read_only: a token of the tokens file");
    delete["503"] = error_response("the audit log or the tokens cannot be written");
    paths.insert(
        "/api/v1/tokens/{name}".into(),
        json!({
            "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
            "get": {"summary": "One token, by name", "operationId": "get_token",
                    "security": [{"bearer": []}],
                    "responses": common(json!({"description": "the token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Object"}}}}))},
            "delete": {"summary": "End a token made through the API (permission dnsgate.tokens.delete)",
                       "operationId": "delete_token", "security": [{"bearer": []}], "responses": delete}
        }),
    );
    for (action, id, summary, permission) in [
        (
            "revoke",
            "revoke_device",
            "Stop a device's DoH token and DoT labels at once",
            "dnsgate.devices.revoke",
        ),
        (
            "token",
            "new_device_token",
            "Issue a device a new DoH token, shown in this answer only",
            "dnsgate.devices.update",
        ),
    ] {
        let mut op = write(
            &format!("{summary} (permission {permission})"),
            id,
            json!({"$ref": "#/components/schemas/Object"}),
        );
        op["post"]["parameters"] =
            json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
        paths.insert(format!("/api/v1/devices/{{id}}/{action}"), op);
    }
    let mut explain = common(json!({
        "description": "the explanation, as `dnsgate explain --json` prints it",
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["query", "policies", "decision"],
            "properties": {
                "query": {"type": "object"}, "policies": {"type": "array", "items": {"type": "object"}},
                "resolved_ips": {"type": "array", "nullable": true, "items": {"type": "string"}},
                "note": {"type": "string", "nullable": true}, "decision": {"type": "object"}
            }
        }}}
    }));
    explain["400"] = error_response("not a query: a bad name, type or time");
    explain["403"] = error_response("the token may not explain (dnsgate.explain.read)");
    paths.insert(
        "/api/v1/explain".into(),
        json!({"post": {
            "summary": "Why a query gets its answer: the policies considered and the decision",
            "operationId": "explain",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": false,
                "not": {"required": ["device", "token"]},
                "properties": {
                    "name": {
                        "type": "string", "maxLength": 253,
                        "description": "a DNS name (a trailing dot is optional; empty or `.` is the root)",
                        "pattern": "^(([A-Za-z0-9]([A-Za-z0-9]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z0-9]([A-Za-z0-9]{0,61}[A-Za-z0-9])?\\.?|\\.?)$"
                    },
                    "type": {"type": "string", "nullable": true, "enum": ["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "PTR", "SRV", "CAA", "HTTPS", "SVCB", "ANY", null]},
                    "client": {"nullable": true, "anyOf": [
                        {"type": "string", "format": "ipv4"},
                        {"type": "string", "format": "ipv6"}
                    ]},
                    "device": {"type": "string", "nullable": true, "description": "a device id of the identities file (404 if none); not with token"},
                    "token": {"type": "string", "nullable": true, "description": "a DoH token; not with device"},
                    "resolved": {"type": "array", "items": {"$ref": "#/components/schemas/Ip"}},
                    "time": {"type": "string", "nullable": true, "format": "date-time"}
                }
            }}}},
            "responses": explain
        }}),
    );
    paths.insert("/api/v1/querylog".into(), querylog(common));
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "dnsgate admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Objects of the configuration in service, cache flush and reload; every write attempt is audited."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Ip": {"anyOf": [
                    {"type": "string", "format": "ipv4"},
                    {"type": "string", "format": "ipv6"}
                ]},
                "QueryRow": query_row(),
                "Object": {
                    "type": "object",
                    "description": "An object with the keys of its TOML form; `source` is `file` for objects of the configuration files; secrets are shown only as `doh_token_set`.",
                    "properties": {"source": {"type": "string", "enum": ["file", "api", "scim"]}},
                    "additionalProperties": true
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["code", "message", "details"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "details": {"type": "array", "items": {
                                "type": "object",
                                "properties": {
                                    "path": {"type": "string"}, "line": {"type": "integer"},
                                    "col": {"type": "integer"}, "message": {"type": "string"}
                                }
                            }}
                        }
                    }}
                }
            }
        }
    })
}

/// `GET /api/v1/querylog`.
fn querylog(common: impl Fn(Value) -> Value) -> Value {
    let mut responses = common(json!({
        "description": "the rows, newest first",
        "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/QueryRow"}}}}
    }));
    if let Some(o) = responses.as_object_mut() {
        o.remove("404");
    }
    responses["400"] = error_response("invalid: an unknown or repeated parameter, or a bad value");
    responses["403"] =
        error_response("the token may not read the query log (dnsgate.querylog.read)");
    responses["503"] = error_response(
        "unavailable: no query store ([querylog] store = \"none\", or it could not be opened)",
    );
    let text = |name: &str, description: &str| {
        json!({"name": name, "in": "query", "required": false, "description": description,
               "schema": {"type": "string", "minLength": 1}})
    };
    let time = |name: &str, description: &str| {
        json!({"name": name, "in": "query", "required": false, "description": description,
               "schema": {"type": "string", "format": "date-time"}})
    };
    let actions: Vec<&str> = crate::label::QueryAction::ALL
        .iter()
        .map(|a| a.as_str())
        .collect();
    json!({"get": {
        "summary": "Search the query store, newest first (permission dnsgate.querylog.read)",
        "operationId": "search_querylog",
        "security": [{"bearer": []}],
        "parameters": [
            {"name": "client", "in": "query", "required": false, "description": "the client address",
             "schema": {"$ref": "#/components/schemas/Ip"}},
            text("device", "a device id"),
            text("user", "a user's e-mail address"),
            {"name": "name", "in": "query", "required": false,
             "description": "a domain: the name and every name below it (`example.com` also selects `www.example.com`)",
             "schema": {"type": "string", "maxLength": 253,
                        "pattern": "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.?$"}},
            {"name": "action", "in": "query", "required": false, "schema": {"type": "string", "enum": actions}},
            time("since", "rows at or after this time (RFC 3339 with an offset)"),
            time("until", "rows before this time (RFC 3339 with an offset)"),
            {"name": "limit", "in": "query", "required": false,
             "schema": {"type": "integer", "minimum": 1, "maximum": crate::querylog::store::MAX_LIMIT, "default": 100}}
        ],
        "responses": responses
    }})
}

/// One row of the query store: the fields of a JSON-lines query-log line.
fn query_row() -> Value {
    let text = json!({"type": "string"});
    let maybe = json!({"type": "string", "nullable": true});
    json!({
        "type": "object",
        "required": ["time", "client", "device", "user", "name", "type", "action", "policy", "phase", "rcode", "latency_ms", "cached"],
        "properties": {
            "time": {"type": "string", "format": "date-time"},
            "client": text, "device": maybe, "user": maybe, "name": text, "type": maybe,
            "action": text, "policy": maybe, "phase": maybe, "cname": text, "rcode": text,
            "latency_ms": {"type": "number"}, "cached": {"type": "boolean"}
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_path_has_an_operation_and_every_operation_its_responses() {
        let doc = super::build();
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), 23);
        for (path, item) in paths {
            for (_, op) in item
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k != "parameters")
            {
                assert!(op["operationId"].is_string(), "{path}");
                let r = &op["responses"];
                assert!(
                    r["200"].is_object() || r["201"].is_object() || r["204"].is_object(),
                    "{path}"
                );
                assert!(op["responses"]["401"].is_object(), "{path}");
            }
        }
    }
}
