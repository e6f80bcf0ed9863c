//! SCIM 2.0 (RFC 7643, RFC 7644) for users and groups, as Okta and Entra ID call it
//! (SPEC §12), at `/scim/v2/Users` and `/scim/v2/Groups` with a `dnsgate.scim.*` token.
//!
//! SCIM's own view (ids, external ids, names, e-mails, members) is kept in
//! `api/scim.json`; at each write the users and groups it makes are written to
//! `api/scim.toml` in the identities file's shape and the configuration reloads with them,
//! exactly as an API write does. A user's `userName` is its e-mail (case-insensitive); a
//! group's `displayName` is its `name`, its `externalId` (else its SCIM id) its id.
//!
//! Deprovisioning always succeeds: `active: false` (Okta sends it as a value object, Entra
//! ID as the string `"False"`) or `DELETE` leaves the user in place inactive — its devices
//! keep their ids and lose every other identity field, so nothing that names it breaks —
//! and revokes its devices' DoH tokens and DoT labels. A deleted user is a tombstone: 404
//! to SCIM, and its `userName` may be provisioned again.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{ApiError, App, authenticate};
use crate::access::Token;
use crate::runtime::overlays::Overlays;
use crate::runtime::{Origin, Runtime};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A SCIM answer: `application/scim+json`.
pub(super) struct Scim(StatusCode, Value);

impl IntoResponse for Scim {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(self.1)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/scim+json"),
        );
        r
    }
}

/// A SCIM error (RFC 7644 §3.12).
#[derive(Debug)]
pub(super) struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
    /// Its attempt is in the audit log already.
    audited: bool,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
            audited: false,
        }
    }

    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, None, "no such resource")
    }

    fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidValue"), detail)
    }

    fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, Some("uniqueness"), detail)
    }
}

impl From<ApiError> for ScimError {
    fn from(e: ApiError) -> Self {
        let mut detail = e.message;
        for d in &e.details {
            detail.push_str(&format!(
                "; {}:{}:{}: {}",
                d.path.display(),
                d.line,
                d.col,
                d.message
            ));
        }
        let scim_type = (e.status == StatusCode::BAD_REQUEST).then_some("invalidValue");
        Self {
            status: e.status,
            scim_type,
            detail,
            audited: e.audited,
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        let mut r = Scim(self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

type Result<T> = std::result::Result<T, ScimError>;

/// SCIM's view of what it provisioned (`api/scim.json`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct Provisioned {
    #[serde(default)]
    users: BTreeMap<String, User>,
    #[serde(default)]
    groups: BTreeMap<String, Group>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    /// The resource's attributes as last sent (less `id`, `meta`, `groups`, `schemas`).
    attributes: Map<String, Value>,
    created: String,
    modified: String,
    /// A tombstone: 404 to SCIM, inactive in the directory.
    #[serde(default)]
    deleted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group {
    attributes: Map<String, Value>,
    /// Member user ids.
    members: Vec<String>,
    created: String,
    modified: String,
}

impl User {
    fn user_name(&self) -> &str {
        self.attributes
            .get("userName")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    fn email(&self) -> String {
        self.user_name().trim().to_ascii_lowercase()
    }

    /// `active`, as a boolean or Entra ID's `"True"`/`"False"`; absent is active.
    fn active(&self) -> bool {
        !self.deleted && self.attributes.get("active").is_none_or(truthy)
    }

    fn display_name(&self) -> String {
        if let Some(d) = self.attributes.get("displayName").and_then(Value::as_str) {
            return d.to_owned();
        }
        let name = self.attributes.get("name");
        if let Some(f) = name
            .and_then(|n| n.get("formatted"))
            .and_then(Value::as_str)
        {
            return f.to_owned();
        }
        let part = |k: &str| name.and_then(|n| n.get(k)).and_then(Value::as_str);
        [part("givenName"), part("familyName")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Group {
    fn display_name(&self) -> &str {
        self.attributes
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The directory's group id: `externalId`, else the SCIM id.
    fn directory_id<'a>(&'a self, id: &'a str) -> &'a str {
        self.attributes
            .get("externalId")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
            .unwrap_or(id)
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn new_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric
        .sample_string(&mut rand::rng(), 24)
        .to_ascii_lowercase()
}

/// The state, from `path` (empty if there is none).
fn load(path: &std::path::Path) -> Result<Provisioned> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            ScimError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                format!("SCIM's state {} does not load: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Provisioned::default()),
        Err(e) => Err(ScimError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// The users and groups of `state` in the identities file's shape.
fn directory_toml(state: &Provisioned) -> String {
    let mut groups = Vec::new();
    for (id, g) in &state.groups {
        let mut t = toml::Table::new();
        t.insert("id".into(), g.directory_id(id).into());
        t.insert("name".into(), g.display_name().into());
        groups.push(toml::Value::Table(t));
    }
    let mut users = Vec::new();
    for (id, u) in &state.users {
        let mut t = toml::Table::new();
        t.insert("email".into(), u.email().into());
        t.insert("name".into(), u.display_name().into());
        let member_of: Vec<toml::Value> = state
            .groups
            .iter()
            .filter(|(_, g)| g.members.iter().any(|m| m == id))
            .map(|(gid, g)| g.directory_id(gid).into())
            .collect();
        t.insert("groups".into(), toml::Value::Array(member_of));
        t.insert("active".into(), u.active().into());
        users.push(toml::Value::Table(t));
    }
    let mut doc = toml::Table::new();
    doc.insert("groups".into(), toml::Value::Array(groups));
    doc.insert("users".into(), toml::Value::Array(users));
    toml::to_string(&doc).unwrap_or_default()
}

/// The token of a SCIM request, permitted `dnsgate.scim.<verb>`.
fn permit<'r>(
    app: &App,
    rt: &'r Runtime,
    headers: &HeaderMap,
    peer: IpAddr,
    verb: &str,
) -> Result<&'r Token> {
    let token = authenticate(app, rt, headers, peer)
        .map_err(|e| ScimError::new(StatusCode::UNAUTHORIZED, None, e.message))?;
    if !super::may_service(token, "scim", verb) {
        let mut e = ScimError::new(
            StatusCode::FORBIDDEN,
            None,
            "this token may not use SCIM (dnsgate.scim.*)",
        );
        if verb != "read" {
            let refused = super::refuse(app, token, peer, &format!("scim.{verb}"), None);
            e.audited = refused.audited;
        }
        return Err(e);
    }
    Ok(token)
}

fn paths(rt: &Runtime) -> Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    let api = rt
        .settings
        .api
        .as_ref()
        .ok_or_else(|| ScimError::new(StatusCode::SERVICE_UNAVAILABLE, None, "no API"))?;
    Ok((
        api.scim.clone(),
        api.scim_identities.clone(),
        api.overlays.clone(),
    ))
}

fn now(app: &App) -> String {
    app.shared.clock.wall().to_string()
}

/// A user as SCIM shows it.
fn user_resource(state: &Provisioned, id: &str, u: &User) -> Value {
    let mut v = Value::Object(u.attributes.clone());
    v["schemas"] = json!([USER_SCHEMA]);
    v["id"] = json!(id);
    v["active"] = json!(u.active());
    let groups: Vec<Value> = state
        .groups
        .iter()
        .filter(|(_, g)| g.members.iter().any(|m| m == id))
        .map(|(gid, g)| json!({"value": gid, "display": g.display_name()}))
        .collect();
    v["groups"] = json!(groups);
    v["meta"] = json!({
        "resourceType": "User", "created": u.created, "lastModified": u.modified,
        "location": format!("/scim/v2/Users/{id}"),
    });
    v
}

fn group_resource(state: &Provisioned, id: &str, g: &Group) -> Value {
    let mut v = Value::Object(g.attributes.clone());
    v["schemas"] = json!([GROUP_SCHEMA]);
    v["id"] = json!(id);
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| {
            let display = state.users.get(m).map(User::user_name).unwrap_or("");
            json!({"value": m, "display": display})
        })
        .collect();
    v["members"] = json!(members);
    v["meta"] = json!({
        "resourceType": "Group", "created": g.created, "lastModified": g.modified,
        "location": format!("/scim/v2/Groups/{id}"),
    });
    v
}

/// A request's resource attributes: what the server keeps, less what it assigns.
fn attributes(body: &[u8]) -> Result<Map<String, Value>> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ScimError::new(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            e.to_string(),
        )
    })?;
    let Value::Object(mut o) = v else {
        return Err(ScimError::new(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "the body must be a JSON object",
        ));
    };
    for k in ["id", "meta", "schemas", "groups", "password"] {
        o.remove(k);
    }
    o.retain(|_, v| !v.is_null());
    Ok(o)
}

/// `filter=ATTR eq "VALUE" [and ATTR eq "VALUE"]...`: the pairs (attribute names
/// case-insensitive, as RFC 7644 §3.4.2.2 says).
fn parse_filter(filter: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for clause in split_and(filter) {
        let clause = clause.trim();
        let mut parts = clause.splitn(3, char::is_whitespace);
        let (Some(attr), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ScimError::new(
                StatusCode::BAD_REQUEST,
                Some("invalidFilter"),
                format!("filter `{clause}`: expected ATTRIBUTE eq \"VALUE\""),
            ));
        };
        if !op.eq_ignore_ascii_case("eq") {
            return Err(ScimError::new(
                StatusCode::BAD_REQUEST,
                Some("invalidFilter"),
                format!("filter operator `{op}`: only eq is supported"),
            ));
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .map(|v| v.replace("\\\"", "\""))
            .unwrap_or_else(|| value.to_owned());
        out.push((attr.to_ascii_lowercase(), value));
    }
    Ok(out)
}

/// Splits at ` and ` outside quotes.
fn split_and(filter: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let bytes = filter.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' if i == 0 || bytes[i - 1] != b'\\' => quoted = !quoted,
            b' ' if !quoted
                && filter[i..].len() >= 5
                && filter[i..i + 5].eq_ignore_ascii_case(" and ") =>
            {
                out.push(&filter[start..i]);
                start = i + 5;
                i += 5;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&filter[start..]);
    out
}

/// A listing's query: `filter`, `startIndex` (1-based), `count`.
#[derive(Debug, Default)]
pub(super) struct ListQuery {
    filter: Option<String>,
    start_index: Option<usize>,
    count: Option<usize>,
}

impl ListQuery {
    fn parse(raw: Option<&str>) -> Result<Self> {
        let mut q = Self::default();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let number = || {
                v.parse::<usize>()
                    .map_err(|_| ScimError::invalid(format!("{k} `{v}` is not a number")))
            };
            match &*k {
                "filter" => q.filter = Some(v.to_string()),
                "startIndex" => q.start_index = Some(number()?),
                "count" => q.count = Some(number()?),
                // excludedAttributes, attributes, sortBy: accepted, not applied.
                _ => {}
            }
        }
        Ok(q)
    }
}

fn list_response(all: Vec<Value>, q: &ListQuery) -> Scim {
    let total = all.len();
    let start = q.start_index.unwrap_or(1).max(1);
    let count = q.count.unwrap_or(100).min(1000);
    let page: Vec<Value> = all.into_iter().skip(start - 1).take(count).collect();
    Scim(
        StatusCode::OK,
        json!({
            "schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": start,
            "itemsPerPage": page.len(), "Resources": page,
        }),
    )
}

fn matches(attr: &str, value: &str, id: &str, resource: &Value) -> bool {
    let get = |k: &str| resource.get(k).and_then(Value::as_str);
    match attr {
        "id" => id == value,
        // E-mails are compared case-insensitively.
        "username" => get("userName").is_some_and(|u| u.eq_ignore_ascii_case(value)),
        "displayname" => get("displayName") == Some(value),
        "externalid" => get("externalId") == Some(value),
        "members" | "members.value" => resource["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["value"] == value)),
        _ => false,
    }
}

// --- Users ------------------------------------------------------------------------------

pub(super) async fn list_users(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Scim> {
    let q = ListQuery::parse(raw.as_deref())?;
    let rt = app.shared.live.load_full();
    permit(&app, &rt, &headers, peer.ip(), "read")?;
    let state = load(&paths(&rt)?.0)?;
    let filter = q
        .filter
        .as_deref()
        .map(parse_filter)
        .transpose()?
        .unwrap_or_default();
    let all = state
        .users
        .iter()
        .filter(|(_, u)| !u.deleted)
        .map(|(id, u)| (id, user_resource(&state, id, u)))
        .filter(|(id, r)| filter.iter().all(|(a, v)| matches(a, v, id, r)))
        .map(|(_, r)| r)
        .collect();
    Ok(list_response(all, &q))
}

pub(super) async fn get_user(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Scim> {
    let rt = app.shared.live.load_full();
    permit(&app, &rt, &headers, peer.ip(), "read")?;
    let state = load(&paths(&rt)?.0)?;
    match state.users.get(&id).filter(|u| !u.deleted) {
        Some(u) => Ok(Scim(StatusCode::OK, user_resource(&state, &id, u))),
        None => Err(ScimError::not_found()),
    }
}

/// Checks a user's `userName`: an e-mail no other user (of the files, the API or SCIM)
/// has.
fn check_user_name(
    rt: &Runtime,
    state: &Provisioned,
    id: &str,
    attrs: &Map<String, Value>,
) -> Result<()> {
    let Some(name) = attrs.get("userName").and_then(Value::as_str) else {
        return Err(ScimError::invalid("userName is required"));
    };
    let email = name.trim().to_ascii_lowercase();
    let plausible = email
        .rsplit_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty());
    if !plausible {
        return Err(ScimError::invalid(format!(
            "userName `{name}` is not an e-mail address: dnsgate names users by e-mail"
        )));
    }
    let taken_by_scim = state
        .users
        .iter()
        .any(|(other, u)| other != id && !u.deleted && u.email() == email);
    let taken_elsewhere = super::objects::objects(rt, "users")
        .into_iter()
        .flatten()
        .any(|o| o.origin != Origin::Scim && o.key.eq_ignore_ascii_case(&email));
    if taken_by_scim || taken_elsewhere {
        return Err(ScimError::uniqueness(format!("a user `{email}` exists")));
    }
    Ok(())
}

pub(super) async fn create_user(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Scim> {
    let _one = app.writes.lock().await;
    let rt = app.shared.live.load_full();
    let token = permit(&app, &rt, &headers, peer.ip(), "create")?;
    let w = Write {
        app: &app,
        rt: &rt,
        token,
        peer: peer.ip(),
        action: "scim.users.create",
    };
    let result = async {
        let mut state = load(&paths(&rt)?.0)?;
        let attrs = attributes(&body)?;
        let id = new_id();
        check_user_name(&rt, &state, &id, &attrs)?;
        let email = attrs["userName"]
            .as_str()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        // A deleted user's name may come back: its tombstone goes.
        state
            .users
            .retain(|_, u| !(u.deleted && u.email() == email));
        let t = now(&app);
        state.users.insert(
            id.clone(),
            User {
                attributes: attrs,
                created: t.clone(),
                modified: t,
                deleted: false,
            },
        );
        let shown = user_resource(&state, &id, &state.users[&id]);
        w.save(&format!("user:{email}"), None, Some(&shown), &state, &[])
            .await?;
        Ok(Scim(StatusCode::CREATED, shown))
    }
    .await;
    w.finish(result)
}

pub(super) async fn replace_user(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Scim> {
    let attrs = attributes(&body)?;
    change_user(&app, peer.ip(), &headers, &id, "scim.users.update", |_| {
        Ok(attrs)
    })
    .await
}

pub(super) async fn patch_user(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Scim> {
    let ops = operations(&body)?;
    change_user(
        &app,
        peer.ip(),
        &headers,
        &id,
        "scim.users.update",
        |mut attrs| {
            for op in &ops {
                patch(&mut attrs, op)?;
            }
            Ok(attrs)
        },
    )
    .await
}

pub(super) async fn delete_user(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let _one = app.writes.lock().await;
    let rt = app.shared.live.load_full();
    let token = permit(&app, &rt, &headers, peer.ip(), "delete")?;
    let w = Write {
        app: &app,
        rt: &rt,
        token,
        peer: peer.ip(),
        action: "scim.users.delete",
    };
    let result = async {
        let mut state = load(&paths(&rt)?.0)?;
        let Some(u) = state.users.get_mut(&id).filter(|u| !u.deleted) else {
            return Err(ScimError::not_found());
        };
        u.deleted = true;
        u.modified = now(&app);
        let email = u.email();
        // Deleted users leave their groups.
        for g in state.groups.values_mut() {
            g.members.retain(|m| *m != id);
        }
        let before = json!({"userName": email});
        let revoked = devices_of(&rt, &email);
        w.save(
            &format!("user:{email}"),
            Some(&before),
            None,
            &state,
            &revoked,
        )
        .await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    w.finish(result)
}

/// Changes user `id` with `f`; a change that makes it inactive revokes its devices.
async fn change_user(
    app: &App,
    peer: IpAddr,
    headers: &HeaderMap,
    id: &str,
    action: &str,
    f: impl FnOnce(Map<String, Value>) -> Result<Map<String, Value>>,
) -> Result<Scim> {
    let _one = app.writes.lock().await;
    let rt = app.shared.live.load_full();
    let token = permit(app, &rt, headers, peer, "update")?;
    let w = Write {
        app,
        rt: &rt,
        token,
        peer,
        action,
    };
    let result = async {
        let mut state = load(&paths(&rt)?.0)?;
        let Some(old) = state.users.get(id).filter(|u| !u.deleted).cloned() else {
            return Err(ScimError::not_found());
        };
        let mut attrs = f(old.attributes.clone())?;
        attrs.retain(|_, v| !v.is_null());
        check_user_name(&rt, &state, id, &attrs)?;
        let mut new = old.clone();
        new.attributes = attrs;
        new.modified = now(app);
        let deactivated = old.active() && !new.active();
        // Devices of the user as it was named before the change.
        let revoked = if deactivated {
            devices_of(&rt, &old.email())
        } else {
            Vec::new()
        };
        let before = user_resource(&state, id, &old);
        state.users.insert(id.to_owned(), new);
        let shown = user_resource(&state, id, &state.users[id]);
        let object = format!("user:{}", state.users[id].email());
        w.save(&object, Some(&before), Some(&shown), &state, &revoked)
            .await?;
        Ok(Scim(StatusCode::OK, shown))
    }
    .await;
    w.finish(result)
}

/// The ids of the devices of user `email` (of the files, the API and SCIM).
fn devices_of(rt: &Runtime, email: &str) -> Vec<String> {
    super::objects::objects(rt, "devices")
        .into_iter()
        .flatten()
        .filter(|d| {
            d.value
                .get("user")
                .and_then(Value::as_str)
                .is_some_and(|u| u.trim().eq_ignore_ascii_case(email))
        })
        .map(|d| d.key)
        .collect()
}

// --- Groups -----------------------------------------------------------------------------

pub(super) async fn list_groups(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Scim> {
    let q = ListQuery::parse(raw.as_deref())?;
    let rt = app.shared.live.load_full();
    permit(&app, &rt, &headers, peer.ip(), "read")?;
    let state = load(&paths(&rt)?.0)?;
    let filter = q
        .filter
        .as_deref()
        .map(parse_filter)
        .transpose()?
        .unwrap_or_default();
    let all = state
        .groups
        .iter()
        .map(|(id, g)| (id, group_resource(&state, id, g)))
        .filter(|(id, r)| filter.iter().all(|(a, v)| matches(a, v, id, r)))
        .map(|(_, r)| r)
        .collect();
    Ok(list_response(all, &q))
}

pub(super) async fn get_group(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Scim> {
    let rt = app.shared.live.load_full();
    permit(&app, &rt, &headers, peer.ip(), "read")?;
    let state = load(&paths(&rt)?.0)?;
    match state.groups.get(&id) {
        Some(g) => Ok(Scim(StatusCode::OK, group_resource(&state, &id, g))),
        None => Err(ScimError::not_found()),
    }
}

/// The member ids of a `members` value: `[{"value": id}, ...]`, each a SCIM user.
fn member_ids(state: &Provisioned, v: &Value) -> Result<Vec<String>> {
    let items = match v {
        Value::Array(a) => a.clone(),
        Value::Object(_) => vec![v.clone()],
        Value::Null => Vec::new(),
        _ => {
            return Err(ScimError::invalid(
                "members: expected [{\"value\": USER ID}]",
            ));
        }
    };
    let mut out = Vec::new();
    for m in items {
        let Some(id) = m.get("value").and_then(Value::as_str) else {
            return Err(ScimError::invalid(
                "members: each needs a value (a user id)",
            ));
        };
        if state.users.get(id).is_none_or(|u| u.deleted) {
            return Err(ScimError::new(
                StatusCode::BAD_REQUEST,
                Some("invalidValue"),
                format!("members: no user `{id}`"),
            ));
        }
        if !out.iter().any(|o| o == id) {
            out.push(id.to_owned());
        }
    }
    Ok(out)
}

/// Checks a group's name and id: a `displayName`, and an id no other group has.
fn check_group(rt: &Runtime, state: &Provisioned, id: &str, g: &Group) -> Result<()> {
    if g.display_name().trim().is_empty() {
        return Err(ScimError::invalid("displayName is required"));
    }
    let dir_id = g.directory_id(id);
    let taken_by_scim = state
        .groups
        .iter()
        .any(|(other, o)| other != id && o.directory_id(other) == dir_id);
    let taken_elsewhere = super::objects::objects(rt, "groups")
        .into_iter()
        .flatten()
        .any(|o| o.origin != Origin::Scim && o.key == dir_id);
    if taken_by_scim || taken_elsewhere {
        return Err(ScimError::uniqueness(format!(
            "a group with id `{dir_id}` exists"
        )));
    }
    Ok(())
}

pub(super) async fn create_group(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Scim> {
    let _one = app.writes.lock().await;
    let rt = app.shared.live.load_full();
    let token = permit(&app, &rt, &headers, peer.ip(), "create")?;
    let w = Write {
        app: &app,
        rt: &rt,
        token,
        peer: peer.ip(),
        action: "scim.groups.create",
    };
    let result = async {
        let mut state = load(&paths(&rt)?.0)?;
        let mut attrs = attributes(&body)?;
        let members = match attrs.remove("members") {
            Some(m) => member_ids(&state, &m)?,
            None => Vec::new(),
        };
        let id = new_id();
        let t = now(&app);
        let group = Group {
            attributes: attrs,
            members,
            created: t.clone(),
            modified: t,
        };
        check_group(&rt, &state, &id, &group)?;
        state.groups.insert(id.clone(), group);
        let shown = group_resource(&state, &id, &state.groups[&id]);
        let object = format!("group:{}", state.groups[&id].directory_id(&id));
        w.save(&object, None, Some(&shown), &state, &[]).await?;
        Ok(Scim(StatusCode::CREATED, shown))
    }
    .await;
    w.finish(result)
}

pub(super) async fn replace_group(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Scim> {
    let mut attrs = attributes(&body)?;
    change_group(&app, peer.ip(), &headers, &id, move |state, g| {
        g.members = match attrs.remove("members") {
            Some(m) => member_ids(state, &m)?,
            None => Vec::new(),
        };
        g.attributes = attrs;
        Ok(())
    })
    .await
}

pub(super) async fn patch_group(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Scim> {
    let ops = operations(&body)?;
    change_group(&app, peer.ip(), &headers, &id, move |state, g| {
        for op in &ops {
            patch_members(state, g, op)?;
        }
        Ok(())
    })
    .await
}

pub(super) async fn delete_group(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let _one = app.writes.lock().await;
    let rt = app.shared.live.load_full();
    let token = permit(&app, &rt, &headers, peer.ip(), "delete")?;
    let w = Write {
        app: &app,
        rt: &rt,
        token,
        peer: peer.ip(),
        action: "scim.groups.delete",
    };
    let result = async {
        let mut state = load(&paths(&rt)?.0)?;
        let Some(g) = state.groups.remove(&id) else {
            return Err(ScimError::not_found());
        };
        let object = format!("group:{}", g.directory_id(&id));
        let before = json!({"displayName": g.display_name()});
        w.save(&object, Some(&before), None, &state, &[]).await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    w.finish(result)
}

async fn change_group(
    app: &App,
    peer: IpAddr,
    headers: &HeaderMap,
    id: &str,
    f: impl FnOnce(&Provisioned, &mut Group) -> Result<()>,
) -> Result<Scim> {
    let _one = app.writes.lock().await;
    let rt = app.shared.live.load_full();
    let token = permit(app, &rt, headers, peer, "update")?;
    let w = Write {
        app,
        rt: &rt,
        token,
        peer,
        action: "scim.groups.update",
    };
    let result = async {
        let mut state = load(&paths(&rt)?.0)?;
        let Some(old) = state.groups.get(id).cloned() else {
            return Err(ScimError::not_found());
        };
        let mut new = old.clone();
        f(&state, &mut new)?;
        new.attributes.retain(|_, v| !v.is_null());
        new.modified = now(app);
        check_group(&rt, &state, id, &new)?;
        let before = group_resource(&state, id, &old);
        let object = format!("group:{}", new.directory_id(id));
        state.groups.insert(id.to_owned(), new);
        let shown = group_resource(&state, id, &state.groups[id]);
        w.save(&object, Some(&before), Some(&shown), &state, &[])
            .await?;
        Ok(Scim(StatusCode::OK, shown))
    }
    .await;
    w.finish(result)
}

// --- PATCH ------------------------------------------------------------------------------

/// One PATCH operation (RFC 7644 §3.5.2); `op` any case, as Entra ID sends it.
struct Op {
    op: String,
    path: Option<String>,
    value: Value,
}

fn operations(body: &[u8]) -> Result<Vec<Op>> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ScimError::new(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            e.to_string(),
        )
    })?;
    let Some(ops) = v
        .get("Operations")
        .or_else(|| v.get("operations"))
        .and_then(Value::as_array)
    else {
        return Err(ScimError::new(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "a PatchOp needs Operations",
        ));
    };
    ops.iter()
        .map(|o| {
            let op = o
                .get("op")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                .filter(|op| matches!(op.as_str(), "add" | "replace" | "remove"))
                .ok_or_else(|| {
                    ScimError::new(
                        StatusCode::BAD_REQUEST,
                        Some("invalidSyntax"),
                        "op: add, replace or remove",
                    )
                })?;
            Ok(Op {
                op,
                path: o
                    .get("path")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .filter(|p| !p.is_empty()),
                value: o.get("value").cloned().unwrap_or(Value::Null),
            })
        })
        .collect()
}

/// A path's first step: `attr`, `attr.sub`, or `attr[field eq "v"]` then `.sub`.
struct PathStep {
    attr: String,
    filter: Option<(String, String)>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Result<PathStep> {
    // The core schema's URN prefix, as some clients send it, names the same attribute.
    let path = path
        .strip_prefix(USER_SCHEMA)
        .or_else(|| path.strip_prefix(GROUP_SCHEMA))
        .map(|p| p.trim_start_matches(':'))
        .unwrap_or(path);
    if let Some(open) = path.find('[') {
        let close = path[open..].find(']').map(|c| c + open).ok_or_else(|| {
            ScimError::new(
                StatusCode::BAD_REQUEST,
                Some("invalidPath"),
                format!("path `{path}`"),
            )
        })?;
        let filter = parse_filter(&path[open + 1..close])?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ScimError::new(StatusCode::BAD_REQUEST, Some("invalidPath"), "empty filter")
            })?;
        let sub = path[close + 1..].strip_prefix('.').map(str::to_owned);
        return Ok(PathStep {
            attr: path[..open].to_owned(),
            filter: Some(filter),
            sub,
        });
    }
    let (attr, sub) = match path.split_once('.') {
        Some((a, s)) => (a.to_owned(), Some(s.to_owned())),
        None => (path.to_owned(), None),
    };
    Ok(PathStep {
        attr,
        filter: None,
        sub,
    })
}

/// The key of `o` that is `name` in any case (attribute names are case-insensitive).
fn key_of(o: &Map<String, Value>, name: &str) -> String {
    o.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

/// Applies one operation to a user's attributes.
fn patch(attrs: &mut Map<String, Value>, op: &Op) -> Result<()> {
    let Some(path) = &op.path else {
        // No path: the value is an object of attributes to set (Okta's deactivation:
        // `{"op": "replace", "value": {"active": false}}`).
        let Value::Object(values) = &op.value else {
            return Err(ScimError::invalid(
                "an operation without a path needs an object value",
            ));
        };
        for (k, v) in values {
            let k = key_of(attrs, k);
            if op.op == "remove" {
                attrs.remove(&k);
            } else {
                attrs.insert(k, v.clone());
            }
        }
        return Ok(());
    };
    let step = parse_path(path)?;
    let attr = key_of(attrs, &step.attr);
    match (&step.filter, &step.sub) {
        (None, None) => {
            if op.op == "remove" {
                attrs.remove(&attr);
            } else if op.op == "add"
                && let (Some(Value::Array(have)), Value::Array(more)) =
                    (attrs.get_mut(&attr), &op.value)
            {
                have.extend(more.iter().cloned());
            } else {
                attrs.insert(attr, op.value.clone());
            }
        }
        (None, Some(sub)) => {
            let entry = attrs.entry(attr).or_insert_with(|| json!({}));
            let Value::Object(inner) = entry else {
                return Err(ScimError::invalid(format!(
                    "`{path}`: not a complex attribute"
                )));
            };
            let sub = key_of(inner, sub);
            if op.op == "remove" {
                inner.remove(&sub);
            } else {
                inner.insert(sub, op.value.clone());
            }
        }
        (Some((field, want)), sub) => {
            // `emails[type eq "work"].value`: the element whose field is that value.
            let entry = attrs.entry(attr).or_insert_with(|| json!([]));
            let Value::Array(items) = entry else {
                return Err(ScimError::invalid(format!(
                    "`{path}`: not a multi-valued attribute"
                )));
            };
            let hit = |v: &Value| {
                v.as_object().is_some_and(|o| {
                    o.get(&key_of(o, field))
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.eq_ignore_ascii_case(want))
                })
            };
            match (op.op.as_str(), sub) {
                ("remove", None) => items.retain(|v| !hit(v)),
                (_, None) => {
                    items.retain(|v| !hit(v));
                    items.push(op.value.clone());
                }
                (_, Some(sub)) => {
                    let at = match items.iter().position(hit) {
                        Some(i) => i,
                        None => {
                            items.push(json!({field.clone(): want}));
                            items.len() - 1
                        }
                    };
                    if let Value::Object(o) = &mut items[at] {
                        let sub = key_of(o, sub);
                        if op.op == "remove" {
                            o.remove(&sub);
                        } else {
                            o.insert(sub, op.value.clone());
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Applies one operation to a group: its members (`members`, `members[value eq "id"]`)
/// or its attributes.
fn patch_members(state: &Provisioned, g: &mut Group, op: &Op) -> Result<()> {
    let path = op.path.as_deref().map(parse_path).transpose()?;
    match path {
        Some(step) if step.attr.eq_ignore_ascii_case("members") => {
            if let Some((field, id)) = step.filter {
                if !field.eq_ignore_ascii_case("value") || op.op != "remove" {
                    return Err(ScimError::new(
                        StatusCode::BAD_REQUEST,
                        Some("invalidPath"),
                        "members[value eq \"ID\"] may only be removed",
                    ));
                }
                g.members.retain(|m| *m != id);
                return Ok(());
            }
            match op.op.as_str() {
                "add" => {
                    for id in member_ids(state, &op.value)? {
                        if !g.members.contains(&id) {
                            g.members.push(id);
                        }
                    }
                }
                "replace" => g.members = member_ids(state, &op.value)?,
                _ => {
                    // Entra ID removes with a value list; no value removes everyone.
                    if op.value.is_null() {
                        g.members.clear();
                    } else {
                        let gone: Vec<String> = match &op.value {
                            Value::Array(a) => a.clone(),
                            v => vec![v.clone()],
                        }
                        .iter()
                        .filter_map(|m| m.get("value").and_then(Value::as_str).map(str::to_owned))
                        .collect();
                        g.members.retain(|m| !gone.contains(m));
                    }
                }
            }
            Ok(())
        }
        None if op.value.get("members").is_some() => {
            // `{"op": "replace", "value": {"displayName": ..., "members": [...]}}`.
            let mut values = op.value.as_object().cloned().unwrap_or_default();
            if let Some(m) = values.remove("members") {
                let ids = member_ids(state, &m)?;
                if op.op == "add" {
                    for id in ids {
                        if !g.members.contains(&id) {
                            g.members.push(id);
                        }
                    }
                } else {
                    g.members = ids;
                }
            }
            values.remove("id");
            let rest = Op {
                op: op.op.clone(),
                path: None,
                value: Value::Object(values),
            };
            patch(&mut g.attributes, &rest)
        }
        _ => {
            let mut op = Op {
                op: op.op.clone(),
                path: op.path.clone(),
                value: op.value.clone(),
            };
            if let Value::Object(o) = &mut op.value {
                // Okta sends the group's own id with its new name: not an attribute.
                o.remove("id");
            }
            patch(&mut g.attributes, &op)
        }
    }
}

/// One SCIM write by a permitted token: where its changes go and how its attempt is
/// audited.
struct Write<'a> {
    app: &'a App,
    rt: &'a Runtime,
    token: &'a Token,
    peer: IpAddr,
    action: &'a str,
}

impl Write<'_> {
    /// Writes SCIM's state, its directory file and the overlays (devices revoked), then
    /// reloads as an API write does (audited first; everything put back if refused).
    async fn save(
        &self,
        object: &str,
        before: Option<&Value>,
        after: Option<&Value>,
        state: &Provisioned,
        revoke: &[String],
    ) -> Result<()> {
        let Self {
            app,
            rt,
            token,
            peer,
            action,
        } = *self;
        let (scim, directory, overlays_path) = paths(rt)?;
        let mut files = vec![
            (
                scim,
                Some(serde_json::to_vec_pretty(state).unwrap_or_default()),
            ),
            (directory, Some(directory_toml(state).into_bytes())),
        ];
        if !revoke.is_empty() {
            let mut overlays = Overlays::load(&overlays_path)
                .map_err(|d| ScimError::new(StatusCode::SERVICE_UNAVAILABLE, None, d.message))?;
            for id in revoke {
                let d = overlays.devices.entry(id.clone()).or_default();
                d.revoked = true;
                d.doh_token_sha256 = None;
            }
            files.push((
                overlays_path,
                Some(serde_json::to_vec_pretty(&overlays).unwrap_or_default()),
            ));
        }
        super::commit(
            app,
            Some(token),
            peer,
            (action, Some(object)),
            (before, after),
            files,
        )
        .await
        .map_err(ScimError::from)
    }

    /// The outcome of the attempt, audited if what stopped it is not already (a name
    /// taken, a bad value, an unknown resource).
    fn finish<T>(&self, r: Result<T>) -> Result<T> {
        match r {
            Err(e) if !e.audited => {
                let api = ApiError::new(e.status, "scim", e.detail.clone());
                let audited =
                    super::audit_refusal(self.app, self.token, self.peer, (self.action, None), api);
                if audited.status == StatusCode::SERVICE_UNAVAILABLE && e.status != audited.status {
                    return Err(ScimError::from(audited));
                }
                Err(ScimError { audited: true, ..e })
            }
            r => r,
        }
    }
}

pub(super) async fn service_provider_config(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Scim> {
    let rt = app.shared.live.load_full();
    permit(&app, &rt, &headers, peer.ip(), "read")?;
    Ok(Scim(
        StatusCode::OK,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": 1000},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": [{
                "type": "oauthbearertoken", "name": "Bearer token",
                "description": "an API token with dnsgate.scim.* permissions", "primary": true
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": "/scim/v2/ServiceProviderConfig"}
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(op: &str, path: Option<&str>, value: Value) -> Op {
        Op {
            op: op.into(),
            path: path.map(str::to_owned),
            value,
        }
    }

    #[test]
    fn filters_are_eq_clauses_joined_by_and() {
        assert_eq!(
            parse_filter(r#"userName eq "a@b.test""#).unwrap(),
            [("username".to_owned(), "a@b.test".to_owned())]
        );
        assert_eq!(
            parse_filter(r#"id eq "x" and members eq "y and z""#).unwrap(),
            [
                ("id".to_owned(), "x".to_owned()),
                ("members".to_owned(), "y and z".to_owned())
            ]
        );
        assert!(parse_filter(r#"userName sw "a""#).is_err());
    }

    #[test]
    fn patches_as_okta_and_entra_send_them() {
        let mut a: Map<String, Value> = serde_json::from_value(json!({
            "userName": "a@b.test", "active": true,
            "emails": [{"type": "work", "value": "a@b.test", "primary": true}],
            "name": {"givenName": "A"}
        }))
        .unwrap();
        // Okta: no path, an object of values.
        patch(&mut a, &op("replace", None, json!({"active": false}))).unwrap();
        assert_eq!(a["active"], false);
        // Entra ID: "Replace", a path, the string "True".
        patch(&mut a, &op("replace", Some("active"), json!("True"))).unwrap();
        assert!(truthy(&a["active"]));
        patch(
            &mut a,
            &op(
                "replace",
                Some("emails[type eq \"work\"].value"),
                json!("new@b.test"),
            ),
        )
        .unwrap();
        assert_eq!(a["emails"][0]["value"], "new@b.test");
        assert_eq!(a["emails"].as_array().unwrap().len(), 1);
        patch(&mut a, &op("add", Some("name.familyName"), json!("B"))).unwrap();
        assert_eq!(a["name"], json!({"givenName": "A", "familyName": "B"}));
        patch(&mut a, &op("remove", Some("name.givenName"), Value::Null)).unwrap();
        assert_eq!(a["name"], json!({"familyName": "B"}));
        patch(
            &mut a,
            &op(
                "replace",
                Some("urn:ietf:params:scim:schemas:core:2.0:User:displayName"),
                json!("Bee"),
            ),
        )
        .unwrap();
        assert_eq!(a["displayName"], "Bee");
    }
}
