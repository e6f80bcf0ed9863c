//! The query store: what is written is what the JSON-lines log says, searches select by
//! every filter, retention deletes in chunks, and a full queue drops and counts.

use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use jiff::Timestamp;

use super::sqlite::{Sqlite, reversed};
use super::store::{Backend, Error, Filter, QUEUE, Row, StoreLog};
use super::{Entry, QueryLog};
use crate::clock::Clock;
use crate::label::{Phase, QueryAction, Rcode};

fn entry(secs: i64, client: &str, name: &str, action: QueryAction) -> Entry {
    Entry {
        time: Timestamp::from_second(1_800_000_000 + secs).unwrap(),
        client: client.parse::<IpAddr>().unwrap(),
        device: None,
        user: None,
        name: name.into(),
        qtype: Some(RecordType::A),
        action,
        policy: None,
        phase: None,
        cname: None,
        rcode: Rcode::NoError,
        latency: Duration::from_micros(1_234),
        cached: false,
    }
}

fn store() -> (tempfile::TempDir, Sqlite) {
    let dir = tempfile::tempdir().unwrap();
    let s = Sqlite::open(&dir.path().join("state/querylog.sqlite")).unwrap();
    (dir, s)
}

fn names(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.name.as_str()).collect()
}

#[test]
fn names_are_reversed_by_label() {
    assert_eq!(reversed("www.example.com"), "com.example.www.");
    assert_eq!(reversed("com"), "com.");
    assert_eq!(reversed(""), "");
    assert_eq!(reversed("a\\.b.example"), "example.a\\.b.");
}

#[test]
fn a_stored_row_is_the_json_line_of_its_query() {
    let (_dir, s) = store();
    let mut e = entry(1, "2001:db8::1", "ads.example", QueryAction::Block);
    e.device = Some("kidphone".into());
    e.user = Some("kid@example.com".into());
    e.policy = Some("Block ads".into());
    e.phase = Some(Phase::Pre);
    e.cname = Some("cdn.example".into());
    e.latency = Duration::from_nanos(1_234_567);
    e.time = Timestamp::from_nanosecond(1_800_000_000_123_456_789).unwrap();
    let plain = entry(2, "127.0.0.1", "www.example", QueryAction::Allow);
    s.insert(&[e.clone(), plain.clone()]).unwrap();
    let rows = s.search(&Filter::default()).unwrap();
    assert_eq!(rows.len(), 2);
    for (row, e) in rows.iter().zip([&plain, &e]) {
        let line: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(serde_json::to_value(row).unwrap(), line);
    }
}

#[test]
fn searches_filter_by_each_field_newest_first() {
    let (_dir, s) = store();
    let mut rows = vec![
        entry(1, "10.0.0.1", "example.com", QueryAction::Allow),
        entry(2, "10.0.0.2", "www.example.com", QueryAction::Block),
        entry(3, "10.0.0.1", "myexample.com", QueryAction::Allow),
        entry(4, "10.0.0.1", "a.b.example.com", QueryAction::Block),
        entry(5, "10.0.0.3", "example.org", QueryAction::Refused),
        entry(6, "10.0.0.1", "example-x.com", QueryAction::Allow),
    ];
    rows[1].device = Some("laptop".into());
    rows[3].user = Some("bob@example.com".into());
    s.insert(&rows).unwrap();
    let search = |f: Filter| s.search(&f).unwrap();
    assert_eq!(
        names(&search(Filter::default())),
        [
            "example-x.com",
            "example.org",
            "a.b.example.com",
            "myexample.com",
            "www.example.com",
            "example.com"
        ]
    );
    let by_name = search(Filter {
        name: Some("example.com".into()),
        ..Filter::default()
    });
    assert_eq!(
        names(&by_name),
        ["a.b.example.com", "www.example.com", "example.com"]
    );
    let by_client = search(Filter {
        client: Some("10.0.0.1".parse().unwrap()),
        ..Filter::default()
    });
    assert_eq!(by_client.len(), 4);
    let blocked_below = search(Filter {
        name: Some("example.com".into()),
        action: Some(QueryAction::Block),
        client: Some("10.0.0.1".parse().unwrap()),
        ..Filter::default()
    });
    assert_eq!(names(&blocked_below), ["a.b.example.com"]);
    assert_eq!(
        names(&search(Filter {
            device: Some("laptop".into()),
            ..Filter::default()
        })),
        ["www.example.com"]
    );
    assert_eq!(
        names(&search(Filter {
            user: Some("bob@example.com".into()),
            ..Filter::default()
        })),
        ["a.b.example.com"]
    );
    let window = search(Filter {
        since: Some(Timestamp::from_second(1_800_000_002).unwrap()),
        until: Some(Timestamp::from_second(1_800_000_005).unwrap()),
        ..Filter::default()
    });
    assert_eq!(
        names(&window),
        ["a.b.example.com", "myexample.com", "www.example.com"],
        "since is inclusive, until exclusive"
    );
    let two = search(Filter {
        limit: 2,
        ..Filter::default()
    });
    assert_eq!(names(&two), ["example-x.com", "example.org"]);
}

#[test]
fn expiry_deletes_the_oldest_rows_a_chunk_at_a_time() {
    let (_dir, s) = store();
    let rows: Vec<Entry> = (0..10)
        .map(|i| entry(i, "10.0.0.1", &format!("n{i}.test"), QueryAction::Allow))
        .collect();
    s.insert(&rows).unwrap();
    let before = Timestamp::from_second(1_800_000_007).unwrap();
    assert_eq!(s.expire(before, 4).unwrap(), 4);
    assert_eq!(s.expire(before, 4).unwrap(), 3);
    assert_eq!(s.expire(before, 4).unwrap(), 0);
    assert_eq!(
        names(&s.search(&Filter::default()).unwrap()),
        ["n9.test", "n8.test", "n7.test"]
    );
}

#[test]
fn the_database_is_in_wal_mode_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, s) = store();
    s.insert(&[entry(1, "10.0.0.1", "x.test", QueryAction::Allow)])
        .unwrap();
    let path = dir.path().join("state/querylog.sqlite");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(dir.path().join("state/querylog.sqlite-wal").exists());
    // Opened again (a restart), it keeps its rows.
    drop(s);
    let again = Sqlite::open(&path).unwrap();
    assert_eq!(again.search(&Filter::default()).unwrap().len(), 1);
}

/// A backend whose inserts wait until the test opens a gate, and count what they got.
#[derive(Default)]
struct Gated {
    state: Mutex<(bool, usize, usize)>,
    changed: Condvar,
}

impl Gated {
    /// Waits until `done` holds of (open, inserts entered, rows written).
    fn wait(&self, done: impl Fn(&(bool, usize, usize)) -> bool) {
        let guard = self.state.lock().unwrap();
        let (_g, timeout) = self
            .changed
            .wait_timeout_while(guard, Duration::from_secs(10), |s| !done(s))
            .unwrap();
        assert!(!timeout.timed_out(), "the writer did not get there in 10 s");
    }
}

impl Backend for Gated {
    fn insert(&self, rows: &[Entry]) -> Result<(), Error> {
        let mut s = self.state.lock().unwrap();
        s.1 += 1;
        self.changed.notify_all();
        while !s.0 {
            s = self.changed.wait(s).unwrap();
        }
        s.2 += rows.len();
        self.changed.notify_all();
        Ok(())
    }
    fn expire(&self, _: Timestamp, _: usize) -> Result<usize, Error> {
        Ok(0)
    }
    fn search(&self, _: &Filter) -> Result<Vec<Row>, Error> {
        Ok(Vec::new())
    }
}

#[test]
fn a_full_queue_drops_and_counts_rows_and_never_blocks_the_logger() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let gated = Arc::new(Gated::default());
    let log = StoreLog::start(gated.clone(), Duration::from_secs(3600), &Clock::new()).unwrap();
    // The writer takes the first row and is held in its insert...
    log.log(entry(0, "10.0.0.1", "first.test", QueryAction::Allow));
    gated.wait(|s| s.1 == 1);
    // ...while the queue fills: what does not fit is dropped at once.
    let started = std::time::Instant::now();
    for i in 0..QUEUE + 50 {
        log.log(entry(i as i64, "10.0.0.1", "x.test", QueryAction::Allow));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "logging never waits"
    );
    let text = metrics.render();
    assert!(
        text.contains("dnsgate_querylog_dropped_total{sink=\"store\"} 50"),
        "{text}"
    );
    // Let it write: every queued row arrives, in batches.
    gated.state.lock().unwrap().0 = true;
    gated.changed.notify_all();
    gated.wait(|s| s.2 == QUEUE + 1);
}

#[tokio::test]
async fn the_query_log_writes_the_file_and_the_store_alike() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("q.jsonl");
    let spec = super::StoreSpec {
        kind: super::store::StoreKind::Sqlite {
            path: dir.path().join("querylog.sqlite"),
        },
        retention: Duration::from_secs(86_400),
    };
    let log = QueryLog::open(Some(&file), Some(&spec), &Clock::new())
        .await
        .unwrap()
        .unwrap();
    let e = entry(0, "10.0.0.1", "both.test", QueryAction::Allow);
    log.log(e);
    let store = log.store().unwrap().clone();
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = store.search(&Filter::default()).unwrap();
        if !rows.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(names(&rows), ["both.test"]);
    let mut line = String::new();
    for _ in 0..100 {
        line = std::fs::read_to_string(&file).unwrap_or_default();
        if !line.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(serde_json::to_value(&rows[0]).unwrap(), line);
    assert!(
        QueryLog::open(None, None, &Clock::new())
            .await
            .unwrap()
            .is_none()
    );
}

/// A shutdown waits for the writer's last batch: rows logged just before are in the store
/// when `drain` returns, without waiting for the batch to linger out by itself.
#[test]
fn drain_waits_until_every_queued_row_is_written() {
    let (_dir, sqlite) = store();
    let backend: Arc<dyn Backend> = Arc::new(sqlite);
    let log = StoreLog::start(backend.clone(), Duration::from_secs(3600), &Clock::new()).unwrap();
    for i in 0..100 {
        log.log(entry(
            i,
            "192.0.2.1",
            &format!("n{i}.example"),
            QueryAction::Allow,
        ));
    }
    // Nothing is written yet: the writer lets the batch gather for LINGER.
    assert!(log.drain(Duration::from_secs(5)));
    let filter = Filter {
        limit: 1000,
        ..Filter::default()
    };
    assert_eq!(backend.search(&filter).unwrap().len(), 100);
    // Nothing queued: at once.
    let t = std::time::Instant::now();
    assert!(log.drain(Duration::from_secs(5)));
    assert!(t.elapsed() < Duration::from_millis(100));
}
