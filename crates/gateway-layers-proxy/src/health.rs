//! Health decisions: pure arithmetic for passive ejection and active-check thresholds.

use std::time::Duration;

use crate::config::PassiveHealth;

/// How long the `n`th ejection (n >= 1) lasts: `base * n`, at most `max`.
pub(crate) fn ejection_time(config: &PassiveHealth, n: u32) -> Duration {
    config
        .base_ejection_time
        .saturating_mul(n.max(1))
        .min(config.max_ejection_time.max(config.base_ejection_time))
}

/// Whether one more target may be ejected when `ejected` of `total` already are.
pub(crate) fn may_eject(config: &PassiveHealth, total: usize, ejected: usize) -> bool {
    let allowed = ((total as f64) * config.max_ejected_fraction).floor() as usize;
    ejected < allowed.max(1)
}

/// Consecutive results of active checks for one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Streak {
    pub(crate) healthy: bool,
    passes: u32,
    fails: u32,
}

impl Default for Streak {
    fn default() -> Self {
        Self {
            healthy: true,
            passes: 0,
            fails: 0,
        }
    }
}

impl Streak {
    /// Records one check; returns the new state when it changed.
    pub(crate) fn record(
        &mut self,
        passed: bool,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
    ) -> Option<bool> {
        if passed {
            self.fails = 0;
            self.passes = self.passes.saturating_add(1);
            if !self.healthy && self.passes >= healthy_threshold {
                self.healthy = true;
                return Some(true);
            }
        } else {
            self.passes = 0;
            self.fails = self.fails.saturating_add(1);
            if self.healthy && self.fails >= unhealthy_threshold {
                self.healthy = false;
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_time_grows_to_the_maximum() {
        let c = PassiveHealth::default()
            .ejection_time(Duration::from_secs(10), Duration::from_secs(25));
        assert_eq!(ejection_time(&c, 1), Duration::from_secs(10));
        assert_eq!(ejection_time(&c, 2), Duration::from_secs(20));
        assert_eq!(ejection_time(&c, 3), Duration::from_secs(25));
        assert_eq!(ejection_time(&c, u32::MAX), Duration::from_secs(25));
    }

    #[test]
    fn ejected_fraction_is_capped_but_one_is_always_allowed() {
        let c = PassiveHealth::default().max_ejected_fraction(0.5);
        assert!(may_eject(&c, 4, 0));
        assert!(may_eject(&c, 4, 1));
        assert!(!may_eject(&c, 4, 2));
        assert!(may_eject(&c, 1, 0));
        assert!(!may_eject(&c, 1, 1));
        let none = c.max_ejected_fraction(0.0);
        assert!(may_eject(&none, 10, 0));
        assert!(!may_eject(&none, 10, 1));
    }

    #[test]
    fn streak_thresholds() {
        let mut s = Streak::default();
        assert_eq!(s.record(false, 2, 3), None);
        assert_eq!(s.record(false, 2, 3), None);
        assert_eq!(
            s.record(true, 2, 3),
            None,
            "a pass breaks the failing streak"
        );
        assert_eq!(s.record(false, 2, 3), None);
        assert_eq!(s.record(false, 2, 3), None);
        assert_eq!(s.record(false, 2, 3), Some(false));
        assert_eq!(s.record(false, 2, 3), None);
        assert_eq!(s.record(true, 2, 3), None);
        assert_eq!(s.record(true, 2, 3), Some(true));
        assert!(s.healthy);
    }
}
