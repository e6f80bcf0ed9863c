//! What iteration learns about authoritative servers (Unbound's "infra cache"): each
//! address's smoothed round trip and retransmission timer (RFC 6298), whether it is down,
//! whether it keeps the case of names (0x20), and which zones it is lame for.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use hickory_proto::rr::Name;

use crate::clock::{Clock, Instant};

/// The round trip assumed for a server never asked (Unbound's 376 ms): known fast servers
/// are preferred, unknown ones still get their turn before slow ones.
pub(super) const UNKNOWN_RTT: Duration = Duration::from_millis(376);
/// Least and most time given one server before the next is asked beside it.
const MIN_RTO: Duration = Duration::from_millis(50);
const MAX_RTO: Duration = Duration::from_millis(1200);
/// After this many timeouts in a row a server is "down": asked last, for [`DOWN_FOR`].
const DOWN_AFTER: u8 = 3;
const DOWN_FOR: Duration = Duration::from_secs(60);
/// How long a server is remembered as lame for a zone, or as not keeping case.
const LAME_FOR: Duration = Duration::from_secs(900);
/// Addresses remembered at most (a flood of names with distinct servers stays bounded).
const MAX_SERVERS: usize = 100_000;

#[derive(Debug, Clone, Copy, Default)]
struct Stat {
    /// Smoothed round trip and its variation, microseconds (0: never measured).
    srtt: u32,
    rttvar: u32,
    timeouts: u8,
    down_until: Option<Instant>,
    no_case_until: Option<Instant>,
}

/// Server knowledge shared by every question.
#[derive(Debug)]
pub(super) struct Servers {
    stats: Mutex<HashMap<IpAddr, Stat>>,
    lame: quick_cache::sync::Cache<(IpAddr, Name), Instant>,
    clock: Clock,
}

impl Servers {
    pub(super) fn new(clock: Clock) -> Self {
        Self {
            stats: Mutex::new(HashMap::new()),
            lame: quick_cache::sync::Cache::new(10_000),
            clock,
        }
    }

    fn with<T>(&self, ip: IpAddr, f: impl FnOnce(&mut Stat) -> T) -> T {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        if stats.len() >= MAX_SERVERS && !stats.contains_key(&ip) {
            stats.clear();
        }
        f(stats.entry(ip).or_default())
    }

    fn get(&self, ip: IpAddr) -> Stat {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.get(&ip).copied().unwrap_or_default()
    }

    /// How good a choice `ip` is for `zone`, lower is better: lame and down servers last,
    /// then by smoothed round trip (unknown servers at [`UNKNOWN_RTT`]).
    pub(super) fn score(&self, ip: IpAddr, zone: &Name) -> (u8, Duration) {
        let now = self.clock.now();
        let s = self.get(ip);
        let lame = self.lame.get(&(ip, zone.clone())).is_some_and(|t| now < t);
        let down = s.down_until.is_some_and(|t| now < t);
        let rtt = if s.srtt == 0 {
            UNKNOWN_RTT
        } else {
            Duration::from_micros(u64::from(s.srtt))
        };
        // Each timeout in a row counts as a doubled round trip.
        let rtt = rtt * (1u32 << s.timeouts.min(4));
        (u8::from(lame) * 2 + u8::from(down), rtt)
    }

    /// How long to wait for `ip` before asking the next server beside it: SRTT + 4 RTTVAR,
    /// doubled for each timeout in a row.
    pub(super) fn rto(&self, ip: IpAddr) -> Duration {
        let s = self.get(ip);
        let base = if s.srtt == 0 {
            UNKNOWN_RTT
        } else {
            Duration::from_micros(u64::from(s.srtt) + 4 * u64::from(s.rttvar))
        };
        (base * (1u32 << s.timeouts.min(4))).clamp(MIN_RTO, MAX_RTO)
    }

    /// An answer came after `rtt`.
    pub(super) fn answered(&self, ip: IpAddr, rtt: Duration) {
        let r = rtt.as_micros().min(u128::from(u32::MAX)) as u32;
        self.with(ip, |s| {
            if s.srtt == 0 {
                s.srtt = r;
                s.rttvar = r / 2;
            } else {
                let delta = s.srtt.abs_diff(r);
                s.rttvar = (3 * s.rttvar + delta) / 4;
                s.srtt = (7 * (s.srtt / 8)).saturating_add(r / 8);
            }
            s.timeouts = 0;
            s.down_until = None;
        });
    }

    /// No answer in time, or a network error.
    pub(super) fn failed(&self, ip: IpAddr) {
        let now = self.clock.now();
        self.with(ip, |s| {
            s.timeouts = s.timeouts.saturating_add(1);
            if s.timeouts >= DOWN_AFTER {
                s.down_until = Some(now + DOWN_FOR);
            }
        });
    }

    /// `ip` answered for `zone` without authority (REFUSED, SERVFAIL, an upward referral):
    /// asked last for that zone for a while.
    pub(super) fn lame(&self, ip: IpAddr, zone: &Name) {
        self.lame
            .insert((ip, zone.clone()), self.clock.now() + LAME_FOR);
    }

    /// Whether to ask `ip` with the name in random case (0x20).
    pub(super) fn keeps_case(&self, ip: IpAddr) -> bool {
        let now = self.clock.now();
        self.get(ip).no_case_until.is_none_or(|t| now >= t)
    }

    /// `ip` answered with the name in another case: ask it as written for a while.
    pub(super) fn ignores_case(&self, ip: IpAddr) {
        let until = self.clock.now() + LAME_FOR;
        self.with(ip, |s| s.no_case_until = Some(until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_fast_servers_come_first_and_failing_ones_last() {
        let clock = Clock::new();
        let s = Servers::new(clock.clone());
        let zone = Name::root();
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "127.0.0.1".parse().unwrap(),
            "127.0.0.2".parse().unwrap(),
            "127.0.0.3".parse().unwrap(),
        );
        s.answered(a, Duration::from_millis(5));
        assert!(
            s.score(a, &zone) < s.score(b, &zone),
            "measured fast beats unknown"
        );
        for _ in 0..DOWN_AFTER {
            s.failed(c);
        }
        assert!(s.score(b, &zone) < s.score(c, &zone), "unknown beats down");
        s.lame(a, &zone);
        assert!(s.score(c, &zone) < s.score(a, &zone), "down beats lame");
        assert!(
            s.score(a, &Name::from_ascii("test.").unwrap()).0 == 0,
            "lame per zone"
        );
        assert_eq!(s.rto(b), UNKNOWN_RTT);
        assert_eq!(s.rto(c), MAX_RTO, "backed off");
        clock.advance(DOWN_FOR + Duration::from_secs(1));
        assert_eq!(s.score(c, &zone).0, 0, "down is forgotten");
    }
}
