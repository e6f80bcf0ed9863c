//! External evaluation (SPEC §11, Cloudflare's custom actions): a policy that, when it
//! matches, asks the organisation's own HTTP endpoint for the verdict, within a deadline
//! measured from the query's arrival, and falls back to `on_error` when it cannot have one.
//!
//! The request is a JSON body signed with HMAC-SHA256 (`X-Dnsgate-Signature:
//! t=<unix seconds>,v1=<hex of HMAC("<t>.<body>")>`, as Stripe and GitHub sign webhooks), so
//! the endpoint can tell dnsgate's requests from anyone else's and refuse old ones. One
//! [`Endpoint`] per policy keeps the connection pool, the verdict cache (keyed by the body
//! without its `time`, for the reply's `ttl`, at most `max_cache`), the single flight that
//! lets identical questions asked together share one request, and the bound on requests in
//! flight: past it, a question gets `on_error` at once rather than wait, so a flood of
//! matching queries cannot pile up behind a slow endpoint.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, Semaphore};

use crate::clock::{Clock, Instant};

/// Requests to one endpoint in flight at once; past this, `on_error` decides at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// Verdicts one policy keeps.
const CACHE_ENTRIES: usize = 100_000;
/// The largest reply body read.
const MAX_REPLY: usize = 64 * 1024;

/// What decides when no verdict can be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Go on to the next policy, as if this one had not matched (the default).
    Continue,
    /// Block.
    Block,
    /// Allow.
    Allow,
}

impl OnError {
    /// Parses `on_error`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "continue" => Self::Continue,
            "block" => Self::Block,
            "allow" => Self::Allow,
            _ => return None,
        })
    }

    /// The verdict it stands for.
    pub fn verdict(self) -> Verdict {
        match self {
            Self::Continue => Verdict::Continue,
            Self::Block => Verdict::Block { reason: None },
            Self::Allow => Verdict::Allow,
        }
    }
}

/// A policy's `external` table, checked.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `https://`, or `http://` to a loopback address.
    pub url: String,
    /// The HMAC key: `secret_file`'s bytes less one trailing newline.
    pub key: Vec<u8>,
    /// From the query's arrival.
    pub timeout: Duration,
    /// What decides without a verdict.
    pub on_error: OnError,
    /// The longest a verdict is kept, whatever its `ttl`.
    pub max_cache: Duration,
}

impl Spec {
    /// Checks `url`: `https://`, or `http://` to a loopback host (a test endpoint, or a
    /// sidecar on the same machine). Nothing else may carry identities in clear text.
    pub fn check_url(url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad url `{url}`: {e}"))?;
        match parsed.scheme() {
            "https" => Ok(()),
            "http" => {
                let host = parsed.host_str().unwrap_or_default();
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                let loopback = bare.eq_ignore_ascii_case("localhost")
                    || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if loopback {
                    Ok(())
                } else {
                    Err(format!(
                        "url `{url}`: http:// only to a loopback address; use https://"
                    ))
                }
            }
            other => Err(format!("url `{url}`: {other}:// is not https://")),
        }
    }
}

/// An endpoint's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The real answer.
    Allow,
    /// Blocked, with `reason` as the EDE 15 text.
    Block {
        /// Why.
        reason: Option<Arc<str>>,
    },
    /// These addresses instead.
    Override {
        /// For A and AAAA.
        ips: Arc<[IpAddr]>,
    },
    /// As if the policy had not matched.
    Continue,
}

impl Verdict {
    /// Its name in a reply (and in stubs).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Block { .. } => "block",
            Self::Override { .. } => "override",
            Self::Continue => "continue",
        }
    }

    /// A stubbed verdict by name (`explain --stub`, policy test cases).
    pub fn stub(s: &str) -> Option<Self> {
        Some(match s {
            "allow" => Self::Allow,
            "block" => Self::Block { reason: None },
            "continue" => Self::Continue,
            _ => return None,
        })
    }
}

/// The request body's fields (SPEC §11). Unknown ones are `null`.
#[derive(Debug, Clone, Serialize)]
pub struct Request<'a> {
    /// The policy's name.
    pub policy: &'a str,
    /// The question.
    pub query: Question<'a>,
    /// Who asked.
    pub client: ClientFacts<'a>,
}

/// The question of a [`Request`].
#[derive(Debug, Clone, Serialize)]
pub struct Question<'a> {
    /// The name, without the final dot, in lower case.
    pub name: &'a str,
    /// The type (`A`, `AAAA`, `TYPE65`...).
    #[serde(rename = "type")]
    pub qtype: &'a str,
}

/// The client of a [`Request`].
#[derive(Debug, Clone, Serialize)]
pub struct ClientFacts<'a> {
    /// The source address.
    pub ip: IpAddr,
    /// The device id.
    pub device: Option<&'a str>,
    /// The user's e-mail.
    pub user: Option<&'a str>,
    /// The user's groups, by name (empty when there are none or no user).
    pub groups: Vec<&'a str>,
    /// `dns.location`.
    pub location: Option<&'a str>,
    /// The source address's country (GeoIP), ISO code.
    pub country: Option<&'a str>,
}

#[derive(Serialize)]
struct Timed<'a> {
    #[serde(flatten)]
    request: &'a Request<'a>,
    time: String,
}

impl Request<'_> {
    /// The body without `time`: the verdict cache's key.
    pub fn key(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The body as sent at `now` (RFC 3339, UTC, whole seconds).
    pub fn body(&self, now: jiff::Timestamp) -> Vec<u8> {
        let time = jiff::Timestamp::from_second(now.as_second())
            .unwrap_or(now)
            .to_string();
        serde_json::to_vec(&Timed {
            request: self,
            time,
        })
        .unwrap_or_default()
    }
}

/// The `X-Dnsgate-Signature` value for `body` signed at `unix` seconds with `key`.
pub fn signature(key: &[u8], unix: i64, body: &[u8]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&k);
    ctx.update(unix.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    format!(
        "t={unix},v1={}",
        data_encoding::HEXLOWER.encode(tag.as_ref())
    )
}

/// The header carrying [`signature`].
pub const SIGNATURE_HEADER: &str = "x-dnsgate-signature";

/// Why there is no verdict from the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing within the deadline.
    Timeout,
    /// Not a 2xx (redirects are not followed).
    Status(u16),
    /// A 2xx whose body is not a reply.
    BadReply,
    /// No connection, or it broke.
    Network,
    /// Too many requests in flight already.
    Overloaded,
}

impl Failure {
    /// The `result` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Status(_) => "http_error",
            Self::BadReply => "bad_reply",
            Self::Network => "network_error",
            Self::Overloaded => "overloaded",
        }
    }
}

/// Where a verdict came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The endpoint answered this question.
    Asked,
    /// Another question asked at the same time got it (single flight).
    Shared,
    /// The verdict cache.
    Cached,
    /// A stub (`explain`, policy tests).
    Stubbed,
    /// None could be had: `on_error`.
    Failed(Failure),
    /// Not asked (`explain` and policy tests offline): `on_error`.
    NotAsked,
}

/// A verdict and how long it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What to do.
    pub verdict: Verdict,
    /// How long it may be repeated (answers built on it live no longer): 0 for a verdict
    /// with no `ttl`, a failure, or a stub.
    pub life: Duration,
    /// Where it came from.
    pub source: Source,
}

/// The JSON reply (SPEC §11).
#[derive(Debug, Deserialize)]
struct Reply {
    action: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    override_ips: Vec<IpAddr>,
    #[serde(default)]
    ttl: Option<u64>,
}

fn parse_reply(body: &[u8]) -> Option<(Verdict, Option<u64>)> {
    let r: Reply = serde_json::from_slice(body).ok()?;
    let verdict = match r.action.as_str() {
        "allow" => Verdict::Allow,
        "block" => Verdict::Block {
            reason: r.reason.map(Arc::from),
        },
        "override" if !r.override_ips.is_empty() => Verdict::Override {
            ips: r.override_ips.into(),
        },
        "continue" => Verdict::Continue,
        _ => return None,
    };
    Some((verdict, r.ttl))
}

#[derive(Debug, Clone)]
struct Cached {
    verdict: Verdict,
    expires: Instant,
}

/// What one request to the endpoint gave, shared by the questions that waited for it.
#[derive(Debug, Clone)]
struct Fetched {
    result: Result<(Verdict, Option<u64>), Failure>,
    /// When the verdict was had (its life counts from here).
    at: Instant,
}

/// The requests in flight, by cache key: those asking the same question wait for the one.
type Flights = Mutex<HashMap<Box<[u8]>, Arc<OnceCell<Fetched>>>>;

/// How much longer than a request's own deadline its askers wait for it.
const GRACE: Duration = Duration::from_millis(5);

/// The first asker's hold on a flight: the entry leaves the table when it is dropped, if
/// it is still this flight's.
struct Flight<'a> {
    flights: &'a Flights,
    key: Box<[u8]>,
    cell: Arc<OnceCell<Fetched>>,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.cell))
        {
            flights.remove(&self.key);
        }
    }
}

/// One external policy's endpoint: its client, cache, single flight and bound.
pub struct Endpoint {
    /// The checked configuration.
    pub spec: Spec,
    policy: String,
    client: reqwest::Client,
    cache: quick_cache::sync::Cache<Box<[u8]>, Cached>,
    flights: Flights,
    slots: Arc<Semaphore>,
    duration: ::metrics::Histogram,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("policy", &self.policy)
            .field("url", &self.spec.url)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The endpoint of policy `policy`; `tls`: the roots its certificate is checked
    /// against (the system's plus `[upstream] ca_file`).
    pub fn new(
        policy: &str,
        spec: Spec,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, String> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true);
        if let Some(config) = tls {
            // The shared client configuration offers DoT's ALPN; an endpoint speaks HTTP.
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            b = b.tls_backend_preconfigured(config);
        }
        let client = b
            .build()
            .map_err(|e| format!("external endpoint client: {e}"))?;
        for result in [
            "allow",
            "block",
            "override",
            "continue",
            "timeout",
            "http_error",
            "bad_reply",
            "network_error",
            "overloaded",
        ] {
            ::metrics::counter!(crate::metrics::EXTERNAL_REQUESTS_TOTAL, "policy" => policy.to_owned(), "result" => result)
                .increment(0);
        }
        Ok(Self {
            spec,
            policy: policy.to_owned(),
            client,
            cache: quick_cache::sync::Cache::new(CACHE_ENTRIES),
            flights: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            duration: ::metrics::histogram!(crate::metrics::EXTERNAL_REQUEST_DURATION_SECONDS, "policy" => policy.to_owned()),
        })
    }

    /// The verdict for `request`, from the cache, a request in flight, or a new request,
    /// by `arrival + timeout` on `clock`; else `on_error`'s.
    pub async fn ask(&self, request: &Request<'_>, arrival: Instant, clock: &Clock) -> Answer {
        let key: Box<[u8]> = request.key().into();
        let now = clock.now();
        if let Some(c) = self.cache.get(&key) {
            if c.expires > now {
                return Answer {
                    verdict: c.verdict,
                    life: c.expires - now,
                    source: Source::Cached,
                };
            }
            self.cache.remove(&key);
        }
        let deadline = arrival + self.spec.timeout;
        let remaining = deadline.saturating_duration_since(now);
        // One request for the questions asked together; a question that joins one waits
        // no longer than its own deadline. The first asker's flight leaves the table
        // however that asker ends (answered, timed out, or dropped by its client): a
        // later question never finds an old verdict there.
        let (cell, flight) = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.get(&key) {
                Some(c) => (c.clone(), None),
                None => {
                    let c = Arc::new(OnceCell::new());
                    flights.insert(key.clone(), c.clone());
                    (c.clone(), Some(c))
                }
            }
        };
        let _flight = flight.map(|cell| Flight {
            flights: &self.flights,
            key: key.clone(),
            cell,
        });
        let leader = _flight.is_some();
        let fetch = cell.get_or_init(|| self.fetch(request, remaining, clock));
        // A little past the request's own deadline, so that it ends (and is counted) first.
        let fetched = match tokio::time::timeout(remaining + GRACE, fetch).await {
            Ok(f) => f.clone(),
            Err(_) => Fetched {
                result: Err(Failure::Timeout),
                at: clock.now(),
            },
        };
        let source = if leader {
            Source::Asked
        } else {
            Source::Shared
        };
        match fetched.result {
            Ok((verdict, ttl)) => {
                let life = ttl
                    .map_or(Duration::ZERO, Duration::from_secs)
                    .min(self.spec.max_cache);
                if !life.is_zero() {
                    self.cache.insert(
                        key,
                        Cached {
                            verdict: verdict.clone(),
                            expires: fetched.at + life,
                        },
                    );
                }
                let life = (fetched.at + life).saturating_duration_since(clock.now());
                Answer {
                    verdict,
                    life,
                    source,
                }
            }
            Err(failure) => Answer {
                verdict: self.spec.on_error.verdict(),
                life: Duration::ZERO,
                source: Source::Failed(failure),
            },
        }
    }

    /// One request, within `remaining`; counted and timed.
    async fn fetch(&self, request: &Request<'_>, remaining: Duration, clock: &Clock) -> Fetched {
        let started = std::time::Instant::now();
        let result = match self.slots.clone().try_acquire_owned() {
            Err(_) => Err(Failure::Overloaded),
            Ok(permit) => {
                let r = tokio::time::timeout(remaining, self.post(request, clock))
                    .await
                    .unwrap_or(Err(Failure::Timeout));
                drop(permit);
                self.duration.record(started.elapsed().as_secs_f64());
                r
            }
        };
        let label = match &result {
            Ok((v, _)) => v.as_str(),
            Err(f) => f.label(),
        };
        ::metrics::counter!(crate::metrics::EXTERNAL_REQUESTS_TOTAL, "policy" => self.policy.clone(), "result" => label)
            .increment(1);
        if let Err(f) = &result {
            tracing::debug!(policy = %self.policy, failure = f.label(), "external evaluation failed; on_error decides");
        }
        Fetched {
            result,
            at: clock.now(),
        }
    }

    async fn post(
        &self,
        request: &Request<'_>,
        clock: &Clock,
    ) -> Result<(Verdict, Option<u64>), Failure> {
        let now = clock.wall();
        let body = request.body(now);
        let sig = signature(&self.spec.key, now.as_second(), &body);
        let mut r = self
            .client
            .post(&self.spec.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, sig)
            .body(body)
            .send()
            .await
            .map_err(|_| Failure::Network)?;
        if !r.status().is_success() {
            return Err(Failure::Status(r.status().as_u16()));
        }
        let mut got = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|_| Failure::Network)? {
            if got.len() + chunk.len() > MAX_REPLY {
                return Err(Failure::BadReply);
            }
            got.extend_from_slice(&chunk);
        }
        parse_reply(&got).ok_or(Failure::BadReply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request<'static> {
        Request {
            policy: "risk",
            query: Question {
                name: "www.example.com",
                qtype: "A",
            },
            client: ClientFacts {
                ip: "192.0.2.7".parse().unwrap(),
                device: Some("laptop"),
                user: Some("ann@example.com"),
                groups: vec!["staff", "contractors"],
                location: None,
                country: None,
            },
        }
    }

    #[test]
    fn the_body_has_every_field_and_the_key_has_all_but_time() {
        let r = request();
        let now: jiff::Timestamp = "2026-11-29T21:30:05.250Z".parse().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&r.body(now)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "policy": "risk",
                "query": {"name": "www.example.com", "type": "A"},
                "client": {
                    "ip": "192.0.2.7", "device": "laptop", "user": "ann@example.com",
                    "groups": ["staff", "contractors"], "location": null, "country": null
                },
                "time": "2026-11-29T21:30:05Z"
            })
        );
        let key: serde_json::Value = serde_json::from_slice(&r.key()).unwrap();
        assert!(key.get("time").is_none());
        assert_eq!(key["client"]["ip"], "192.0.2.7");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // RFC 4231 test case 2's key and data, laid out as "<t>.<body>".
        let sig = signature(b"Jefe", 1_700_000_000, b"{}");
        let expected = {
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
            data_encoding::HEXLOWER.encode(ring::hmac::sign(&k, b"1700000000.{}").as_ref())
        };
        assert_eq!(sig, format!("t=1700000000,v1={expected}"));
        // And the primitive itself is HMAC-SHA256 (RFC 4231, test case 2).
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            data_encoding::HEXLOWER
                .encode(ring::hmac::sign(&k, b"what do ya want for nothing?").as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn replies_parse_as_spec_11_says_and_garbage_does_not() {
        assert_eq!(
            parse_reply(br#"{"action":"block","reason":"not trained","ttl":30}"#),
            Some((
                Verdict::Block {
                    reason: Some("not trained".into())
                },
                Some(30)
            ))
        );
        assert_eq!(
            parse_reply(br#"{"action":"override","override_ips":["192.0.2.1","2001:db8::1"]}"#)
                .map(|(v, _)| v.as_str()),
            Some("override")
        );
        assert_eq!(
            parse_reply(br#"{"action":"continue"}"#),
            Some((Verdict::Continue, None))
        );
        for bad in [
            &b"not json"[..],
            br#"{"action":"maybe"}"#,
            br#"{"action":"override"}"#,
            br#"{"reason":"x"}"#,
            br#"{"action":"block","ttl":-1}"#,
        ] {
            assert_eq!(parse_reply(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn urls_are_https_or_loopback_http() {
        assert!(Spec::check_url("https://risk.corp.example/dns").is_ok());
        assert!(Spec::check_url("http://127.0.0.1:8080/dns").is_ok());
        assert!(Spec::check_url("http://[::1]:8080/dns").is_ok());
        assert!(Spec::check_url("http://localhost/dns").is_ok());
        assert!(Spec::check_url("http://10.0.0.1/dns").is_err());
        assert!(Spec::check_url("http://risk.corp.example/dns").is_err());
        assert!(Spec::check_url("ftp://127.0.0.1/").is_err());
        assert!(Spec::check_url("not a url").is_err());
    }
}
