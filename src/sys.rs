//! What dnsgate asks of the operating system beyond sockets: background work that yields
//! to serving, handing freed memory back, and files replaced whole or not at all.
//!
//! Reloads, list swaps and the freeing of an old configuration take seconds of CPU for a
//! million-name list. On the blocking pool they competed as equals with the threads that
//! answer queries: on one busy core a reload took half of it, and queries were dropped.
//! They run instead on a thread of their own at a low priority (nice 5: about a quarter of
//! a core that serving wants, all of one it leaves idle), so serving keeps its share and a
//! reload still finishes on a machine that is busy with something else too.

use std::future::Future;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and
/// renamed over the old one (the directory made first if need be): a crash or a full disk
/// leaves the old file or the new, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    // A disk that filled up must not also keep the half-written file.
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    } else if let Some(d) = dir.and_then(|d| std::fs::File::open(d).ok()) {
        // The rename itself, on disk.
        let _ = d.sync_all();
    }
    written
}

/// Runs `f` on a new low-priority thread; its result, or `None` if it panicked.
pub fn background<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> impl Future<Output = Option<T>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("dnsgate-{name}"))
        .spawn(move || {
            lower_priority();
            let _ = tx.send(f());
        });
    async move {
        spawned.ok()?;
        rx.await.ok()
    }
}

/// The niceness of background work.
pub const BACKGROUND_NICE: i32 = 5;

/// Gives the calling thread a low scheduling priority ([`BACKGROUND_NICE`]). On Linux
/// niceness is per thread; nothing to undo, the thread ends with its work.
fn lower_priority() {
    set_thread_nice(BACKGROUND_NICE);
}

/// Sets the calling thread's niceness (Linux: per thread; elsewhere nothing).
pub fn set_thread_nice(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its integer arguments; `gettid` names this thread.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Hands freed memory back to the system after an old configuration is dropped: its lists
/// were tens of megabytes, and glibc would otherwise keep them as free heap, so every
/// reload would look like a leak of one configuration's size. (Queries still holding the
/// old configuration free it a moment later; the next replacement trims that.)
pub fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn background_work_runs_at_a_low_priority() {
        let nice = background("test", || {
            // SAFETY: getpriority reads its integer arguments only.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        })
        .await;
        assert_eq!(nice, Some(BACKGROUND_NICE));
        // This thread is untouched.
        // SAFETY: as above.
        let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        assert_ne!(own, BACKGROUND_NICE);
        assert_eq!(background("panics", || panic!("boom")).await, None::<()>);
    }
}
