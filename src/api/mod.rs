//! The admin API (SPEC §12) on `[api] listen`: REST under `/api/v1/`, bearer tokens with
//! scoped permissions ([`crate::access`]), every write attempt audited ([`audit`]) before
//! it applies, an OpenAPI 3 document at `/api/v1/openapi.json`.
//!
//! It serves the objects in service — of the configuration files, made through the API
//! ([`objects`]) or provisioned over SCIM ([`scim`]) — filtered to what the token may
//! read; changes them through one commit path (state files written, the reload audited
//! and swapped, the files put back if it is refused); keeps device sessions
//! ([`sessions`]); searches the query store ([`querylog`]); flushes the caches and
//! reloads.
//!
//! Errors are `{"error": {"code", "message", "details"}}`: 401 (with `WWW-Authenticate:
//! Bearer`) without a valid token or past the limit of failed authentications
//! (`rate_limited`), 403 for what the token may not do, 404 for what it may not read (as
//! if absent), 409 for a key taken or an object read-only, 400 `invalid` with the `check`
//! messages or `forbidden_key`, 503 when the audit log cannot be written.

pub mod audit;
mod objects;
mod openapi;
mod querylog;
mod scim;
mod sessions;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::access::{FailureLimiter, Target, Token};
use crate::diag::Diagnostic;
use crate::runtime::Runtime;
use crate::server::Shared;

/// The API's state.
struct App {
    shared: Arc<Shared>,
    audit: audit::Audit,
    failures: Mutex<FailureLimiter>,
    /// One write at a time: read the overlays, change, save, reload.
    writes: tokio::sync::Mutex<()>,
}

/// A started API listener.
#[derive(Debug)]
pub struct Started {
    /// The bound address.
    pub addr: SocketAddr,
    /// The accept loop.
    pub task: JoinHandle<()>,
}

/// Starts the API of the configuration in service, if it has `[api]`.
pub async fn start(shared: Arc<Shared>) -> std::io::Result<Option<Started>> {
    let rt = shared.live.load_full();
    let Some(settings) = rt.settings.api.clone() else {
        return Ok(None);
    };
    let audit = audit::Audit::open(&settings.audit_log).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot open the audit log {}: {e}",
                settings.audit_log.display()
            ),
        )
    })?;
    let listener = TcpListener::bind(settings.listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {} for the API: {e}", settings.listen),
        )
    })?;
    let addr = listener.local_addr()?;
    let app = Arc::new(App {
        shared: shared.clone(),
        audit,
        failures: Mutex::new(FailureLimiter::default()),
        writes: tokio::sync::Mutex::new(()),
    });
    let router = Router::new()
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/cache/flush", post(flush))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/explain", post(explain))
        .route("/api/v1/querylog", get(querylog::search))
        .route("/api/v1/{kind}", get(list_objects).post(objects::create))
        .route(
            "/api/v1/{kind}/{key}",
            get(get_object)
                .put(objects::replace)
                .delete(objects::delete),
        )
        .route("/api/v1/lists/{name}/entries", post(objects::entries))
        .route(
            "/scim/v2/Users",
            get(scim::list_users).post(scim::create_user),
        )
        .route(
            "/scim/v2/Users/{id}",
            get(scim::get_user)
                .put(scim::replace_user)
                .patch(scim::patch_user)
                .delete(scim::delete_user),
        )
        .route(
            "/scim/v2/Groups",
            get(scim::list_groups).post(scim::create_group),
        )
        .route(
            "/scim/v2/Groups/{id}",
            get(scim::get_group)
                .put(scim::replace_group)
                .patch(scim::patch_group)
                .delete(scim::delete_group),
        )
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(scim::service_provider_config),
        )
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{name}", get(get_token).delete(delete_token))
        .route("/api/v1/devices/{id}/revoke", post(revoke_device))
        .route("/api/v1/devices/{id}/token", post(new_device_token))
        .fallback(|| async { ApiError::not_found() })
        .with_state(app.clone());
    // Device sessions (last-seen times kept, inactive devices revoked) live as long as
    // the listener.
    let saved = sessions::restore(&app);
    let task = tokio::spawn(async move {
        tokio::join!(
            accept_loop(listener, router, shared),
            sessions::run(app, saved)
        );
    });
    Ok(Some(Started { addr, task }))
}

/// Accepts connections: HTTPS with the certificate in service at each handshake (a
/// reload swaps it), else plain HTTP (loopback only, checked at load).
async fn accept_loop(listener: TcpListener, router: Router, shared: Arc<Shared>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                debug!(error = %e, "API accept");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let tls = shared
            .live
            .load()
            .settings
            .api
            .as_ref()
            .and_then(|a| a.tls.clone());
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    let mut router = router.clone();
                    tower_service::Service::call(&mut router, req)
                },
            );
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let result = match tls {
                Some(config) => match tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
                    Ok(s) => {
                        builder
                            .serve_connection(hyper_util::rt::TokioIo::new(s), service)
                            .await
                    }
                    Err(e) => {
                        debug!(%peer, error = %e, "API TLS handshake");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "API connection");
            }
        });
    }
}

/// An error response: `{"error": {"code", "message", "details"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<Diagnostic>,
    /// Its attempt is in the audit log already (or cannot be written there).
    audited: bool,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            audited: false,
        }
    }

    /// Marks it as audited.
    fn audited(mut self) -> Self {
        self.audited = true;
        self
    }

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token may not do that",
        )
    }

    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such object")
    }

    fn unavailable(why: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let details: Vec<Value> = self
            .details
            .iter()
            .map(|d| {
                json!({"path": d.path.display().to_string(), "line": d.line, "col": d.col, "message": d.message})
            })
            .collect();
        let body =
            json!({"error": {"code": self.code, "message": self.message, "details": details}});
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// The token a request carries, checked against the runtime's tokens; failures from one
/// address are limited.
fn authenticate<'r>(
    app: &App,
    rt: &'r Runtime,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Result<&'r Token, ApiError> {
    let now = app.shared.clock.wall();
    let second = u64::try_from(now.as_second()).unwrap_or(0);
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(ApiError::unauthorized)?;
    // A right secret always gets in (at 256 bits no one guesses it, and someone guessing
    // from behind the same address must not lock the administrator out); wrong ones past
    // the limit are answered 429 without a look.
    if let Some(token) = rt.tokens.authenticate(secret, now) {
        return Ok(token);
    }
    let mut failures = app.failures.lock().unwrap_or_else(|e| e.into_inner());
    if !failures.check(peer, second) {
        // Still 401 (the credentials are what is wrong), without looking further.
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "rate_limited",
            "too many failed authentications from this address; try again later",
        ));
    }
    failures.fail(peer, second);
    warn!(%peer, "API: a bearer token that names no valid token");
    Err(ApiError::unauthorized())
}

/// The kinds of objects, as URLs name them, and as one of them is named in a resource.
const KINDS: [(&str, &str); 8] = [
    ("policies", "policy"),
    ("lists", "list"),
    ("categories", "category"),
    ("users", "user"),
    ("groups", "group"),
    ("devices", "device"),
    ("locations", "location"),
    ("tokens", "token"),
];

/// How a resource names one object of `kind` (the URL's plural): `policies` -> `policy`.
fn singular(kind: &str) -> &str {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(kind, |(_, s)| s)
}

/// Whether `token` may `verb` on a service without objects of its own (`cache`,
/// `config`, `explain`, `querylog`, `scim`): its resource is `*`.
fn may_service(token: &Token, kind: &str, verb: &str) -> bool {
    let target = Target {
        kind,
        name: "*",
        group: None,
    };
    token.may(kind, verb, &target)
}

/// Whether `token` may read the object `key` of `kind` (the URL's plural), scoped to
/// identity group `group`.
fn may_read(token: &Token, kind: &str, key: &str, group: Option<&str>) -> bool {
    let target = Target {
        kind: singular(kind),
        name: key,
        group,
    };
    token.may(kind, "read", &target) || token.may(kind, "list", &target)
}

async fn list_objects(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(kind): Path<String>,
) -> Result<Json<Value>, ApiError> {
    list_kind(&app, peer, &headers, &kind)
}

async fn list_tokens(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    list_kind(&app, peer, &headers, "tokens")
}

async fn get_token(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    get_one(&app, peer, &headers, "tokens", &name)
}

/// The objects of `kind` the token may read.
fn list_kind(
    app: &App,
    peer: SocketAddr,
    headers: &HeaderMap,
    kind: &str,
) -> Result<Json<Value>, ApiError> {
    let rt = app.shared.live.load_full();
    let token = authenticate(app, &rt, headers, peer.ip())?;
    let all = objects::objects(&rt, kind).ok_or_else(ApiError::not_found)?;
    // Filtered to what the token may read: the others are as if absent.
    let visible: Vec<Value> = all
        .into_iter()
        .filter(|o| may_read(token, kind, &o.key, o.group.as_deref()))
        .map(|o| o.value)
        .collect();
    Ok(Json(Value::Array(visible)))
}

async fn get_object(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((kind, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    get_one(&app, peer, &headers, &kind, &key)
}

/// One object of `kind`, if the token may read it.
fn get_one(
    app: &App,
    peer: SocketAddr,
    headers: &HeaderMap,
    kind: &str,
    key: &str,
) -> Result<Json<Value>, ApiError> {
    let rt = app.shared.live.load_full();
    let token = authenticate(app, &rt, headers, peer.ip())?;
    Ok(Json(objects::readable(&rt, token, kind, key)?.value))
}

/// Writes the audit line of an attempt; `Err` (503) if it cannot be written, and then the
/// change must not apply.
fn audit(
    app: &App,
    token: Option<&Token>,
    peer: IpAddr,
    (action, object): (&str, Option<&str>),
    (before, after): (Option<&Value>, Option<&Value>),
    result: audit::Outcome,
) -> Result<(), ApiError> {
    let entry = audit::Entry {
        token: token.map(|t| t.name.as_str()),
        source_ip: peer,
        action,
        object,
        before,
        after,
        result,
    };
    app.audit
        .write(&entry, app.shared.clock.wall())
        .map_err(|e| {
            warn!(error = %e, path = %app.audit.path().display(), "cannot write the audit log: the change is refused");
            ApiError::unavailable(format!("the audit log cannot be written: {e}"))
        })
}

/// Audits a refused attempt and answers 403 (503 if it cannot be audited).
fn refuse(app: &App, token: &Token, peer: IpAddr, action: &str, object: Option<&str>) -> ApiError {
    let denied = audit::Outcome::Denied;
    match audit(
        app,
        Some(token),
        peer,
        (action, object),
        (None, None),
        denied,
    ) {
        Ok(()) => ApiError::forbidden(),
        Err(e) => e,
    }
    .audited()
}

/// Audits the refusal `e` of a write attempt unless it is audited already: 403, 404 and
/// 409 (a key taken, an object read-only) as `denied`, other 4xx as `invalid`, 5xx as
/// `error`. So every attempt by a valid
/// token leaves its line, whatever stopped it.
fn audit_refusal(
    app: &App,
    token: &Token,
    peer: IpAddr,
    (action, object): (&str, Option<&str>),
    e: ApiError,
) -> ApiError {
    if e.audited {
        return e;
    }
    let outcome = match e.status {
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::CONFLICT => {
            audit::Outcome::Denied
        }
        s if s.is_client_error() => audit::Outcome::Invalid,
        _ => audit::Outcome::Error,
    };
    match audit(
        app,
        Some(token),
        peer,
        (action, object),
        (None, None),
        outcome,
    ) {
        Ok(()) => e.audited(),
        Err(unwritable) => unwritable.audited(),
    }
}

async fn flush(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let rt = app.shared.live.load_full();
    let token = authenticate(&app, &rt, &headers, peer.ip())?;
    if !may_service(token, "cache", "flush") {
        return Err(refuse(&app, token, peer.ip(), "cache.flush", None));
    }
    let action = ("cache.flush", None);
    audit(
        &app,
        Some(token),
        peer.ip(),
        action,
        (None, None),
        audit::Outcome::Ok,
    )?;
    app.shared.cache.clear();
    app.shared.packets.clear();
    Ok(Json(json!({"flushed": true})))
}

async fn reload(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let rt = app.shared.live.load_full();
    let token = authenticate(&app, &rt, &headers, peer.ip())?;
    if !may_service(token, "config", "update") {
        return Err(refuse(&app, token, peer.ip(), "config.reload", None));
    }
    let action = ("config.reload", None);
    reload_audited(&app, Some(token), peer.ip(), action, (None, None))
        .await
        .map_err(|mut e| {
            if e.code == "invalid" {
                e.message = "the configuration does not load; the running one keeps serving".into();
            }
            e
        })?;
    if let Some(log) = app.shared.exit.querylog() {
        log.reopen();
    }
    Ok(Json(
        json!({"reloaded": true, "generation": app.shared.live.load().generation}),
    ))
}

/// `POST /api/v1/explain`: the input of a policy test case.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainInput {
    name: String,
    #[serde(rename = "type", default)]
    qtype: Option<String>,
    #[serde(default)]
    client: Option<IpAddr>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    resolved: Vec<IpAddr>,
    #[serde(default)]
    time: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
}

/// Explains one query as `dnsgate explain --json` does (external policies are not asked:
/// their `on_error` decides, as offline).
async fn explain(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let rt = app.shared.live.load_full();
    let token = authenticate(&app, &rt, &headers, peer.ip())?;
    if !may_service(token, "explain", "read") {
        return Err(ApiError::forbidden());
    }
    let input: ExplainInput =
        serde_json::from_slice(&body).map_err(|e| invalid(format!("bad request body: {e}")))?;
    let mut qname = crate::lists::name_to_ascii(&input.name)
        .ok()
        .and_then(|a| hickory_proto::rr::Name::from_ascii(&*a).ok())
        .ok_or_else(|| invalid(format!("`{}` is not a DNS name", input.name)))?;
    qname.set_fqdn(true);
    let qtype_text = input.qtype.as_deref().unwrap_or("A");
    let qtype: hickory_proto::rr::RecordType = qtype_text
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| invalid(format!("unknown record type `{qtype_text}`")))?;
    let client = input.client.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let mut req = crate::pipeline::Request::query(&rt.clock, client, qname, qtype);
    req.device = match (&input.device, &input.token) {
        (Some(_), Some(_)) => return Err(invalid("give device or token, not both")),
        (Some(d), None) => {
            if rt.directory.identity_for_device(d).is_none() {
                let mut e = ApiError::not_found();
                e.message = format!("no device `{d}` in the identities");
                return Err(e);
            }
            crate::pipeline::DeviceHint::Label(d.as_str().into())
        }
        (None, Some(t)) => crate::pipeline::DeviceHint::Token(t.as_str().into()),
        (None, None) => crate::pipeline::DeviceHint::None,
    };
    if let Some(t) = &input.time {
        req.time = t.parse::<jiff::Timestamp>().map_err(|e| {
            invalid(format!(
                "time `{t}` is not an RFC 3339 time with an offset: {e}"
            ))
        })?;
    }
    let stubs = std::collections::HashMap::new();
    let externals = crate::pipeline::Externals::Stubbed(&stubs);
    Ok(Json(
        crate::pipeline::explain::explain(&rt, &req, &input.resolved, externals).await,
    ))
}

/// Applies a change to the overlays through the one runtime swap: the overlays file is
/// written, the configuration reloaded with it (validated as any reload), the attempt
/// audited before the swap; a refused reload puts the old overlays back.
async fn apply(
    app: &App,
    token: &Token,
    peer: IpAddr,
    (action, object): (&str, &str),
    (before, after): (Option<&Value>, Option<&Value>),
    change: impl FnOnce(&mut crate::runtime::overlays::Overlays),
) -> Result<(), ApiError> {
    use crate::runtime::overlays::Overlays;
    let rt = app.shared.live.load_full();
    let Some(path) = rt.settings.api.as_ref().map(|a| a.overlays.clone()) else {
        return Err(ApiError::unavailable("the API is not configured"));
    };
    let mut overlays = Overlays::load(&path).map_err(|d| {
        let mut e = ApiError::unavailable("the API's overlays cannot be read");
        e.details = vec![d];
        e
    })?;
    change(&mut overlays);
    let bytes = serde_json::to_vec_pretty(&overlays).unwrap_or_default();
    commit(
        app,
        Some(token),
        peer,
        (action, Some(object)),
        (before, after),
        vec![(path, Some(bytes))],
    )
    .await
}

/// Writes the state `files` (`None`: removed), reloads with them (validated as any
/// reload, audited before the swap), and puts every one back as it was if the reload
/// refuses the change. The caller holds the write lock.
async fn commit(
    app: &App,
    token: Option<&Token>,
    peer: IpAddr,
    action: (&str, Option<&str>),
    objects: (Option<&Value>, Option<&Value>),
    files: Vec<(std::path::PathBuf, Option<Vec<u8>>)>,
) -> Result<(), ApiError> {
    let mut old = Vec::new();
    for (path, _) in &files {
        match std::fs::read(path) {
            Ok(b) => old.push((path.clone(), Some(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => old.push((path.clone(), None)),
            Err(e) => {
                return Err(ApiError::unavailable(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        }
    }
    let put = |files: &[(std::path::PathBuf, Option<Vec<u8>>)]| -> std::io::Result<()> {
        for (path, bytes) in files {
            match bytes {
                Some(b) => crate::sys::write_atomic(path, b)?,
                None => match std::fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                },
            }
        }
        Ok(())
    };
    let restore = || {
        if let Err(e) = put(&old) {
            tracing::error!(error = %e, "cannot put the API's state back after a refused change");
        }
    };
    if let Err(e) = put(&files) {
        restore();
        return Err(ApiError::unavailable(format!(
            "cannot save the API's state: {e}"
        )));
    }
    let result = reload_audited(app, token, peer, action, objects).await;
    if result.is_err() {
        restore();
    }
    result
}

/// Reloads with the state files as they now are: validated as any reload, the attempt
/// audited before the swap (503 if it cannot be), 400 `invalid` if it does not load.
async fn reload_audited(
    app: &App,
    token: Option<&Token>,
    peer: IpAddr,
    action: (&str, Option<&str>),
    objects: (Option<&Value>, Option<&Value>),
) -> Result<(), ApiError> {
    let audit_failed = Mutex::new(None);
    let result = app
        .shared
        .live
        .reload_approved(|loaded| {
            let outcome = match loaded {
                Ok(_) => audit::Outcome::Ok,
                Err(_) => audit::Outcome::Invalid,
            };
            audit(app, token, peer, action, objects, outcome).map_err(|e| {
                let why = e.message.clone();
                *audit_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                why
            })
        })
        .await;
    if let Some(e) = audit_failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e.audited());
    }
    result.map_err(|details| {
        let mut e = invalid("the change does not load; nothing changed");
        e.details = details;
        e.audited()
    })
}

/// `PUT` on a file object: only the overlays may change — `enabled` on a policy;
/// anything else is 409 `read_only`. The caller holds the write lock.
async fn put_file_object(
    app: &App,
    token: &Token,
    peer: IpAddr,
    kind: &str,
    current: objects::Object,
    body: &[u8],
) -> Result<Json<Value>, ApiError> {
    let key = current.key.clone();
    let object = format!("{}:{key}", singular(kind));
    let action = format!("{kind}.update");
    let target = Target {
        kind: singular(kind),
        name: &key,
        group: current.group.as_deref(),
    };
    if !token.may(kind, "update", &target) {
        return Err(refuse(app, token, peer, &action, Some(&object)));
    }
    let mut wanted: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("bad request body: {e}")))?;
    if !wanted.is_object() {
        return Err(invalid("the body must be a JSON object"));
    }
    // The file's object with the new `enabled` must be what was sent (`source` aside).
    let enabled = wanted.get("enabled").cloned();
    let mut expected = current.value.clone();
    for v in [&mut wanted, &mut expected] {
        if let Some(o) = v.as_object_mut() {
            o.remove("source");
            o.remove("enabled");
        }
    }
    let read_only = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "read_only",
            format!(
                "`{key}` comes from a configuration file: through the API only a policy's `enabled` may change"
            ),
        )
    };
    if kind != "policies" || wanted != expected {
        return Err(read_only());
    }
    let enabled = match enabled {
        Some(Value::Bool(b)) => b,
        None => return Ok(Json(current.value)),
        Some(_) => return Err(invalid("`enabled` must be true or false")),
    };
    let mut after = current.value.clone();
    after["enabled"] = json!(enabled);
    apply(
        app,
        token,
        peer,
        (&action, &object),
        (Some(&current.value), Some(&after)),
        |o| {
            o.policies.entry(key.clone()).or_default().enabled = Some(enabled);
        },
    )
    .await?;
    Ok(Json(after))
}

/// `POST /api/v1/devices/{id}/revoke`: its token and label identity stop at once.
async fn revoke_device(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    device_session(&app, peer.ip(), &headers, &id, None).await
}

/// `POST /api/v1/devices/{id}/token`: a new DoH token, shown this once; the old one (and a
/// revocation) ends.
async fn new_device_token(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    device_session(&app, peer.ip(), &headers, &id, Some(new_doh_token())).await
}

/// Ends device `id`'s token and label identity (`new_token` `None`: revoked), or gives it
/// the new DoH token `new_token`, shown in the answer this once.
async fn device_session(
    app: &App,
    peer: IpAddr,
    headers: &HeaderMap,
    id: &str,
    new_token: Option<String>,
) -> Result<Json<Value>, ApiError> {
    let _one = app.writes.lock().await;
    let rt = app.shared.live.load_full();
    let token = authenticate(app, &rt, headers, peer)?;
    let object = format!("device:{id}");
    let (verb, action) = match new_token {
        None => ("revoke", "devices.revoke"),
        Some(_) => ("update", "devices.token"),
    };
    let found = objects::readable(&rt, token, "devices", id)
        .map_err(|e| audit_refusal(app, token, peer, (action, Some(&object)), e))?;
    let before = found.value;
    let target = Target {
        kind: "device",
        name: id,
        group: found.group.as_deref(),
    };
    if !token.may("devices", verb, &target) {
        return Err(refuse(app, token, peer, action, Some(&object)));
    }
    let digest = new_token.as_deref().map(crate::identity::token_digest);
    let mut after = before.clone();
    after["revoked"] = json!(new_token.is_none());
    after["doh_token_set"] = json!(new_token.is_some());
    apply(
        app,
        token,
        peer,
        (action, &object),
        (Some(&before), Some(&after)),
        |o| {
            let d = o.devices.entry(id.to_owned()).or_default();
            d.revoked = digest.is_none();
            d.doh_token_sha256 = digest;
        },
    )
    .await?;
    if let Some(secret) = new_token {
        after["doh_token"] = json!(secret);
    }
    Ok(Json(after))
}

/// A new DoH path token: 32 characters of `[A-Za-z0-9]` (about 190 bits).
fn new_doh_token() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// `POST /api/v1/tokens`: a statement as sent.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementInput {
    effect: String,
    permissions: Vec<String>,
    resources: Vec<String>,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenInput {
    name: String,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    policies: Vec<StatementInput>,
}

/// The tokens made through the API, as kept in `path`.
fn load_api_tokens(path: &std::path::Path) -> Result<Vec<Token>, ApiError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    crate::access::Tokens::load(path)
        .map(|t| t.iter().cloned().collect())
        .map_err(|d| {
            let mut e = ApiError::unavailable("the API's tokens cannot be read");
            e.details = d;
            e
        })
}

/// The tokens made through the API as their file holds them.
fn tokens_toml(tokens: &[Token]) -> Vec<u8> {
    tokens
        .iter()
        .map(|t| t.to_toml() + "\n")
        .collect::<String>()
        .into_bytes()
}

/// `POST /api/v1/tokens`: a new token within the caller's own rights (its denies copied,
/// its expiry no later); the secret is in this answer only.
async fn create_token(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    use crate::access::{Effect, Statement, TokenSpec};
    let _one = app.writes.lock().await;
    let rt = app.shared.live.load_full();
    let token = authenticate(&app, &rt, &headers, peer.ip())?;
    let result = async {
        let input: TokenInput =
            serde_json::from_slice(&body).map_err(|e| invalid(format!("bad request body: {e}")))?;
        let object = format!("token:{}", input.name);
        let target = Target {
            kind: "token",
            name: &input.name,
            group: None,
        };
        if !token.may("tokens", "create", &target) {
            return Err(refuse(
                &app,
                token,
                peer.ip(),
                "tokens.create",
                Some(&object),
            ));
        }
        let mut policies = Vec::new();
        for s in &input.policies {
            let effect: Effect = s
                .effect
                .parse()
                .map_err(|_| invalid(format!("effect `{}`: allow or deny", s.effect)))?;
            let permissions = s
                .permissions
                .iter()
                .map(|p| {
                    p.parse()
                        .map_err(|e| invalid(format!("permission `{p}`: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let resources = s
                .resources
                .iter()
                .map(|r| {
                    r.parse()
                        .map_err(|e| invalid(format!("resource `{r}`: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            policies.push(Statement {
                effect,
                permissions,
                resources,
            });
        }
        let expires = match &input.expires {
            None => None,
            Some(e) => Some(
                crate::access::parse_expiry(e)
                    .map_err(|m| invalid(format!("expires `{e}`: {m}")))?,
            ),
        };
        if rt.tokens.get(&input.name).is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("a token named `{}` exists", input.name),
            ));
        }
        let spec = TokenSpec {
            name: input.name.clone(),
            expires,
            policies,
        };
        let (secret, made) = match crate::access::mint(token, spec, app.shared.clock.wall()) {
            Ok(m) => m,
            Err(e @ crate::access::MintError::NotCovered { .. })
            | Err(e @ crate::access::MintError::NotPermitted(_)) => {
                let mut err = refuse(&app, token, peer.ip(), "tokens.create", Some(&object));
                err.message = e.to_string();
                return Err(err);
            }
            Err(e) => return Err(invalid(e.to_string())),
        };
        let Some(path) = rt.settings.api.as_ref().map(|a| a.api_tokens.clone()) else {
            return Err(ApiError::unavailable("the API is not configured"));
        };
        let mut tokens = load_api_tokens(&path)?;
        tokens.push(made.clone());
        let mut shown = serde_json::to_value(&made).unwrap_or_default();
        if let Some(o) = shown.as_object_mut() {
            o.remove("hash");
            o.insert("hash_set".into(), json!(true));
            o.insert("source".into(), json!("api"));
        }
        commit(
            &app,
            Some(token),
            peer.ip(),
            ("tokens.create", Some(&object)),
            (None, Some(&shown)),
            vec![(path, Some(tokens_toml(&tokens)))],
        )
        .await?;
        shown["secret"] = json!(secret);
        Ok((StatusCode::CREATED, Json(shown)))
    }
    .await;
    result.map_err(|e| audit_refusal(&app, token, peer.ip(), ("tokens.create", None), e))
}

/// `DELETE /api/v1/tokens/{name}`: a token made through the API ends; one of the tokens
/// file is 409 `read_only`.
async fn delete_token(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let _one = app.writes.lock().await;
    let rt = app.shared.live.load_full();
    let token = authenticate(&app, &rt, &headers, peer.ip())?;
    let result = async {
        if rt.tokens.get(&name).is_none() || !may_read(token, "tokens", &name, None) {
            return Err(ApiError::not_found());
        }
        let object = format!("token:{name}");
        let target = Target {
            kind: "token",
            name: &name,
            group: None,
        };
        if !token.may("tokens", "delete", &target) {
            return Err(refuse(
                &app,
                token,
                peer.ip(),
                "tokens.delete",
                Some(&object),
            ));
        }
        if !rt.api_tokens.contains(&name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "read_only",
                format!("`{name}` comes from the tokens file: remove it there"),
            ));
        }
        let Some(path) = rt.settings.api.as_ref().map(|a| a.api_tokens.clone()) else {
            return Err(ApiError::unavailable("the API is not configured"));
        };
        let mut tokens = load_api_tokens(&path)?;
        tokens.retain(|t| t.name != name);
        commit(
            &app,
            Some(token),
            peer.ip(),
            ("tokens.delete", Some(&object)),
            (None, None),
            vec![(path, Some(tokens_toml(&tokens)))],
        )
        .await?;
        Ok(StatusCode::NO_CONTENT)
    }
    .await;
    result.map_err(|e| audit_refusal(&app, token, peer.ip(), ("tokens.delete", None), e))
}
