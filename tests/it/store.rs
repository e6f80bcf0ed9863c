//! The query store (SPEC §12 "Query log") through the admin API: queries sent over real
//! UDP come back as rows of `GET /api/v1/querylog`, filters select them, retention deletes
//! them, and the search needs `dnsgate.querylog.read`. Also the `[querylog]` settings.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::client::{build, ips, query};
use crate::{Gate, gate_with};

const IDENTITIES: &str = r#"
[[users]]
email = "bob@example.com"

[[devices]]
id = "laptop"
user = "bob@example.com"
ips = ["127.0.0.9"]
"#;

/// A gate with `[api]` (the store on by default) and `querylog`, a reader token and one
/// that may read lists only: (the gate, the API's address, the reader's secret, the
/// other's).
async fn store_gate(querylog: &str) -> (Gate, SocketAddr, String, String) {
    let (reader, reader_hash) = dnsgate::access::new_secret();
    let (lists, lists_hash) = dnsgate::access::new_secret();
    let tokens = format!(
        "[[tokens]]\nname = \"auditor\"\nhash = \"{reader_hash}\"\n\
         policies = [{{ effect = \"allow\", permissions = [\"dnsgate.querylog.read\"], resources = [\"*\"] }}]\n\n\
         [[tokens]]\nname = \"lists\"\nhash = \"{lists_hash}\"\n\
         policies = [{{ effect = \"allow\", permissions = [\"dnsgate.lists.*\", \"dnsgate.querylog.list\"], resources = [\"*\"] }}]\n"
    );
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\n\n\
         [upstream]\nservers = [\"udp://{{UPSTREAM}}\"]\n\n\
         [api]\nlisten = \"127.0.0.1:0\"\ntokens = \"tokens.toml\"\n\n\
         [identity]\ndirectory = \"identities.toml\"\n\n{querylog}\n\
         [[lists]]\nname = \"ads\"\npath = \"ads.txt\"\n\n\
         [[policies]]\nname = \"ads\"\naction = \"block\"\ntraffic = 'any(dns.domains[*] in $ads)'\n"
    );
    let up = crate::upstream::start().await;
    let g = gate_with(
        up,
        &config,
        &[
            ("tokens.toml", &tokens),
            ("identities.toml", IDENTITIES),
            ("ads.txt", "ads.test\n"),
        ],
    )
    .await;
    let api = dnsgate::api::start(g.running.shared.clone())
        .await
        .unwrap()
        .expect("[api] is configured");
    (g, api.addr, reader, lists)
}

async fn search(addr: SocketAddr, query: &str, secret: Option<&str>) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut r = reqwest::Client::new().get(format!("http://{addr}/api/v1/querylog{query}"));
    if let Some(s) = secret {
        r = r.bearer_auth(s);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let body = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null);
    (status, body)
}

/// The rows of a search, asked again until there are `n` (the writer flushes a batch at a
/// time; at most 10 s: a test bound, not a check).
async fn rows(addr: SocketAddr, query: &str, secret: &str, n: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    for _ in 0..100 {
        let (status, body) = search(addr, query, Some(secret)).await;
        assert_eq!(status, 200, "{body}");
        rows = body.as_array().unwrap().clone();
        if rows.len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rows
}

fn names(rows: &[Value]) -> Vec<&str> {
    rows.iter().map(|r| r["name"].as_str().unwrap()).collect()
}

/// A query over UDP from `source` (any loopback address).
async fn query_from(server: SocketAddr, source: &str, name: &str) -> Message {
    let (_, wire) = build(name, RecordType::A, crate::client::Opts::default());
    let sock = tokio::net::UdpSocket::bind((source, 0)).await.unwrap();
    sock.send_to(&wire, server).await.unwrap();
    let mut buf = vec![0; 65_535];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

#[tokio::test]
async fn every_query_served_is_a_row_the_api_finds_and_filters() {
    let (g, addr, reader, _) = store_gate("").await;
    const N: usize = 30;
    for i in 0..N {
        let name = ["www.test.", "jp.test.", "ads.test."][i % 3];
        query(g.addr, name, RecordType::A).await;
    }
    let all = rows(addr, "?limit=1000", &reader, N).await;
    assert_eq!(all.len(), N, "one row per query");
    // Newest first, each with the JSON-lines log's fields.
    let times: Vec<&str> = all.iter().map(|r| r["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert_eq!(all[0]["client"], "127.0.0.1");
    assert_eq!(all[0]["type"], "A");
    for key in [
        "time",
        "client",
        "device",
        "user",
        "name",
        "type",
        "action",
        "policy",
        "phase",
        "rcode",
        "latency_ms",
        "cached",
    ] {
        assert!(all[0].get(key).is_some(), "{key} in {}", all[0]);
    }
    // By action, with the deciding policy.
    let blocked = rows(addr, "?action=block", &reader, N / 3).await;
    assert_eq!(blocked.len(), N / 3);
    assert!(
        blocked
            .iter()
            .all(|r| r["name"] == "ads.test" && r["policy"] == "ads")
    );
    // By name: the domain and the names below it.
    assert_eq!(
        rows(addr, "?name=JP.test.", &reader, N / 3).await.len(),
        N / 3
    );
    assert_eq!(rows(addr, "?name=test", &reader, N).await.len(), N);
    assert!(rows(addr, "?name=p.test", &reader, 0).await.is_empty());
    // A limit.
    assert_eq!(names(&rows(addr, "?limit=2", &reader, 2).await).len(), 2);

    // Another client, a known device of a user; then a time window around it.
    let since = g.running.shared.clock.wall();
    g.running.shared.clock.advance(Duration::from_secs(60));
    let m = query_from(g.addr, "127.0.0.9", "www.test.").await;
    assert_eq!(ips(&m), ["192.0.2.10"]);
    let mine = rows(addr, "?client=127.0.0.9", &reader, 1).await;
    assert_eq!(names(&mine), ["www.test"]);
    assert_eq!(mine[0]["device"], "laptop");
    assert_eq!(mine[0]["user"], "bob@example.com");
    assert_eq!(rows(addr, "?device=laptop", &reader, 1).await.len(), 1);
    assert_eq!(
        rows(addr, "?user=bob@example.com", &reader, 1).await.len(),
        1
    );
    let q = format!("?since={}", since.to_string().replace('+', "%2B"));
    assert_eq!(names(&rows(addr, &q, &reader, 1).await), ["www.test"]);
    let q = format!("?until={since}&limit=1000");
    assert_eq!(rows(addr, &q, &reader, N).await.len(), N);
    assert!(
        rows(addr, "?client=127.0.0.9&action=block", &reader, 0)
            .await
            .is_empty()
    );

    // Bad parameters.
    for bad in [
        "?limit=0",
        "?limit=5000",
        "?since=yesterday",
        "?action=maybe",
        "?client=x",
        "?colour=red",
    ] {
        let (status, body) = search(addr, bad, Some(&reader)).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &Value::from("invalid")),
            "{bad}: {body}"
        );
    }
}

#[tokio::test]
async fn the_search_needs_querylog_read() {
    let (g, addr, reader, lists) = store_gate("").await;
    query(g.addr, "www.test.", RecordType::A).await;
    assert_eq!(rows(addr, "", &reader, 1).await.len(), 1);
    let (status, body) = search(addr, "", Some(&lists)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &Value::from("forbidden")),
        "{body}"
    );
    // Even with bad parameters, the permission comes first.
    assert_eq!(search(addr, "?limit=0", Some(&lists)).await.0, 403);
    assert_eq!(search(addr, "", None).await.0, 401);
    assert_eq!(search(addr, "", Some("dgt_nobody_nothing")).await.0, 401);
}

#[tokio::test]
async fn retention_deletes_old_rows() {
    let (g, addr, reader, _) = store_gate("[querylog]\nretention = \"1d\"\n").await;
    for _ in 0..5 {
        query(g.addr, "www.test.", RecordType::A).await;
    }
    assert_eq!(rows(addr, "", &reader, 5).await.len(), 5);
    // Two days on (the one clock), the next round deletes the five; a new query stays.
    g.running
        .shared
        .clock
        .advance(Duration::from_secs(2 * 86_400));
    query(g.addr, "jp.test.", RecordType::A).await;
    let left = rows(addr, "", &reader, 1).await;
    assert_eq!(names(&left), ["jp.test"]);
}

#[tokio::test]
async fn the_file_and_the_store_together_and_no_store_is_503() {
    let (g, addr, reader, _) = store_gate("[querylog]\npath = \"q.jsonl\"\n").await;
    query(g.addr, "www.test.", RecordType::A).await;
    let stored = rows(addr, "", &reader, 1).await;
    let lines = crate::query_log(&g.dir.path().join("q.jsonl"), |l| l.len() == 1).await;
    assert_eq!(stored, lines, "the same row in both");
    assert!(g.dir.path().join("state/querylog.sqlite").exists());

    let (g, addr, reader, _) = store_gate("[querylog]\nstore = \"none\"\n").await;
    query(g.addr, "www.test.", RecordType::A).await;
    let (status, body) = search(addr, "", Some(&reader)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &Value::from("unavailable")),
        "{body}"
    );
    assert!(!g.dir.path().join("state/querylog.sqlite").exists());
}

#[test]
fn querylog_settings_default_and_bad_values_are_load_errors_at_their_position() {
    use dnsgate::querylog::store::StoreKind;
    use dnsgate::runtime::Runtime;
    let dir = tempfile::tempdir().unwrap();
    let load = |text: &str| {
        let path = dir.path().join("dnsgate.toml");
        std::fs::write(&path, text).unwrap();
        Runtime::load(&path)
    };
    let head = "[server]\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"st\"\n";
    // Without [api], no store; with it, SQLite under the state directory for 7 days.
    let rt = load(head).unwrap();
    assert_eq!(rt.settings.querylog_store, None);
    let rt = load(&format!("{head}[api]\nlisten = \"127.0.0.1:0\"\n")).unwrap();
    let spec = rt.settings.querylog_store.clone().unwrap();
    assert_eq!(
        spec.kind,
        StoreKind::Sqlite {
            path: dir.path().join("st/querylog.sqlite")
        }
    );
    assert_eq!(spec.retention, Duration::from_secs(7 * 86_400));
    // Asked for without [api]; a retention of its own; no file.
    let rt = load(&format!(
        "{head}[querylog]\nstore = \"sqlite\"\nretention = \"36h\"\n"
    ))
    .unwrap();
    assert_eq!(
        rt.settings.querylog_store.as_ref().unwrap().retention,
        Duration::from_secs(36 * 3600)
    );
    assert_eq!(rt.settings.querylog, None);
    for (body, col, says) in [
        ("store = \"mysql\"", 9, "store `mysql` is unknown"),
        ("store = \"postgres\"", 9, "needs a fleet"),
        ("retention = \"soon\"", 13, "is not a duration"),
        ("retention = \"10s\"", 13, "out of range"),
    ] {
        let diags = load(&format!("{head}[querylog]\n{body}\n")).unwrap_err();
        assert_eq!(diags.len(), 1, "{}", dnsgate::diag::Diagnostics(diags));
        let d = &diags[0];
        assert_eq!((d.line, d.col), (5, col), "{body}: {d}");
        assert!(d.message.contains(says), "{body}: {d}");
    }
}

/// `dnsgate run` stopped by SIGTERM right after its queries writes the store's last batch
/// before exiting (the writer lets rows gather for half a second: without the drain they
/// would be lost).
#[tokio::test]
async fn the_last_rows_are_written_when_dnsgate_stops() {
    let up = crate::upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::cli::write_config(
        dir.path(),
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\n\
             [upstream]\nservers = [\"udp://{}\"]\n\
             [api]\nlisten = \"127.0.0.1:0\"\n",
            up.addr
        ),
    );
    let server = crate::cli::Server::start(&cfg);
    for i in 0..20 {
        // An answer each (NXDOMAIN from the test zone): every query was served.
        let m = query(server.addr, &format!("n{i}.test."), RecordType::A).await;
        assert!(ips(&m).is_empty(), "{m:?}");
    }
    let pid = server.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut server = server;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "dnsgate did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let db = rusqlite::Connection::open(dir.path().join("state/querylog.sqlite")).unwrap();
    let rows: i64 = db
        .query_row("SELECT count(*) FROM queries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 20);
}
