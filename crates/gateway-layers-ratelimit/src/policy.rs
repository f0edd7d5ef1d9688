//! Limits, policies and how a request's tier is chosen.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use gateway_layers_core::{ConfigError, RequestView, Tier};
use http::{HeaderName, HeaderValue};

use crate::gcra::Window;

/// One limit: `quota` requests per `window`, with an optional burst.
///
/// The burst is how many requests may arrive at once after a quiet period; it
/// defaults to the quota. See the [crate docs](crate#the-algorithm) for what GCRA
/// guarantees over any span of time.
///
/// ```
/// use gateway_layers_ratelimit::Limit;
/// use std::time::Duration;
///
/// let limit = Limit::per_second(10).with_burst(20);
/// assert_eq!(limit.quota(), 10);
/// assert_eq!(limit.window(), Duration::from_secs(1));
/// assert_eq!(limit.burst(), 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Limit {
    quota: u64,
    #[cfg_attr(
        feature = "serde",
        serde(deserialize_with = "crate::duration::deserialize")
    )]
    window: Duration,
    #[cfg_attr(feature = "serde", serde(default))]
    burst: Option<u64>,
    #[cfg_attr(feature = "serde", serde(default))]
    name: Option<String>,
}

impl Limit {
    /// `quota` requests per `window`.
    pub fn new(quota: u64, window: Duration) -> Self {
        Self {
            quota,
            window,
            burst: None,
            name: None,
        }
    }

    /// `quota` per second.
    pub fn per_second(quota: u64) -> Self {
        Self::new(quota, Duration::from_secs(1))
    }

    /// `quota` per minute.
    pub fn per_minute(quota: u64) -> Self {
        Self::new(quota, Duration::from_secs(60))
    }

    /// `quota` per hour.
    pub fn per_hour(quota: u64) -> Self {
        Self::new(quota, Duration::from_secs(3600))
    }

    /// `quota` per day.
    pub fn per_day(quota: u64) -> Self {
        Self::new(quota, Duration::from_secs(86_400))
    }

    /// Sets the burst (default: the quota).
    #[must_use]
    pub fn with_burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Names the limit in `RateLimit-Policy` / `RateLimit` (default `"{quota}/{window}"`,
    /// e.g. `"10/1s"`).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The quota.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The burst.
    pub fn burst(&self) -> u64 {
        self.burst.unwrap_or(self.quota)
    }

    /// The name reported in headers.
    pub fn name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("{}/{}", self.quota, crate::duration::format(self.window)),
        }
    }

    pub(crate) fn window_in(&self, tick: Duration, field: &str) -> Result<Window, ConfigError> {
        let err = |reason: &'static str| ConfigError::invalid(field.to_owned(), reason);
        if self.quota == 0 {
            return Err(err("quota must be at least 1"));
        }
        if self.burst == Some(0) {
            return Err(err("burst must be at least 1"));
        }
        let length = u64::try_from(self.window.as_nanos() / tick.as_nanos())
            .map_err(|_| err("window is too long"))?;
        if length > 1 << 52 {
            return Err(err("window is too long"));
        }
        Window::new(self.quota, length, self.burst()).ok_or_else(|| {
            err("window / quota is shorter than the clock resolution (1 ns locally, 1 µs in Redis)")
        })
    }
}

/// The limits of one tier, all enforced at once (e.g. 10/s AND 1,000/h AND 10,000/day).
///
/// A policy without limits admits everything (`Policy::unlimited()`).
///
/// ```
/// use gateway_layers_ratelimit::{Limit, Policy};
///
/// let premium = Policy::new()
///     .limit(Limit::per_second(100).with_burst(200))
///     .limit(Limit::per_day(1_000_000));
/// assert_eq!(premium.limits().len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Policy {
    limits: Vec<Limit>,
}

impl Policy {
    /// A policy with no limits yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A policy that admits everything.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Adds a limit.
    #[must_use]
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limits.push(limit);
        self
    }

    /// The limits.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }
}

impl From<Limit> for Policy {
    fn from(limit: Limit) -> Self {
        Policy::new().limit(limit)
    }
}

impl<const N: usize> From<[Limit; N]> for Policy {
    fn from(limits: [Limit; N]) -> Self {
        Self {
            limits: limits.into(),
        }
    }
}

impl From<Vec<Limit>> for Policy {
    fn from(limits: Vec<Limit>) -> Self {
        Self { limits }
    }
}

/// A function choosing the tier of a request.
pub type TierFn = Arc<dyn Fn(&RequestView<'_>) -> Option<Tier> + Send + Sync>;

/// Where a request's tier comes from. Unknown or missing tiers use the default policy.
#[derive(Clone, Default)]
pub enum TierSource {
    /// The verified [`Identity`](gateway_layers_core::Identity) in request extensions
    /// (set by the JWT / API-key layer). The default.
    #[default]
    Identity,
    /// A fixed map from the rate-limit key (as text, e.g. an API key id or an IP) to a
    /// tier.
    Static(Arc<HashMap<String, Tier>>),
    /// A function of the request.
    Function(TierFn),
    /// A request header. **Client-controlled**: only behind a trusted component that
    /// sets (and strips) it; never the default.
    TrustedHeader(HeaderName),
}

impl TierSource {
    /// A fixed map from key text to tier.
    pub fn static_map<K, T>(entries: impl IntoIterator<Item = (K, T)>) -> Self
    where
        K: Into<String>,
        T: Into<Tier>,
    {
        Self::Static(Arc::new(
            entries
                .into_iter()
                .map(|(k, t)| (k.into(), t.into()))
                .collect(),
        ))
    }

    /// A function of the request.
    pub fn function(f: impl Fn(&RequestView<'_>) -> Option<Tier> + Send + Sync + 'static) -> Self {
        Self::Function(Arc::new(f))
    }
}

impl fmt::Debug for TierSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Identity => f.write_str("Identity"),
            Self::Static(map) => write!(f, "Static({} entries)", map.len()),
            Self::Function(_) => f.write_str("Function(..)"),
            Self::TrustedHeader(name) => write!(f, "TrustedHeader({name})"),
        }
    }
}

/// Which rate-limit headers responses carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum HeaderStyle {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers). The default.
    #[default]
    Draft,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (seconds).
    Legacy,
    /// Both.
    Both,
    /// None (a 429 still carries `Retry-After`).
    None,
}

impl HeaderStyle {
    pub(crate) fn draft(self) -> bool {
        matches!(self, Self::Draft | Self::Both)
    }

    pub(crate) fn legacy(self) -> bool {
        matches!(self, Self::Legacy | Self::Both)
    }
}

/// A policy prepared for decisions.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) index: u32,
    pub(crate) tier: Tier,
    /// Windows in nanoseconds (local store).
    pub(crate) local: Box<[Window]>,
    /// Windows in microseconds (Redis).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) remote: Box<[Window]>,
    /// Per limit: the `RateLimit` item name as an sf-string.
    pub(crate) names: Box<[String]>,
    pub(crate) policy_header: Option<HeaderValue>,
}

impl Compiled {
    /// Prepares `policy`; `remote` also checks and converts it for Redis.
    pub(crate) fn new(
        index: u32,
        tier: Tier,
        policy: &Policy,
        remote_needed: bool,
    ) -> Result<Self, ConfigError> {
        let mut local = Vec::new();
        let mut remote = Vec::new();
        let mut names = Vec::new();
        let mut items = Vec::new();
        for (i, limit) in policy.limits.iter().enumerate() {
            let field = format!("tiers.{tier}[{i}]");
            local.push(limit.window_in(Duration::from_nanos(1), &field)?);
            if remote_needed {
                remote.push(limit.window_in(Duration::from_micros(1), &field)?);
            }
            let name = sf_string(&limit.name()).ok_or_else(|| {
                ConfigError::invalid(field.clone(), "name must be printable ASCII")
            })?;
            let secs = limit.window.as_secs() + u64::from(limit.window.subsec_nanos() > 0);
            items.push(format!("{name};q={};w={}", limit.quota, secs.max(1)));
            names.push(name);
        }
        let policy_header = if items.is_empty() {
            None
        } else {
            Some(
                HeaderValue::from_str(&items.join(", "))
                    .map_err(|_| ConfigError::invalid(format!("tiers.{tier}"), "bad header"))?,
            )
        };
        Ok(Self {
            index,
            tier,
            local: local.into(),
            remote: remote.into(),
            names: names.into(),
            policy_header,
        })
    }
}

/// An RFC 8941 sf-string.
fn sf_string(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => return None,
        }
    }
    out.push('"');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_headers_and_windows() {
        let policy = Policy::new()
            .limit(Limit::per_second(10))
            .limit(Limit::per_hour(1000).with_name("hourly \"h\""));
        let c = Compiled::new(0, Tier::FREE, &policy, true).unwrap();
        assert_eq!(
            c.policy_header.unwrap(),
            r#""10/1s";q=10;w=1, "hourly \"h\"";q=1000;w=3600"#
        );
        assert_eq!(c.local[0].emission, 100_000_000);
        assert_eq!(c.remote[1].emission, 3_600_000);
        assert_eq!(c.remote[1].tolerance, 3_600_000_000);
    }

    #[test]
    fn invalid_limits() {
        for limit in [
            Limit::per_second(0),
            Limit::per_second(1).with_burst(0),
            Limit::new(10, Duration::from_nanos(5)),
            Limit::per_second(1).with_name("é"),
        ] {
            assert!(Compiled::new(0, Tier::FREE, &limit.into(), false).is_err());
        }
        // Sub-microsecond emission works locally but not in Redis.
        let fast: Policy = Limit::per_second(2_000_000).into();
        assert!(Compiled::new(0, Tier::FREE, &fast, false).is_ok());
        assert!(Compiled::new(0, Tier::FREE, &fast, true).is_err());
        assert!(
            Compiled::new(0, Tier::FREE, &Policy::unlimited(), true)
                .unwrap()
                .policy_header
                .is_none()
        );
    }
}
