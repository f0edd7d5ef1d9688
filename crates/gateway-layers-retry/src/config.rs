//! [`RetryConfig`]: every setting of the retry layer, validated by
//! [`RetryConfig::build`] (or [`RetryLayer::from_config`](crate::RetryLayer::from_config)).

use std::time::Duration;

use gateway_layers_core::ConfigError;
use http::HeaderName;

use crate::{
    RetryLayer,
    budget::RetryBudget,
    classify::{DEFAULT_RETRY_STATUSES, RetryClassifier},
    policy::{Backoff, NonIdempotent},
};

/// Default cap on the request body kept for replay: 64 KiB.
pub const DEFAULT_MAX_REPLAY_BYTES: usize = 64 * 1024;

/// Largest `max_attempts` accepted.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;

/// The retry layer's settings. Every field has a default; change the ones you need.
///
/// With the `serde` feature it deserializes from a config file; durations are integer
/// milliseconds or strings such as `"250ms"`, `"2s"`, `"1m"`:
///
/// ```toml
/// max_attempts = 3
/// base_backoff = "25ms"
/// max_backoff = "250ms"
/// deadline = "2s"
/// statuses = [502, 503, 504]
/// non_idempotent = "with_idempotency_key"
/// budget = { ratio = 0.2, min_per_sec = 10, ttl = "10s" }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct RetryConfig {
    /// Attempts in total, the first included (default 3; 1 disables retries).
    pub max_attempts: u32,
    /// Backoff base: retry `n` waits a random time in `[0, min(max_backoff,
    /// base_backoff * 2^n)]` (default 25 ms).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub base_backoff: Duration,
    /// Backoff cap (default 250 ms).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub max_backoff: Duration,
    /// Longest `Retry-After` / `X-RateLimit-Reset` wait honoured; a longer one means no
    /// retry (default 10 s).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub retry_after_cap: Duration,
    /// Time limit of each attempt (until the response head), default none.
    #[cfg_attr(feature = "serde", serde(with = "opt_duration"))]
    pub per_try_timeout: Option<Duration>,
    /// Time limit across all attempts and waits, default none.
    #[cfg_attr(feature = "serde", serde(with = "opt_duration"))]
    pub deadline: Option<Duration>,
    /// Response statuses retried (default 502, 503, 504).
    pub statuses: Vec<u16>,
    /// Also retry responses carrying this header (optionally with this value).
    pub retry_on_header: Option<HeaderMatch>,
    /// When POST, PATCH and other non-idempotent methods are retried (default: with an
    /// idempotency key).
    pub non_idempotent: NonIdempotent,
    /// The idempotency key header (default `Idempotency-Key`).
    pub idempotency_key_header: String,
    /// The retry budget shared by all clones; `None` disables it (not recommended).
    pub budget: Option<BudgetConfig>,
    /// Request body bytes kept for replay (default 64 KiB); larger bodies are streamed
    /// and not retried.
    pub max_replay_bytes: usize,
    /// A header set on each attempt toward the upstream with the attempt number
    /// (1-based), e.g. `x-retry-attempt`. Default none.
    pub attempt_header: Option<String>,
}

/// The retry budget's settings (Finagle / linkerd model).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct BudgetConfig {
    /// Retries allowed per request over the window (default 0.2).
    pub ratio: f64,
    /// Retries always allowed per second, whatever the traffic (default 10).
    pub min_per_sec: u32,
    /// The window deposits and withdrawals are remembered for (default 10 s, 1-60 s).
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub ttl: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_sec: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

impl BudgetConfig {
    /// A budget of `ratio` retries per request plus `min_per_sec` over `ttl`.
    pub fn new(ratio: f64, min_per_sec: u32, ttl: Duration) -> Self {
        Self {
            ratio,
            min_per_sec,
            ttl,
        }
    }

    /// Builds the shared budget.
    pub fn build(&self) -> Result<RetryBudget, ConfigError> {
        RetryBudget::new(self.ratio, self.min_per_sec, self.ttl)
    }
}

/// A response header that makes a response retryable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct HeaderMatch {
    /// The header name.
    pub name: String,
    /// The exact value required; any value when `None`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub value: Option<String>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(250),
            retry_after_cap: Duration::from_secs(10),
            per_try_timeout: None,
            deadline: None,
            statuses: DEFAULT_RETRY_STATUSES.to_vec(),
            retry_on_header: None,
            non_idempotent: NonIdempotent::WithIdempotencyKey,
            idempotency_key_header: "idempotency-key".to_owned(),
            budget: Some(BudgetConfig::default()),
            max_replay_bytes: DEFAULT_MAX_REPLAY_BYTES,
            attempt_header: None,
        }
    }
}

/// Validated settings the service reads on every request.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) retry_after_cap: Duration,
    pub(crate) per_try_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) non_idempotent: NonIdempotent,
    pub(crate) key_header: HeaderName,
    pub(crate) max_replay_bytes: usize,
    pub(crate) attempt_header: Option<HeaderName>,
}

fn header_name(field: &'static str, name: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| ConfigError::invalid(field, format!("{name:?} is not a valid header name")))
}

impl RetryConfig {
    /// The defaults (same as [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `max_attempts` (the first attempt included).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets the backoff base and cap.
    #[must_use]
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = cap;
        self
    }

    /// Sets the longest server-requested wait honoured.
    #[must_use]
    pub fn retry_after_cap(mut self, cap: Duration) -> Self {
        self.retry_after_cap = cap;
        self
    }

    /// Sets the per-attempt timeout.
    #[must_use]
    pub fn per_try_timeout(mut self, timeout: Duration) -> Self {
        self.per_try_timeout = Some(timeout);
        self
    }

    /// Sets the overall deadline across attempts.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets the retried statuses.
    #[must_use]
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.statuses = statuses.into_iter().collect();
        self
    }

    /// Also retries responses carrying header `name` (with `value`, when given).
    #[must_use]
    pub fn retry_on_header(mut self, name: impl Into<String>, value: Option<&str>) -> Self {
        self.retry_on_header = Some(HeaderMatch {
            name: name.into(),
            value: value.map(str::to_owned),
        });
        self
    }

    /// Sets when non-idempotent methods are retried.
    #[must_use]
    pub fn non_idempotent(mut self, policy: NonIdempotent) -> Self {
        self.non_idempotent = policy;
        self
    }

    /// Sets the idempotency key header name.
    #[must_use]
    pub fn idempotency_key_header(mut self, name: impl Into<String>) -> Self {
        self.idempotency_key_header = name.into();
        self
    }

    /// Sets the retry budget (`None` disables it).
    #[must_use]
    pub fn budget(mut self, budget: impl Into<Option<BudgetConfig>>) -> Self {
        self.budget = budget.into();
        self
    }

    /// Sets the replay buffer cap in bytes.
    #[must_use]
    pub fn max_replay_bytes(mut self, bytes: usize) -> Self {
        self.max_replay_bytes = bytes;
        self
    }

    /// Sends the attempt number (1-based) upstream in header `name`.
    #[must_use]
    pub fn attempt_header(mut self, name: impl Into<String>) -> Self {
        self.attempt_header = Some(name.into());
        self
    }

    /// Validates the settings into a layer.
    pub fn build(&self) -> Result<RetryLayer, ConfigError> {
        RetryLayer::from_config(self)
    }

    pub(crate) fn validate(
        &self,
    ) -> Result<(Settings, RetryClassifier, Option<RetryBudget>), ConfigError> {
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&self.max_attempts) {
            return Err(ConfigError::invalid(
                "retry.max_attempts",
                format!("must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
            ));
        }
        if self.base_backoff.is_zero() {
            return Err(ConfigError::invalid(
                "retry.base_backoff",
                "must be greater than zero",
            ));
        }
        if self.max_backoff < self.base_backoff {
            return Err(ConfigError::invalid(
                "retry.max_backoff",
                "must be at least base_backoff",
            ));
        }
        if self.max_backoff > Duration::from_secs(3600)
            || self.retry_after_cap > Duration::from_secs(3600)
        {
            return Err(ConfigError::invalid(
                "retry.max_backoff",
                "waits are limited to one hour",
            ));
        }
        if self.per_try_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::invalid(
                "retry.per_try_timeout",
                "must be greater than zero",
            ));
        }
        if self.deadline.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::invalid(
                "retry.deadline",
                "must be greater than zero",
            ));
        }
        if let Some(bad) = self.statuses.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(ConfigError::invalid(
                "retry.statuses",
                format!("{bad} is not a status between 100 and 599"),
            ));
        }
        if self.max_replay_bytes > 64 * 1024 * 1024 {
            return Err(ConfigError::invalid(
                "retry.max_replay_bytes",
                "must be at most 64 MiB",
            ));
        }
        let key_header = header_name("retry.idempotency_key_header", &self.idempotency_key_header)?;
        let attempt_header = self
            .attempt_header
            .as_deref()
            .map(|name| header_name("retry.attempt_header", name))
            .transpose()?;
        let mut classifier = RetryClassifier::statuses(self.statuses.iter().copied());
        if let Some(matcher) = &self.retry_on_header {
            let name = header_name("retry.retry_on_header.name", &matcher.name)?;
            let value = matcher
                .value
                .as_deref()
                .map(|v| gateway_layers_core::headers::header_value(name.as_str(), v))
                .transpose()?;
            classifier = classifier.with_header(name, value);
        }
        let budget = self.budget.as_ref().map(BudgetConfig::build).transpose()?;
        Ok((
            Settings {
                max_attempts: self.max_attempts,
                backoff: Backoff::new(self.base_backoff, self.max_backoff),
                retry_after_cap: self.retry_after_cap,
                per_try_timeout: self.per_try_timeout,
                deadline: self.deadline,
                non_idempotent: self.non_idempotent,
                key_header,
                max_replay_bytes: self.max_replay_bytes,
                attempt_header,
            },
            classifier,
            budget,
        ))
    }
}

/// Durations as integer milliseconds or `"250ms"` / `"2s"` / `"1m"` strings.
#[cfg(feature = "serde")]
mod duration {
    pub(super) use gateway_layers_core::duration::deserialize;
    #[cfg(test)]
    pub(super) use gateway_layers_core::duration::parse;
}

#[cfg(feature = "serde")]
mod opt_duration {
    pub(super) use gateway_layers_core::duration::deserialize_option as deserialize;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let (settings, _, budget) = RetryConfig::default().validate().unwrap();
        assert_eq!(settings.max_attempts, 3);
        assert_eq!(settings.max_replay_bytes, 64 * 1024);
        assert!(budget.is_some());
    }

    #[test]
    fn invalid_settings_are_refused() {
        let cases = [
            RetryConfig::new().max_attempts(0),
            RetryConfig::new().max_attempts(101),
            RetryConfig::new().backoff(Duration::ZERO, Duration::from_secs(1)),
            RetryConfig::new().backoff(Duration::from_secs(2), Duration::from_secs(1)),
            RetryConfig::new().per_try_timeout(Duration::ZERO),
            RetryConfig::new().deadline(Duration::ZERO),
            RetryConfig::new().statuses([503, 700]),
            RetryConfig::new().attempt_header("bad header"),
            RetryConfig::new().idempotency_key_header(""),
            RetryConfig::new().retry_on_header("x-retry", Some("a\r\nb")),
            RetryConfig::new().budget(BudgetConfig::new(-1.0, 1, Duration::from_secs(1))),
            RetryConfig::new().budget(BudgetConfig::new(0.2, 1, Duration::ZERO)),
            RetryConfig::new().max_replay_bytes(usize::MAX),
        ];
        for (i, config) in cases.iter().enumerate() {
            assert!(config.validate().is_err(), "case {i} accepted");
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserializes_with_durations() {
        let config: RetryConfig = serde_json::from_value(serde_json::json!({
            "max_attempts": 4,
            "base_backoff": "10ms",
            "max_backoff": 500,
            "deadline": "2s",
            "per_try_timeout": "0.5s",
            "statuses": [503],
            "non_idempotent": "always",
            "budget": {"ratio": 0.5, "ttl": "1m"},
            "retry_on_header": {"name": "x-retry"},
            "attempt_header": "x-attempt"
        }))
        .unwrap();
        assert_eq!(config.max_attempts, 4);
        assert_eq!(config.base_backoff, Duration::from_millis(10));
        assert_eq!(config.max_backoff, Duration::from_millis(500));
        assert_eq!(config.deadline, Some(Duration::from_secs(2)));
        assert_eq!(config.per_try_timeout, Some(Duration::from_millis(500)));
        assert_eq!(config.non_idempotent, NonIdempotent::Always);
        let budget = config.budget.unwrap();
        assert_eq!(budget.ttl, Duration::from_secs(60));
        assert_eq!(budget.min_per_sec, 10);
        assert!(config.validate().is_ok());
        assert!(
            serde_json::from_value::<RetryConfig>(serde_json::json!({"deadline": "2 weeks"}))
                .is_err()
        );
        assert!(serde_json::from_value::<RetryConfig>(serde_json::json!({"nope": 1})).is_err());
        assert_eq!(duration::parse("1m"), Ok(Duration::from_secs(60)));
    }
}
