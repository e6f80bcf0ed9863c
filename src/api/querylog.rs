//! `GET /api/v1/querylog` (SPEC §12): the query store searched, newest first, with the
//! permission `dnsgate.querylog.read`. Each row has the fields and values of the JSON-lines
//! log's line for the same query.
//!
//! Parameters: `client` (an IP address), `device`, `user` (exact), `name` (a domain: the
//! name and every name below it), `action`, `since` (at or after) and `until` (before), both
//! RFC 3339 with an offset, and `limit` (1 to 1,000, default 100). Anything else, a
//! parameter given twice or a bad value is 400 `invalid`; no store is 503 `unavailable`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::HeaderMap;
use serde_json::Value;

use super::{ApiError, App, authenticate, invalid};
use crate::label::QueryAction;
use crate::querylog::Filter;
use crate::querylog::store::MAX_LIMIT;

/// `GET /api/v1/querylog`.
pub(super) async fn search(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let rt = app.shared.live.load_full();
    let token = authenticate(&app, &rt, &headers, peer.ip())?;
    if !super::may_service(token, "querylog", "read") {
        return Err(ApiError::forbidden());
    }
    let filter = parse(query.as_deref().unwrap_or(""))?;
    let Some(store) = app.shared.exit.querylog().and_then(|q| q.store()).cloned() else {
        return Err(ApiError::unavailable(
            "no query store: [querylog] store is \"none\", or the store could not be opened (see the log)",
        ));
    };
    let rows = tokio::task::spawn_blocking(move || store.search(&filter))
        .await
        .map_err(|_| ApiError::unavailable("the search failed"))?
        .map_err(|e| {
            tracing::warn!(error = %e, "query store search failed");
            ApiError::unavailable(format!("the query store cannot be read: {e}"))
        })?;
    Ok(Json(serde_json::to_value(rows).unwrap_or_default()))
}

/// The search a query string asks for.
fn parse(query: &str) -> Result<Filter, ApiError> {
    let mut f = Filter::default();
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if seen.iter().any(|k| *k == key) {
            return Err(invalid(format!("`{key}` is given twice")));
        }
        seen.push(key.to_string());
        let v = value.as_ref();
        let nonempty = || {
            if v.is_empty() {
                Err(invalid(format!("`{key}` is empty")))
            } else {
                Ok(v.to_owned())
            }
        };
        match key.as_ref() {
            "client" => {
                f.client = Some(
                    v.parse()
                        .map_err(|_| invalid(format!("client `{v}` is not an IP address")))?,
                );
            }
            "device" => f.device = Some(nonempty()?),
            "user" => f.user = Some(nonempty()?),
            "name" => f.name = Some(domain(v)?),
            "action" => {
                f.action = Some(QueryAction::parse(v).ok_or_else(|| {
                    let all: Vec<&str> = QueryAction::ALL.iter().map(|a| a.as_str()).collect();
                    invalid(format!("action `{v}` is not one of {}", all.join(", ")))
                })?);
            }
            "since" => f.since = Some(time(&key, v)?),
            "until" => f.until = Some(time(&key, v)?),
            "limit" => {
                f.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        invalid(format!("limit `{v}` is not a number from 1 to {MAX_LIMIT}"))
                    })?;
            }
            other => return Err(invalid(format!("unknown parameter `{other}`"))),
        }
    }
    Ok(f)
}

/// A domain as the log writes names: ASCII (IDNA), lowercase, no trailing dot.
fn domain(v: &str) -> Result<String, ApiError> {
    let bad = || invalid(format!("name `{v}` is not a domain name"));
    let name = crate::lists::name_to_ascii(v)
        .ok()
        .and_then(|a| hickory_proto::rr::Name::from_ascii(&*a).ok())
        .ok_or_else(bad)?;
    let fqdn = crate::policy::fields::fqdn_of(&name);
    if fqdn.is_empty() {
        return Err(bad());
    }
    Ok(fqdn)
}

/// An RFC 3339 time with an offset.
fn time(key: &str, v: &str) -> Result<jiff::Timestamp, ApiError> {
    v.parse().map_err(|e| {
        invalid(format!(
            "{key} `{v}` is not an RFC 3339 time with an offset: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_to_a_filter_and_bad_ones_are_invalid() {
        let f = parse("client=127.0.0.9&name=WWW.Example.COM.&action=block&since=2026-11-01T00:00:00%2B09:00&limit=7").unwrap();
        assert_eq!(f.client, Some("127.0.0.9".parse().unwrap()));
        assert_eq!(f.name.as_deref(), Some("www.example.com"));
        assert_eq!(f.action, Some(QueryAction::Block));
        assert_eq!(
            f.since,
            Some("2026-10-31T15:00:00Z".parse().unwrap()),
            "the offset is kept"
        );
        assert_eq!(f.limit, 7);
        assert_eq!(parse("").unwrap(), Filter::default());
        assert_eq!(parse("").unwrap().limit, 100);
        for bad in [
            "client=nobody",
            "action=maybe",
            "limit=0",
            "limit=1001",
            "limit=x",
            "since=yesterday",
            "until=2026-11-01T00:00:00",
            "name=",
            "name=.",
            "device=",
            "colour=red",
            "device=a&device=b",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!((e.status.as_u16(), e.code), (400, "invalid"), "{bad}");
        }
    }
}
