//! Failed authentications, rate-limited per source (SPEC §12): after `max_failures`
//! failures within a window a source may not try again until the window ends.
//!
//! Time is passed in (seconds, on any clock that does not go back), so tests and the API
//! share one clock and nothing here sleeps or reads the time.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

/// Failures allowed per window by default.
pub const DEFAULT_MAX_FAILURES: u32 = 10;
/// The default window, in seconds.
pub const DEFAULT_WINDOW_SECS: u64 = 60;
/// Sources tracked at once by default.
pub const DEFAULT_MAX_SOURCES: usize = 65_536;

/// Failures of one source in its current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// When the window began (the first failure in it).
    start: u64,
    failures: u32,
}

impl Window {
    fn has_ended(&self, now: u64, length: u64) -> bool {
        now >= self.start.saturating_add(length)
    }
}

/// Counts failed authentications per source: [`check`](Self::check) before trying,
/// [`fail`](Self::fail) after a failure. A source is one IPv4 address or one IPv6 /64 (a
/// host usually holds a whole /64: counting addresses would let it try 2^64 times). Not
/// shared by itself: the API keeps it behind a lock.
#[derive(Debug, Clone)]
pub struct FailureLimiter {
    max_failures: u32,
    window_secs: u64,
    max_sources: usize,
    windows: HashMap<IpAddr, Window>,
    /// The one window of all new sources while `windows` is full.
    overflow: Option<Window>,
    /// When ended windows were last dropped (at most once a second, so a flood of new
    /// sources against a full table does not scan it for each failure).
    pruned_at: Option<u64>,
}

impl Default for FailureLimiter {
    /// 10 failures a minute, 65,536 sources.
    fn default() -> Self {
        Self::new(
            DEFAULT_MAX_FAILURES,
            DEFAULT_WINDOW_SECS,
            DEFAULT_MAX_SOURCES,
        )
    }
}

impl FailureLimiter {
    /// A limiter allowing `max_failures` failures per `window_secs` per source, tracking
    /// at most `max_sources` sources (new ones beyond that share one window, so a flood
    /// of sources can neither grow memory nor escape the limit).
    pub fn new(max_failures: u32, window_secs: u64, max_sources: usize) -> Self {
        Self {
            max_failures,
            window_secs,
            max_sources: max_sources.max(1),
            windows: HashMap::new(),
            overflow: None,
            pruned_at: None,
        }
    }

    /// Whether `ip` may try to authenticate at `now_secs`.
    pub fn check(&self, ip: IpAddr, now_secs: u64) -> bool {
        self.retry_after(ip, now_secs).is_none()
    }

    /// If `ip` is limited at `now_secs`, the seconds until it may try again (for a
    /// `Retry-After` header).
    pub fn retry_after(&self, ip: IpAddr, now_secs: u64) -> Option<u64> {
        let w = match self.windows.get(&net(ip)) {
            Some(w) => w,
            None if self.windows.len() >= self.max_sources => self.overflow.as_ref()?,
            None => return None,
        };
        let end = w.start.saturating_add(self.window_secs);
        (now_secs < end && w.failures >= self.max_failures).then(|| end - now_secs)
    }

    /// Records a failed authentication from `ip` at `now_secs`.
    pub fn fail(&mut self, ip: IpAddr, now_secs: u64) {
        let source = net(ip);
        let length = self.window_secs;
        if !self.windows.contains_key(&source)
            && self.windows.len() >= self.max_sources
            && self.pruned_at != Some(now_secs)
        {
            self.pruned_at = Some(now_secs);
            self.windows.retain(|_, w| !w.has_ended(now_secs, length));
        }
        let w = if self.windows.contains_key(&source) || self.windows.len() < self.max_sources {
            self.windows.entry(source).or_insert(Window {
                start: now_secs,
                failures: 0,
            })
        } else {
            self.overflow.get_or_insert(Window {
                start: now_secs,
                failures: 0,
            })
        };
        if w.has_ended(now_secs, length) {
            *w = Window {
                start: now_secs,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }

    /// How many sources are tracked (the shared overflow window not counted).
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

/// The network an address is counted in: itself for IPv4 (also when IPv4-mapped), its
/// /64 for IPv6.
fn net(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ten_failures_then_limited_for_the_rest_of_the_minute() {
        let mut l = FailureLimiter::default();
        let a = ip("192.0.2.1");
        for t in 0..10 {
            assert!(l.check(a, 100 + t), "failure {t}");
            l.fail(a, 100 + t);
        }
        assert!(!l.check(a, 110));
        assert_eq!(l.retry_after(a, 110), Some(50));
        assert!(!l.check(a, 159));
        assert!(l.check(a, 160), "a new minute");
        l.fail(a, 160);
        assert!(l.check(a, 161), "the count started again");
    }

    #[test]
    fn sources_are_counted_apart() {
        let mut l = FailureLimiter::new(2, 60, 100);
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        l.fail(a, 0);
        l.fail(a, 1);
        assert!(!l.check(a, 2));
        assert!(l.check(b, 2));
    }

    #[test]
    fn an_ipv6_64_is_one_source_and_mapped_v4_is_v4() {
        let mut l = FailureLimiter::new(2, 60, 100);
        l.fail(ip("2001:db8::1"), 0);
        l.fail(ip("2001:db8::ffff:2"), 0);
        assert!(!l.check(ip("2001:db8::3"), 1));
        assert!(l.check(ip("2001:db8:0:1::1"), 1), "another /64");
        l.fail(ip("::ffff:192.0.2.9"), 0);
        l.fail(ip("192.0.2.9"), 0);
        assert!(!l.check(ip("192.0.2.9"), 1));
    }

    #[test]
    fn a_full_table_counts_new_sources_together_and_forgets_old_windows() {
        let mut l = FailureLimiter::new(2, 60, 2);
        l.fail(ip("192.0.2.1"), 0);
        l.fail(ip("192.0.2.2"), 0);
        l.fail(ip("192.0.2.3"), 0);
        l.fail(ip("192.0.2.4"), 0);
        assert_eq!(l.len(), 2, "two sources, then the overflow");
        assert!(!l.check(ip("192.0.2.5"), 1), "overflow is limited");
        assert!(
            l.check(ip("192.0.2.1"), 1),
            "tracked sources keep their own count"
        );
        l.fail(ip("192.0.2.6"), 61);
        assert_eq!(l.len(), 1, "ended windows were dropped");
        assert!(l.check(ip("192.0.2.6"), 62));
    }
}
