//! Response rate limiting per client network (BIND's RRL, simplified): at most `qps`
//! answers a second to each /24 (IPv4) or /56 (IPv6). Past that, every `slip`-th query
//! gets an empty truncated answer — a real client retries over TCP, which a spoofed
//! source cannot — and the rest get nothing, so dnsgate is no amplifier for forged
//! sources.
//!
//! Networks are counted in a fixed table of per-second counters, indexed by a hash of the
//! network: no allocation, no lock, constant memory under a flood of random sources. Two
//! networks that share a slot share a budget, which only ever errs towards limiting.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Slots in the table (a power of two).
const SLOTS: usize = 16_384;

/// What to do with one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it.
    Pass,
    /// Answer with an empty truncated response.
    Slip,
    /// Send nothing.
    Drop,
}

/// Per-network answer counters.
pub struct Limiter {
    /// Each slot: the second it counts (high 32 bits) and the count so far (low 32).
    slots: Box<[AtomicU64]>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limiter")
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// The network a client is counted in, hashed.
fn network_hash(ip: IpAddr) -> u64 {
    let key: u128 = match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(u32::from(v4) & 0xffff_ff00),
        IpAddr::V6(v6) => (u128::from(v6) & !((1u128 << 72) - 1)) | 1,
    };
    // A multiplicative hash of both halves: enough to spread networks over the slots.
    let h = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
    h.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Limiter {
    /// Counts one query from `ip` in second `now_secs`: whether to answer it, with at most
    /// `qps` answers a second per network and every `slip`-th query past that slipped
    /// (0: none).
    pub fn check(&self, ip: IpAddr, now_secs: u64, qps: u32, slip: u32) -> Verdict {
        let slot = &self.slots[(network_hash(ip) >> 50) as usize % SLOTS];
        let second = now_secs & 0xffff_ffff;
        let mut current = slot.load(Relaxed);
        let count = loop {
            let (at, n) = (current >> 32, current & 0xffff_ffff);
            let n = if at == second {
                n.saturating_add(1).min(u64::from(u32::MAX))
            } else {
                1
            };
            match slot.compare_exchange_weak(current, second << 32 | n, Relaxed, Relaxed) {
                Ok(_) => break n,
                Err(seen) => current = seen,
            }
        };
        if count <= u64::from(qps) {
            Verdict::Pass
        } else if slip > 0 && (count - u64::from(qps)) % u64::from(slip) == 0 {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_gets_qps_answers_a_second_then_slips_and_drops() {
        let l = Limiter::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let neighbour: IpAddr = "192.0.2.200".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        let verdicts: Vec<Verdict> = (0..10)
            .map(|i| l.check(if i % 2 == 0 { ip } else { neighbour }, 100, 4, 2))
            .collect();
        use Verdict::*;
        assert_eq!(
            verdicts,
            [Pass, Pass, Pass, Pass, Drop, Slip, Drop, Slip, Drop, Slip]
        );
        // Another network has its own budget; the next second starts afresh.
        assert_eq!(l.check(other, 100, 4, 2), Pass);
        assert_eq!(l.check(ip, 101, 4, 2), Pass);
        // slip 0: nothing past the limit.
        let l = Limiter::default();
        assert_eq!(l.check(ip, 5, 1, 0), Pass);
        assert_eq!(l.check(ip, 5, 1, 0), Drop);
        assert_eq!(l.check(ip, 5, 1, 0), Drop);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_56() {
        let l = Limiter::default();
        let a: IpAddr = "2001:db8:0:100::1".parse().unwrap();
        let b: IpAddr = "2001:db8:0:1ff::2".parse().unwrap();
        let c: IpAddr = "2001:db8:0:200::1".parse().unwrap();
        assert_eq!(l.check(a, 1, 1, 0), Verdict::Pass);
        assert_eq!(l.check(b, 1, 1, 0), Verdict::Drop, "the same /56");
        assert_eq!(l.check(c, 1, 1, 0), Verdict::Pass, "another /56");
    }
}
