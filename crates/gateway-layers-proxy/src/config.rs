//! Configuration: targets, timeouts, health checks, forwarding headers.
//!
//! Every type here derives `serde::Deserialize` behind the `serde` feature. Durations
//! are written as milliseconds (`250`) or as strings with a unit (`"250ms"`, `"5s"`,
//! `"2m"`).

use std::time::Duration;

use crate::balance::Strategy;

/// How the proxy talks to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Protocol {
    /// HTTP/1.1 (pooled keep-alive connections).
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (h2c on `http://` targets): one multiplexed
    /// connection per target.
    Http2,
}

/// One upstream: a base URL (`http://10.0.0.5:8080` or `http://host:port/base`), a
/// weight and a protocol.
///
/// The request path is appended to the base path: a target `http://h/api` and a
/// request `/users?id=1` go to `http://h/api/users?id=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Target {
    /// Base URL, `http://authority[/base]`.
    pub url: String,
    /// Relative weight, 1 to [`MAX_WEIGHT`] (weighted round robin, least request,
    /// consistent hashing). Default 1.
    #[cfg_attr(feature = "serde", serde(default = "one"))]
    pub weight: u32,
    /// HTTP/1.1 (default) or HTTP/2.
    #[cfg_attr(feature = "serde", serde(default))]
    pub protocol: Protocol,
}

/// The largest target weight.
pub const MAX_WEIGHT: u32 = 1_000;

#[cfg(feature = "serde")]
fn one() -> u32 {
    1
}

impl Target {
    /// A target of weight 1 spoken to over HTTP/1.1.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            weight: 1,
            protocol: Protocol::Http1,
        }
    }

    /// Sets the weight.
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Speaks HTTP/2 with prior knowledge (h2c) to this target.
    #[must_use]
    pub fn http2(mut self) -> Self {
        self.protocol = Protocol::Http2;
        self
    }
}

impl From<&str> for Target {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<String> for Target {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

/// Time limits toward upstreams. Each expiry answers `504 Gateway Timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Timeouts {
    /// TCP connect. Default 5 s.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub connect: Duration,
    /// From sending the request until the response head arrives. Default 60 s.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub response_headers: Duration,
    /// The whole exchange, including streaming the response body; `None` (default)
    /// for no limit. A body still streaming at the deadline ends with an error.
    #[cfg_attr(feature = "serde", serde(with = "duration::option"))]
    pub total: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            response_headers: Duration::from_secs(60),
            total: None,
        }
    }
}

/// Active health checks: the proxy asks every target for `path` every `interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ActiveHealth {
    /// Path (and query) asked with `GET`, appended to the target's base path.
    /// Default `/health`.
    pub path: String,
    /// Time between rounds. Default 10 s.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub interval: Duration,
    /// Time limit of one check, body included. Default 2 s.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub timeout: Duration,
    /// Consecutive passing checks that bring an unhealthy target back. Default 2.
    pub healthy_threshold: u32,
    /// Consecutive failing checks that mark a target unhealthy. Default 3.
    pub unhealthy_threshold: u32,
    /// Statuses that pass; empty (default) means any 2xx.
    pub expected_statuses: Vec<u16>,
}

impl Default for ActiveHealth {
    fn default() -> Self {
        Self {
            path: "/health".to_owned(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_statuses: Vec::new(),
        }
    }
}

impl ActiveHealth {
    /// Checks `path` with the default interval, timeout and thresholds.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// Sets the interval between rounds.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the time limit of one check.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the healthy and unhealthy thresholds.
    #[must_use]
    pub fn thresholds(mut self, healthy: u32, unhealthy: u32) -> Self {
        self.healthy_threshold = healthy;
        self.unhealthy_threshold = unhealthy;
        self
    }

    /// Sets the passing statuses (empty: any 2xx).
    #[must_use]
    pub fn expected_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.expected_statuses = statuses.into_iter().collect();
        self
    }

    pub(crate) fn passes(&self, status: http::StatusCode) -> bool {
        if self.expected_statuses.is_empty() {
            status.is_success()
        } else {
            self.expected_statuses.contains(&status.as_u16())
        }
    }
}

/// Passive health (outlier ejection): a target that fails `consecutive_failures`
/// requests in a row (connection errors, timeouts, and responses the classifier calls
/// failures, by default 5xx) is ejected for `base_ejection_time` times the number of
/// times it has been ejected, at most `max_ejection_time`. After that it gets traffic
/// again; one success resets its ejection count.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct PassiveHealth {
    /// Consecutive failures that eject a target. Default 5.
    pub consecutive_failures: u32,
    /// First ejection time. Default 30 s.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub base_ejection_time: Duration,
    /// Longest ejection time. Default 300 s.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub max_ejection_time: Duration,
    /// At most this fraction of the targets is ejected at once (at least one target
    /// can always be ejected). Default 0.5.
    pub max_ejected_fraction: f64,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejected_fraction: 0.5,
        }
    }
}

impl PassiveHealth {
    /// Ejects after `consecutive_failures` failures, with the default times.
    pub fn new(consecutive_failures: u32) -> Self {
        Self {
            consecutive_failures,
            ..Self::default()
        }
    }

    /// Sets the first and the longest ejection time.
    #[must_use]
    pub fn ejection_time(mut self, base: Duration, max: Duration) -> Self {
        self.base_ejection_time = base;
        self.max_ejection_time = max;
        self
    }

    /// Sets the largest fraction of targets ejected at once.
    #[must_use]
    pub fn max_ejected_fraction(mut self, fraction: f64) -> Self {
        self.max_ejected_fraction = fraction;
        self
    }
}

/// What the upstream sees as `Host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum HostHeader {
    /// The client's `Host` (or HTTP/2 `:authority`), unchanged (default).
    #[default]
    Preserve,
    /// The target's authority, as a plain HTTP client would send.
    Upstream,
}

/// Headers the proxy adds toward the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Forwarding {
    /// `Host` handling. Default [`HostHeader::Preserve`].
    pub host: HostHeader,
    /// Set `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host`. Default true.
    pub x_forwarded: bool,
    /// Set the RFC 7239 `Forwarded` header. Default false.
    pub forwarded: bool,
    /// Add `Via: 1.1 <this>` both ways; `None` (default) adds nothing.
    pub via: Option<String>,
    /// Peers whose forwarding headers are kept and extended (CIDRs or addresses).
    /// From any other peer they are replaced. Default: none trusted. Ignored when a
    /// resolver is given to the builder.
    pub trusted_proxies: Vec<String>,
}

impl Default for Forwarding {
    fn default() -> Self {
        Self {
            host: HostHeader::Preserve,
            x_forwarded: true,
            forwarded: false,
            via: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Connection pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Pool {
    /// Idle connections are closed after this long. Default 90 s.
    #[cfg_attr(feature = "serde", serde(with = "duration"))]
    pub idle_timeout: Duration,
    /// Idle connections kept per target. Default 256.
    pub max_idle_per_target: usize,
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(90),
            max_idle_per_target: 256,
        }
    }
}

/// The whole proxy configuration, e.g. read from a file with the `serde` feature.
///
/// ```
/// # #[cfg(feature = "serde")] {
/// let config: gateway_layers_proxy::ProxyConfig = serde_json::from_value(serde_json::json!({
///     "targets": [{"url": "http://127.0.0.1:9001"}, {"url": "http://127.0.0.1:9002", "weight": 3}],
///     "strategy": "weighted_round_robin",
///     "timeouts": {"connect": "1s", "response_headers": 5000},
///     "passive_health": {"consecutive_failures": 3},
/// })).unwrap();
/// assert_eq!(config.targets[1].weight, 3);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ProxyConfig {
    /// The upstreams.
    pub targets: Vec<Target>,
    /// Load-balancing algorithm. Default round robin.
    pub strategy: Strategy,
    /// The hash key for [`Strategy::ConsistentHash`] (e.g. `client_ip`,
    /// `{"header": "x-user"}`). Required for that strategy.
    #[cfg(feature = "serde")]
    pub hash_key: Option<gateway_layers_core::key::KeySpec>,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Active health checks, off by default.
    pub active_health: Option<ActiveHealth>,
    /// Passive ejection, off by default.
    pub passive_health: Option<PassiveHealth>,
    /// Forwarding headers.
    pub forwarding: Forwarding,
    /// Connection pool.
    pub pool: Pool,
}

#[cfg(feature = "serde")]
mod duration {
    //! The shared duration syntax of `gateway_layers_core::duration`.
    pub(super) use gateway_layers_core::duration::deserialize;

    pub(super) mod option {
        pub(in super::super) use gateway_layers_core::duration::deserialize_option as deserialize;
    }
}
