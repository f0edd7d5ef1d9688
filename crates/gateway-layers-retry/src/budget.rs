//! The retry budget (Finagle / linkerd model), shared by every clone of a layer.
//!
//! Every request deposits; every retry withdraws. Over a sliding window of `ttl`, the
//! retries allowed are `min_per_sec * ttl + ratio * requests`. Under total upstream
//! failure this caps the extra load at `ratio` (plus the small reserve), so retries
//! cannot turn a partial outage into a full one.
//!
//! ```
//! use gateway_layers_retry::RetryBudget;
//! use std::time::Duration;
//!
//! // 10% retries, no reserve.
//! let budget = RetryBudget::new(0.1, 0, Duration::from_secs(10)).unwrap();
//! for _ in 0..10 {
//!     budget.deposit();
//! }
//! assert!(budget.withdraw());
//! assert!(!budget.withdraw());
//! ```

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use gateway_layers_core::ConfigError;
use tokio::time::Instant;

/// Fixed-point scale of the balance (thousandths of a retry).
const SCALE: u64 = 1000;
/// Slots of the sliding window.
const SLOTS: usize = 10;

/// A retry budget shared by all clones of a layer (cloning shares it).
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    /// Thousandths of a retry each deposit earns.
    per_deposit: u64,
    /// Thousandths of a retry always available over the window.
    reserve: u64,
    slot_len: Duration,
    ratio: f64,
    min_per_sec: u32,
    ttl: Duration,
    window: Mutex<Window>,
}

/// The pure sliding window: `SLOTS` slots of `ttl / SLOTS` each.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    deposits: [u64; SLOTS],
    withdrawals: [u64; SLOTS],
    total_deposits: u64,
    total_withdrawals: u64,
    current: usize,
    /// Start of the current slot.
    slot_start: Instant,
    /// End of the current slot, once known: before it, `advance` is one comparison.
    slot_end: Option<Instant>,
}

impl Window {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            deposits: [0; SLOTS],
            withdrawals: [0; SLOTS],
            total_deposits: 0,
            total_withdrawals: 0,
            current: 0,
            slot_start: now,
            slot_end: None,
        }
    }

    /// Moves the window to `now`, forgetting slots older than the TTL.
    #[inline]
    pub(crate) fn advance(&mut self, now: Instant, slot_len: Duration) {
        if self.slot_end.is_some_and(|end| now < end) {
            return;
        }
        let elapsed = now.saturating_duration_since(self.slot_start);
        if elapsed >= slot_len {
            self.step(now, elapsed, slot_len);
        }
        self.slot_end = self.slot_start.checked_add(slot_len);
    }

    /// [`advance`](Self::advance) past at least one slot boundary.
    fn step(&mut self, now: Instant, elapsed: Duration, slot_len: Duration) {
        let steps = (elapsed.as_nanos() / slot_len.as_nanos().max(1)) as u64;
        let clear = steps.min(SLOTS as u64) as usize;
        for _ in 0..clear {
            self.current = (self.current + 1) % SLOTS;
            self.total_deposits -= self.deposits[self.current];
            self.total_withdrawals -= self.withdrawals[self.current];
            self.deposits[self.current] = 0;
            self.withdrawals[self.current] = 0;
        }
        // `steps` can be huge after a long idle period; saturate instead of overflowing.
        let advance = u32::try_from(steps).unwrap_or(u32::MAX);
        self.slot_start = slot_len
            .checked_mul(advance)
            .and_then(|d| self.slot_start.checked_add(d))
            .unwrap_or(now);
    }

    #[inline]
    pub(crate) fn deposit(&mut self) {
        self.deposits[self.current] += 1;
        self.total_deposits += 1;
    }

    /// The balance in thousandths of a retry.
    pub(crate) fn balance(&self, reserve: u64, per_deposit: u64) -> i128 {
        i128::from(reserve) + i128::from(per_deposit) * i128::from(self.total_deposits)
            - i128::from(SCALE) * i128::from(self.total_withdrawals)
    }

    pub(crate) fn withdraw(&mut self, reserve: u64, per_deposit: u64) -> bool {
        if self.balance(reserve, per_deposit) >= i128::from(SCALE) {
            self.withdrawals[self.current] += 1;
            self.total_withdrawals += 1;
            true
        } else {
            false
        }
    }
}

impl RetryBudget {
    /// A budget allowing `ratio` retries per request (e.g. `0.2`), plus
    /// `min_per_sec` retries per second over a window of `ttl` (1 s to 60 s).
    pub fn new(ratio: f64, min_per_sec: u32, ttl: Duration) -> Result<Self, ConfigError> {
        if !ratio.is_finite() || !(0.0..=1000.0).contains(&ratio) {
            return Err(ConfigError::invalid(
                "retry.budget.ratio",
                "must be a number between 0 and 1000",
            ));
        }
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(60) {
            return Err(ConfigError::invalid(
                "retry.budget.ttl",
                "must be between 1 s and 60 s",
            ));
        }
        let per_deposit = (ratio * SCALE as f64).round() as u64;
        let reserve = ((f64::from(min_per_sec) * ttl.as_secs_f64()) * SCALE as f64).floor() as u64;
        Ok(Self {
            inner: Arc::new(Inner {
                per_deposit,
                reserve,
                slot_len: ttl / SLOTS as u32,
                ratio,
                min_per_sec,
                ttl,
                window: Mutex::new(Window::new(Instant::now())),
            }),
        })
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        // The window holds plain counters: a panic elsewhere cannot leave it invalid.
        self.inner
            .window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a request (every request that reaches the layer).
    #[inline]
    pub fn deposit(&self) {
        self.deposit_at(Instant::now());
    }

    pub(crate) fn deposit_at(&self, now: Instant) {
        let mut window = self.window();
        window.advance(now, self.inner.slot_len);
        window.deposit();
    }

    /// Takes one retry from the budget; `false` when it is empty.
    pub fn withdraw(&self) -> bool {
        let mut window = self.window();
        window.advance(Instant::now(), self.inner.slot_len);
        window.withdraw(self.inner.reserve, self.inner.per_deposit)
    }

    /// The retries currently available (rounded down).
    pub fn available(&self) -> u64 {
        let mut window = self.window();
        window.advance(Instant::now(), self.inner.slot_len);
        let balance = window.balance(self.inner.reserve, self.inner.per_deposit);
        u64::try_from(balance / i128::from(SCALE)).unwrap_or(0)
    }

    /// The configured ratio.
    pub fn ratio(&self) -> f64 {
        self.inner.ratio
    }

    /// The configured minimum retries per second.
    pub fn min_per_sec(&self) -> u32 {
        self.inner.min_per_sec
    }

    /// The configured window.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &self.inner.ratio)
            .field("min_per_sec", &self.inner.min_per_sec)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(RetryBudget::new(-0.1, 1, Duration::from_secs(10)).is_err());
        assert!(RetryBudget::new(f64::NAN, 1, Duration::from_secs(10)).is_err());
        assert!(RetryBudget::new(0.2, 1, Duration::from_millis(10)).is_err());
        assert!(RetryBudget::new(0.2, 1, Duration::from_secs(61)).is_err());
        assert!(RetryBudget::new(0.2, 10, Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn reserve_only() {
        let start = Instant::now();
        let mut w = Window::new(start);
        // 2 per second over 10 s = 20 retries, no ratio.
        let reserve = 20 * SCALE;
        let mut granted = 0;
        for _ in 0..100 {
            if w.withdraw(reserve, 0) {
                granted += 1;
            }
        }
        assert_eq!(granted, 20);
    }

    #[test]
    fn ratio_bound_within_ttl() {
        let start = Instant::now();
        let slot = Duration::from_secs(1);
        let mut w = Window::new(start);
        let (reserve, per_deposit) = (5 * SCALE, 200); // ratio 0.2
        let mut retries = 0u64;
        let mut requests = 0u64;
        for ms in (0..9_000).step_by(10) {
            let now = start + Duration::from_millis(ms);
            w.advance(now, slot);
            w.deposit();
            requests += 1;
            // Every request fails and asks for up to two retries.
            for _ in 0..2 {
                if w.withdraw(reserve, per_deposit) {
                    retries += 1;
                }
            }
        }
        assert!(
            retries <= requests / 5 + 5,
            "{retries} > {}",
            requests / 5 + 5
        );
        assert!(retries >= requests / 5, "budget too stingy: {retries}");
    }

    #[test]
    fn old_slots_expire() {
        let start = Instant::now();
        let slot = Duration::from_secs(1);
        let mut w = Window::new(start);
        for _ in 0..100 {
            w.deposit();
        }
        assert!(w.withdraw(0, 200));
        w.advance(start + Duration::from_secs(5), slot);
        assert_eq!(w.balance(0, 200), 100 * 200 - 1000);
        w.advance(start + Duration::from_secs(10), slot);
        assert_eq!(w.balance(0, 200), 0);
        assert!(!w.withdraw(0, 200));
        // A very long idle period does not overflow.
        w.advance(start + Duration::from_secs(10_000_000), slot);
        w.deposit();
        assert_eq!(w.balance(0, 200), 200);
    }
}
