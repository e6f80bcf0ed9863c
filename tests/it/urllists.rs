//! URL lists (SPEC §2 `url = ...`, `refresh`): fetched at start, refreshed with
//! conditional GETs, swapped in without a reload, kept on disk for a start while the
//! source is down, refused past `max_size`. The source is a small HTTP/1.1 server on
//! 127.0.0.1 in this process, on a thread of its own (loading a configuration blocks the
//! calling thread while it fetches, so the source must not need the test's runtime).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use dnsgate::lists::url::{Error, Fetched, Fetcher, Validators};

use crate::cli::{Server, dnsgate, free_port, metrics, write_config};
use crate::client::{ede, query};
use crate::metrics::value;
use crate::upstream;

/// What the source answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 200 with the body (304 to a matching If-None-Match).
    List,
    /// 500.
    Fail,
}

/// One request the source saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub path: String,
    pub if_none_match: Option<String>,
    pub user_agent: Option<String>,
    pub status: u16,
}

struct State {
    body: Vec<u8>,
    version: u32,
    answer: Answer,
    /// Send Content-Length (else the body ends when the connection closes).
    send_length: bool,
    /// Send an ETag (and honour If-None-Match).
    send_etag: bool,
    seen: Vec<Seen>,
}

/// A list source on loopback.
pub(crate) struct ListSource {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ListSource {
    /// Serves `body` with ETag `"v1"`.
    pub(crate) fn start(body: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            body: body.as_bytes().to_vec(),
            version: 1,
            answer: Answer::List,
            send_length: true,
            send_etag: true,
            seen: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (state, stop) = (state.clone(), stop.clone());
            move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(c) = conn {
                        serve(c, &state);
                    }
                }
            }
        });
        Self {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Serves a new body under a new ETag.
    pub(crate) fn set_body(&self, body: &[u8]) {
        let mut s = self.state.lock().unwrap();
        s.body = body.to_vec();
        s.version += 1;
    }

    pub(crate) fn set_answer(&self, a: Answer) {
        self.state.lock().unwrap().answer = a;
    }

    pub(crate) fn set_send_length(&self, on: bool) {
        self.state.lock().unwrap().send_length = on;
    }

    pub(crate) fn set_send_etag(&self, on: bool) {
        self.state.lock().unwrap().send_etag = on;
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Closes the port: from now on connections are refused.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for ListSource {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(mut c: TcpStream, state: &Mutex<State>) {
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let (if_none_match, user_agent) = (header("if-none-match"), header("user-agent"));
    let mut s = state.lock().unwrap();
    let etag = format!("\"v{}\"", s.version);
    let (status, body): (u16, Vec<u8>) = match s.answer {
        Answer::Fail => (500, b"oops".to_vec()),
        Answer::List if s.send_etag && if_none_match.as_deref() == Some(etag.as_str()) => {
            (304, Vec::new())
        }
        Answer::List => (200, s.body.clone()),
    };
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        _ => "Internal Server Error",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    if s.send_etag {
        out.push_str(&format!("ETag: {etag}\r\n"));
    }
    if status != 304 && (s.send_length || status != 200) {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    s.seen.push(Seen {
        path,
        if_none_match,
        user_agent,
        status,
    });
    drop(s);
    let _ = c.write_all(out.as_bytes());
    let _ = c.write_all(&body);
}

async fn blocked(server: SocketAddr, name: &str) -> bool {
    ede(&query(server, name, RecordType::A).await).is_some_and(|(code, _)| code == 15)
}

/// Moves the `confirmed` time of every saved list copy under `dir` back by `secs`.
fn age_saved_copies(dir: &Path, secs: u64) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let mut meta: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            let confirmed = meta["confirmed"].as_u64().expect("a confirmed time");
            meta["confirmed"] = serde_json::json!(confirmed - secs);
            std::fs::write(&p, serde_json::to_string(&meta).unwrap()).unwrap();
        }
    }
}

/// Polls `cond` every 100 ms until it holds or `limit` passes.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    while !cond().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every log line from now until one holding `needle` (that one last), within 10 s.
async fn log_until(server: &Server, needle: &str) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    loop {
        for l in server.drain_log() {
            let done = l.contains(needle);
            lines.push(l);
            if done {
                return lines;
            }
        }
        assert!(Instant::now() < end, "no `{needle}` in {lines:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A configuration with one URL list `ads` blocked with its subdomains, the list copies
/// under `state/` beside it.
fn config(dir: &Path, upstream: SocketAddr, port: u16, list: &str) -> String {
    write_config(
        dir,
        &format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\n\
             [upstream]\nservers = [\"udp://{upstream}\"]\ntimeout_ms = 1000\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n\
             [[lists]]\nname = \"ads\"\n{list}\n\
             [[policies]]\nname = \"ads\"\naction = \"block\"\ntraffic = 'any(dns.domains[*] in $ads)'\n"
        ),
    )
}

/// A running dnsgate (the binary) whose list `ads` has the keys `list`, with its
/// upstream, directory and metrics port.
struct Rig {
    up: upstream::Upstream,
    dir: tempfile::TempDir,
    port: u16,
    server: Server,
}

async fn rig(list: &str) -> Rig {
    let up = upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(dir.path(), up.addr, port, list);
    let server = Server::start(&cfg);
    Rig {
        up,
        dir,
        port,
        server,
    }
}

fn metric(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[tokio::test]
async fn fetcher_sends_validators_and_accepts_a_304() {
    let src = ListSource::start("ads.test\n");
    let f = Fetcher::new().unwrap();
    let Fetched::Body { body, validators } = f.fetch(&src.url("/a"), None, 1024).await.unwrap()
    else {
        panic!("a first fetch gets the body");
    };
    assert_eq!(body, b"ads.test\n");
    assert_eq!(validators.etag.as_deref(), Some("\"v1\""));
    let again = f.fetch(&src.url("/a"), Some(&validators), 1024).await;
    assert!(
        matches!(&again, Ok(Fetched::NotModified(v)) if *v == validators),
        "{again:?}"
    );
    // A changed list comes back whole under its new ETag.
    src.set_body(b"other.test\n");
    match f.fetch(&src.url("/a"), Some(&validators), 1024).await {
        Ok(Fetched::Body { body, validators }) => {
            assert_eq!(body, b"other.test\n");
            assert_eq!(validators.etag.as_deref(), Some("\"v2\""));
        }
        other => panic!("{other:?}"),
    }
    let seen = src.seen();
    let statuses: Vec<u16> = seen.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [200, 304, 200]);
    assert_eq!(seen[0].if_none_match, None);
    assert_eq!(seen[1].if_none_match.as_deref(), Some("\"v1\""));
    let ua = seen[0].user_agent.clone().unwrap_or_default();
    assert!(ua.starts_with("dnsgate/"), "{ua}");
}

#[tokio::test]
async fn fetcher_refuses_bodies_past_the_limit_errors_and_dead_sources() {
    let big = "x.test\n".repeat(600); // 4200 bytes
    let mut src = ListSource::start(&big);
    let f = Fetcher::new().unwrap();
    // With Content-Length the answer is refused before the body is read; without, the
    // read stops once the limit is passed.
    for send_length in [true, false] {
        src.set_send_length(send_length);
        let r = f.fetch(&src.url("/big"), None, 4096).await;
        assert!(
            matches!(r, Err(Error::TooLarge { limit: 4096 })),
            "{send_length}: {r:?}"
        );
        let r = f.fetch(&src.url("/big"), None, 4200).await;
        assert!(
            matches!(&r, Ok(Fetched::Body { body, .. }) if body.len() == 4200),
            "{send_length}: exactly the limit is fine: {r:?}"
        );
    }
    src.set_answer(Answer::Fail);
    let r = f.fetch(&src.url("/big"), None, 4096).await;
    assert!(matches!(r, Err(Error::Status(500))), "{r:?}");
    // https:// to a plain HTTP port: the TLS handshake fails, as an error.
    let https = format!("https://{}/big", src.addr);
    let r = f.fetch(&https, None, 4096).await;
    assert!(matches!(r, Err(Error::Http(_))), "{r:?}");
    let url = src.url("/big");
    src.stop();
    let r = f.fetch(&url, Some(&Validators::default()), 4096).await;
    match r {
        Err(Error::Http(msg)) => assert!(msg.contains("refused"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_url_list_is_refreshed_and_swapped_in_without_a_reload() {
    let src = ListSource::start("ads.test\njp.test\n");
    let Rig {
        up: _up,
        dir,
        port,
        server,
    } = rig(&format!(
        "url = \"{}\"\nrefresh = \"1s\"",
        src.url("/ads.txt")
    ))
    .await;
    let dns = server.addr;
    assert!(blocked(dns, "ads.test.").await);
    assert!(blocked(dns, "tracker.ads.test.").await, "subdomains too");
    assert!(blocked(dns, "jp.test.").await);
    assert!(!blocked(dns, "pt.test.").await);

    // Every second the source is asked again, conditionally: a 304 changes nothing.
    wait_until(
        "a conditional GET answered 304",
        Duration::from_secs(10),
        || async {
            src.seen()
                .iter()
                .any(|s| s.status == 304 && s.if_none_match.as_deref() == Some("\"v1\""))
        },
    )
    .await;
    // (Counted once the confirmation is on disk, a moment after the 304 was sent.)
    wait_until("the 304 counted", Duration::from_secs(10), || async {
        let m = metrics(port).await;
        metric(
            &m,
            "dnsgate_list_fetches_total{list=\"ads\",result=\"not_modified\"}",
        ) >= 1.0
    })
    .await;
    let m = metrics(port).await;
    assert_eq!(
        metric(
            &m,
            "dnsgate_list_fetches_total{list=\"ads\",result=\"updated\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "dnsgate_list_entries{list=\"ads\"}"), 2.0, "{m}");
    assert_eq!(
        metric(&m, "dnsgate_list_fetch_failures_total{list=\"ads\"}"),
        0.0,
        "{m}"
    );
    assert!(
        metric(&m, "dnsgate_list_age_seconds{list=\"ads\"}") < 5.0,
        "{m}"
    );

    // A changed list is swapped in: the new name blocks, the dropped ones resolve.
    src.set_body(b"pt.test\n");
    wait_until("pt.test blocked", Duration::from_secs(10), || {
        blocked(dns, "pt.test.")
    })
    .await;
    assert!(!blocked(dns, "ads.test.").await);
    assert!(!blocked(dns, "jp.test.").await);
    let m = metrics(port).await;
    assert_eq!(metric(&m, "dnsgate_list_entries{list=\"ads\"}"), 1.0, "{m}");
    assert_eq!(
        metric(
            &m,
            "dnsgate_list_fetches_total{list=\"ads\",result=\"updated\"}"
        ),
        2.0,
        "{m}"
    );
    // ... without a reload.
    assert_eq!(
        metric(&m, "dnsgate_config_reloads_total{result=\"success\"}"),
        0.0,
        "{m}"
    );
    let log = log_until(&server, "list updated").await;
    let line = log.last().unwrap();
    assert!(line.contains("entries=1"), "{line}");
    assert!(
        log.iter().all(|l| !l.contains("configuration reloaded")),
        "no reload: {log:#?}"
    );

    // The copy on disk is the new list, with its ETag.
    let saved: Vec<_> = std::fs::read_dir(dir.path().join("state/lists"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let body = saved
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "list"))
        .unwrap();
    assert_eq!(std::fs::read_to_string(body).unwrap(), "pt.test\n");
    let meta = std::fs::read_to_string(body.with_extension("json")).unwrap();
    assert!(meta.contains(r#""etag": "\"v2\"""#), "{meta}");
}

#[tokio::test]
async fn the_same_list_again_from_a_source_without_validators_changes_nothing() {
    let src = ListSource::start("ads.test\n");
    src.set_send_etag(false);
    let Rig {
        up: _up,
        dir: _dir,
        port,
        server,
    } = rig(&format!(
        "url = \"{}\"\nrefresh = \"1s\"",
        src.url("/ads.txt")
    ))
    .await;
    wait_until(
        "two unconditional refreshes",
        Duration::from_secs(10),
        || async { src.seen().len() >= 3 },
    )
    .await;
    assert!(
        src.seen()
            .iter()
            .all(|s| s.status == 200 && s.if_none_match.is_none())
    );
    let m = metrics(port).await;
    assert_eq!(
        metric(
            &m,
            "dnsgate_list_fetches_total{list=\"ads\",result=\"updated\"}"
        ),
        1.0,
        "only the first fetch took a list: {m}"
    );
    assert!(
        metric(
            &m,
            "dnsgate_list_fetches_total{list=\"ads\",result=\"not_modified\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        server
            .drain_log()
            .iter()
            .all(|l| !l.contains("list updated"))
    );
    assert!(blocked(server.addr, "ads.test.").await);
}

#[tokio::test]
async fn failed_refreshes_keep_the_list_in_service_and_are_counted() {
    let src = ListSource::start("ads.test\n");
    let Rig {
        up: _up,
        dir: _dir,
        port,
        server,
    } = rig(&format!(
        "url = \"{}\"\nrefresh = \"1s\"\nmax_size = \"1KiB\"",
        src.url("/ads.txt")
    ))
    .await;
    let dns = server.addr;
    assert!(blocked(dns, "ads.test.").await);

    let failures = || async {
        value(
            &metrics(port).await,
            "dnsgate_list_fetch_failures_total{list=\"ads\"}",
        )
        .unwrap_or(0.0)
    };
    // 1. The source fails.
    src.set_answer(Answer::Fail);
    wait_until("a failure counted", Duration::from_secs(10), || async {
        failures().await >= 1.0
    })
    .await;
    let line = server.wait_for_log("list refresh failed");
    assert!(
        line.contains("HTTP 500") && line.contains("list=ads"),
        "{line}"
    );
    assert!(
        blocked(dns, "ads.test.").await,
        "the old list keeps serving"
    );

    // 2. Back, but with a list past max_size (and no Content-Length to refuse it early).
    src.set_answer(Answer::List);
    src.set_send_length(false);
    let big = "pt.test\n".repeat(200); // 1600 bytes
    src.set_body(big.as_bytes());
    let before = failures().await;
    wait_until("an oversize failure", Duration::from_secs(10), || async {
        failures().await > before
    })
    .await;
    server.wait_for_log("larger than max_size");
    assert!(blocked(dns, "ads.test.").await);
    assert!(!blocked(dns, "pt.test.").await);

    // 3. An error page served with 200 is not a list.
    src.set_body(b"<html><body>Please log in to the hotel Wi-Fi</body></html>\n");
    server.wait_for_log("no usable entry");
    assert!(blocked(dns, "ads.test.").await);
    let m = metrics(port).await;
    assert!(
        metric(
            &m,
            "dnsgate_list_fetches_total{list=\"ads\",result=\"failed\"}"
        ) >= 3.0,
        "{m}"
    );
    assert_eq!(metric(&m, "dnsgate_list_entries{list=\"ads\"}"), 1.0, "{m}");

    // 3b. An emptied file (200, no body) does not switch filtering off. A name never asked
    // before shows the list in service, not a cached answer.
    src.set_body(b"");
    server.wait_for_log("the new copy is empty");
    assert!(blocked(dns, "new.ads.test.").await);
    let m = metrics(port).await;
    assert_eq!(metric(&m, "dnsgate_list_entries{list=\"ads\"}"), 1.0, "{m}");

    // 4. Healthy again: the next refresh takes the new list (the retry wait is capped by
    // `refresh`, so it comes within seconds).
    src.set_body(b"pt.test\n");
    wait_until("pt.test blocked", Duration::from_secs(10), || {
        blocked(dns, "pt.test.")
    })
    .await;
    assert!(!blocked(dns, "ads.test.").await);
}

#[tokio::test]
async fn a_restart_with_the_source_down_serves_the_saved_copy() {
    let up = upstream::start().await;
    let mut src = ListSource::start("ads.test\n");
    let dir = tempfile::tempdir().unwrap();
    let list = format!("url = \"{}\"\nrefresh = \"2s\"", src.url("/ads.txt"));
    let cfg = config(dir.path(), up.addr, free_port(), &list);
    let first = Server::start(&cfg);
    assert!(blocked(first.addr, "ads.test.").await);
    drop(first);
    src.stop();

    // The copy is made older than `refresh` (its metadata says it was confirmed an hour
    // ago): it serves at once and the source is asked in the background, which fails and
    // is counted; the list stays.
    age_saved_copies(&dir.path().join("state/lists"), 3600);
    let port = free_port();
    let cfg = config(dir.path(), up.addr, port, &list);
    let second = Server::start(&cfg);
    assert!(blocked(second.addr, "ads.test.").await);
    assert!(!blocked(second.addr, "pt.test.").await);
    let line = second.wait_for_log("list refresh failed");
    assert!(line.contains("refused"), "{line}");
    let m = metrics(port).await;
    assert!(
        metric(&m, "dnsgate_list_fetch_failures_total{list=\"ads\"}") >= 1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "dnsgate_list_entries{list=\"ads\"}"), 1.0, "{m}");
    assert!(
        metric(&m, "dnsgate_list_age_seconds{list=\"ads\"}") >= 2.0,
        "{m}"
    );
    assert!(blocked(second.addr, "ads.test.").await);
}

#[tokio::test]
async fn a_reload_reuses_the_copies_it_has_and_fetches_a_changed_url() {
    let src = ListSource::start("ads.test\n");
    let Rig {
        up,
        dir,
        port,
        server,
    } = rig(&format!(
        "url = \"{}\"\nrefresh = \"1h\"",
        src.url("/a.txt")
    ))
    .await;
    assert!(blocked(server.addr, "ads.test.").await);
    assert_eq!(src.seen().len(), 1);

    server.hup();
    server.wait_for_log("configuration reloaded");
    assert_eq!(src.seen().len(), 1, "a reload does not fetch a list it has");
    assert!(blocked(server.addr, "ads.test.").await);

    // Another URL is another list: fetched during the reload.
    src.set_body(b"pt.test\n");
    config(
        dir.path(),
        up.addr,
        port,
        &format!("url = \"{}\"\nrefresh = \"1h\"", src.url("/b.txt")),
    );
    server.hup();
    server.wait_for_log("configuration reloaded");
    let seen = src.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!((seen[1].path.as_str(), seen[1].status), ("/b.txt", 200));
    assert!(blocked(server.addr, "pt.test.").await);
    assert!(!blocked(server.addr, "ads.test.").await);
}

#[test]
fn check_reports_url_list_problems_at_their_keys() {
    let mut src = ListSource::start("ads.test\n");
    let dir = tempfile::tempdir().unwrap();
    let head = "[server]\nstate_dir = \"state\"\n";
    let list = |body: &str| format!("{head}[[lists]]\nname = \"ads\"\n{body}\n");

    // The source answers: check fetches, says how many entries, and saves nothing.
    let cfg = write_config(dir.path(), &list(&format!("url = \"{}\"", src.url("/a"))));
    let (code, out, err) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 lists (1 entries)"), "{out}");
    assert!(!dir.path().join("state").exists(), "check writes nothing");

    // Unreachable and no saved copy: an error at the url value (line 5, column 7).
    let url = src.url("/a");
    src.stop();
    let (code, _, err) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("{cfg}:5:7: list `ads`: cannot fetch")),
        "{err}"
    );
    assert!(err.contains("no saved copy"), "{err}");

    // With a saved copy, check uses it without asking the source.
    let stem = dir
        .path()
        .join("state/lists")
        .join(format!("ads-{:016x}", fnv1a64(url.as_bytes())));
    std::fs::create_dir_all(stem.parent().unwrap()).unwrap();
    std::fs::write(stem.with_extension("list"), "ads.test\npt.test\n").unwrap();
    let (code, out, err) = dnsgate(&["check", "-c", &cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 lists (2 entries)"), "{out}");

    // Settings are checked where they are written.
    for (body, at, words) in [
        (
            "url = \"ftp://x.test/l\"",
            "5:7",
            "not an http:// or https:// URL",
        ),
        ("url = \"not a url\"", "5:7", "not a URL"),
        (
            "url = \"http://x.test/\"\nrefresh = \"soon\"",
            "6:11",
            "not a duration",
        ),
        (
            "url = \"http://x.test/\"\nmax_size = \"big\"",
            "6:12",
            "not a size",
        ),
        ("url = \"http://x.test/\"\nmax_size = 0", "6:12", "above 0"),
        (
            "url = \"http://x.test/\"\nrefresh = \"10000000000000000000s\"",
            "6:11",
            "more than a year",
        ),
        (
            "path = \"l.txt\"\nrefresh = \"1h\"",
            "6:11",
            "url lists only",
        ),
        (
            "path = \"l.txt\"\nurl = \"http://x.test/\"",
            "6:7",
            "both `path` and `url`",
        ),
    ] {
        let cfg = write_config(dir.path(), &list(body));
        let (code, _, err) = dnsgate(&["check", "-c", &cfg]);
        assert_eq!(code, 1, "{body}");
        assert!(
            err.contains(&format!("{cfg}:{at}: ")) && err.contains(words),
            "{body}: {err}"
        );
    }
}

/// FNV-1a 64, as the cache file names use it.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The refresh task in process, on the server's clock: refreshes come when the clock says
/// they are due, not a moment of real waiting before.
#[tokio::test]
async fn refreshes_follow_the_clock() {
    use dnsgate::lists::url::{Mode, UrlLists};
    let up = upstream::start().await;
    let src = ListSource::start("ads.test\n");
    let dir = tempfile::tempdir().unwrap();
    let list = format!("url = \"{}\"\nrefresh = \"1h\"", src.url("/ads.txt"));
    let cfg = std::path::PathBuf::from(config(dir.path(), up.addr, free_port(), &list));
    let clock = dnsgate::clock::Clock::new();
    let rt = {
        let (cfg, clock) = (cfg.clone(), clock.clone());
        tokio::task::spawn_blocking(move || {
            dnsgate::runtime::Runtime::load_with(
                &cfg,
                &Arc::new(UrlLists::new(Mode::Serve)),
                &clock,
            )
        })
        .await
        .unwrap()
        .unwrap()
    };
    let running = dnsgate::server::start(&cfg, rt).await.unwrap();
    let dns = running.addrs[0];
    tokio::spawn(dnsgate::lists::url::refresh::run(
        running.shared.live.clone(),
    ));
    assert!(blocked(dns, "ads.test.").await);
    let asked = || src.seen().len();
    assert_eq!(asked(), 1, "fetched once at start");

    // 59 minutes on: not due yet (a moment of real time for the task to act on it).
    clock.advance(Duration::from_secs(59 * 60));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(asked(), 1, "not due before `refresh`");

    // The hour is up: asked again, conditionally, and a 304 changes nothing.
    clock.advance(Duration::from_secs(61));
    wait_until("a conditional GET", Duration::from_secs(10), || async {
        src.seen().iter().any(|s| s.status == 304)
    })
    .await;
    assert!(blocked(dns, "ads.test.").await);

    // A new body an hour later is swapped in without a reload.
    src.set_body(b"pt.test\n");
    clock.advance(Duration::from_secs(3600));
    wait_until("pt.test blocked", Duration::from_secs(10), || {
        blocked(dns, "pt.test.")
    })
    .await;
    assert!(!blocked(dns, "ads.test.").await);

    // A failing source: the list stays, and the source is asked again after 1 minute of
    // the clock (then 2, 4 ...), not before.
    src.set_answer(Answer::Fail);
    let before = asked();
    clock.advance(Duration::from_secs(3600));
    wait_until("a failed refresh", Duration::from_secs(10), || async {
        asked() > before
    })
    .await;
    let failed_at = asked();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(asked(), failed_at, "no retry before a minute has passed");
    clock.advance(Duration::from_secs(61));
    wait_until("the retry", Duration::from_secs(10), || async {
        asked() > failed_at
    })
    .await;
    assert!(blocked(dns, "pt.test.").await, "the copy in service stays");
    running.shutdown().await;
}
