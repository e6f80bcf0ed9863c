//! The one clock: TTL aging, serve-stale, the packet cache, schedules, query-log times and
//! URL-list refresh all read it, so a test moves every one of them with one call.
//!
//! It is tokio's monotonic clock plus an offset that only [`Clock::advance`] changes (tests
//! skip ahead without sleeping, against a server on real sockets, where tokio's paused time
//! would fire every network timeout the moment the runtime idles). Wall time is the
//! system's, moved by the same offset. Network timeouts stay on tokio's timers: they
//! measure real waiting, not the passing of TTLs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use tokio::sync::Notify;

pub use tokio::time::Instant;

/// A clock shared by one server's parts (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Clock(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Nanoseconds skipped by [`Clock::advance`].
    offset: AtomicU64,
    /// Woken by [`Clock::advance`], so sleepers re-check their deadline.
    advanced: Notify,
}

impl Clock {
    /// The system's clock (nothing skipped yet).
    pub fn new() -> Self {
        Self::default()
    }

    fn offset(&self) -> Duration {
        Duration::from_nanos(self.0.offset.load(Ordering::Relaxed))
    }

    /// Monotonic now.
    #[inline]
    pub fn now(&self) -> Instant {
        Instant::now() + self.offset()
    }

    /// Wall-clock now, as a system time.
    pub fn system_time(&self) -> SystemTime {
        SystemTime::now() + self.offset()
    }

    /// Wall-clock now, as a timestamp (schedules, logs).
    pub fn wall(&self) -> Timestamp {
        Timestamp::try_from(self.system_time()).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Moves this clock forward by `d` and wakes whoever sleeps on it. For tests: time
    /// passes for the caches, schedules and refresh timers without anyone waiting.
    pub fn advance(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.offset.fetch_add(nanos, Ordering::Relaxed);
        self.0.advanced.notify_waiters();
    }

    /// Sleeps until this clock reads `deadline` (or later).
    pub async fn sleep_until(&self, deadline: Instant) {
        loop {
            let advanced = self.0.advanced.notified();
            let now = self.now();
            if now >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(deadline - now) => {}
                () = advanced => {}
            }
        }
    }

    /// Sleeps for `d` of this clock's time.
    pub async fn sleep(&self, d: Duration) {
        self.sleep_until(self.now() + d).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn advance_moves_every_reading_and_wakes_sleepers() {
        let clock = Clock::new();
        let (m0, w0) = (clock.now(), clock.system_time());
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep(Duration::from_secs(3600)).await })
        };
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(3600));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("the sleeper woke when the clock passed its deadline")
            .unwrap();
        assert!(clock.now() - m0 >= Duration::from_secs(3600));
        let moved = clock.system_time().duration_since(w0).unwrap();
        assert!(moved >= Duration::from_secs(3600) && moved < Duration::from_secs(3700));
        // Clones share the offset: one server, one clock.
        assert!(clock.clone().now() >= clock.now() - Duration::from_millis(1));
    }
}
