//! External evaluation (SPEC §11, "custom actions"): an `action = "external"` policy asks
//! an HTTP endpoint for the verdict. The endpoint here is a real HTTP/1.1 server on
//! 127.0.0.1:0 (hyper, on the test's runtime) that checks every request's HMAC signature
//! and timestamp, records what it was sent, and answers as each test tells it to.
//!
//! Tests that measure print their figures (`--nocapture` shows them).

#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, UdpSocket};

use crate::client::{self, Opts, ede, ips, query};
use crate::{Gate, gate};

/// The HMAC key every test endpoint checks against.
const SECRET: &str = "correct horse battery staple";

/// What the test endpoint does with one request.
#[derive(Clone, Debug)]
enum Act {
    /// 200 with this JSON body.
    Json(Value),
    /// This status with this body.
    Status(u16, &'static str),
    /// 302 to this location.
    Redirect(String),
    /// Never answers (sleeps far longer than any test).
    Hang,
    /// Waits, then does the other thing.
    After(Duration, Box<Self>),
}

/// `{"action": action}`, plus whatever else `extra` holds.
fn verdict(action: &str, extra: Value) -> Act {
    let mut v = json!({ "action": action });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    Act::Json(v)
}

/// One request the endpoint received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    content_type: String,
    signature: String,
    /// The raw body.
    raw: String,
    /// The body as JSON (`Null` if it is not).
    body: Value,
    /// `t` of the signature.
    t: i64,
    /// `Ok` when the signature verifies with [`SECRET`], `t` is within 15 minutes of the
    /// real time (tests move the gate's clock by less) and the body's `time` is `t`.
    check: Result<(), String>,
}

impl Seen {
    /// The query name (`query.name`), `""` if none.
    fn name(&self) -> &str {
        self.body["query"]["name"].as_str().unwrap_or("")
    }

    /// The client address (`client.ip`).
    fn ip(&self) -> &str {
        self.body["client"]["ip"].as_str().unwrap_or("")
    }
}

/// Checks `X-Dnsgate-Signature: t=<unix>,v1=<hex>` over `"<t>.<body>"` with `key`.
fn check_signature(
    key: &[u8],
    header: &str,
    raw: &[u8],
    body: &Value,
) -> (i64, Result<(), String>) {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = Some(x.to_owned()),
            _ => return (0, Err(format!("unexpected part `{part}` in `{header}`"))),
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return (0, Err(format!("no t or v1 in `{header}`")));
    };
    if v1.len() != 64 || v1.chars().any(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return (t, Err(format!("v1 is not 64 lowercase hex digits: `{v1}`")));
    }
    let Ok(tag) = data_encoding::HEXLOWER.decode(v1.as_bytes()) else {
        return (t, Err(format!("v1 does not decode: `{v1}`")));
    };
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(raw);
    if ring::hmac::verify(&k, &signed, &tag).is_err() {
        return (t, Err("bad signature".into()));
    }
    let now = jiff::Timestamp::now().as_second();
    if (now - t).abs() > 900 {
        return (t, Err(format!("stale timestamp {t} (now {now})")));
    }
    let expected = jiff::Timestamp::from_second(t).unwrap().to_string();
    if body["time"] != Value::String(expected.clone()) {
        return (t, Err(format!("time {} is not t {expected}", body["time"])));
    }
    (t, Ok(()))
}

type Decide = Arc<dyn Fn(&Seen) -> Act + Send + Sync>;

/// A test endpoint: records each request and answers with `decide`'s [`Act`].
#[derive(Clone)]
struct Hook {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Hook {
    /// Starts an endpoint checking signatures with [`SECRET`].
    async fn start(decide: impl Fn(&Seen) -> Act + Send + Sync + 'static) -> Self {
        Self::start_with_key(SECRET.as_bytes(), decide).await
    }

    /// Starts an endpoint checking signatures with `key`.
    async fn start_with_key(
        key: &[u8],
        decide: impl Fn(&Seen) -> Act + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hook = Self {
            addr,
            seen: Arc::default(),
        };
        let decide: Decide = Arc::new(decide);
        let key: Arc<[u8]> = key.into();
        let seen = hook.seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, decide, key) = (seen.clone(), decide.clone(), key.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (seen, decide, key) = (seen.clone(), decide.clone(), key.clone());
                        async move { Ok::<_, hyper::Error>(serve(req, &seen, &*decide, &key).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        hook
    }

    /// `http://<addr>/dns`.
    fn url(&self) -> String {
        format!("http://{}/dns", self.addr)
    }

    /// Every request so far; each must have verified.
    fn requests(&self) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap().clone();
        for s in &seen {
            assert_eq!(s.check, Ok(()), "request not properly signed: {s:?}");
        }
        seen
    }

    /// How many requests so far (each checked as in [`Self::requests`]).
    fn count(&self) -> usize {
        self.requests().len()
    }
}

/// Answers one request to a [`Hook`].
async fn serve(
    req: Request<hyper::body::Incoming>,
    seen: &Mutex<Vec<Seen>>,
    decide: &(dyn Fn(&Seen) -> Act + Send + Sync),
    key: &[u8],
) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (content_type, signature) = (header("content-type"), header("x-dnsgate-signature"));
    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
    let raw = req.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let (t, check) = check_signature(key, &signature, &raw, &body);
    let s = Seen {
        method,
        path,
        content_type,
        signature,
        raw: String::from_utf8_lossy(&raw).into_owned(),
        body,
        t,
        check,
    };
    seen.lock().unwrap().push(s.clone());
    if s.check.is_err() {
        return reply(401, "bad signature".into(), None);
    }
    let mut act = decide(&s);
    loop {
        act = match act {
            Act::Json(v) => return reply(200, v.to_string(), None),
            Act::Status(code, text) => return reply(code, text.into(), None),
            Act::Redirect(to) => return reply(302, String::new(), Some(to)),
            Act::Hang => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return reply(200, json!({"action": "allow"}).to_string(), None);
            }
            Act::After(d, then) => {
                tokio::time::sleep(d).await;
                *then
            }
        }
    }
}

fn reply(code: u16, body: String, location: Option<String>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Some(to) = location {
        r.headers_mut().insert(
            "location",
            hyper::header::HeaderValue::from_str(&to).unwrap(),
        );
    }
    r
}

/// An external policy named `name` matching `traffic`, asking `url`; `opts` is appended
/// inside the `external` table (`, timeout_ms = 500` ...).
fn external(name: &str, traffic: &str, url: &str, opts: &str) -> String {
    format!(
        "[[policies]]\nname = \"{name}\"\naction = \"external\"\ntraffic = '{traffic}'\n\
         external = {{ url = \"{url}\", secret_file = \"risk.secret\"{opts} }}\n\n"
    )
}

/// A gate with `policies` and the secret file (no trailing newline).
async fn ext_gate(policies: &str) -> Gate {
    gate(policies, &[("risk.secret", SECRET)]).await
}

/// `name` `qtype` from a socket on `source` (a loopback address); bounded at 10 s.
async fn ask_from(source: &str, server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let (id, wire) = client::build(name, qtype, Opts::default());
    let sock = UdpSocket::bind((source, 0)).await.unwrap();
    sock.send_to(&wire, server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, id);
    m
}

/// `name` A, and how long the answer took.
async fn timed(server: SocketAddr, name: impl AsRef<str>) -> (Message, Duration) {
    let start = Instant::now();
    let m = query(server, name.as_ref(), RecordType::A).await;
    (m, start.elapsed())
}

/// Whether `m` is the default block answer (A 0.0.0.0 with EDE 15).
fn is_blocked(m: &Message) -> bool {
    m.metadata.response_code == ResponseCode::NoError
        && ips(m) == ["0.0.0.0"]
        && ede(m).map(|e| e.0) == Some(15)
}

/// The smallest TTL of the answer section.
fn min_ttl(m: &Message) -> u32 {
    m.answers
        .iter()
        .map(|r| r.ttl)
        .min()
        .expect("an answer record")
}

/// A Prometheus recorder for this thread only (the test must run on a current-thread
/// runtime, so that every task of the gate records into it).
fn local_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder()
}

/// `dnsgate_external_requests_total{policy, result}` in `text` (0 when absent).
fn requests_total(text: &str, policy: &str, result: &str) -> f64 {
    let series =
        format!("dnsgate_external_requests_total{{policy=\"{policy}\",result=\"{result}\"}}");
    crate::metrics::value(text, &series).unwrap_or(0.0)
}

/// Percentile `p` (0..=100) of sorted `xs`.
fn percentile(xs: &[Duration], p: usize) -> Duration {
    xs[((xs.len() - 1) * p).div_ceil(100)]
}

const IDENTITIES: &str = r#"
[[groups]]
id = "g-kids"
name = "kids"

[[groups]]
id = "g-home"
name = "household"

[[users]]
email = "kid@example.com"
name = "kid"
groups = ["g-kids", "g-home"]

[[devices]]
id = "tablet"
user = "kid@example.com"
ips = ["127.0.0.3"]

[[locations]]
name = "home"
networks = ["127.0.0.3/32"]
"#;

/// The request is what SPEC §11 says, field by field: the policy's name, the question
/// (lower case, no final dot, the type's name), the client (address; device, user and
/// groups from the identity directory; location; country `null` without GeoIP), the time
/// as RFC 3339 UTC whole seconds; POSTed as `application/json` and signed with the
/// secret file's bytes less its trailing newline. An endpoint that cannot verify the
/// signature cannot trust anything else in the request.
#[tokio::test]
async fn the_request_carries_the_question_and_client_and_is_signed() {
    let hook = Hook::start(|_| verdict("allow", json!({}))).await;
    let policies = format!(
        "[identity]\ndirectory = \"identities.toml\"\n\n{}",
        external(
            "risk check",
            r#"any(dns.domains[*] == "www.test")"#,
            &hook.url(),
            ", timeout_ms = 2000"
        )
    );
    // The secret file ends with a newline, as editors write it: not part of the key.
    let g = gate(
        &policies,
        &[
            ("risk.secret", &format!("{SECRET}\n")),
            ("identities.toml", IDENTITIES),
        ],
    )
    .await;

    let before = jiff::Timestamp::now().as_second();
    let m = ask_from("127.0.0.3", g.addr, "WwW.TeSt.", RecordType::AAAA).await;
    assert_eq!(ips(&m), ["2001:db8::10"], "allowed: the real answer");
    let m = ask_from("127.0.0.1", g.addr, "www.test.", RecordType::A).await;
    assert_eq!(ips(&m), ["192.0.2.10"], "allowed: the real answer");
    let after = jiff::Timestamp::now().as_second();

    let seen = hook.requests();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    for s in &seen {
        assert_eq!(s.method, "POST", "{s:?}");
        assert_eq!(s.path, "/dns", "{s:?}");
        assert_eq!(s.content_type, "application/json", "{s:?}");
        assert!(s.signature.starts_with(&format!("t={},v1=", s.t)), "{s:?}");
        assert!(
            (before..=after).contains(&s.t),
            "t {} not in {before}..={after}",
            s.t
        );
        let time = s.body["time"].as_str().unwrap();
        assert_eq!(time.len(), "2026-11-29T21:30:05Z".len(), "{time}");
        assert!(time.ends_with('Z') && !time.contains('.'), "{time}");
    }
    let without_time = |s: &Seen| {
        let mut b = s.body.clone();
        b.as_object_mut().unwrap().remove("time");
        b
    };
    assert_eq!(
        without_time(&seen[0]),
        json!({
            "policy": "risk check",
            "query": {"name": "www.test", "type": "AAAA"},
            "client": {
                "ip": "127.0.0.3", "device": "tablet", "user": "kid@example.com",
                "groups": ["kids", "household"], "location": "home", "country": null
            }
        }),
        "{}",
        seen[0].raw
    );
    assert_eq!(
        without_time(&seen[1]),
        json!({
            "policy": "risk check",
            "query": {"name": "www.test", "type": "A"},
            "client": {
                "ip": "127.0.0.1", "device": null, "user": null,
                "groups": [], "location": null, "country": null
            }
        }),
        "{}",
        seen[1].raw
    );
}

/// Only one trailing newline is dropped from the secret file: a key that really ends in
/// a newline ("key\n" written as "key\n\n") keeps it. An endpoint checking with the
/// newline-less key refuses the request, so `on_error` decides.
#[tokio::test]
async fn only_one_trailing_newline_is_dropped_from_the_secret() {
    let key = format!("{SECRET}\n");
    let hook = Hook::start_with_key(key.as_bytes(), |_| verdict("block", json!({}))).await;
    let policies = external(
        "risk",
        r#"dns.fqdn == "www.test""#,
        &hook.url(),
        ", timeout_ms = 2000",
    );
    let g = gate(&policies, &[("risk.secret", &format!("{SECRET}\n\n"))]).await;
    let m = query(g.addr, "www.test.", RecordType::A).await;
    assert!(
        is_blocked(&m),
        "the endpoint verified and said block: {m:?}"
    );
    assert_eq!(hook.count(), 1);
}

/// Each verdict does what it says: `allow` gives the real answer, `block` the block
/// answer with EDE 15 carrying the endpoint's reason, `override` the given addresses (A
/// and AAAA each get their own family), and `continue` goes on to the next policy in
/// precedence order (here one written earlier in the file with a larger precedence) or,
/// with none, to the real answer. A policy decided before the external one in precedence
/// means the endpoint is not asked at all.
#[tokio::test]
async fn each_verdict_decides_as_specified() {
    let hook = Hook::start(|s| match s.name() {
        "www.test" => verdict("allow", json!({})),
        "jp.test" => verdict("block", json!({"reason": "risk score 97"})),
        "pt.test" => verdict(
            "override",
            json!({"override_ips": ["192.0.2.99", "2001:db8::99"]}),
        ),
        _ => verdict("continue", json!({})),
    })
    .await;
    let policies = format!(
        "[[policies]]\nname = \"after\"\nprecedence = 20\naction = \"block\"\nblock_mode = \"nxdomain\"\n\
         traffic = 'dns.fqdn == \"us.test\"'\n\n\
         [[policies]]\nname = \"first\"\nprecedence = 5\naction = \"block\"\nblock_mode = \"refused\"\n\
         traffic = 'dns.fqdn == \"ads.test\"'\n\n\
         {}",
        external(
            "risk",
            r#"any(dns.domains[*] == "test")"#,
            &hook.url(),
            ", timeout_ms = 2000"
        )
        .replace(
            "action = \"external\"",
            "precedence = 10\naction = \"external\""
        )
    );
    let g = ext_gate(&policies).await;

    let m = query(g.addr, "www.test.", RecordType::A).await;
    assert_eq!(ips(&m), ["192.0.2.10"], "allow: {m:?}");
    assert_eq!(ede(&m), None);
    let m = query(g.addr, "www.test.", RecordType::AAAA).await;
    assert_eq!(ips(&m), ["2001:db8::10"], "allow: {m:?}");

    let m = query(g.addr, "jp.test.", RecordType::A).await;
    assert!(is_blocked(&m), "block: {m:?}");
    assert_eq!(ede(&m), Some((15, "risk score 97".into())));
    let m = query(g.addr, "jp.test.", RecordType::AAAA).await;
    assert_eq!(ips(&m), ["::"], "block, AAAA: {m:?}");
    assert_eq!(ede(&m), Some((15, "risk score 97".into())));

    let m = query(g.addr, "pt.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ips(&m), ["192.0.2.99"], "override, A: {m:?}");
    let m = query(g.addr, "pt.test.", RecordType::AAAA).await;
    assert_eq!(ips(&m), ["2001:db8::99"], "override, AAAA: {m:?}");

    // continue, then the later policy "after" decides.
    let m = query(g.addr, "us.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
    assert_eq!(ede(&m).map(|e| e.0), Some(15), "{m:?}");
    // continue, and nothing else matches: the real answer.
    let m = query(g.addr, "mixed.test.", RecordType::A).await;
    let mut got = ips(&m);
    got.sort();
    assert_eq!(got, ["192.0.2.56", "203.0.113.10"], "{m:?}");

    // "first" decides before the external policy is reached: nobody is asked.
    let m = query(g.addr, "ads.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{m:?}");

    let names: Vec<String> = hook
        .requests()
        .iter()
        .map(|s| format!("{} {}", s.name(), s.body["query"]["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            "www.test A",
            "www.test AAAA",
            "jp.test A",
            "jp.test AAAA",
            "pt.test A",
            "pt.test AAAA",
            "us.test A",
            "mixed.test A"
        ]
    );
    assert_eq!(
        g.upstream.queries(),
        3,
        "only allow and continue-to-the-real-answer resolve (www A, AAAA, mixed A)"
    );
}

/// How the endpoint misbehaves, set by the test as it goes.
type Mode = Arc<Mutex<Act>>;

/// No verdict (a 2xx with a body that is not a reply, HTTP 500, a 302 — not followed:
/// its target hears nothing —, a hanging endpoint, a refused connection): `on_error`
/// decides — `block`, `allow` (the real answer) or `continue` (the next policy) — and
/// each failure is counted under its result label. Failing closed or open is the
/// operator's choice and must hold for every kind of failure.
#[tokio::test(flavor = "current_thread")]
async fn without_a_verdict_on_error_decides_and_each_failure_is_counted() {
    let recorder = local_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);

    let target = Hook::start(|_| verdict("block", json!({}))).await;
    let mode: Mode = Arc::new(Mutex::new(Act::Hang));
    let hook = Hook::start({
        let mode = mode.clone();
        move |_| mode.lock().unwrap().clone()
    })
    .await;
    // A TCP port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let opts = |on_error: &str| format!(", timeout_ms = 150, on_error = \"{on_error}\"");
    let policies = [
        external(
            "eb",
            r#"dns.fqdn == "jp.test""#,
            &hook.url(),
            &opts("block"),
        ),
        external(
            "ea",
            r#"dns.fqdn == "pt.test""#,
            &hook.url(),
            &opts("allow"),
        ),
        external(
            "ec",
            r#"dns.fqdn == "us.test""#,
            &hook.url(),
            &opts("continue"),
        ),
        "[[policies]]\nname = \"after\"\naction = \"block\"\nblock_mode = \"nxdomain\"\n\
         traffic = 'dns.fqdn == \"us.test\"'\n\n"
            .to_owned(),
        external(
            "dead",
            r#"dns.fqdn == "mixed.test""#,
            &format!("http://{closed}/dns"),
            &opts("block"),
        ),
    ]
    .concat();
    let g = ext_gate(&policies).await;

    let failures = [
        ("bad_reply", Act::Status(200, "this is not json")),
        ("bad_reply", verdict("maybe", json!({}))),
        ("http_error", Act::Status(500, "{\"action\":\"allow\"}")),
        ("http_error", Act::Redirect(target.url())),
        ("timeout", Act::Hang),
    ];
    for (label, act) in &failures {
        *mode.lock().unwrap() = act.clone();
        let m = query(g.addr, "jp.test.", RecordType::A).await;
        assert!(is_blocked(&m), "{label} {act:?}, on_error block: {m:?}");
        let m = query(g.addr, "pt.test.", RecordType::A).await;
        assert_eq!(
            ips(&m),
            ["198.51.100.7"],
            "{label} {act:?}, on_error allow: {m:?}"
        );
        assert_eq!(ede(&m), None, "{label} {act:?}");
        let m = query(g.addr, "us.test.", RecordType::A).await;
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NXDomain,
            "{label} {act:?}, on_error continue: the next policy decides: {m:?}"
        );
    }
    let m = query(g.addr, "mixed.test.", RecordType::A).await;
    assert!(is_blocked(&m), "connection refused, on_error block: {m:?}");

    assert_eq!(target.count(), 0, "redirects are not followed");
    assert_eq!(hook.count(), 3 * failures.len());
    let text = handle.render();
    for policy in ["eb", "ea", "ec"] {
        for (result, n) in [
            ("bad_reply", 2.0),
            ("http_error", 2.0),
            ("timeout", 1.0),
            ("network_error", 0.0),
            ("allow", 0.0),
            ("block", 0.0),
        ] {
            assert_eq!(
                requests_total(&text, policy, result),
                n,
                "{policy} {result}:\n{text}"
            );
        }
    }
    assert_eq!(
        requests_total(&text, "dead", "network_error"),
        1.0,
        "{text}"
    );
    assert!(
        text.contains("dnsgate_external_request_duration_seconds"),
        "the duration histogram: {text}"
    );
}

/// The deadline counts from the query's arrival: with an endpoint that never answers
/// and `timeout_ms = 50`, `on_error` answers after about 50 ms — not after the client's
/// own timeout, not never. A resolver stuck behind a webhook is an outage.
#[tokio::test]
async fn a_hanging_endpoint_costs_the_query_no_more_than_its_timeout() {
    let hook = Hook::start(|_| Act::Hang).await;
    let policies = external(
        "risk",
        r#"any(dns.domains[*] == "ext.test")"#,
        &hook.url(),
        ", timeout_ms = 50, on_error = \"block\"",
    );
    let g = ext_gate(&policies).await;
    let mut took = Vec::new();
    for i in 0..10 {
        let (m, d) = timed(g.addr, &format!("h{i}.ext.test.")).await;
        assert!(is_blocked(&m), "{m:?}");
        took.push(d);
    }
    took.sort();
    println!(
        "hanging endpoint, timeout_ms 50: min {:?} median {:?} max {:?}",
        took[0], took[5], took[9]
    );
    assert!(
        took[0] >= Duration::from_millis(45),
        "no earlier than the timeout: {took:?}"
    );
    assert!(
        took[9] < Duration::from_millis(300),
        "within 50 ms + 250: {took:?}"
    );
    assert_eq!(hook.count(), 10);
}

/// Verdicts are kept for the reply's `ttl` and no longer: a second identical question
/// within it asks nobody; once the gate's clock passes it, the endpoint is asked again
/// (neither the verdict cache nor the packet cache repeats an expired verdict). The
/// answer's TTLs are capped at the verdict's life — an allow with ttl 7 turns the
/// upstream's 300 into at most 7, a block with ttl 7 the block TTL 60 into at most 7.
/// A reply without `ttl` is not kept (and its answer has TTL 0), and `max_cache` caps a
/// long `ttl`. An endpoint that says "for the next 7 s" must not be overridden by the
/// packet cache's idea of freshness.
#[tokio::test]
async fn verdicts_are_cached_for_their_ttl_and_answers_live_no_longer() {
    let hook = Hook::start(|s| match s.name() {
        "www.test" => verdict("allow", json!({"ttl": 7})),
        "jp.test" => verdict("block", json!({"ttl": 7, "reason": "r"})),
        "us.test" => verdict("allow", json!({})),
        _ => verdict("allow", json!({"ttl": 3600})),
    })
    .await;
    let policies = external(
        "risk",
        r#"any(dns.domains[*] == "test")"#,
        &hook.url(),
        ", timeout_ms = 2000, max_cache = \"20s\"",
    );
    let g = ext_gate(&policies).await;
    let clock = &g.running.shared.clock;
    let asked = |name: &str| hook.requests().iter().filter(|s| s.name() == name).count();

    // ttl 7: asked once, answered twice, TTL capped.
    for round in 0..2 {
        let m = query(g.addr, "www.test.", RecordType::A).await;
        assert_eq!(ips(&m), ["192.0.2.10"], "round {round}");
        assert!(min_ttl(&m) <= 7, "round {round}: TTL {} > 7", min_ttl(&m));
        let m = query(g.addr, "jp.test.", RecordType::A).await;
        assert!(is_blocked(&m), "round {round}: {m:?}");
        assert!(
            min_ttl(&m) <= 7,
            "round {round}: block TTL {} > 7",
            min_ttl(&m)
        );
    }
    assert_eq!(asked("www.test"), 1, "cached for its ttl");
    assert_eq!(asked("jp.test"), 1, "cached for its ttl");

    // Past the ttl: asked again.
    clock.advance(Duration::from_secs(8));
    let m = query(g.addr, "www.test.", RecordType::A).await;
    assert_eq!(ips(&m), ["192.0.2.10"]);
    let m = query(g.addr, "jp.test.", RecordType::A).await;
    assert!(is_blocked(&m), "{m:?}");
    assert_eq!(asked("www.test"), 2, "asked again once the verdict expired");
    assert_eq!(asked("jp.test"), 2, "asked again once the verdict expired");

    // No ttl: never kept; the answer has TTL 0.
    for _ in 0..2 {
        let m = query(g.addr, "us.test.", RecordType::A).await;
        assert_eq!(ips(&m), ["203.0.113.9"]);
        assert_eq!(min_ttl(&m), 0, "{m:?}");
    }
    assert_eq!(asked("us.test"), 2, "a verdict without ttl is not cached");

    // ttl 3600 under max_cache 20 s: answer TTL at most 20, asked again after 21 s.
    let m = query(g.addr, "pt.test.", RecordType::A).await;
    assert!(min_ttl(&m) <= 20, "TTL {} > max_cache", min_ttl(&m));
    clock.advance(Duration::from_secs(10));
    let m = query(g.addr, "pt.test.", RecordType::A).await;
    assert!(
        min_ttl(&m) <= 10,
        "TTL {} > what is left of max_cache",
        min_ttl(&m)
    );
    assert_eq!(asked("pt.test"), 1);
    clock.advance(Duration::from_secs(11));
    query(g.addr, "pt.test.", RecordType::A).await;
    assert_eq!(asked("pt.test"), 2, "max_cache caps a long ttl");
}

/// Identical questions asked together share one request: twenty clients' ports on one
/// address asking the same name while the endpoint takes 150 ms → one request, twenty
/// blocked answers with its reason. (The reply has no `ttl`, so only single flight —
/// not the verdict cache — can explain a single request.) A burst of retries must not
/// become a burst of webhook calls.
#[tokio::test]
async fn identical_questions_asked_together_share_one_request() {
    let hook = Hook::start(|_| {
        Act::After(
            Duration::from_millis(150),
            Box::new(verdict("block", json!({"reason": "shared"}))),
        )
    })
    .await;
    let policies = external(
        "risk",
        r#"any(dns.domains[*] == "ext.test")"#,
        &hook.url(),
        ", timeout_ms = 1000",
    );
    let g = ext_gate(&policies).await;
    let asks: Vec<_> = (0..20)
        .map(|_| tokio::spawn(timed(g.addr, "same.ext.test.")))
        .collect();
    for a in asks {
        let (m, took) = a.await.unwrap();
        assert!(is_blocked(&m), "{m:?}");
        assert_eq!(ede(&m), Some((15, "shared".into())));
        assert!(took < Duration::from_millis(1000), "{took:?}");
    }
    assert_eq!(hook.count(), 1, "{:#?}", hook.requests());
}

/// A verdict is about one client: 127.0.0.1's cached "block" (ttl 60) is not replayed to
/// 127.0.0.2, whose question goes to the endpoint with its own address — and when the
/// endpoint allows that address, it gets the real answer. Meanwhile 127.0.0.1 still gets
/// its block from the cache. One user's verdict leaking to another would be a policy
/// bypass (or an outage) across the network.
#[tokio::test]
async fn a_verdict_is_not_replayed_to_another_client() {
    let hook = Hook::start(|s| match s.ip() {
        "127.0.0.1" => verdict("block", json!({"ttl": 60, "reason": "you"})),
        _ => verdict("allow", json!({"ttl": 60})),
    })
    .await;
    let policies = external(
        "risk",
        r#"dns.fqdn == "www.test""#,
        &hook.url(),
        ", timeout_ms = 2000",
    );
    let g = ext_gate(&policies).await;
    for _ in 0..2 {
        let m = ask_from("127.0.0.1", g.addr, "www.test.", RecordType::A).await;
        assert!(is_blocked(&m), "{m:?}");
    }
    assert_eq!(hook.count(), 1);
    for _ in 0..2 {
        let m = ask_from("127.0.0.2", g.addr, "www.test.", RecordType::A).await;
        assert_eq!(ips(&m), ["192.0.2.10"], "{m:?}");
        assert_eq!(ede(&m), None);
    }
    let m = ask_from("127.0.0.1", g.addr, "www.test.", RecordType::A).await;
    assert!(is_blocked(&m), "{m:?}");
    let who: Vec<String> = hook.requests().iter().map(|s| s.ip().to_owned()).collect();
    assert_eq!(who, ["127.0.0.1", "127.0.0.2"]);
}

/// A slow endpoint slows only the queries its policy matches: while a stream of matching
/// queries waits on an endpoint that never answers (timeout_ms 2000, on_error continue),
/// 200 other queries (distinct names, each resolved upstream) keep their latency — p99
/// under a quarter of that timeout, which a query held behind the endpoint would take
/// whole. One webhook must not take the whole resolver down with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_slow_queries_it_does_not_match() {
    let hook = Hook::start(|_| Act::Hang).await;
    let policies = external(
        "risk",
        r#"any(dns.domains[*] == "ext.test")"#,
        &hook.url(),
        ", timeout_ms = 2000, on_error = \"continue\"",
    );
    let g = ext_gate(&policies).await;
    let addr = g.addr;

    /// 200 unmatched queries in 4 lanes of 50; their latencies, sorted.
    async fn unmatched(addr: SocketAddr, tag: &str) -> Vec<Duration> {
        let lanes: Vec<_> = (0..4)
            .map(|lane| {
                let tag = tag.to_owned();
                tokio::spawn(async move {
                    let mut took = Vec::new();
                    for i in 0..50 {
                        let (m, d) = timed(addr, &format!("{tag}-{lane}-{i}.test.")).await;
                        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
                        took.push(d);
                    }
                    took
                })
            })
            .collect();
        let mut all = Vec::new();
        for l in lanes {
            all.extend(l.await.unwrap());
        }
        all.sort();
        all
    }

    let quiet = unmatched(addr, "quiet").await;

    // Matching queries, one every 2 ms, each waiting its 2 s.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut waiting = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                waiting.push(tokio::spawn(timed(addr, format!("m{i}.ext.test."))));
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let mut slowest = Duration::ZERO;
            for w in waiting {
                let (m, d) = w.await.unwrap();
                assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{m:?}");
                slowest = slowest.max(d);
            }
            (i, slowest)
        }
    });
    // Let the matching queries pile up first.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let busy = unmatched(addr, "busy").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (matching, slowest) = stream.await.unwrap();

    println!(
        "unmatched queries alone: p50 {:?} p99 {:?} max {:?}",
        percentile(&quiet, 50),
        percentile(&quiet, 99),
        quiet[quiet.len() - 1]
    );
    println!(
        "unmatched queries beside {matching} matching ones on a hanging endpoint: p50 {:?} p99 {:?} max {:?}; slowest matching {slowest:?}",
        percentile(&busy, 50),
        percentile(&busy, 99),
        busy[busy.len() - 1]
    );
    assert!(
        hook.count() >= 50,
        "the endpoint was busy: {}",
        hook.count()
    );
    // Held behind the endpoint, they would take its 2 s timeout; a quarter of it is the
    // bound (a 50 ms bound against a 200 ms timeout failed at 52-70 ms p99, and 100 ms once
    // in the full suite, when builds or the other tests shared the two cores).
    assert!(
        percentile(&busy, 99) < Duration::from_millis(500),
        "p99 {:?}",
        percentile(&busy, 99)
    );
}

/// At most 256 requests are in flight per policy: 300 distinct questions at once to an
/// endpoint that never answers → the endpoint sees at most 256, the rest are answered by
/// `on_error` at once (counted as "overloaded"), and every question is answered within
/// its deadline. A flood of matching queries must not pile up behind a slow endpoint.
#[tokio::test(flavor = "current_thread")]
async fn past_256_requests_in_flight_on_error_answers_at_once() {
    let recorder = local_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let hook = Hook::start(|_| Act::Hang).await;
    let policies = external(
        "risk",
        r#"any(dns.domains[*] == "ext.test")"#,
        &hook.url(),
        ", timeout_ms = 2000, on_error = \"block\"",
    );
    let g = ext_gate(&policies).await;
    let asks: Vec<_> = (0..300)
        .map(|i| tokio::spawn(timed(g.addr, format!("o{i}.ext.test."))))
        .collect();
    let mut took = Vec::new();
    for a in asks {
        let (m, d) = a.await.unwrap();
        assert!(is_blocked(&m), "{m:?}");
        took.push(d);
    }
    took.sort();
    let asked = hook.count();
    let text = handle.render();
    let overloaded = requests_total(&text, "risk", "overloaded");
    let timeouts = requests_total(&text, "risk", "timeout");
    println!(
        "300 at once: endpoint asked {asked}, overloaded {overloaded}, timeouts {timeouts}; fastest {:?}, slowest {:?}",
        took[0], took[299]
    );
    assert_eq!(asked, dnsgate::external::MAX_IN_FLIGHT, "{text}");
    assert_eq!(overloaded, (300 - asked) as f64, "{text}");
    assert_eq!(timeouts, asked as f64, "{text}");
    let fast = took
        .iter()
        .filter(|d| **d < Duration::from_millis(1000))
        .count();
    assert!(
        fast >= 300 - asked,
        "overloaded answers at once: {fast} fast"
    );
    assert!(took[299] < Duration::from_millis(2500), "{:?}", took[299]);
}

/// A question that joins a request in flight shares it to the end: 127.0.0.1 asks at
/// t0, the same question comes again from another port at t0 + 100 ms (a client's
/// retry), the endpoint never answers, timeout_ms 200. The endpoint must see one request,
/// and every request dnsgate makes must be counted in `dnsgate_external_requests_total`.
#[tokio::test(flavor = "current_thread")]
async fn a_question_joining_a_flight_does_not_start_a_second_request() {
    let recorder = local_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let hook = Hook::start(|_| Act::Hang).await;
    let policies = external(
        "risk",
        r#"any(dns.domains[*] == "ext.test")"#,
        &hook.url(),
        ", timeout_ms = 200, on_error = \"block\"",
    );
    let g = ext_gate(&policies).await;
    let first = tokio::spawn(timed(g.addr, "retry.ext.test."));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (again, took) = timed(g.addr, "retry.ext.test.").await;
    let (first, first_took) = first.await.unwrap();
    assert!(is_blocked(&first), "{first:?}");
    assert!(is_blocked(&again), "{again:?}");
    assert!(first_took < Duration::from_millis(450), "{first_took:?}");
    assert!(took < Duration::from_millis(450), "{took:?}");
    // Let anything still in flight finish or be counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = hook.count();
    let text = handle.render();
    let counted: f64 = [
        "allow",
        "block",
        "override",
        "continue",
        "timeout",
        "http_error",
        "bad_reply",
        "network_error",
        "overloaded",
    ]
    .iter()
    .map(|r| requests_total(&text, "risk", r))
    .sum();
    println!("joined flight: endpoint asked {asked} times, {counted} counted");
    assert_eq!(counted, asked as f64, "every request is counted:\n{text}");
    assert_eq!(asked, 1, "the retry shares the first request");
}

/// Configuration errors name the place: an `http://` URL to a non-loopback address and
/// a missing secret file are load errors at file:line:col of the offending value, so
/// `dnsgate check` and a reload refuse them.
#[test]
fn a_cleartext_url_or_a_missing_secret_is_a_load_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    crate::write_files(dir.path(), &[("risk.secret", SECRET)]);
    let cfg = dir.path().join("dnsgate.toml");
    let load = |text: &str| {
        std::fs::write(&cfg, text).unwrap();
        match dnsgate::runtime::Runtime::load(&cfg) {
            Ok(_) => panic!("loads:\n{text}"),
            Err(d) => dnsgate::diag::Diagnostics(d).to_string(),
        }
    };
    let policy = |url: &str, secret: &str| {
        format!(
            "[upstream]\nservers = [\"udp://127.0.0.1:9\"]\n\n\
             [[policies]]\nname = \"risk\"\naction = \"external\"\n\
             traffic = 'dns.fqdn == \"www.test\"'\n\
             external = {{ url = \"{url}\", secret_file = \"{secret}\" }}\n"
        )
    };
    // Line 8; the url's value starts at column 20.
    let err = load(&policy("http://10.0.0.1/x", "risk.secret"));
    assert!(
        err.contains(&format!("{}:8:20:", cfg.display())) && err.contains("loopback"),
        "{err}"
    );
    // The secret_file value: column 20 + len(url) + 2 + len(", secret_file = ").
    let url = "http://127.0.0.1:1/x";
    let col = 20 + url.len() + 2 + ", secret_file = ".len();
    let err = load(&policy(url, "missing.secret"));
    assert!(
        err.contains(&format!("{}:8:{col}:", cfg.display())) && err.contains("missing.secret"),
        "{err}"
    );
    // An empty secret is refused too.
    crate::write_files(dir.path(), &[("empty.secret", "\n")]);
    let err = load(&policy(url, "empty.secret"));
    assert!(
        err.contains(&format!("{}:8:{col}:", cfg.display())),
        "{err}"
    );
}

/// A DoH client (HTTP/2) trusting `ca`, with `HOSTNAME` at `addr`, giving up after
/// `timeout`.
fn doh_client(ca: &str, addr: SocketAddr, timeout: Duration) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .resolve(crate::dot::HOSTNAME, addr)
        .timeout(timeout)
        .build()
        .unwrap()
}

/// A client that gives up on a question must not freeze its verdict for everyone after
/// it: a DoH client asks www.test while the endpoint takes 400 ms and cancels after
/// 100 ms (HTTP/2 RST_STREAM: the server drops that query). Later the same question
/// from the same address over UDP is asked afresh each time — the replies carry no
/// `ttl`, so nothing may be kept — and when the endpoint turns from "block" to "allow",
/// the next answer is the real one.
#[tokio::test]
async fn a_cancelled_question_does_not_freeze_the_verdict() {
    let mode: Mode = Arc::new(Mutex::new(Act::After(
        Duration::from_millis(400),
        Box::new(verdict("block", json!({}))),
    )));
    let hook = Hook::start({
        let mode = mode.clone();
        move |_| mode.lock().unwrap().clone()
    })
    .await;
    let tls = crate::dot::certificates();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"{}\"\n\
         doh = {{ listen = [\"127.0.0.1:0\"], cert = \"cert.pem\", key = \"key.pem\" }}\n\n\
         [upstream]\nservers = [\"udp://{{UPSTREAM}}\"]\ntimeout_ms = 1000\n\n{}",
        crate::dot::HOSTNAME,
        external(
            "risk",
            r#"dns.fqdn == "www.test""#,
            &hook.url(),
            ", timeout_ms = 2000, on_error = \"allow\""
        )
    );
    let up = crate::upstream::start().await;
    let g = crate::gate_with(
        up,
        &config,
        &[
            ("risk.secret", SECRET),
            ("cert.pem", &tls.1),
            ("key.pem", &tls.2),
        ],
    )
    .await;
    let doh = g.running.doh_addrs[0];
    let c = doh_client(&tls.0, doh, Duration::from_millis(100));
    let (_, wire) = client::build("www.test.", RecordType::A, Opts::default());
    let r = c
        .post(format!(
            "https://{}:{}/dns-query",
            crate::dot::HOSTNAME,
            doh.port()
        ))
        .header("content-type", "application/dns-message")
        .body(wire)
        .send()
        .await;
    assert!(r.is_err(), "the DoH client gave up: {r:?}");
    // The endpoint got that request; let the server notice the cancellation.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.count(), 1);

    *mode.lock().unwrap() = verdict("block", json!({}));
    let m = ask_from("127.0.0.1", g.addr, "www.test.", RecordType::A).await;
    assert!(is_blocked(&m), "{m:?}");
    assert_eq!(hook.count(), 2, "asked afresh");

    // The endpoint changes its mind; time passes (within the endpoint's 15-minute window
    // for signature timestamps, which reads the real clock).
    *mode.lock().unwrap() = verdict("allow", json!({}));
    g.running.shared.clock.advance(Duration::from_secs(60));
    let m = ask_from("127.0.0.1", g.addr, "www.test.", RecordType::A).await;
    let asked = hook.count();
    assert_eq!(
        (ips(&m), asked),
        (vec!["192.0.2.10".to_owned()], 3),
        "the endpoint, asked again, allows: {m:?}"
    );
}

/// An `https://` endpoint with a certificate from a test CA: verified against `[upstream]
/// ca_file` (plus the system's roots) and asked; with a CA that did not sign it, the
/// handshake fails, the failure is a network error, and `on_error` decides — the request
/// never goes out in clear text or to an unverified server.
#[tokio::test]
async fn an_https_endpoint_is_verified_against_ca_file() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (ca, chain, key) = crate::tlsup::certificate_for("localhost");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(0usize));
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() < len {
                        continue;
                    }
                    *seen.lock().unwrap() += 1;
                    let reply = r#"{"action":"block","reason":"over https"}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\n\r\n{reply}",
                        reply.len()
                    );
                    let _ = tls.write_all(answer.as_bytes()).await;
                    got.clear();
                }
            });
        }
    });
    let config = |ca_file: &str| {
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n\n[upstream]\nservers = [\"udp://{{UPSTREAM}}\"]\n\
             ca_file = \"{ca_file}\"\n\n{}",
            external(
                "risk",
                r#"dns.fqdn == "www.test""#,
                &format!("https://localhost:{port}/dns"),
                ", timeout_ms = 2000, on_error = \"allow\""
            )
        )
    };
    let up = crate::upstream::start().await;
    let g = crate::gate_with(
        up,
        &config("ca.pem"),
        &[("ca.pem", &ca), ("risk.secret", SECRET)],
    )
    .await;
    let m = query(g.addr, "www.test.", RecordType::A).await;
    assert!(is_blocked(&m), "{m:?}");
    assert_eq!(ede(&m).map(|e| e.1), Some("over https".to_owned()));
    assert_eq!(*requests.lock().unwrap(), 1);
    // Another CA: no request reaches the endpoint, and on_error (allow) decides.
    let (other, _, _) = crate::tlsup::certificate_for("localhost");
    let up = crate::upstream::start().await;
    let g = crate::gate_with(
        up,
        &config("other.pem"),
        &[("other.pem", &other), ("risk.secret", SECRET)],
    )
    .await;
    let m = query(g.addr, "www.test.", RecordType::A).await;
    assert_eq!(ips(&m), ["192.0.2.10"], "{m:?}");
    assert_eq!(
        *requests.lock().unwrap(),
        1,
        "nothing sent to an unverified server"
    );
}
