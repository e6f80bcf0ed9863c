//! The JSON-lines file (SPEC §2 `[querylog] path`), written by a thread of its own so a
//! slow disk never slows an answer. When the writer falls behind, lines are dropped and
//! counted rather than queued without bound; when writes fail (a full disk), lines are
//! lost and counted, with one warning per episode, not one per line.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Entry;

enum Msg {
    Entry(Entry),
    /// Reopen the file (after logrotate moved it away), on reload.
    Reopen,
}

/// A handle to the file's writer.
#[derive(Debug, Clone)]
pub(super) struct FileLog {
    tx: mpsc::Sender<Msg>,
    dropped: metrics::Counter,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Entry(_) => "Entry",
            Self::Reopen => "Reopen",
        })
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl FileLog {
    /// Opens (appends to) the log file and starts the writer thread.
    pub(super) async fn open(path: &Path) -> std::io::Result<Self> {
        let file = {
            let path = path.to_path_buf();
            tokio::task::spawn_blocking(move || open_append(&path))
                .await
                .map_err(std::io::Error::other)??
        };
        let dropped = super::dropped_counter("file");
        let (tx, rx) = mpsc::channel::<Msg>(65_536);
        let writer = Writer {
            path: path.to_path_buf(),
            file,
            dropped: dropped.clone(),
            lost: None,
            torn: false,
        };
        // The writer's events go where the opener's go (the global subscriber when
        // serving; a test's own when a test opens the log).
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        std::thread::Builder::new()
            .name("dnsgate-querylog".into())
            .spawn(move || {
                let _events = tracing::dispatcher::set_default(&dispatch);
                writer.run(rx);
            })?;
        Ok(Self { tx, dropped })
    }

    /// Reopens the file (a reload does this, so logrotate can move the old one away).
    pub(super) fn reopen(&self) {
        let _ = self.tx.try_send(Msg::Reopen);
    }

    /// Queues an entry; drops it if the writer is far behind.
    pub(super) fn log(&self, e: Entry) {
        if self.tx.try_send(Msg::Entry(e)).is_err() {
            self.dropped.increment(1);
        }
    }
}

/// The writer: a thread of its own, so a slow or failing disk blocks neither an answer
/// nor a runtime worker, and each write's outcome is known to the byte.
///
/// A full disk fails every write. Warning for each would flood the journal, which is
/// likely on that same disk (23,953 warnings in 5 s at 5k qps), so a failure episode is
/// one warning when writes start failing, every lost line counted in
/// `dnsgate_querylog_dropped_total`, and one info line when a write succeeds again.
struct Writer {
    path: PathBuf,
    file: File,
    dropped: metrics::Counter,
    /// Lines lost since writes started failing; `None` while they succeed.
    lost: Option<u64>,
    /// A failed write left the start of a line in the file: the next write ends it first,
    /// so the lines after it stay whole.
    torn: bool,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut buf = Vec::new();
        while let Some(msg) = rx.blocking_recv() {
            buf.clear();
            let mut lines = 0;
            let mut next = Some(msg);
            // Drain what is already queued before writing, so bursts cost one write. A
            // reopen comes between the lines before it and those after: each goes to the
            // file that was open when it was queued.
            while let Some(m) = next {
                match m {
                    Msg::Entry(e) => {
                        buf.extend_from_slice(e.to_json().as_bytes());
                        buf.push(b'\n');
                        lines += 1;
                    }
                    Msg::Reopen => {
                        if lines > 0 {
                            self.write(&buf, lines);
                            buf.clear();
                            lines = 0;
                        }
                        self.reopen();
                    }
                }
                next = rx.try_recv().ok();
            }
            if lines > 0 {
                self.write(&buf, lines);
            }
        }
    }

    /// Opens the path again (logrotate moved the file away, or it came back).
    fn reopen(&mut self) {
        match open_append(&self.path) {
            Ok(f) => {
                // A new (rotated) file holds no torn line; the same file still may.
                self.torn &= f.metadata().is_ok_and(|m| m.len() > 0);
                self.file = f;
            }
            Err(err) => {
                warn!(error = %err, path = %self.path.display(), "cannot reopen the query log")
            }
        }
    }

    /// Writes `batch`, `lines` whole lines; counts those that did not reach the file whole.
    fn write(&mut self, batch: &[u8], lines: u64) {
        if self.torn {
            match write_some(&mut self.file, b"\n") {
                (_, None) => self.torn = false,
                (_, Some(err)) => return self.failed(&err, lines),
            }
        }
        let (written, err) = write_some(&mut self.file, batch);
        let Some(err) = err else {
            if let Some(lost) = self.lost.take() {
                info!(lost, "query log writing resumed ({lost} lines lost)");
            }
            return;
        };
        let done = &batch[..written];
        self.torn = done.last().is_some_and(|&b| b != b'\n');
        let whole = done.iter().filter(|&&b| b == b'\n').count() as u64;
        self.failed(&err, lines - whole);
    }

    /// Counts `lost` lines; warns only when this starts an episode.
    fn failed(&mut self, err: &std::io::Error, lost: u64) {
        self.dropped.increment(lost);
        match &mut self.lost {
            Some(n) => *n += lost,
            None => {
                warn!(
                    error = %err,
                    path = %self.path.display(),
                    "query log writes are failing: lines are dropped and counted in dnsgate_querylog_dropped_total until writing resumes"
                );
                self.lost = Some(lost);
            }
        }
    }
}

/// Writes as much of `bytes` as the file takes: how much, and the error that stopped it.
fn write_some(file: &mut File, bytes: &[u8]) -> (usize, Option<std::io::Error>) {
    let mut written = 0;
    while written < bytes.len() {
        match file.write(&bytes[written..]) {
            Ok(0) => return (written, Some(std::io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Some(e)),
        }
    }
    (written, None)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};

    use super::*;

    /// A pipe whose write end does not block: a write larger than its free space writes
    /// part and stops, as a disk filling up in the middle of a batch does.
    fn pipe() -> (File, File) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        (File::from(r), File::from(w))
    }

    fn drain(r: &mut File) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0; 65_536];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        out
    }

    #[test]
    fn a_batch_cut_short_counts_its_unfinished_lines_and_the_next_write_ends_the_torn_one() {
        let (mut r, w) = pipe();
        let mut writer = Writer {
            path: "pipe".into(),
            file: w,
            dropped: metrics::Counter::noop(),
            lost: None,
            torn: false,
        };
        // 1,000 lines of 100 bytes: more than the pipe's 64 KiB.
        let line = format!("{}\n", "x".repeat(99));
        let batch = line.repeat(1_000);
        writer.write(batch.as_bytes(), 1_000);
        let first = drain(&mut r);
        assert!(!first.is_empty() && first.len() < batch.len());
        let whole = first.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(writer.lost, Some(1_000 - whole));
        assert_eq!(writer.torn, first.len() % 100 != 0);

        writer.write(b"{\"next\":1}\n", 1);
        assert_eq!(writer.lost, None, "writing resumed");
        let second = drain(&mut r);
        let expected: &[u8] = if first.len() % 100 != 0 {
            b"\n{\"next\":1}\n"
        } else {
            b"{\"next\":1}\n"
        };
        assert_eq!(second, expected);
    }
}
