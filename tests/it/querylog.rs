//! The query log when its writes fail (a full disk): one warning per episode, every lost
//! line counted in `dnsgate_querylog_dropped_total`, one line when writing resumes. Before,
//! every failed write was a warning: 23,953 in 5 s at 5k qps, into a journal that is
//! likely on the disk that is already full.
//!
//! `/dev/full` is a real device that fails every write with ENOSPC; the log path is a
//! symbolic link to it, replaced by a regular file to let writing resume.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::client::{ips, query};
use crate::gate;

/// Everything the tracing subscriber of this test's thread prints.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines().map(str::to_owned).collect()
    }
}

/// The value of a label-less series in a Prometheus rendering.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

const LOST: usize = 200;

#[tokio::test(flavor = "current_thread")]
async fn a_failing_query_log_warns_once_counts_every_lost_line_and_says_when_it_resumes() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _events = tracing::subscriber::set_default(subscriber);
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);

    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("queries.jsonl");
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    let g = gate(&format!("[querylog]\npath = \"{}\"\n", path.display()), &[]).await;

    for _ in 0..LOST {
        assert_eq!(
            ips(&query(g.addr, "www.test.", RecordType::A).await),
            ["192.0.2.10"]
        );
    }
    // The writer is a thread of its own: wait (at most 10 s) until it has seen them all.
    let mut dropped = None;
    for _ in 0..200 {
        dropped = value(
            &metrics.render(),
            r#"dnsgate_querylog_dropped_total{sink="file"}"#,
        );
        if dropped >= Some(LOST as f64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dropped, Some(LOST as f64), "every lost line is counted");
    let warnings: Vec<String> = captured
        .lines()
        .into_iter()
        // Ours only: the test upstream (hickory's catalog) logs warnings of its own.
        .filter(|l| l.contains("WARN") && l.contains("dnsgate::"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning for the episode: {warnings:#?}"
    );
    assert!(
        warnings[0].contains("query log writes are failing")
            && warnings[0].contains("No space left on device"),
        "{}",
        warnings[0]
    );

    // Space again: the link gives way to a regular file, and a reload reopens the path.
    std::fs::remove_file(&path).unwrap();
    g.running.shared.exit.querylog().unwrap().reopen();
    assert_eq!(
        ips(&query(g.addr, "jp.test.", RecordType::A).await),
        ["192.0.2.55"]
    );
    let lines = crate::query_log(&path, |l| !l.is_empty()).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["name"], "jp.test");
    let resumed = format!("query log writing resumed ({LOST} lines lost)");
    let mut said = Vec::new();
    for _ in 0..200 {
        said = captured.lines();
        if said.iter().any(|l| l.contains(&resumed)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resumed: Vec<&String> = said.iter().filter(|l| l.contains(&resumed)).collect();
    assert_eq!(resumed.len(), 1, "{said:#?}");
    assert!(resumed[0].contains("INFO"), "{}", resumed[0]);
    assert_eq!(
        said.iter()
            .filter(|l| l.contains("WARN") && l.contains("dnsgate::"))
            .count(),
        1,
        "{said:#?}"
    );
    assert_eq!(
        value(
            &metrics.render(),
            r#"dnsgate_querylog_dropped_total{sink="file"}"#
        ),
        Some(LOST as f64)
    );
}
