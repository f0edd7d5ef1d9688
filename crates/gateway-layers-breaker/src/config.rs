//! Breaker configuration: what a builder or a configuration file sets.

use std::time::Duration;

use gateway_layers_core::{ConfigError, key::KeySpec};

use crate::machine::{MAX_COUNT_WINDOW, MachineConfig, WindowSpec};

/// The sliding window the failure and slow-call rates are computed over.
///
/// In a configuration file:
///
/// ```yaml
/// window: { count: 100 }                         # the last 100 calls
/// window: { time: { duration: 60s, buckets: 12 } }  # the calls of the last minute
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum SlidingWindow {
    /// The last `n` calls (1..=65536).
    Count(u32),
    /// The calls of the last `duration`, kept in `buckets` buckets (1..=1024) that age
    /// out one at a time.
    Time {
        /// The window length.
        #[cfg_attr(feature = "serde", serde(with = "crate::config::duration"))]
        duration: Duration,
        /// How many buckets the window is cut into (default 10).
        #[cfg_attr(feature = "serde", serde(default = "default_buckets"))]
        buckets: u32,
    },
}

fn default_buckets() -> u32 {
    10
}

impl SlidingWindow {
    /// The calls of the last `duration`, in 10 buckets.
    pub fn time(duration: Duration) -> Self {
        Self::Time {
            duration,
            buckets: default_buckets(),
        }
    }
}

impl Default for SlidingWindow {
    fn default() -> Self {
        Self::Count(100)
    }
}

/// How circuits are keyed in a configuration file: `authority` (the upstream
/// host), or any core [`KeySpec`] (`route`, `{ header: x-tenant }`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(untagged))]
pub enum CircuitKey {
    /// A key named only by this crate.
    Named(NamedKey),
    /// A core key extractor.
    Spec(KeySpec),
}

/// Keys known only to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum NamedKey {
    /// The request's authority ([`AuthorityKey`](crate::AuthorityKey)): one circuit per
    /// upstream host when the breaker sits in front of a proxy.
    Authority,
}

/// The breaker's settings. Every field has a default; see each for it.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// use gateway_layers_breaker::BreakerConfig;
/// let config: BreakerConfig = serde_json::from_str(r#"{
///     "window": { "count": 20 },
///     "minimum_calls": 10,
///     "failure_rate_threshold": 50.0,
///     "open_duration": "10s",
///     "open_backoff_multiplier": 2.0,
///     "max_open_duration": "2m",
///     "half_open_probes": 2,
///     "half_open_successes": 2,
///     "key": "authority"
/// }"#).unwrap();
/// assert_eq!(config.open_duration, std::time::Duration::from_secs(10));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BreakerConfig {
    /// The sliding window (default: the last 100 calls).
    pub window: SlidingWindow,
    /// Calls the window must hold before a rate can trip the circuit (default 20).
    pub minimum_calls: u32,
    /// Failure rate, in percent (0 < r <= 100), at or over which the circuit opens
    /// (default 50). `None` disables the rate.
    pub failure_rate_threshold: Option<f64>,
    /// A call lasting at least this long is slow (default: none, slow calls are not
    /// tracked and the clock is not read for closed-state calls).
    #[cfg_attr(feature = "serde", serde(with = "crate::config::opt_duration"))]
    pub slow_call_duration: Option<Duration>,
    /// Slow-call rate, in percent, at or over which the circuit opens (default 100
    /// once `slow_call_duration` is set).
    pub slow_call_rate_threshold: Option<f64>,
    /// Open after this many failures in a row, whatever the window says (default: off).
    pub consecutive_failures: Option<u32>,
    /// How long the circuit stays open after its first trip (default 30 s).
    #[cfg_attr(feature = "serde", serde(with = "crate::config::duration"))]
    pub open_duration: Duration,
    /// Each further trip without closing in between multiplies the open time by this
    /// (default 1.0: fixed).
    pub open_backoff_multiplier: f64,
    /// The open time never exceeds this (default 5 min).
    #[cfg_attr(feature = "serde", serde(with = "crate::config::duration"))]
    pub max_open_duration: Duration,
    /// Up to this fraction (0.0..=1.0) of each open time is randomly taken off, so
    /// circuits of many gateway instances do not probe in lockstep (default 0.0).
    pub open_jitter: f64,
    /// Probe calls admitted while half-open (default 3). A probe whose future is
    /// dropped before completing gives its permit back.
    pub half_open_probes: u32,
    /// Successful probes that close the circuit (default 3, at most `half_open_probes`).
    /// One failed probe reopens it.
    pub half_open_successes: u32,
    /// The circuit reopens when it has been half-open this long without closing
    /// (default 60 s), so a hung probe cannot keep it half-open forever.
    #[cfg_attr(feature = "serde", serde(with = "crate::config::opt_duration"))]
    pub half_open_max_wait: Option<Duration>,
    /// Per-key circuits: how requests are keyed (default: one circuit for the layer).
    pub key: Option<CircuitKey>,
    /// Per-key circuits: at most this many are kept (default 1024). When full, an idle
    /// closed circuit is evicted; if none is, new keys share one overflow circuit.
    pub max_circuits: usize,
    /// A name for this breaker in events and metrics (default: none).
    pub name: Option<String>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: SlidingWindow::default(),
            minimum_calls: 20,
            failure_rate_threshold: Some(50.0),
            slow_call_duration: None,
            slow_call_rate_threshold: None,
            consecutive_failures: None,
            open_duration: Duration::from_secs(30),
            open_backoff_multiplier: 1.0,
            max_open_duration: Duration::from_secs(300),
            open_jitter: 0.0,
            half_open_probes: 3,
            half_open_successes: 3,
            half_open_max_wait: Some(Duration::from_secs(60)),
            key: None,
            max_circuits: 1024,
            name: None,
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn percent(field: &'static str, value: Option<f64>) -> Result<Option<u32>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if v > 0.0 && v <= 100.0 => Ok(Some((v * 100.0).round().max(1.0) as u32)),
        Some(_) => Err(ConfigError::invalid(
            field,
            "must be a percentage in (0, 100]",
        )),
    }
}

impl BreakerConfig {
    /// Checks the settings and converts them for the state machine.
    pub(crate) fn machine(&self) -> Result<MachineConfig, ConfigError> {
        let window = match self.window {
            SlidingWindow::Count(size) => {
                if size == 0 || size > MAX_COUNT_WINDOW {
                    return Err(ConfigError::invalid(
                        "breaker.window.count",
                        "must be between 1 and 65536",
                    ));
                }
                WindowSpec::Count { size }
            }
            SlidingWindow::Time { duration, buckets } => {
                if !(1..=1024).contains(&buckets) {
                    return Err(ConfigError::invalid(
                        "breaker.window.time.buckets",
                        "must be between 1 and 1024",
                    ));
                }
                let bucket_nanos = nanos(duration) / u64::from(buckets);
                if bucket_nanos < 1_000_000 {
                    return Err(ConfigError::invalid(
                        "breaker.window.time.duration",
                        "each bucket must span at least 1 ms",
                    ));
                }
                WindowSpec::Time {
                    bucket_nanos,
                    buckets,
                }
            }
        };
        let failure_rate_bp = percent(
            "breaker.failure_rate_threshold",
            self.failure_rate_threshold,
        )?;
        let slow_rate_bp = match (self.slow_call_duration, self.slow_call_rate_threshold) {
            (Some(_), None) => Some(10_000),
            (Some(_), rate) => percent("breaker.slow_call_rate_threshold", rate)?,
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "breaker.slow_call_rate_threshold",
                    "needs slow_call_duration",
                ));
            }
            (None, None) => None,
        };
        if self.slow_call_duration == Some(Duration::ZERO) {
            return Err(ConfigError::invalid(
                "breaker.slow_call_duration",
                "must be greater than zero",
            ));
        }
        if self.consecutive_failures == Some(0) {
            return Err(ConfigError::invalid(
                "breaker.consecutive_failures",
                "must be at least 1",
            ));
        }
        if failure_rate_bp.is_none()
            && slow_rate_bp.is_none()
            && self.consecutive_failures.is_none()
        {
            return Err(ConfigError::invalid(
                "breaker",
                "no trip condition: set a failure rate, a slow-call rate or consecutive failures",
            ));
        }
        if self.open_duration.is_zero() {
            return Err(ConfigError::invalid(
                "breaker.open_duration",
                "must be greater than zero",
            ));
        }
        if !(self.open_backoff_multiplier.is_finite() && self.open_backoff_multiplier >= 1.0) {
            return Err(ConfigError::invalid(
                "breaker.open_backoff_multiplier",
                "must be a finite number >= 1.0",
            ));
        }
        if self.max_open_duration < self.open_duration {
            return Err(ConfigError::invalid(
                "breaker.max_open_duration",
                "must be at least open_duration",
            ));
        }
        if !(0.0..=1.0).contains(&self.open_jitter) {
            return Err(ConfigError::invalid(
                "breaker.open_jitter",
                "must be between 0.0 and 1.0",
            ));
        }
        if !(1..=u32::from(u16::MAX)).contains(&self.half_open_probes) {
            return Err(ConfigError::invalid(
                "breaker.half_open_probes",
                "must be between 1 and 65535",
            ));
        }
        if self.half_open_successes == 0 || self.half_open_successes > self.half_open_probes {
            return Err(ConfigError::invalid(
                "breaker.half_open_successes",
                "must be between 1 and half_open_probes",
            ));
        }
        if self.half_open_max_wait == Some(Duration::ZERO) {
            return Err(ConfigError::invalid(
                "breaker.half_open_max_wait",
                "must be greater than zero",
            ));
        }
        if self.max_circuits == 0 {
            return Err(ConfigError::invalid(
                "breaker.max_circuits",
                "must be at least 1",
            ));
        }
        Ok(MachineConfig {
            window,
            minimum_calls: self.minimum_calls,
            failure_rate_bp,
            slow_rate_bp,
            slow_call_nanos: self.slow_call_duration.map(nanos),
            consecutive_failures: self.consecutive_failures,
            open_base_nanos: nanos(self.open_duration),
            open_multiplier: self.open_backoff_multiplier,
            open_max_nanos: nanos(self.max_open_duration),
            open_jitter: self.open_jitter,
            half_open_probes: self.half_open_probes,
            half_open_successes: self.half_open_successes,
            half_open_max_wait_nanos: self.half_open_max_wait.map(nanos),
        })
    }
}

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h"` or a bare number of milliseconds (the
/// shared syntax of `gateway_layers_core::duration`).
#[cfg(test)]
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    gateway_layers_core::duration::parse(text).ok()
}

#[cfg(feature = "serde")]
pub(crate) mod duration {
    pub(crate) use gateway_layers_core::duration::deserialize;
}

#[cfg(feature = "serde")]
pub(crate) mod opt_duration {
    pub(crate) use gateway_layers_core::duration::deserialize_option as deserialize;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let m = BreakerConfig::default().machine().unwrap();
        assert_eq!(m.window, WindowSpec::Count { size: 100 });
        assert_eq!(m.failure_rate_bp, Some(5_000));
        assert!(!m.needs_clock_on_result());
    }

    #[test]
    fn invalid_settings_are_refused() {
        let bad = [
            BreakerConfig {
                window: SlidingWindow::Count(0),
                ..Default::default()
            },
            BreakerConfig {
                failure_rate_threshold: Some(120.0),
                ..Default::default()
            },
            BreakerConfig {
                failure_rate_threshold: None,
                ..Default::default()
            },
            BreakerConfig {
                half_open_successes: 4,
                ..Default::default()
            },
            BreakerConfig {
                open_backoff_multiplier: 0.5,
                ..Default::default()
            },
            BreakerConfig {
                max_open_duration: Duration::from_secs(1),
                ..Default::default()
            },
            BreakerConfig {
                slow_call_rate_threshold: Some(50.0),
                ..Default::default()
            },
            BreakerConfig {
                window: SlidingWindow::Time {
                    duration: Duration::from_millis(5),
                    buckets: 10,
                },
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(config.machine().is_err(), "{config:?}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("100"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserializes() {
        let config: BreakerConfig = serde_json::from_value(serde_json::json!({
            "window": { "time": { "duration": "60s" } },
            "slow_call_duration": "2s",
            "consecutive_failures": 5,
            "half_open_max_wait": null,
            "key": { "header": "x-tenant" },
        }))
        .unwrap();
        assert_eq!(config.window, SlidingWindow::time(Duration::from_secs(60)));
        assert_eq!(config.slow_call_duration, Some(Duration::from_secs(2)));
        assert_eq!(config.half_open_max_wait, None);
        assert_eq!(
            config.key,
            Some(CircuitKey::Spec(KeySpec::Header("x-tenant".into())))
        );
        let m = config.machine().unwrap();
        assert_eq!(m.slow_rate_bp, Some(10_000));
        let authority: BreakerConfig = serde_json::from_value(
            serde_json::json!({ "key": "authority", "window": { "count": 10 } }),
        )
        .unwrap();
        assert_eq!(authority.key, Some(CircuitKey::Named(NamedKey::Authority)));
        assert_eq!(authority.window, SlidingWindow::Count(10));
        let route: BreakerConfig =
            serde_json::from_value(serde_json::json!({ "key": "route" })).unwrap();
        assert_eq!(route.key, Some(CircuitKey::Spec(KeySpec::Route)));
        assert!(
            serde_json::from_value::<BreakerConfig>(serde_json::json!({ "open_duration": "soon" }))
                .is_err()
        );
        assert!(serde_json::from_value::<BreakerConfig>(serde_json::json!({ "typo": 1 })).is_err());
    }
}
