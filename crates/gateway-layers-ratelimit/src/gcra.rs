//! The Generic Cell Rate Algorithm over several windows at once, as pure arithmetic.
//!
//! Each window keeps one number per key, its *theoretical arrival time* (TAT): the
//! moment at which the key's bucket for that window will be completely empty again.
//! A window with `quota` requests per `window` has an emission interval
//! `T = window / quota` and a tolerance `τ = burst × T`. A request of cost `c` at time
//! `now` conforms to the window when `max(TAT, now) + c·T − now ≤ τ`.
//!
//! A request is admitted only when it conforms to **every** window; then every TAT
//! advances. Otherwise nothing changes (unless rejected requests are counted), so a
//! refusal by one window never consumes another window's quota.
//!
//! Time is an integer count of ticks (nanoseconds locally, microseconds in Redis);
//! everything here is exact integer arithmetic.

/// One window of a policy, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// `T`: ticks per unit of quota.
    pub(crate) emission: u64,
    /// `τ = burst × T`.
    pub(crate) tolerance: u64,
    /// The window's length (caps the penalty of counted rejections).
    pub(crate) length: u64,
    /// Requests per window, as configured.
    pub(crate) quota: u64,
    /// The burst, as configured (defaults to the quota).
    pub(crate) burst: u64,
}

impl Window {
    /// A window of `quota` per `length` ticks with `burst`; `None` when the emission
    /// interval would be shorter than one tick.
    pub(crate) fn new(quota: u64, length: u64, burst: u64) -> Option<Self> {
        let emission = length / quota.max(1);
        if emission == 0 || quota == 0 || burst == 0 {
            return None;
        }
        Some(Self {
            emission,
            tolerance: emission.checked_mul(burst)?,
            length,
            quota,
            burst,
        })
    }
}

/// The state of the window closest to exhaustion after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Tightest {
    /// Index of the window in its policy.
    pub(crate) index: usize,
    /// Unit-cost requests that would still be admitted now.
    pub(crate) remaining: u64,
    /// Ticks until the window has fully recovered.
    pub(crate) reset: u64,
}

/// The outcome of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Whether the request is admitted.
    pub(crate) allowed: bool,
    /// Ticks until a request of the same cost would be admitted: `Some(0)` when
    /// admitted, `None` when it never can be (its cost exceeds a burst).
    pub(crate) retry_after: Option<u64>,
    /// The window closest to exhaustion (`None` for a policy without windows).
    pub(crate) tightest: Option<Tightest>,
}

impl Verdict {
    /// The verdict of a policy with no windows.
    pub(crate) const UNLIMITED: Verdict = Verdict {
        allowed: true,
        retry_after: Some(0),
        tightest: None,
    };
}

/// Decides a request of `cost` at `now` against `windows`, updating `tats` (one per
/// window, `0` for a fresh key) when it is admitted, or always when `count_rejected`.
#[cfg(test)]
pub(crate) fn check(
    windows: &[Window],
    tats: &mut [u64],
    now: u64,
    cost: u64,
    count_rejected: bool,
) -> Verdict {
    check_with(windows, tats, now, cost, count_rejected, true)
}

/// [`check`], skipping the summary of an admitted request unless `summary` (the
/// admitted verdict then carries no [`Tightest`]: nothing will render it). A refusal
/// is always summarized. Always inlined: the store's compact IPv4 path calls it with
/// the TATs of a `[u64; N]`, and inlined it is compiled for that `N` without a call.
#[inline(always)]
pub(crate) fn check_with(
    windows: &[Window],
    tats: &mut [u64],
    now: u64,
    cost: u64,
    count_rejected: bool,
    summary: bool,
) -> Verdict {
    debug_assert_eq!(windows.len(), tats.len());
    let mut allowed = true;
    for (w, tat) in windows.iter().zip(tats.iter()) {
        let ahead = (*tat).max(now) - now;
        if ahead.saturating_add(w.emission.saturating_mul(cost)) > w.tolerance {
            allowed = false;
            break;
        }
    }
    if allowed || count_rejected {
        for (w, tat) in windows.iter().zip(tats.iter_mut()) {
            let mut next = (*tat)
                .max(now)
                .saturating_add(w.emission.saturating_mul(cost));
            if !allowed {
                next = next.min(now.saturating_add(w.tolerance).saturating_add(w.length));
            }
            *tat = next;
        }
    }
    if allowed && !summary {
        return Verdict {
            allowed,
            retry_after: Some(0),
            tightest: None,
        };
    }
    summarize_tats(windows, tats, now, cost, allowed)
}

/// [`summarize`] of the TATs after a decision, kept out of [`check_with`] so that the
/// admission of a request that needs no summary stays small enough to be inlined.
#[inline(never)]
fn summarize_tats(windows: &[Window], tats: &[u64], now: u64, cost: u64, allowed: bool) -> Verdict {
    summarize(
        windows,
        tats.iter().map(|tat| tat.saturating_sub(now)),
        cost,
        allowed,
    )
}

/// Builds the verdict from each window's `ahead = TAT − now` after the decision
/// (shared by the local store and the Redis script's answer).
pub(crate) fn summarize(
    windows: &[Window],
    aheads: impl Iterator<Item = u64>,
    cost: u64,
    allowed: bool,
) -> Verdict {
    let mut retry: Option<u64> = Some(0);
    let mut tightest: Option<Tightest> = None;
    for (index, (w, ahead)) in windows.iter().zip(aheads).enumerate() {
        let remaining = w.tolerance.saturating_sub(ahead) / w.emission;
        let candidate = Tightest {
            index,
            remaining,
            reset: ahead,
        };
        tightest = Some(match tightest {
            None => candidate,
            Some(best) => {
                let best_burst = windows[best.index].burst;
                // remaining / burst, compared without division.
                let lhs = u128::from(remaining) * u128::from(best_burst);
                let rhs = u128::from(best.remaining) * u128::from(w.burst);
                if lhs < rhs || (lhs == rhs && remaining < best.remaining) {
                    candidate
                } else {
                    best
                }
            }
        });
        if !allowed {
            let need = w.emission.saturating_mul(cost);
            if need > w.tolerance {
                retry = None;
            } else if let Some(r) = retry {
                let wait = ahead.saturating_add(need).saturating_sub(w.tolerance);
                retry = Some(r.max(wait));
            }
        }
    }
    Verdict {
        allowed,
        retry_after: retry,
        tightest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn w(quota: u64, length: u64, burst: u64) -> Window {
        Window::new(quota, length, burst).unwrap()
    }

    #[test]
    fn five_per_second_burst_five() {
        let windows = [w(5, S, 5)];
        let mut tats = [0];
        for i in 0..5 {
            let v = check(&windows, &mut tats, 0, 1, false);
            assert!(v.allowed, "request {i}");
            assert_eq!(v.tightest.unwrap().remaining, 4 - i);
        }
        let v = check(&windows, &mut tats, 0, 1, false);
        assert!(!v.allowed);
        assert_eq!(v.retry_after, Some(S / 5));
        assert!(!check(&windows, &mut tats, S / 5 - 1, 1, false).allowed);
        assert!(check(&windows, &mut tats, S / 5, 1, false).allowed);
        assert!(!check(&windows, &mut tats, S / 5, 1, false).allowed);
    }

    #[test]
    fn idling_banks_at_most_the_burst() {
        let windows = [w(5, S, 5)];
        let mut tats = [0];
        assert!(check(&windows, &mut tats, 0, 1, false).allowed);
        let later = 3600 * S;
        let admitted = (0..20)
            .filter(|_| check(&windows, &mut tats, later, 1, false).allowed)
            .count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn all_windows_or_none() {
        // 10/s and 12/min: the minute window refuses the 13th, the second window is
        // not charged for refused requests.
        let windows = [w(10, S, 10), w(12, 60 * S, 12)];
        let mut tats = [0, 0];
        let mut admitted = 0;
        for i in 0..30 {
            if check(&windows, &mut tats, i * (S / 10), 1, false).allowed {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 12);
        // The second window only holds what was admitted.
        assert!(tats[0] <= 3 * S);
        let v = check(&windows, &mut tats, 3 * S, 1, false);
        assert!(!v.allowed);
        assert_eq!(v.tightest.unwrap().index, 1);
        assert_eq!(v.tightest.unwrap().remaining, 0);
        assert_eq!(v.retry_after, Some(5 * S - 3 * S));
    }

    #[test]
    fn cost_and_never() {
        let windows = [w(10, S, 10)];
        let mut tats = [0];
        assert!(check(&windows, &mut tats, 0, 7, false).allowed);
        let v = check(&windows, &mut tats, 0, 4, false);
        assert!(!v.allowed);
        assert_eq!(v.retry_after, Some(S / 10));
        let v = check(&windows, &mut tats, 0, 11, false);
        assert_eq!(v.retry_after, None);
        assert_eq!(tats[0], 7 * S / 10);
        // Cost 0 never consumes.
        assert!(check(&windows, &mut [0], 0, 0, false).allowed);
    }

    #[test]
    fn counted_rejections_push_back_but_are_capped() {
        let windows = [w(1, S, 1)];
        let mut tats = [0];
        assert!(check(&windows, &mut tats, 0, 1, true).allowed);
        for _ in 0..1000 {
            assert!(!check(&windows, &mut tats, 0, 1, true).allowed);
        }
        // Capped at now + tolerance + window.
        assert_eq!(tats[0], 2 * S);
        let v = check(&windows, &mut tats, 0, 1, true);
        assert_eq!(v.retry_after, Some(2 * S));
        assert!(check(&windows, &mut tats, 2 * S, 1, true).allowed);
    }

    #[test]
    fn tightest_is_closest_to_exhaustion() {
        let windows = [w(10, S, 10), w(100, 3600 * S, 100)];
        let mut tats = [0, 0];
        for _ in 0..5 {
            check(&windows, &mut tats, 0, 1, false);
        }
        // 5/10 left in the second-window, 95/100 in the hour.
        assert_eq!(
            check(&windows, &mut tats, 0, 0, false)
                .tightest
                .unwrap()
                .index,
            0
        );
        let mut tats = [0, 95 * 36 * S];
        let t = check(&windows, &mut tats, 0, 1, false).tightest.unwrap();
        assert_eq!((t.index, t.remaining), (1, 4));
        assert_eq!(t.reset, 96 * 36 * S);
    }

    #[test]
    fn unsummarized_admission_charges_the_same() {
        let windows = [w(10, S, 10), w(12, 60 * S, 12)];
        let (mut a, mut b) = ([0, 0], [0, 0]);
        for i in 0..40 {
            let now = i * (S / 20);
            let full = check_with(&windows, &mut a, now, 1, i % 3 == 0, true);
            let quick = check_with(&windows, &mut b, now, 1, i % 3 == 0, false);
            assert_eq!(a, b);
            assert_eq!(full.allowed, quick.allowed);
            if quick.allowed {
                assert_eq!(quick.tightest, None);
                assert_eq!(quick.retry_after, Some(0));
            } else {
                // Refusals are always summarized.
                assert_eq!(full, quick);
            }
        }
    }

    #[test]
    fn invalid_windows() {
        assert!(Window::new(0, S, 1).is_none());
        assert!(Window::new(10, 5, 1).is_none());
        assert!(Window::new(1, S, 0).is_none());
        assert!(Window::new(1, u64::MAX, 2).is_none());
    }
}
