//! The objects the API shows and changes: policies, lists (and their entries), categories,
//! users, groups, devices and locations (SPEC §12).
//!
//! Objects come from the configuration files (`"source": "file"`, read-only but for the
//! overlays) or were made through the API (`"source": "api"`). These are kept under
//! `state_dir` in the shape of the files themselves: lists, categories and policies in
//! `api/config.toml` (an included file, loaded after the others), users, groups, devices
//! and locations in `api/identities.toml` (loaded with the identities file). A write edits
//! that file, reloads through the one runtime swap (so it is validated exactly as a
//! reload), and puts the old file back if the reload refuses it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{ApiError, App, authenticate, invalid, may_read, refuse, singular};
use crate::access::{Target, Token};
use crate::runtime::{Origin, Runtime};

/// One object: its key (name, email or id), the identity group it is scoped to, where it
/// comes from, and its JSON.
pub(super) struct Object {
    pub(super) key: String,
    pub(super) group: Option<String>,
    pub(super) origin: Origin,
    pub(super) value: Value,
}

/// The key of each kind, as its JSON names it.
fn key_field(kind: &str) -> &'static str {
    match kind {
        "users" => "email",
        "categories" | "groups" | "devices" => "id",
        _ => "name",
    }
}

/// Keys only configuration files may set (SPEC §12): they name files, URLs, secrets and
/// servers of the machine.
const FILE_ONLY: [&str; 5] = ["path", "url", "secret_file", "external", "upstreams"];

/// What the API adds to an object when it shows it: never taken from a body.
const SHOWN_ONLY: [&str; 6] = [
    "source",
    "entry_count",
    "doh_token_set",
    "revoked",
    "last_seen",
    "hash_set",
];

/// The kinds kept in the identities file's shape.
fn is_identity(kind: &str) -> bool {
    matches!(kind, "users" | "groups" | "devices" | "locations")
}

/// The objects of `kind` in the configuration in service; `None` for an unknown kind.
pub(super) fn objects(rt: &Runtime, kind: &str) -> Option<Vec<Object>> {
    let shown = |mut v: Value, origin: Origin| {
        if let Some(o) = v.as_object_mut() {
            o.retain(|_, v| !v.is_null());
            o.insert("source".into(), json!(origin.as_str()));
        }
        v
    };
    let cfg = &rt.config;
    let origin = |file: usize| {
        if Some(file) == cfg.api_file {
            Origin::Api
        } else {
            Origin::File
        }
    };
    Some(match kind {
        "policies" => cfg
            .policies
            .iter()
            .map(|p| {
                let name = p.item.get_ref().name.get_ref().clone();
                let origin = origin(p.file);
                let mut v = shown(
                    serde_json::to_value(p.item.get_ref()).unwrap_or_default(),
                    origin,
                );
                if let Some(e) = rt.overlays.policies.get(&name).and_then(|o| o.enabled) {
                    v["enabled"] = json!(e);
                }
                Object {
                    key: name,
                    group: p.item.get_ref().group.as_ref().map(|g| g.get_ref().clone()),
                    origin,
                    value: v,
                }
            })
            .collect(),
        "lists" => cfg
            .lists
            .iter()
            .map(|l| {
                let list = l.item.get_ref();
                let name = list.name.get_ref().clone();
                let origin = origin(l.file);
                let mut v = shown(serde_json::to_value(list).unwrap_or_default(), origin);
                if let Some(info) = rt.list_info.iter().find(|i| i.name == name) {
                    v["entry_count"] = json!(info.entries);
                }
                Object {
                    group: list.group.as_ref().map(|g| g.get_ref().clone()),
                    key: name,
                    origin,
                    value: v,
                }
            })
            .collect(),
        "categories" => cfg
            .categories
            .iter()
            .map(|c| {
                let origin = origin(c.file);
                Object {
                    group: None,
                    key: c.item.get_ref().id.to_string(),
                    origin,
                    value: shown(
                        serde_json::to_value(c.item.get_ref()).unwrap_or_default(),
                        origin,
                    ),
                }
            })
            .collect(),
        "users" | "groups" | "devices" | "locations" => {
            let key = key_field(kind);
            rt.identity_files
                .iter()
                .flat_map(|(origin, table)| {
                    table
                        .get(kind)
                        .and_then(|s| s.as_array())
                        .into_iter()
                        .flatten()
                        .map(move |entry| (*origin, entry))
                })
                .filter_map(|(origin, entry)| {
                    let mut v = serde_json::to_value(entry).ok()?;
                    let o = v.as_object_mut()?;
                    // Secrets are write-only.
                    let token_set =
                        o.remove("doh_token").is_some() | o.remove("doh_token_sha256").is_some();
                    if kind == "devices" || kind == "locations" {
                        o.insert("doh_token_set".into(), json!(token_set));
                    }
                    let k = o.get(key)?.as_str()?.to_owned();
                    let group = o.get("group").and_then(Value::as_str).map(str::to_owned);
                    if kind == "devices" {
                        let overlay = rt.overlays.devices.get(&k);
                        let revoked = overlay.is_some_and(|d| d.revoked);
                        let issued = overlay.is_some_and(|d| d.doh_token_sha256.is_some());
                        o.insert(
                            "doh_token_set".into(),
                            json!((token_set || issued) && !revoked),
                        );
                        o.insert("revoked".into(), json!(revoked));
                        let seen = rt
                            .directory
                            .identity_for_device(&k)
                            .and_then(|i| i.last_seen.get())
                            .and_then(|s| jiff::Timestamp::from_second(i64::try_from(s).ok()?).ok())
                            .map(|t| t.to_string());
                        o.insert("last_seen".into(), json!(seen));
                    }
                    Some(Object {
                        group: if kind == "devices" { group } else { None },
                        key: k,
                        origin,
                        value: shown(v, origin),
                    })
                })
                .collect()
        }
        "tokens" => rt
            .tokens
            .iter()
            .map(|t| {
                let mut v = serde_json::to_value(t).unwrap_or_default();
                let made = rt.api_tokens.contains(&t.name);
                if let Some(o) = v.as_object_mut() {
                    // Write-only, as every secret.
                    o.remove("hash");
                    o.insert("hash_set".into(), json!(true));
                    o.insert("source".into(), json!(if made { "api" } else { "file" }));
                }
                Object {
                    group: None,
                    key: t.name.clone(),
                    origin: if made { Origin::Api } else { Origin::File },
                    value: v,
                }
            })
            .collect(),
        _ => return None,
    })
}

/// Whether object `o` of `kind` is the one `key` names (users by e-mail, any case).
pub(super) fn is_key(kind: &str, o: &Object, key: &str) -> bool {
    if kind == "users" {
        o.key.eq_ignore_ascii_case(key)
    } else {
        o.key == key
    }
}

/// The object `key` of `kind` if the token may read it, else 404 (as if absent).
pub(super) fn readable(
    rt: &Runtime,
    token: &Token,
    kind: &str,
    key: &str,
) -> Result<Object, ApiError> {
    present(rt, token, kind, key, "read")
}

/// 409 `read_only` for an object of the files or of SCIM.
fn read_only(key: &str, origin: Origin) -> ApiError {
    let why = match origin {
        Origin::Scim => "is provisioned by the identity provider (SCIM): change it there",
        _ => "comes from a configuration file: change it there",
    };
    ApiError::new(StatusCode::CONFLICT, "read_only", format!("`{key}` {why}"))
}

/// The kinds made through these routes (tokens have their own).
fn writable(kind: &str) -> Result<(), ApiError> {
    match kind {
        "policies" | "lists" | "categories" | "users" | "groups" | "devices" | "locations" => {
            Ok(())
        }
        _ => Err(ApiError::not_found()),
    }
}

/// A request body as an entry of the state file: a JSON object with no key only files
/// may set, without what the API adds when showing, secrets kept as digests.
fn entry_from(kind: &str, body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("bad request body: {e}")))?;
    let Value::Object(mut o) = v else {
        return Err(invalid("the body must be a JSON object"));
    };
    // Present when it says something: an object as shown (`"upstreams": []`) goes back.
    let says = |v: &Value| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty());
    if let Some(k) = FILE_ONLY.iter().find(|k| o.get(**k).is_some_and(says)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "forbidden_key",
            format!("`{k}` may be set only in the configuration files"),
        ));
    }
    o.retain(|k, v| !v.is_null() && !SHOWN_ONLY.contains(&k.as_str()));
    if matches!(kind, "devices" | "locations")
        && let Some(t) = o.remove("doh_token")
    {
        let Some(t) = t.as_str().filter(|t| !t.is_empty()) else {
            return Err(invalid("`doh_token` must be a non-empty string"));
        };
        o.insert(
            "doh_token_sha256".into(),
            json!(crate::identity::token_digest(t)),
        );
    }
    Ok(o)
}

/// The identity group of an entry (a policy's, list's or device's `group`).
fn group_of(kind: &str, entry: &serde_json::Map<String, Value>) -> Option<String> {
    matches!(kind, "policies" | "lists" | "devices")
        .then(|| entry.get("group")?.as_str().map(str::to_owned))
        .flatten()
}

/// What changes, for the one write path.
enum Change {
    Create(serde_json::Map<String, Value>),
    Replace(serde_json::Map<String, Value>),
    Delete,
}

/// `POST /api/v1/{kind}`: a new object; 409 if one of that key exists.
pub(super) async fn create(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let _one = app.writes.lock().await;
    let rt = app.shared.live.load_full();
    let token = authenticate(&app, &rt, &headers, peer.ip())?;
    writable(&kind)?;
    let action = format!("{kind}.create");
    let mut object = None;
    let result = async {
        let entry = entry_from(&kind, &body)?;
        let field = key_field(&kind);
        let key = match entry.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            Some(Value::Number(n)) if kind == "categories" => n.to_string(),
            _ => return Err(invalid(format!("`{field}` is required"))),
        };
        object = Some(format!("{}:{key}", singular(&kind)));
        let change = Change::Create(entry);
        write(&app, &rt, token, peer.ip(), &kind, &key, change).await
    }
    .await;
    let shown = result.map_err(|e| {
        super::audit_refusal(&app, token, peer.ip(), (&action, object.as_deref()), e)
    })?;
    Ok((StatusCode::CREATED, Json(shown)))
}

/// The object `key` of `kind` for a `verb` write: present to the token if it may read it
/// or do that to it (a CI token allowed only `dnsgate.lists.update` on `list:ads`
/// updates it); else 404, as if absent.
fn present(
    rt: &Runtime,
    token: &Token,
    kind: &str,
    key: &str,
    verb: &str,
) -> Result<Object, ApiError> {
    objects(rt, kind)
        .ok_or_else(ApiError::not_found)?
        .into_iter()
        .find(|o| is_key(kind, o, key))
        .filter(|o| {
            let target = Target {
                kind: singular(kind),
                name: &o.key,
                group: o.group.as_deref(),
            };
            may_read(token, kind, &o.key, o.group.as_deref()) || token.may(kind, verb, &target)
        })
        .ok_or_else(ApiError::not_found)
}

/// `PUT /api/v1/{kind}/{key}`: replaces an object made through the API; of a file object
/// only the overlays may change.
pub(super) async fn replace(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((kind, key)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let _one = app.writes.lock().await;
    let rt = app.shared.live.load_full();
    let token = authenticate(&app, &rt, &headers, peer.ip())?;
    writable(&kind)?;
    let action = format!("{kind}.update");
    let object = format!("{}:{key}", singular(&kind));
    replace_object(&app, &rt, token, peer.ip(), &kind, &key, &body)
        .await
        .map_err(|e| super::audit_refusal(&app, token, peer.ip(), (&action, Some(&object)), e))
}

async fn replace_object(
    app: &App,
    rt: &Runtime,
    token: &Token,
    peer: IpAddr,
    kind: &str,
    key: &str,
    body: &[u8],
) -> Result<Json<Value>, ApiError> {
    let current = present(rt, token, kind, key, "update")?;
    if current.origin == Origin::Scim {
        return Err(read_only(&current.key, current.origin));
    }
    if current.origin == Origin::File {
        return super::put_file_object(app, token, peer, kind, current, body).await;
    }
    let mut entry = entry_from(kind, body)?;
    let field = key_field(kind);
    match entry.get(field) {
        None => {
            let k = current
                .value
                .get(field)
                .cloned()
                .unwrap_or(json!(current.key));
            entry.insert(field.into(), k);
        }
        Some(k) if k == current.value.get(field).unwrap_or(&Value::Null) => {}
        Some(_) => {
            return Err(invalid(format!(
                "`{field}` names the object: it cannot change"
            )));
        }
    }
    let shown = write(
        app,
        rt,
        token,
        peer,
        kind,
        &current.key,
        Change::Replace(entry),
    )
    .await?;
    Ok(Json(shown))
}

/// `DELETE /api/v1/{kind}/{key}`: an object made through the API ends; a file object is
/// 409 `read_only`.
pub(super) async fn delete(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((kind, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let _one = app.writes.lock().await;
    let rt = app.shared.live.load_full();
    let token = authenticate(&app, &rt, &headers, peer.ip())?;
    writable(&kind)?;
    let action = format!("{kind}.delete");
    let object = format!("{}:{key}", singular(&kind));
    let result = async {
        let current = present(&rt, token, &kind, &key, "delete")?;
        write(
            &app,
            &rt,
            token,
            peer.ip(),
            &kind,
            &current.key,
            Change::Delete,
        )
        .await
    }
    .await;
    result
        .map_err(|e| super::audit_refusal(&app, token, peer.ip(), (&action, Some(&object)), e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/lists/{name}/entries`: `{"add": [...], "remove": [...]}` on a list made
/// through the API.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesInput {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

pub(super) async fn entries(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let _one = app.writes.lock().await;
    let rt = app.shared.live.load_full();
    let token = authenticate(&app, &rt, &headers, peer.ip())?;
    let object = format!("list:{name}");
    entries_change(&app, &rt, token, peer.ip(), &name, &body)
        .await
        .map_err(|e| {
            super::audit_refusal(&app, token, peer.ip(), ("lists.update", Some(&object)), e)
        })
}

async fn entries_change(
    app: &App,
    rt: &Runtime,
    token: &Token,
    peer: IpAddr,
    name: &str,
    body: &[u8],
) -> Result<Json<Value>, ApiError> {
    let current = present(rt, token, "lists", name, "update")?;
    let input: EntriesInput =
        serde_json::from_slice(body).map_err(|e| invalid(format!("bad request body: {e}")))?;
    let Some(old) = current.value.get("entries").and_then(Value::as_array) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "read_only",
            format!("list `{name}` reads a file or a URL: change it there"),
        ));
    };
    let mut kept: Vec<String> = old
        .iter()
        .filter_map(Value::as_str)
        .filter(|e| !input.remove.iter().any(|r| r == e))
        .map(str::to_owned)
        .collect();
    for a in input.add {
        if !kept.contains(&a) {
            kept.push(a);
        }
    }
    let mut entry = current.value.as_object().cloned().unwrap_or_default();
    entry.retain(|k, _| !SHOWN_ONLY.contains(&k.as_str()));
    entry.insert("entries".into(), json!(kept));
    let shown = write(
        app,
        rt,
        token,
        peer,
        "lists",
        &current.key,
        Change::Replace(entry),
    )
    .await?;
    Ok(Json(shown))
}

/// The one write path: permission before and after, 409 for a key taken or a file object,
/// then the state file edited, reloaded (validated as any reload) and audited before the
/// swap; the old file is put back if the reload refuses it. Answers the object as it is
/// now shown (absent after a delete).
async fn write(
    app: &App,
    rt: &Runtime,
    token: &Token,
    peer: IpAddr,
    kind: &str,
    key: &str,
    change: Change,
) -> Result<Value, ApiError> {
    let all = objects(rt, kind).ok_or_else(ApiError::not_found)?;
    let current = all.into_iter().find(|o| is_key(kind, o, key));
    let (verb, after_group) = match &change {
        Change::Create(e) => ("create", Some(group_of(kind, e))),
        Change::Replace(e) => ("update", Some(group_of(kind, e))),
        Change::Delete => ("delete", None),
    };
    let action = format!("{kind}.{verb}");
    let object = format!("{}:{key}", singular(kind));
    let may = |group: Option<&str>| {
        let target = Target {
            kind: singular(kind),
            name: key,
            group,
        };
        token.may(kind, verb, &target)
    };
    // Permitted on the object both as it is and as it would be.
    let before_ok = current.as_ref().is_none_or(|c| may(c.group.as_deref()));
    let after_ok = after_group.as_ref().is_none_or(|g| may(g.as_deref()));
    if !before_ok || !after_ok {
        return Err(refuse(app, token, peer, &action, Some(&object)));
    }
    // A token confined to a group (it may do this only to the group's objects) must not
    // give a device addresses: a network claimed for a kid's device would make everyone
    // behind it that kid. Its devices are named by their DoH token or DoT name.
    let confined = !may(None);
    let claims = match &change {
        Change::Create(e) | Change::Replace(e) => {
            kind == "devices"
                && e.get("ips")
                    .is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()))
        }
        Change::Delete => false,
    };
    if confined && claims {
        let mut e = refuse(app, token, peer, &action, Some(&object));
        e.message = "a token confined to a group cannot give a device addresses (`ips`): name it by its doh_token or dot_name".into();
        return Err(e);
    }
    match (&change, &current) {
        (Change::Create(_), Some(c)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "{} `{key}` exists (source: {})",
                    singular(kind),
                    c.origin.as_str()
                ),
            ));
        }
        (Change::Replace(_) | Change::Delete, Some(c)) if c.origin != Origin::Api => {
            return Err(read_only(key, c.origin));
        }
        (Change::Replace(_) | Change::Delete, None) => return Err(ApiError::not_found()),
        _ => {}
    }
    let Some(api) = rt.settings.api.as_ref() else {
        return Err(ApiError::unavailable("the API is not configured"));
    };
    let path = if is_identity(kind) {
        api.identities.clone()
    } else {
        api.objects.clone()
    };
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(ApiError::unavailable(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let mut table: toml::Table = match &old {
        Some(t) => toml::from_str(t).map_err(|e| {
            ApiError::unavailable(format!(
                "the API's state {} does not load: {e}",
                path.display()
            ))
        })?,
        None => toml::Table::new(),
    };
    let before = current.as_ref().map(|c| c.value.clone());
    let mut after_entry = None;
    {
        let section = table
            .entry(kind)
            .or_insert_with(|| toml::Value::Array(Vec::new()));
        let Some(items) = section.as_array_mut() else {
            return Err(ApiError::unavailable(format!(
                "the API's state {}: `{kind}` is not an array of tables",
                path.display()
            )));
        };
        let field = key_field(kind);
        let at = items.iter().position(|i| {
            let k = match i.get(field) {
                Some(toml::Value::String(s)) => s.clone(),
                Some(toml::Value::Integer(n)) => n.to_string(),
                _ => return false,
            };
            if kind == "users" {
                k.eq_ignore_ascii_case(key)
            } else {
                k == key
            }
        });
        match change {
            Change::Delete => {
                if let Some(i) = at {
                    items.remove(i);
                }
            }
            Change::Create(mut e) | Change::Replace(mut e) => {
                // A device or location keeps its token unless the body gives a new one.
                if let Some(i) = at
                    && !e.contains_key("doh_token_sha256")
                    && let Some(t) = items[i].get("doh_token_sha256")
                {
                    e.insert("doh_token_sha256".into(), json!(t.as_str()));
                }
                let value = toml::Value::try_from(&e)
                    .map_err(|err| invalid(format!("the object cannot be kept: {err}")))?;
                after_entry = Some(Value::Object(e));
                match at {
                    Some(i) => items[i] = value,
                    None => items.push(value),
                }
            }
        }
    }
    let text =
        toml::to_string(&table).map_err(|e| invalid(format!("the object cannot be kept: {e}")))?;
    let mut after_digest = after_entry.clone();
    if let Some(Value::Object(o)) = &mut after_digest {
        o.remove("doh_token_sha256");
    }
    super::commit(
        app,
        Some(token),
        peer,
        (&action, Some(&object)),
        (before.as_ref(), after_digest.as_ref()),
        vec![(path, Some(text.into_bytes()))],
    )
    .await?;
    let now = app.shared.live.load_full();
    Ok(objects(&now, kind)
        .into_iter()
        .flatten()
        .find(|o| is_key(kind, o, key))
        .map(|o| o.value)
        .unwrap_or(Value::Null))
}
