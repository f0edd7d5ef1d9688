//! The circuit state machine: pure, no clock reads, no I/O, no logging.
//!
//! Time is passed in as nanoseconds since an arbitrary epoch; the service shell reads
//! the clock and turns the [`Transition`]s returned here into events.
//!
//! # Concurrency
//!
//! The state lives in one `AtomicU64` word, `generation << 3 | state`. The closed-state
//! path (admit, record a result) only loads that word and updates the sliding window
//! with atomic read-modify-writes; it never locks. State changes are serialised by a
//! per-circuit mutex, taken only when a threshold is crossed, a timer elapses or an
//! operator forces a state. Every change bumps the generation, and a result is only
//! counted when the generation it was admitted under is still current, so a call that
//! overhangs a transition never moves the new state.
//!
//! Half-open probe permits and successes are packed with the (truncated) generation in
//! one word, so a permit taken or released under an older half-open period can never
//! leak into a newer one.

use std::{
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering},
    },
};

/// The state of one circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls pass and their results are recorded.
    Closed,
    /// Calls are refused until the open time has elapsed.
    Open,
    /// A limited number of probe calls pass; their results close or reopen the circuit.
    HalfOpen,
    /// Forced open by an operator: every call is refused until reset.
    ForcedOpen,
    /// Forced closed by an operator: every call passes and nothing trips it until reset.
    ForcedClosed,
}

impl State {
    /// A stable lowercase name (`closed`, `open`, `half_open`, `forced_open`,
    /// `forced_closed`), used in events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::ForcedClosed => "forced_closed",
        }
    }

    /// The value reported on the `gateway.breaker.state` gauge: closed 0, open 1,
    /// half-open 2, forced open 3, forced closed 4.
    pub fn as_gauge(self) -> i64 {
        i64::from(self.code() as u8)
    }

    fn code(self) -> u64 {
        match self {
            State::Closed => CLOSED,
            State::Open => OPEN,
            State::HalfOpen => HALF_OPEN,
            State::ForcedOpen => FORCED_OPEN,
            State::ForcedClosed => FORCED_CLOSED,
        }
    }

    fn from_code(code: u64) -> Self {
        match code {
            CLOSED => State::Closed,
            OPEN => State::Open,
            HALF_OPEN => State::HalfOpen,
            FORCED_OPEN => State::ForcedOpen,
            _ => State::ForcedClosed,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a circuit changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The failure rate over the sliding window reached the threshold.
    FailureRate,
    /// The slow-call rate over the sliding window reached the threshold.
    SlowCallRate,
    /// The configured number of consecutive failures was reached.
    ConsecutiveFailures,
    /// The open time elapsed; the circuit admits probes.
    OpenTimeElapsed,
    /// Enough probes succeeded; the circuit closed.
    ProbesSucceeded,
    /// A probe failed; the circuit reopened.
    ProbeFailed,
    /// The circuit stayed half-open longer than the maximum wait; it reopened.
    HalfOpenTimeout,
    /// An operator forced the state through the handle.
    Forced,
    /// An operator reset the circuit through the handle.
    Reset,
}

impl Reason {
    /// A stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FailureRate => "failure_rate",
            Reason::SlowCallRate => "slow_call_rate",
            Reason::ConsecutiveFailures => "consecutive_failures",
            Reason::OpenTimeElapsed => "open_time_elapsed",
            Reason::ProbesSucceeded => "probes_succeeded",
            Reason::ProbeFailed => "probe_failed",
            Reason::HalfOpenTimeout => "half_open_timeout",
            Reason::Forced => "forced",
            Reason::Reset => "reset",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change made by the machine; the shell reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    /// The state left.
    pub(crate) from: State,
    /// The state entered.
    pub(crate) to: State,
    /// Why.
    pub(crate) reason: Reason,
    /// The generation of the new state (it grows by one on every transition).
    pub(crate) generation: u64,
    /// For a transition to open: how long the circuit stays open, in nanoseconds.
    pub(crate) open_for_nanos: Option<u64>,
}

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const FORCED_OPEN: u64 = 3;
const FORCED_CLOSED: u64 = 4;
const STATE_BITS: u32 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

#[inline]
fn pack(generation: u64, state: u64) -> u64 {
    (generation << STATE_BITS) | state
}

/// The sliding window kind, in machine units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowSpec {
    /// The last `size` calls.
    Count { size: u32 },
    /// The calls of the last `buckets * bucket_nanos` nanoseconds.
    Time { bucket_nanos: u64, buckets: u32 },
}

/// Validated machine configuration (see `config.rs` for the public one).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MachineConfig {
    pub(crate) window: WindowSpec,
    pub(crate) minimum_calls: u32,
    /// Failure rate threshold in basis points (1/100 of a percent), if enabled.
    pub(crate) failure_rate_bp: Option<u32>,
    /// Slow-call rate threshold in basis points, if enabled.
    pub(crate) slow_rate_bp: Option<u32>,
    /// A call taking at least this long is slow.
    pub(crate) slow_call_nanos: Option<u64>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) open_base_nanos: u64,
    pub(crate) open_multiplier: f64,
    pub(crate) open_max_nanos: u64,
    /// Fraction of the open time that may be randomly taken off, 0.0..=1.0.
    pub(crate) open_jitter: f64,
    pub(crate) half_open_probes: u32,
    pub(crate) half_open_successes: u32,
    pub(crate) half_open_max_wait_nanos: Option<u64>,
}

impl MachineConfig {
    /// Whether recording a result needs the current time.
    pub(crate) fn needs_clock_on_result(&self) -> bool {
        self.slow_call_nanos.is_some() || matches!(self.window, WindowSpec::Time { .. })
    }

    /// The open time after the `trips`-th consecutive trip (1-based), before jitter.
    pub(crate) fn open_time(&self, trips: u32) -> u64 {
        let exponent = trips.saturating_sub(1).min(64) as i32;
        let grown = self.open_base_nanos as f64 * self.open_multiplier.powi(exponent);
        if grown.is_finite() && grown < self.open_max_nanos as f64 {
            (grown as u64).max(self.open_base_nanos.min(self.open_max_nanos))
        } else {
            self.open_max_nanos
        }
    }
}

/// What a call's result was, as the classifier saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    /// Says nothing about the upstream (e.g. a classifier's `Ignore`).
    Ignore,
}

/// Permission for one call, carried by its future.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) generation: u64,
    pub(crate) probe: bool,
}

/// The machine's answer to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The call may proceed.
    Permit(Ticket),
    /// The call is refused; retry after this many nanoseconds (`None`: unknown, e.g.
    /// forced open).
    Reject { retry_after_nanos: Option<u64> },
}

/// Lifetime counters of one circuit (never reset, exact).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Calls classified as successes.
    pub successful: u64,
    /// Calls classified as failures.
    pub failed: u64,
    /// Calls at or over the slow-call threshold (also counted as successful or failed).
    pub slow: u64,
    /// Calls whose result the classifier ignored.
    pub ignored: u64,
    /// Calls refused because the circuit was open, forced open or out of probes.
    pub rejected: u64,
    /// Calls whose future was dropped before completing.
    pub cancelled: u64,
    /// Completed calls admitted under an earlier generation, so not counted in the
    /// window of the current state (also counted as successful / failed / ignored).
    pub outdated: u64,
    /// Transitions into the open state (trips, reopens; not forced).
    pub opened: u64,
}

/// The current sliding window contents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WindowSnapshot {
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window.
    pub slow: u64,
}

#[derive(Debug, Default)]
struct AtomicCounters {
    failed: AtomicU64,
    slow: AtomicU64,
    ignored: AtomicU64,
    rejected: AtomicU64,
    cancelled: AtomicU64,
    outdated: AtomicU64,
    opened: AtomicU64,
}

// ---------------------------------------------------------------------------------
// Count-based window: a ring of per-call slots plus a packed aggregate.
// ---------------------------------------------------------------------------------

// Slot encoding: 0 empty; bit 0 a call; bit 1 failed; bit 2 slow.
const SLOT_CALL: u8 = 1;
const SLOT_FAILED: u8 = 2;
const SLOT_SLOW: u8 = 4;

// Aggregate encoding: three 21-bit fields (calls, failures, slow), each biased by
// 2^19 so that a transiently negative field (two writers of one slot finishing out of
// order) never borrows from its neighbour. Window sizes are limited to 2^16.
const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const BIAS: u64 = 1 << 19;
const AGG_ZERO: u64 = BIAS | (BIAS << FIELD_BITS) | (BIAS << (2 * FIELD_BITS));
pub(crate) const MAX_COUNT_WINDOW: u32 = 1 << 16;

#[inline]
fn slot_value(slot: u8) -> u64 {
    u64::from(slot & SLOT_CALL)
        | (u64::from((slot & SLOT_FAILED) >> 1) << FIELD_BITS)
        | (u64::from((slot & SLOT_SLOW) >> 2) << (2 * FIELD_BITS))
}

#[inline]
fn decode(aggregate: u64) -> WindowSnapshot {
    let field = |shift: u32| ((aggregate >> shift) & FIELD_MASK).saturating_sub(BIAS);
    WindowSnapshot {
        calls: field(0),
        failures: field(FIELD_BITS),
        slow: field(2 * FIELD_BITS),
    }
}

#[derive(Debug)]
struct CountWindow {
    slots: Box<[AtomicU8]>,
    aggregate: AtomicU64,
}

impl CountWindow {
    fn new(size: u32) -> Self {
        Self {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            aggregate: AtomicU64::new(AGG_ZERO),
        }
    }

    #[inline]
    fn record(&self, slot: u8, index: u64) -> WindowSnapshot {
        let cell = &self.slots[(index % self.slots.len() as u64) as usize];
        // Writing the value a slot already holds changes nothing: skip the swap (the
        // steady state of a healthy upstream costs no read-modify-write here).
        let old = if cell.load(Ordering::Relaxed) == slot {
            slot
        } else {
            cell.swap(slot, Ordering::AcqRel)
        };
        if old == slot {
            if slot & (SLOT_FAILED | SLOT_SLOW) == 0 {
                return WindowSnapshot::default();
            }
            return decode(self.aggregate.load(Ordering::Acquire));
        }
        let delta = slot_value(slot).wrapping_sub(slot_value(old));
        let previous = self.aggregate.fetch_add(delta, Ordering::AcqRel);
        decode(previous.wrapping_add(delta))
    }

    fn snapshot(&self) -> WindowSnapshot {
        decode(self.aggregate.load(Ordering::Acquire))
    }

    fn reset(&self) {
        for slot in self.slots.iter() {
            slot.store(0, Ordering::Relaxed);
        }
        self.aggregate.store(AGG_ZERO, Ordering::Release);
    }

    #[cfg(test)]
    fn recount(&self) -> WindowSnapshot {
        let mut snap = WindowSnapshot::default();
        for slot in self.slots.iter() {
            let s = slot.load(Ordering::Relaxed);
            snap.calls += u64::from(s & SLOT_CALL);
            snap.failures += u64::from((s & SLOT_FAILED) >> 1);
            snap.slow += u64::from((s & SLOT_SLOW) >> 2);
        }
        snap
    }
}

// ---------------------------------------------------------------------------------
// Time-based window: a ring of buckets tagged with their epoch.
// ---------------------------------------------------------------------------------

const RESETTING: u64 = u64::MAX;

#[derive(Debug, Default)]
struct Bucket {
    /// Bucket epoch + 1 (0: never used), or `RESETTING`.
    epoch: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

#[derive(Debug)]
struct TimeWindow {
    bucket_nanos: u64,
    buckets: Box<[Bucket]>,
}

impl TimeWindow {
    fn new(bucket_nanos: u64, buckets: u32) -> Self {
        Self {
            bucket_nanos: bucket_nanos.max(1),
            buckets: (0..buckets).map(|_| Bucket::default()).collect(),
        }
    }

    fn record(&self, slot: u8, now: u64) -> WindowSnapshot {
        let epoch = now / self.bucket_nanos + 1;
        let bucket = &self.buckets[(epoch % self.buckets.len() as u64) as usize];
        loop {
            let current = bucket.epoch.load(Ordering::Acquire);
            if current == epoch {
                bucket.calls.fetch_add(1, Ordering::Relaxed);
                if slot & SLOT_FAILED != 0 {
                    bucket.failures.fetch_add(1, Ordering::Relaxed);
                }
                if slot & SLOT_SLOW != 0 {
                    bucket.slow.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            if current == RESETTING {
                std::hint::spin_loop();
                continue;
            }
            if current > epoch {
                // A result recorded late, after its bucket was reused: drop it.
                break;
            }
            if bucket
                .epoch
                .compare_exchange(current, RESETTING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                bucket.calls.store(0, Ordering::Relaxed);
                bucket.failures.store(0, Ordering::Relaxed);
                bucket.slow.store(0, Ordering::Relaxed);
                bucket.epoch.store(epoch, Ordering::Release);
            }
        }
        if slot & (SLOT_FAILED | SLOT_SLOW) == 0 {
            // A success cannot trip the circuit: skip summing the buckets.
            return WindowSnapshot::default();
        }
        self.snapshot(now)
    }

    fn snapshot(&self, now: u64) -> WindowSnapshot {
        let epoch = now / self.bucket_nanos + 1;
        let oldest = epoch.saturating_sub(self.buckets.len() as u64 - 1);
        let mut snap = WindowSnapshot::default();
        for bucket in self.buckets.iter() {
            let e = bucket.epoch.load(Ordering::Acquire);
            if e != RESETTING && e >= oldest && e <= epoch {
                snap.calls += bucket.calls.load(Ordering::Relaxed);
                snap.failures += bucket.failures.load(Ordering::Relaxed);
                snap.slow += bucket.slow.load(Ordering::Relaxed);
            }
        }
        snap
    }

    fn reset(&self) {
        for bucket in self.buckets.iter() {
            bucket.epoch.store(0, Ordering::Release);
            bucket.calls.store(0, Ordering::Relaxed);
            bucket.failures.store(0, Ordering::Relaxed);
            bucket.slow.store(0, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

// ---------------------------------------------------------------------------------
// Half-open bookkeeping: generation (32 bits) | permits issued (16) | successes (16).
// ---------------------------------------------------------------------------------

#[inline]
fn probes_pack(generation: u64, issued: u64, successes: u64) -> u64 {
    ((generation & 0xffff_ffff) << 32) | ((issued & 0xffff) << 16) | (successes & 0xffff)
}

#[inline]
fn probes_gen(word: u64) -> u64 {
    word >> 32
}

#[inline]
fn probes_issued(word: u64) -> u64 {
    (word >> 16) & 0xffff
}

#[inline]
fn probes_successes(word: u64) -> u64 {
    word & 0xffff
}

/// Keeps a hot atomic on its own cache line, so threads writing one do not slow down
/// threads reading another.
#[derive(Debug, Default)]
#[repr(align(64))]
struct CachePadded<T>(T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// One circuit: state word, window, counters.
#[derive(Debug)]
pub(crate) struct Circuit {
    /// Read by every call: kept on its own cache line.
    state: CachePadded<AtomicU64>,
    /// Completed calls classified success or failure (lifetime; also the ring index of
    /// the count window). Written by every call: its own cache line.
    results: CachePadded<AtomicU64>,
    config: MachineConfig,
    clock_on_result: bool,
    window: Window,
    consecutive_failures: AtomicU32,
    /// While open: the time (ns) at which the circuit turns half-open.
    open_until: AtomicU64,
    /// While half-open: when it turned half-open.
    half_open_since: AtomicU64,
    probes: AtomicU64,
    /// Trips since the circuit last closed, for the exponential open time.
    trips: AtomicU32,
    rng: AtomicU64,
    counters: AtomicCounters,
    transitions: Mutex<()>,
}

impl Circuit {
    /// A closed circuit. `seed` seeds the open-time jitter.
    pub(crate) fn new(config: MachineConfig, seed: u64) -> Self {
        let window = match config.window {
            WindowSpec::Count { size } => Window::Count(CountWindow::new(size)),
            WindowSpec::Time {
                bucket_nanos,
                buckets,
            } => Window::Time(TimeWindow::new(bucket_nanos, buckets)),
        };
        Self {
            clock_on_result: config.needs_clock_on_result(),
            config,
            state: CachePadded(AtomicU64::new(pack(0, CLOSED))),
            results: CachePadded(AtomicU64::new(0)),
            window,
            consecutive_failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            half_open_since: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            trips: AtomicU32::new(0),
            rng: AtomicU64::new(seed | 1),
            counters: AtomicCounters::default(),
            transitions: Mutex::new(()),
        }
    }

    /// The current state and generation.
    pub(crate) fn state(&self) -> (State, u64) {
        let word = self.state.load(Ordering::Acquire);
        (State::from_code(word & STATE_MASK), word >> STATE_BITS)
    }

    pub(crate) fn counters(&self) -> Counters {
        let c = &self.counters;
        Counters {
            successful: {
                let failed = c.failed.load(Ordering::Acquire);
                self.results
                    .0
                    .load(Ordering::Acquire)
                    .saturating_sub(failed)
            },
            failed: c.failed.load(Ordering::Relaxed),
            slow: c.slow.load(Ordering::Relaxed),
            ignored: c.ignored.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
            outdated: c.outdated.load(Ordering::Relaxed),
            opened: c.opened.load(Ordering::Relaxed),
        }
    }

    /// The window contents at time `now` (ignored by count windows).
    pub(crate) fn window(&self, now: u64) -> WindowSnapshot {
        match &self.window {
            Window::Count(w) => w.snapshot(),
            Window::Time(w) => w.snapshot(now),
        }
    }

    /// Nanoseconds until an open circuit turns half-open (0 when not open).
    pub(crate) fn retry_after(&self, now: u64) -> u64 {
        let word = self.state.load(Ordering::Acquire);
        if word & STATE_MASK == OPEN {
            self.open_until.load(Ordering::Acquire).saturating_sub(now)
        } else {
            0
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.transitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks to admit a call. `now` is only read when the circuit is not closed.
    ///
    /// Returns the admission and, when admitting made the circuit change state (open
    /// time elapsed, half-open wait exceeded), that transition.
    #[inline]
    pub(crate) fn admit(&self, now: impl FnOnce() -> u64) -> (Admission, Option<Transition>) {
        let word = self.state.load(Ordering::Acquire);
        let state = word & STATE_MASK;
        if state == CLOSED || state == FORCED_CLOSED {
            return (
                Admission::Permit(Ticket {
                    generation: word >> STATE_BITS,
                    probe: false,
                }),
                None,
            );
        }
        self.admit_slow(word, now())
    }

    #[cold]
    fn admit_slow(&self, mut word: u64, now: u64) -> (Admission, Option<Transition>) {
        let mut transition = None;
        loop {
            let generation = word >> STATE_BITS;
            match word & STATE_MASK {
                CLOSED | FORCED_CLOSED => {
                    return (
                        Admission::Permit(Ticket {
                            generation,
                            probe: false,
                        }),
                        transition,
                    );
                }
                FORCED_OPEN => {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    return (
                        Admission::Reject {
                            retry_after_nanos: None,
                        },
                        transition,
                    );
                }
                OPEN => {
                    let until = self.open_until.load(Ordering::Acquire);
                    if now < until {
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        return (
                            Admission::Reject {
                                retry_after_nanos: Some(until - now),
                            },
                            transition,
                        );
                    }
                    let guard = self.lock();
                    if self.state.load(Ordering::Acquire) == word {
                        let next = generation + 1;
                        self.probes
                            .store(probes_pack(next, 0, 0), Ordering::Release);
                        self.half_open_since.store(now, Ordering::Release);
                        self.state.store(pack(next, HALF_OPEN), Ordering::Release);
                        transition = Some(Transition {
                            from: State::Open,
                            to: State::HalfOpen,
                            reason: Reason::OpenTimeElapsed,
                            generation: next,
                            open_for_nanos: None,
                        });
                    }
                    drop(guard);
                }
                _ => {
                    // Half-open.
                    if let Some(max) = self.config.half_open_max_wait_nanos {
                        let since = self.half_open_since.load(Ordering::Acquire);
                        if now.saturating_sub(since) >= max {
                            if let Some(t) =
                                self.try_open(word, State::HalfOpen, Reason::HalfOpenTimeout, now)
                            {
                                transition = Some(t);
                            }
                            word = self.state.load(Ordering::Acquire);
                            continue;
                        }
                    }
                    let mut probes = self.probes.load(Ordering::Acquire);
                    loop {
                        if probes_gen(probes) != generation & 0xffff_ffff {
                            // The half-open period changed under us: look again.
                            break;
                        }
                        if probes_issued(probes) >= u64::from(self.config.half_open_probes) {
                            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                            return (
                                Admission::Reject {
                                    retry_after_nanos: Some(1_000_000_000),
                                },
                                transition,
                            );
                        }
                        match self.probes.compare_exchange_weak(
                            probes,
                            probes + (1 << 16),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => {
                                return (
                                    Admission::Permit(Ticket {
                                        generation,
                                        probe: true,
                                    }),
                                    transition,
                                );
                            }
                            Err(actual) => probes = actual,
                        }
                    }
                }
            }
            word = self.state.load(Ordering::Acquire);
        }
    }

    /// Records the result of a call admitted with `ticket` at time `start` (only read
    /// when slow calls are tracked). `clock` gives the current time; it is only called
    /// when needed (slow calls, time window, a transition).
    #[inline]
    pub(crate) fn record(
        &self,
        ticket: Ticket,
        outcome: Outcome,
        start: u64,
        clock: impl Fn() -> u64,
    ) -> Option<Transition> {
        let hot_now = if self.clock_on_result { clock() } else { 0 };
        let slow = match self.config.slow_call_nanos {
            Some(threshold) => {
                outcome != Outcome::Ignore && hot_now.wrapping_sub(start) >= threshold
            }
            None => false,
        };
        let counters = &self.counters;
        let index = match outcome {
            Outcome::Success => self.results.fetch_add(1, Ordering::AcqRel),
            Outcome::Failure => {
                counters.failed.fetch_add(1, Ordering::AcqRel);
                self.results.fetch_add(1, Ordering::AcqRel)
            }
            Outcome::Ignore => {
                counters.ignored.fetch_add(1, Ordering::Relaxed);
                0
            }
        };
        if slow {
            counters.slow.fetch_add(1, Ordering::Relaxed);
        }
        let word = self.state.load(Ordering::Acquire);
        if word >> STATE_BITS != ticket.generation {
            counters.outdated.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match word & STATE_MASK {
            CLOSED if !ticket.probe => {
                self.record_closed(word, outcome, slow, index, hot_now, &clock)
            }
            HALF_OPEN if ticket.probe => self.record_probe(word, outcome, clock()),
            _ => None,
        }
    }

    #[inline]
    fn record_closed(
        &self,
        word: u64,
        outcome: Outcome,
        slow: bool,
        index: u64,
        now: u64,
        clock: &impl Fn() -> u64,
    ) -> Option<Transition> {
        let failed = match outcome {
            Outcome::Ignore => return None,
            Outcome::Failure => true,
            Outcome::Success => false,
        };
        let mut tripped = None;
        if failed {
            let run = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
            if let Some(limit) = self.config.consecutive_failures
                && run >= limit
            {
                tripped = Some(Reason::ConsecutiveFailures);
            }
        } else if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Release);
        }
        let slot =
            SLOT_CALL | if failed { SLOT_FAILED } else { 0 } | if slow { SLOT_SLOW } else { 0 };
        let snapshot = match &self.window {
            Window::Count(w) => w.record(slot, index),
            Window::Time(w) => w.record(slot, now),
        };
        if tripped.is_none() && (failed || slow) {
            tripped = self.rate_exceeded(snapshot);
        }
        let reason = tripped?;
        let now = if self.clock_on_result { now } else { clock() };
        self.try_open(word, State::Closed, reason, now)
    }

    fn rate_exceeded(&self, snap: WindowSnapshot) -> Option<Reason> {
        let c = &self.config;
        if snap.calls == 0 || snap.calls < u64::from(c.minimum_calls) {
            return None;
        }
        if let Some(bp) = c.failure_rate_bp
            && snap.failures * 10_000 >= u64::from(bp) * snap.calls
        {
            return Some(Reason::FailureRate);
        }
        if let Some(bp) = c.slow_rate_bp
            && snap.slow * 10_000 >= u64::from(bp) * snap.calls
        {
            return Some(Reason::SlowCallRate);
        }
        None
    }

    fn record_probe(&self, word: u64, outcome: Outcome, now: u64) -> Option<Transition> {
        let generation = word >> STATE_BITS;
        match outcome {
            Outcome::Failure => self.try_open(word, State::HalfOpen, Reason::ProbeFailed, now),
            Outcome::Ignore => {
                self.release_probe(generation);
                None
            }
            Outcome::Success => {
                let mut probes = self.probes.load(Ordering::Acquire);
                loop {
                    if probes_gen(probes) != generation & 0xffff_ffff {
                        return None;
                    }
                    match self.probes.compare_exchange_weak(
                        probes,
                        probes + 1,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break,
                        Err(actual) => probes = actual,
                    }
                }
                if probes_successes(probes) + 1 < u64::from(self.config.half_open_successes) {
                    return None;
                }
                let _guard = self.lock();
                if self.state.load(Ordering::Acquire) != word {
                    return None;
                }
                self.close_locked(generation + 1);
                Some(Transition {
                    from: State::HalfOpen,
                    to: State::Closed,
                    reason: Reason::ProbesSucceeded,
                    generation: generation + 1,
                    open_for_nanos: None,
                })
            }
        }
    }

    fn release_probe(&self, generation: u64) {
        let mut probes = self.probes.load(Ordering::Acquire);
        loop {
            if probes_gen(probes) != generation & 0xffff_ffff || probes_issued(probes) == 0 {
                return;
            }
            match self.probes.compare_exchange_weak(
                probes,
                probes - (1 << 16),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => probes = actual,
            }
        }
    }

    /// A call admitted with `ticket` was dropped before completing: its probe permit,
    /// if any, goes back.
    pub(crate) fn cancel(&self, ticket: Ticket) {
        self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
        if ticket.probe {
            self.release_probe(ticket.generation);
        }
    }

    fn close_locked(&self, generation: u64) {
        match &self.window {
            Window::Count(w) => w.reset(),
            Window::Time(w) => w.reset(),
        }
        self.consecutive_failures.store(0, Ordering::Release);
        self.trips.store(0, Ordering::Release);
        self.state
            .store(pack(generation, CLOSED), Ordering::Release);
    }

    fn next_random(&self) -> f64 {
        // splitmix64; called under the transition lock.
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Opens the circuit if it is still in `word`.
    fn try_open(&self, word: u64, from: State, reason: Reason, now: u64) -> Option<Transition> {
        let _guard = self.lock();
        if self.state.load(Ordering::Acquire) != word {
            return None;
        }
        let trips = self.trips.load(Ordering::Relaxed).saturating_add(1);
        self.trips.store(trips, Ordering::Relaxed);
        let mut open_for = self.config.open_time(trips);
        if self.config.open_jitter > 0.0 {
            let cut = open_for as f64 * self.config.open_jitter * self.next_random();
            open_for = open_for.saturating_sub(cut as u64);
        }
        let generation = (word >> STATE_BITS) + 1;
        self.open_until
            .store(now.saturating_add(open_for), Ordering::Release);
        self.consecutive_failures.store(0, Ordering::Release);
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        self.state.store(pack(generation, OPEN), Ordering::Release);
        Some(Transition {
            from,
            to: State::Open,
            reason,
            generation,
            open_for_nanos: Some(open_for),
        })
    }

    /// Forces a state (`ForcedOpen`, `ForcedClosed`) or resets to a fresh closed
    /// circuit (`Closed`). Returns the transition (always one: the generation moves).
    pub(crate) fn force(&self, to: State, now: u64) -> Transition {
        let _guard = self.lock();
        let word = self.state.load(Ordering::Acquire);
        let from = State::from_code(word & STATE_MASK);
        let generation = (word >> STATE_BITS) + 1;
        let reason = match to {
            State::Closed => {
                self.close_locked(generation);
                Reason::Reset
            }
            State::Open | State::ForcedOpen => {
                self.state
                    .store(pack(generation, FORCED_OPEN), Ordering::Release);
                Reason::Forced
            }
            State::HalfOpen | State::ForcedClosed => {
                self.state
                    .store(pack(generation, FORCED_CLOSED), Ordering::Release);
                Reason::Forced
            }
        };
        let _ = now;
        Transition {
            from,
            to: State::from_code(self.state.load(Ordering::Acquire) & STATE_MASK),
            reason,
            generation,
            open_for_nanos: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;

    fn config() -> MachineConfig {
        MachineConfig {
            window: WindowSpec::Count { size: 10 },
            minimum_calls: 5,
            failure_rate_bp: Some(5_000),
            slow_rate_bp: None,
            slow_call_nanos: None,
            consecutive_failures: None,
            open_base_nanos: 10 * SEC,
            open_multiplier: 1.0,
            open_max_nanos: 10 * SEC,
            open_jitter: 0.0,
            half_open_probes: 2,
            half_open_successes: 2,
            half_open_max_wait_nanos: Some(60 * SEC),
        }
    }

    fn permit(c: &Circuit, now: u64) -> Ticket {
        match c.admit(|| now).0 {
            Admission::Permit(t) => t,
            other => panic!("expected a permit, got {other:?}"),
        }
    }

    fn rec(
        c: &Circuit,
        t: Ticket,
        outcome: Outcome,
        duration: u64,
        now: u64,
    ) -> Option<Transition> {
        c.record(t, outcome, now.wrapping_sub(duration), || now)
    }

    fn call(c: &Circuit, outcome: Outcome, now: u64) -> Option<Transition> {
        let t = permit(c, now);
        rec(c, t, outcome, 0, now)
    }

    fn trip(c: &Circuit, now: u64) -> Transition {
        for _ in 0..4 {
            assert_eq!(call(c, Outcome::Failure, now), None);
        }
        call(c, Outcome::Failure, now).expect("the fifth failure trips")
    }

    #[test]
    fn trips_at_minimum_calls_and_rate() {
        let c = Circuit::new(config(), 1);
        let t = trip(&c, 0);
        assert_eq!(
            (t.from, t.to, t.reason),
            (State::Closed, State::Open, Reason::FailureRate)
        );
        assert_eq!(t.open_for_nanos, Some(10 * SEC));
        assert_eq!(c.state(), (State::Open, 1));
        assert_eq!(
            c.admit(|| 4 * SEC).0,
            Admission::Reject {
                retry_after_nanos: Some(6 * SEC)
            }
        );
        assert_eq!(c.counters().rejected, 1);
        assert_eq!(c.counters().opened, 1);
    }

    #[test]
    fn rate_below_threshold_does_not_trip() {
        let c = Circuit::new(config(), 1);
        for i in 0..100 {
            let outcome = if i % 3 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            assert_eq!(call(&c, outcome, 0), None, "call {i}");
        }
        assert_eq!(c.state().0, State::Closed);
        let w = c.window(0);
        assert_eq!(w.calls, 10);
        assert_eq!(c.counters().successful + c.counters().failed, 100);
    }

    #[test]
    fn ignored_results_are_not_counted() {
        let c = Circuit::new(config(), 1);
        for _ in 0..20 {
            assert_eq!(call(&c, Outcome::Ignore, 0), None);
        }
        assert_eq!(c.window(0).calls, 0);
        assert_eq!(c.counters().ignored, 20);
    }

    #[test]
    fn consecutive_failures_trip_exactly() {
        let mut cfg = config();
        cfg.failure_rate_bp = None;
        cfg.consecutive_failures = Some(3);
        let c = Circuit::new(cfg, 1);
        call(&c, Outcome::Failure, 0);
        call(&c, Outcome::Failure, 0);
        call(&c, Outcome::Success, 0);
        call(&c, Outcome::Failure, 0);
        assert_eq!(call(&c, Outcome::Failure, 0), None);
        let t = call(&c, Outcome::Failure, 0).unwrap();
        assert_eq!(t.reason, Reason::ConsecutiveFailures);
    }

    #[test]
    fn slow_call_rate_trips() {
        let mut cfg = config();
        cfg.failure_rate_bp = None;
        cfg.slow_rate_bp = Some(10_000);
        cfg.slow_call_nanos = Some(SEC);
        let c = Circuit::new(cfg, 1);
        for _ in 0..4 {
            let t = permit(&c, 0);
            assert_eq!(rec(&c, t, Outcome::Success, 2 * SEC, 0), None);
        }
        let t = permit(&c, 0);
        assert_eq!(rec(&c, t, Outcome::Success, SEC / 2, 0), None);
        let t = permit(&c, 0);
        assert_eq!(
            rec(&c, t, Outcome::Success, 2 * SEC, 0),
            None,
            "5 of 6 slow"
        );
        // Window: 6 calls, 5 slow. The fast call (the 5th) leaves the window with
        // the 15th call: 100% slow only then.
        for i in 0..8 {
            let t = permit(&c, 0);
            assert_eq!(rec(&c, t, Outcome::Success, 2 * SEC, 0), None, "{i}");
        }
        let t = permit(&c, 0);
        let tr = rec(&c, t, Outcome::Success, 2 * SEC, 0).unwrap();
        assert_eq!(tr.reason, Reason::SlowCallRate);
        assert_eq!(c.counters().slow, 14);
    }

    #[test]
    fn half_open_admits_exactly_n_and_closes_after_m() {
        let c = Circuit::new(config(), 1);
        trip(&c, 0);
        let (a, t) = c.admit(|| 10 * SEC);
        let Admission::Permit(p1) = a else { panic!() };
        assert!(p1.probe);
        assert_eq!(t.unwrap().to, State::HalfOpen);
        let p2 = permit(&c, 10 * SEC);
        assert!(matches!(c.admit(|| 10 * SEC).0, Admission::Reject { .. }));
        assert_eq!(rec(&c, p1, Outcome::Success, 0, 11 * SEC), None);
        // Successes do not give the permit back.
        assert!(matches!(c.admit(|| 11 * SEC).0, Admission::Reject { .. }));
        let t = rec(&c, p2, Outcome::Success, 0, 11 * SEC).unwrap();
        assert_eq!((t.to, t.reason), (State::Closed, Reason::ProbesSucceeded));
        assert_eq!(c.window(0), WindowSnapshot::default());
        assert_eq!(c.state(), (State::Closed, 3));
    }

    #[test]
    fn cancelled_probe_releases_its_permit() {
        let c = Circuit::new(config(), 1);
        trip(&c, 0);
        let p1 = permit(&c, 10 * SEC);
        let _p2 = permit(&c, 10 * SEC);
        assert!(matches!(c.admit(|| 10 * SEC).0, Admission::Reject { .. }));
        c.cancel(p1);
        let p3 = permit(&c, 10 * SEC);
        assert!(p3.probe);
        assert!(matches!(c.admit(|| 10 * SEC).0, Admission::Reject { .. }));
        assert_eq!(c.counters().cancelled, 1);
    }

    #[test]
    fn probe_failure_reopens_with_exponential_time() {
        let mut cfg = config();
        cfg.open_multiplier = 2.0;
        cfg.open_max_nanos = 25 * SEC;
        let c = Circuit::new(cfg, 1);
        assert_eq!(trip(&c, 0).open_for_nanos, Some(10 * SEC));
        let p = permit(&c, 10 * SEC);
        let t = rec(&c, p, Outcome::Failure, 0, 10 * SEC).unwrap();
        assert_eq!((t.from, t.reason), (State::HalfOpen, Reason::ProbeFailed));
        assert_eq!(t.open_for_nanos, Some(20 * SEC));
        let p = permit(&c, 30 * SEC);
        let t = rec(&c, p, Outcome::Failure, 0, 30 * SEC).unwrap();
        assert_eq!(t.open_for_nanos, Some(25 * SEC), "capped");
        // Closing resets the growth.
        let p1 = permit(&c, 55 * SEC);
        let p2 = permit(&c, 55 * SEC);
        rec(&c, p1, Outcome::Success, 0, 55 * SEC);
        assert_eq!(
            rec(&c, p2, Outcome::Success, 0, 55 * SEC).unwrap().to,
            State::Closed
        );
        assert_eq!(trip(&c, 60 * SEC).open_for_nanos, Some(10 * SEC));
    }

    #[test]
    fn jitter_only_shortens() {
        let mut cfg = config();
        cfg.open_jitter = 0.5;
        let c = Circuit::new(cfg, 42);
        let mut seen = std::collections::HashSet::new();
        let mut now = 0;
        for _ in 0..20 {
            let open = trip(&c, now).open_for_nanos.unwrap();
            assert!((5 * SEC..=10 * SEC).contains(&open), "{open}");
            seen.insert(open);
            c.force(State::Closed, now);
            now += 100 * SEC;
        }
        assert!(seen.len() > 1, "jitter varies");
    }

    #[test]
    fn half_open_max_wait_reopens() {
        let c = Circuit::new(config(), 1);
        trip(&c, 0);
        let stuck = permit(&c, 10 * SEC);
        let _stuck2 = permit(&c, 10 * SEC);
        assert!(matches!(c.admit(|| 69 * SEC).0, Admission::Reject { .. }));
        let (a, t) = c.admit(|| 70 * SEC);
        assert!(matches!(
            a,
            Admission::Reject {
                retry_after_nanos: Some(_)
            }
        ));
        assert_eq!(t.unwrap().reason, Reason::HalfOpenTimeout);
        assert_eq!(c.state().0, State::Open);
        // The stuck probe's late success moves nothing.
        assert_eq!(rec(&c, stuck, Outcome::Success, 0, 71 * SEC), None);
        assert_eq!(c.counters().outdated, 1);
    }

    #[test]
    fn outdated_results_do_not_move_the_new_state() {
        let c = Circuit::new(config(), 1);
        let overhanging: Vec<_> = (0..20).map(|_| permit(&c, 0)).collect();
        trip(&c, 0);
        let p1 = permit(&c, 10 * SEC);
        let p2 = permit(&c, 10 * SEC);
        rec(&c, p1, Outcome::Success, 0, 10 * SEC);
        rec(&c, p2, Outcome::Success, 0, 10 * SEC);
        assert_eq!(c.state().0, State::Closed);
        for t in overhanging {
            assert_eq!(rec(&c, t, Outcome::Failure, 0, 11 * SEC), None);
        }
        assert_eq!(c.state().0, State::Closed);
        assert_eq!(c.window(0).calls, 0);
        assert_eq!(c.counters().outdated, 20);
        // And an old probe permit released late does not free a new slot.
        let old_probe = Ticket {
            generation: 2,
            probe: true,
        };
        trip(&c, 20 * SEC);
        let _a = permit(&c, 30 * SEC);
        let _b = permit(&c, 30 * SEC);
        c.cancel(old_probe);
        assert!(matches!(c.admit(|| 30 * SEC).0, Admission::Reject { .. }));
    }

    #[test]
    fn forced_states_and_reset() {
        let c = Circuit::new(config(), 1);
        let t = c.force(State::ForcedOpen, 0);
        assert_eq!((t.from, t.to), (State::Closed, State::ForcedOpen));
        assert_eq!(
            c.admit(|| 1_000 * SEC).0,
            Admission::Reject {
                retry_after_nanos: None
            }
        );
        c.force(State::ForcedClosed, 0);
        for _ in 0..50 {
            assert_eq!(call(&c, Outcome::Failure, 0), None);
        }
        assert_eq!(c.state().0, State::ForcedClosed);
        let t = c.force(State::Closed, 0);
        assert_eq!((t.to, t.reason), (State::Closed, Reason::Reset));
        trip(&c, 0);
    }

    #[test]
    fn time_window_forgets_old_buckets() {
        let mut cfg = config();
        cfg.window = WindowSpec::Time {
            bucket_nanos: SEC,
            buckets: 10,
        };
        let c = Circuit::new(cfg, 1);
        for i in 0..4 {
            assert_eq!(call(&c, Outcome::Failure, i * SEC), None);
        }
        assert_eq!(c.window(3 * SEC).calls, 4);
        // Twelve seconds later those four are gone.
        assert_eq!(c.window(15 * SEC).calls, 0);
        for _ in 0..4 {
            assert_eq!(call(&c, Outcome::Failure, 15 * SEC), None);
        }
        assert!(call(&c, Outcome::Failure, 15 * SEC).is_some());
    }

    #[test]
    fn open_time_growth() {
        let mut cfg = config();
        cfg.open_base_nanos = SEC;
        cfg.open_multiplier = 3.0;
        cfg.open_max_nanos = 20 * SEC;
        assert_eq!(cfg.open_time(1), SEC);
        assert_eq!(cfg.open_time(2), 3 * SEC);
        assert_eq!(cfg.open_time(3), 9 * SEC);
        assert_eq!(cfg.open_time(4), 20 * SEC);
        assert_eq!(cfg.open_time(u32::MAX), 20 * SEC);
    }

    #[test]
    fn concurrent_window_stays_consistent() {
        let mut cfg = config();
        cfg.failure_rate_bp = None;
        cfg.window = WindowSpec::Count { size: 7 };
        let c = std::sync::Arc::new(Circuit::new(cfg, 1));
        let threads: Vec<_> = (0..4)
            .map(|n| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let outcome = if (i + n) % 3 == 0 {
                            Outcome::Failure
                        } else {
                            Outcome::Success
                        };
                        let t = permit(&c, 0);
                        rec(&c, t, outcome, 0, 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let Window::Count(w) = &c.window else {
            panic!()
        };
        assert_eq!(w.snapshot(), w.recount());
        assert_eq!(w.snapshot().calls, 7);
        assert_eq!(c.counters().successful + c.counters().failed, 80_000);
    }

    #[test]
    fn racing_threads_get_exactly_n_probe_permits() {
        for _ in 0..50 {
            let mut cfg = config();
            cfg.half_open_probes = 3;
            cfg.half_open_successes = 3;
            let c = std::sync::Arc::new(Circuit::new(cfg, 1));
            trip(&c, 0);
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let (c, barrier) = (c.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        (0..10)
                            .filter(|_| matches!(c.admit(|| 10 * SEC).0, Admission::Permit(_)))
                            .count()
                    })
                })
                .collect();
            let permits: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
            assert_eq!(permits, 3);
            assert_eq!(c.counters().rejected, 77);
            assert_eq!(c.state().0, State::HalfOpen);
        }
    }

    proptest! {
        #[test]
        fn count_window_matches_a_model(
            size in 1u32..20,
            outcomes in proptest::collection::vec((0u8..3, any::<bool>()), 0..200),
        ) {
            let mut cfg = config();
            cfg.window = WindowSpec::Count { size };
            cfg.failure_rate_bp = None;
            cfg.slow_call_nanos = Some(10);
            let c = Circuit::new(cfg, 1);
            let mut model: std::collections::VecDeque<(bool, bool)> = Default::default();
            let (mut ok, mut failed, mut ignored) = (0, 0, 0);
            for (kind, slow) in outcomes {
                let outcome = match kind { 0 => Outcome::Success, 1 => Outcome::Failure, _ => Outcome::Ignore };
                let t = permit(&c, 0);
                rec(&c, t, outcome, if slow { 10 } else { 0 }, 0);
                match outcome {
                    Outcome::Success => ok += 1,
                    Outcome::Failure => failed += 1,
                    Outcome::Ignore => { ignored += 1; continue; }
                }
                model.push_back((outcome == Outcome::Failure, slow));
                if model.len() > size as usize { model.pop_front(); }
            }
            let w = c.window(0);
            prop_assert_eq!(w.calls, model.len() as u64);
            prop_assert_eq!(w.failures, model.iter().filter(|m| m.0).count() as u64);
            prop_assert_eq!(w.slow, model.iter().filter(|m| m.1).count() as u64);
            let counters = c.counters();
            prop_assert_eq!((counters.successful, counters.failed, counters.ignored), (ok, failed, ignored));
        }

        #[test]
        fn trips_exactly_when_the_model_says(
            min in 1u32..10,
            rate in 1u32..=100,
            outcomes in proptest::collection::vec(any::<bool>(), 1..100),
        ) {
            let mut cfg = config();
            cfg.window = WindowSpec::Count { size: 10 };
            cfg.minimum_calls = min;
            cfg.failure_rate_bp = Some(rate * 100);
            let c = Circuit::new(cfg, 1);
            let mut model: std::collections::VecDeque<bool> = Default::default();
            for failed in outcomes {
                model.push_back(failed);
                if model.len() > 10 { model.pop_front(); }
                let calls = model.len() as u64;
                let failures = model.iter().filter(|f| **f).count() as u64;
                let expect = failed && calls >= u64::from(min) && failures * 100 >= u64::from(rate) * calls;
                let t = call(&c, if failed { Outcome::Failure } else { Outcome::Success }, 0);
                prop_assert_eq!(t.is_some(), expect);
                if expect { break; }
            }
        }
    }
}
