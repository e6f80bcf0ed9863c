//! What the forwarder learns about each server: failures in a row (a failing server is
//! tried last for a while), how long it takes to answer (RFC 6298's smoothed round-trip
//! time, which times retransmissions), and whether it keeps the case of a name (0x20).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The retransmission timer before a server has answered once (Unbound starts at 376 ms).
pub(super) const INITIAL_RTO: Duration = Duration::from_millis(400);
/// The shortest retransmission timer: loopback and LAN servers answer in microseconds,
/// but a cold name behind them may take a recursive upstream a while.
pub(super) const MIN_RTO: Duration = Duration::from_millis(100);
/// How long a server that dropped the case of a name is asked without 0x20.
const NO_CASE_FOR_MS: u64 = 600_000;

/// One server's record (times in milliseconds since the forwarder was made; RTTs in
/// microseconds, 0 = none yet).
#[derive(Debug, Default)]
pub(super) struct Health {
    failures: AtomicU32,
    avoid_until_ms: AtomicU64,
    srtt_us: AtomicU64,
    rttvar_us: AtomicU64,
    no_case_until_ms: AtomicU64,
}

impl Health {
    /// Whether to prefer other servers at `now_ms`.
    pub(super) fn is_avoided(&self, now_ms: u64) -> bool {
        self.avoid_until_ms.load(Relaxed) > now_ms
    }

    /// Notes an answer (true) or a failure at `now_ms`. Failures back off 1 s, 2 s, 4 s ...
    /// up to 30 s; after that the server is tried first again, so a recovered upstream
    /// comes back by itself.
    pub(super) fn record(&self, ok: bool, now_ms: u64) {
        if ok {
            self.failures.store(0, Relaxed);
            self.avoid_until_ms.store(0, Relaxed);
        } else {
            let f = self.failures.fetch_add(1, Relaxed).min(5);
            let backoff = (1000u64 << f).min(30_000);
            self.avoid_until_ms.store(now_ms + backoff, Relaxed);
        }
    }

    /// Takes in one round-trip sample (RFC 6298 §2: SRTT and RTTVAR, gains 1/8 and 1/4).
    pub(super) fn observe_rtt(&self, rtt: Duration) {
        let r = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        let srtt = self.srtt_us.load(Relaxed);
        if srtt == 0 {
            self.srtt_us.store(r, Relaxed);
            self.rttvar_us.store(r / 2, Relaxed);
        } else {
            let var = self.rttvar_us.load(Relaxed);
            self.rttvar_us
                .store((3 * var + srtt.abs_diff(r)) / 4, Relaxed);
            self.srtt_us.store((7 * srtt + r) / 8, Relaxed);
        }
    }

    /// When to ask again if no answer came (RFC 6298 §2: SRTT + 4 RTTVAR), within
    /// [`MIN_RTO`] and `max`.
    pub(super) fn rto(&self, max: Duration) -> Duration {
        let srtt = self.srtt_us.load(Relaxed);
        let rto = if srtt == 0 {
            INITIAL_RTO
        } else {
            Duration::from_micros(srtt + 4 * self.rttvar_us.load(Relaxed))
        };
        rto.clamp(MIN_RTO, max.max(MIN_RTO))
    }

    /// Whether to ask in random case (DNS 0x20) at `now_ms`.
    pub(super) fn keeps_case(&self, now_ms: u64) -> bool {
        self.no_case_until_ms.load(Relaxed) <= now_ms
    }

    /// The server answered in another case than asked.
    pub(super) fn ignores_case(&self, now_ms: u64) {
        self.no_case_until_ms
            .store(now_ms + NO_CASE_FOR_MS, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retransmission_timer_follows_the_measured_round_trips() {
        let h = Health::default();
        let max = Duration::from_secs(1);
        assert_eq!(h.rto(max), INITIAL_RTO);
        // A server answering in 300 ms, steadily: the timer settles a little above that.
        for _ in 0..50 {
            h.observe_rtt(Duration::from_millis(300));
        }
        let rto = h.rto(max);
        assert!(
            rto >= Duration::from_millis(300) && rto < Duration::from_millis(400),
            "{rto:?}"
        );
        // A fast one: never below the floor.
        let fast = Health::default();
        fast.observe_rtt(Duration::from_micros(50));
        assert_eq!(fast.rto(max), MIN_RTO);
        // A very slow one: capped.
        let slow = Health::default();
        slow.observe_rtt(Duration::from_secs(5));
        assert_eq!(slow.rto(max), max);
    }

    #[test]
    fn failures_back_off_and_an_answer_forgives_them() {
        let h = Health::default();
        h.record(false, 0);
        assert!(h.is_avoided(999) && !h.is_avoided(1000));
        h.record(false, 0);
        assert!(h.is_avoided(1999));
        h.record(true, 0);
        assert!(!h.is_avoided(0));
        assert!(h.keeps_case(0));
        h.ignores_case(0);
        assert!(!h.keeps_case(1) && h.keeps_case(NO_CASE_FOR_MS));
    }
}
