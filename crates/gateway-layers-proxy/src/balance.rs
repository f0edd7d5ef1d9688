//! Load-balancing decisions: pure, no I/O.
//!
//! A [`Picker`] is built for one set of targets (their weights and a stable identity
//! each) and chooses an index, given a predicate telling which targets are usable right
//! now and, for least-request, each target's in-flight count.

use std::{
    cell::Cell,
    sync::atomic::{AtomicUsize, Ordering},
};

/// Which algorithm chooses the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Strategy {
    /// Each target in turn (weights ignored).
    #[default]
    RoundRobin,
    /// Smooth weighted round robin: a target of weight 3 gets three requests for
    /// every one of a target of weight 1, interleaved.
    WeightedRoundRobin,
    /// Power of two choices: two random usable targets, the one with fewer requests
    /// in flight (divided by its weight) wins.
    LeastRequest,
    /// Consistent hashing of a request key on a ring of virtual nodes: the same key
    /// lands on the same target while it is usable; removing a target moves only the
    /// keys it held.
    ConsistentHash,
}

/// Virtual nodes on the hash ring per unit of weight.
const VNODES_PER_WEIGHT: u32 = 40;
/// At most this many virtual nodes per target.
const MAX_VNODES: u32 = 4_000;

#[derive(Debug)]
pub(crate) struct Picker {
    len: usize,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    RoundRobin {
        next: AtomicUsize,
    },
    Weighted {
        schedule: Box<[u32]>,
        next: AtomicUsize,
    },
    LeastRequest {
        weights: Box<[u32]>,
        uniform: bool,
        next: AtomicUsize,
    },
    Hash {
        ring: Box<[(u64, u32)]>,
        next: AtomicUsize,
    },
}

impl Picker {
    /// A picker for targets with these weights (each >= 1) and identities (hashed for
    /// the ring, so a target keeps its ring positions across target-set changes).
    pub(crate) fn new(strategy: Strategy, weights: &[u32], identities: &[&str]) -> Self {
        debug_assert_eq!(weights.len(), identities.len());
        let len = weights.len();
        let kind = match strategy {
            Strategy::RoundRobin => Kind::RoundRobin {
                next: AtomicUsize::new(0),
            },
            Strategy::WeightedRoundRobin => Kind::Weighted {
                schedule: smooth_schedule(weights),
                next: AtomicUsize::new(0),
            },
            Strategy::LeastRequest => Kind::LeastRequest {
                uniform: weights.windows(2).all(|w| w[0] == w[1]),
                weights: weights.into(),
                next: AtomicUsize::new(0),
            },
            Strategy::ConsistentHash => Kind::Hash {
                ring: ring(weights, identities),
                next: AtomicUsize::new(0),
            },
        };
        Self { len, kind }
    }

    /// Chooses a usable target. `key` is the request's hash (consistent hashing; other
    /// strategies ignore it, and a missing key falls back to round robin).
    /// `load(i)` is target `i`'s in-flight count (least request only).
    pub(crate) fn pick(
        &self,
        key: Option<u64>,
        usable: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> usize,
    ) -> Option<usize> {
        let n = self.len;
        if n == 0 {
            return None;
        }
        match &self.kind {
            Kind::RoundRobin { next } => round_robin(next, n, &usable),
            Kind::Weighted { schedule, next } => {
                let len = schedule.len();
                (0..len)
                    .map(|_| schedule[next.fetch_add(1, Ordering::Relaxed) % len] as usize)
                    .find(|&i| usable(i))
            }
            Kind::LeastRequest {
                weights,
                uniform,
                next,
            } => {
                if n == 1 {
                    return usable(0).then_some(0);
                }
                let a = random_below(n);
                let mut b = random_below(n - 1);
                if b >= a {
                    b += 1;
                }
                let (a_ok, b_ok) = (usable(a), usable(b));
                let chosen = match (a_ok, b_ok) {
                    (true, true) => {
                        let (la, lb) = (load(a) as u64, load(b) as u64);
                        let a_wins = if *uniform {
                            la <= lb
                        } else {
                            // la / wa <= lb / wb without division.
                            la * u64::from(weights[b]) <= lb * u64::from(weights[a])
                        };
                        if a_wins { a } else { b }
                    }
                    (true, false) => a,
                    (false, true) => b,
                    (false, false) => return round_robin(next, n, &usable),
                };
                Some(chosen)
            }
            Kind::Hash { ring, next } => {
                let Some(key) = key else {
                    return round_robin(next, n, &usable);
                };
                let hash = mix(key);
                let start = ring.partition_point(|(h, _)| *h < hash);
                let len = ring.len();
                (0..len)
                    .map(|i| ring[(start + i) % len].1 as usize)
                    .find(|&i| usable(i))
            }
        }
    }
}

/// Each skipped (unusable) target consumes a turn, so the usable ones share its
/// turns evenly instead of its successor taking them all.
fn round_robin(next: &AtomicUsize, n: usize, usable: &impl Fn(usize) -> bool) -> Option<usize> {
    (0..n)
        .map(|_| next.fetch_add(1, Ordering::Relaxed) % n)
        .find(|&i| usable(i))
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Smooth weighted round robin (nginx's algorithm) unrolled into one period.
fn smooth_schedule(weights: &[u32]) -> Box<[u32]> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let weights: Vec<i64> = weights.iter().map(|w| i64::from(w / g)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        schedule.push(best as u32);
    }
    schedule.into_boxed_slice()
}

fn ring(weights: &[u32], identities: &[&str]) -> Box<[(u64, u32)]> {
    let mut ring = Vec::new();
    for (index, (weight, identity)) in weights.iter().zip(identities).enumerate() {
        let base = gateway_layers_core::Key::Text((*identity).into()).stable_hash();
        let vnodes = weight.saturating_mul(VNODES_PER_WEIGHT).min(MAX_VNODES);
        for v in 0..vnodes {
            ring.push((mix(base ^ mix(u64::from(v) + 1)), index as u32));
        }
    }
    ring.sort_unstable();
    ring.into_boxed_slice()
}

/// splitmix64's finaliser: spreads FNV hashes of similar keys over the ring.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        let local = 0u8;
        let addr = std::ptr::addr_of!(local) as u64;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        mix(addr ^ nanos)
    });
}

/// A uniform-enough number in `0..n` (n >= 1) from a per-thread splitmix64 stream.
fn random_below(n: usize) -> usize {
    let x = RNG.with(|state| {
        let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(next);
        mix(next)
    });
    ((u128::from(x) * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("http://10.0.0.{i}:80")).collect()
    }

    fn picker(strategy: Strategy, weights: &[u32]) -> Picker {
        let ids = ids(weights.len());
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        Picker::new(strategy, weights, &refs)
    }

    fn counts(p: &Picker, n: usize, rounds: usize, usable: impl Fn(usize) -> bool) -> Vec<usize> {
        let mut counts = vec![0; n];
        for _ in 0..rounds {
            counts[p.pick(None, &usable, |_| 0).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_is_even_and_skips_unusable() {
        let p = picker(Strategy::RoundRobin, &[1, 1, 1]);
        assert_eq!(counts(&p, 3, 300, |_| true), [100, 100, 100]);
        assert_eq!(counts(&p, 3, 300, |i| i != 1), [150, 0, 150]);
        assert_eq!(p.pick(None, |_| false, |_| 0), None);
    }

    #[test]
    fn smooth_weighted_round_robin() {
        assert_eq!(&*smooth_schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(&*smooth_schedule(&[2, 4]), [1, 0, 1]);
        let p = picker(Strategy::WeightedRoundRobin, &[3, 1]);
        assert_eq!(counts(&p, 2, 400, |_| true), [300, 100]);
        assert_eq!(counts(&p, 2, 400, |i| i == 1), [0, 400]);
    }

    #[test]
    fn least_request_prefers_the_idle_target() {
        let p = picker(Strategy::LeastRequest, &[1, 1, 1]);
        let loads = [10usize, 0, 10];
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            counts[p.pick(None, |_| true, |i| loads[i]).unwrap()] += 1;
        }
        // Target 1 wins every pair it is part of: 2 of 3 pairs.
        assert!(counts[1] > 1800, "{counts:?}");
        // Equal loads spread over all targets.
        let even = counts_with_load(&p, |_| 0);
        assert!(even.iter().all(|&c| c > 700), "{even:?}");
        // Unusable targets are never chosen, even when idle.
        for _ in 0..500 {
            assert_ne!(p.pick(None, |i| i != 1, |i| loads[i]), Some(1));
        }
        assert_eq!(p.pick(None, |i| i == 2, |_| 0), Some(2));
        assert_eq!(p.pick(None, |_| false, |_| 0), None);
    }

    fn counts_with_load(p: &Picker, load: impl Fn(usize) -> usize) -> [usize; 3] {
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            counts[p.pick(None, |_| true, &load).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn least_request_weights() {
        let p = picker(Strategy::LeastRequest, &[4, 1]);
        // Loads are compared per unit of weight: 6/4 > 1/1.
        let mut wins = [0usize; 2];
        for _ in 0..1000 {
            wins[p.pick(None, |_| true, |i| [6, 1][i]).unwrap()] += 1;
        }
        assert_eq!(wins[1], 1000, "6/4 > 1/1, so target 1 always wins");
    }

    #[test]
    fn consistent_hash_is_sticky_even_and_stable() {
        let weights = [1, 1, 1, 1];
        let p = picker(Strategy::ConsistentHash, &weights);
        let mut counts = [0usize; 4];
        let mut placement = Vec::new();
        for key in 0..4000u64 {
            let chosen = p.pick(Some(key), |_| true, |_| 0).unwrap();
            assert_eq!(p.pick(Some(key), |_| true, |_| 0), Some(chosen));
            counts[chosen] += 1;
            placement.push(chosen);
        }
        assert!(counts.iter().all(|&c| c > 700 && c < 1300), "{counts:?}");
        // Target 2 unusable: only its keys move.
        for (key, before) in placement.iter().enumerate() {
            let after = p.pick(Some(key as u64), |i| i != 2, |_| 0).unwrap();
            if *before == 2 {
                assert_ne!(after, 2);
            } else {
                assert_eq!(after, *before);
            }
        }
        // A missing key falls back to round robin.
        assert_eq!(counts_none(&p), [25, 25, 25, 25]);
    }

    fn counts_none(p: &Picker) -> [usize; 4] {
        let mut counts = [0usize; 4];
        for _ in 0..100 {
            counts[p.pick(None, |_| true, |_| 0).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn consistent_hash_ring_survives_target_set_changes() {
        let all = ids(3);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let three = Picker::new(Strategy::ConsistentHash, &[1, 1, 1], &refs);
        // Remove target 1 from the set: keys on 0 and 2 stay (indices shift for 2).
        let two = Picker::new(Strategy::ConsistentHash, &[1, 1], &[refs[0], refs[2]]);
        for key in 0..2000u64 {
            let before = three.pick(Some(key), |_| true, |_| 0).unwrap();
            let after = two.pick(Some(key), |_| true, |_| 0).unwrap();
            match before {
                0 => assert_eq!(after, 0),
                2 => assert_eq!(after, 1),
                _ => {}
            }
        }
    }

    #[test]
    fn random_below_covers_range() {
        let mut seen = [false; 5];
        for _ in 0..1000 {
            seen[random_below(5)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
