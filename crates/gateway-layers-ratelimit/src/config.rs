//! The layer as written in a configuration file.

use std::{collections::BTreeMap, time::Duration};

use gateway_layers_core::{ClientIpResolver, ConfigError, KeyPolicy, key::KeySpec};

use crate::{
    HeaderStyle, Policy, RateLimitBuilder, RateLimitLayer, TierSource, layer::DEFAULT_MAX_KEYS,
};

/// The configuration of a [`RateLimitLayer`] (deserializable with feature `serde`).
///
/// ```yaml
/// key: { first_of: [subject, client_ip] }
/// default: [{ quota: 10, window: 1s }, { quota: 1000, window: 1h }]
/// tiers:
///   premium: [{ quota: 100, window: 1s, burst: 200 }, { quota: 1000000, window: 1d }]
///   enterprise: []            # unlimited
/// headers: draft              # draft | legacy | both | none
/// retry_after_jitter: 1s
/// shadow: false
/// count_rejected: false
/// max_keys: 1000000
/// redis: { url: "redis://127.0.0.1:6379/", prefix: gw, timeout: 50ms, on_error: local }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// How requests are keyed (default: the client IP).
    #[cfg_attr(feature = "serde", serde(default = "client_ip"))]
    pub key: KeySpec,
    /// The policy of requests without a known tier (default: unlimited).
    #[cfg_attr(feature = "serde", serde(default))]
    pub default: Policy,
    /// Policies by tier name.
    #[cfg_attr(feature = "serde", serde(default))]
    pub tiers: BTreeMap<String, Policy>,
    /// Read the tier from this header. Client-controlled: only behind a trusted
    /// component that sets it. Default: the verified identity's tier.
    #[cfg_attr(feature = "serde", serde(default))]
    pub trusted_tier_header: Option<String>,
    /// Which headers to send.
    #[cfg_attr(feature = "serde", serde(default))]
    pub headers: HeaderStyle,
    /// Up to this much random delay is added to `Retry-After`.
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "crate::duration::deserialize_opt")
    )]
    pub retry_after_jitter: Option<Duration>,
    /// Decide and record, but never refuse.
    #[cfg_attr(feature = "serde", serde(default))]
    pub shadow: bool,
    /// Charge refused requests too.
    #[cfg_attr(feature = "serde", serde(default))]
    pub count_rejected: bool,
    /// Bound of the local key store.
    #[cfg_attr(feature = "serde", serde(default = "default_max_keys"))]
    pub max_keys: usize,
    /// The shared Redis backend (feature `redis`).
    #[cfg(feature = "redis")]
    #[cfg_attr(feature = "serde", serde(default))]
    pub redis: Option<RedisConfig>,
}

#[cfg(feature = "serde")]
fn client_ip() -> KeySpec {
    KeySpec::ClientIp
}

#[cfg(feature = "serde")]
fn default_max_keys() -> usize {
    DEFAULT_MAX_KEYS
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            key: KeySpec::ClientIp,
            default: Policy::unlimited(),
            tiers: BTreeMap::new(),
            trusted_tier_header: None,
            headers: HeaderStyle::default(),
            retry_after_jitter: None,
            shadow: false,
            count_rejected: false,
            max_keys: DEFAULT_MAX_KEYS,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

/// Redis settings in a configuration file.
#[cfg(feature = "redis")]
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Key namespace (default `ratelimit`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub prefix: Option<String>,
    /// Per-decision timeout (default 100 ms).
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "crate::duration::deserialize_opt")
    )]
    pub timeout: Option<Duration>,
    /// What to do when Redis fails (default `local`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub on_error: crate::OnBackendError,
    /// How long Redis is left alone after an error (default 500 ms).
    #[cfg_attr(
        feature = "serde",
        serde(default, deserialize_with = "crate::duration::deserialize_opt")
    )]
    pub retry_interval: Option<Duration>,
}

impl RateLimitConfig {
    /// A builder preset from this configuration (add a cost function or a responder,
    /// then build). `resolver` resolves client IPs for IP keys.
    pub fn builder(&self, resolver: &ClientIpResolver) -> Result<RateLimitBuilder, ConfigError> {
        let mut builder = RateLimitLayer::builder();
        builder = if self.key == KeySpec::ClientIp {
            builder.client_ip_key(resolver.clone())
        } else {
            builder.key(KeyPolicy::from_shared(self.key.build(resolver)?))
        };
        let mut builder = builder
            .default_policy(self.default.clone())
            .headers(self.headers)
            .shadow(self.shadow)
            .count_rejected(self.count_rejected)
            .max_keys(self.max_keys);
        for (tier, policy) in &self.tiers {
            builder = builder.tier(tier.clone(), policy.clone());
        }
        if let Some(header) = &self.trusted_tier_header {
            builder = builder.tier_source(TierSource::TrustedHeader(
                gateway_layers_core::headers::header_name(header)?,
            ));
        }
        if let Some(jitter) = self.retry_after_jitter {
            builder = builder.retry_after_jitter(jitter);
        }
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis {
            let mut backend = crate::RedisBackend::new(&redis.url)?.on_error(redis.on_error);
            if let Some(prefix) = &redis.prefix {
                backend = backend.prefix(prefix.clone());
            }
            if let Some(timeout) = redis.timeout {
                backend = backend.timeout(timeout);
            }
            if let Some(interval) = redis.retry_interval {
                backend = backend.retry_interval(interval);
            }
            builder = builder.redis(backend);
        }
        Ok(builder)
    }

    /// Builds the layer.
    pub fn build(&self, resolver: &ClientIpResolver) -> Result<RateLimitLayer, ConfigError> {
        self.builder(resolver)?.build()
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;
    use crate::Limit;

    #[test]
    fn deserializes_and_builds() {
        let config: RateLimitConfig = serde_json::from_value(serde_json::json!({
            "key": {"first_of": ["subject", "client_ip"]},
            "default": [{"quota": 10, "window": "1s"}, {"quota": 1000, "window": "1h"}],
            "tiers": {"premium": [{"quota": 100, "window": 1, "burst": 200, "name": "fast"}],
                      "enterprise": []},
            "headers": "both",
            "retry_after_jitter": "250ms",
            "max_keys": 5000
        }))
        .unwrap();
        assert_eq!(
            config.default,
            Policy::from([Limit::per_second(10), Limit::per_hour(1000)])
        );
        assert_eq!(config.tiers["premium"].limits()[0].burst(), 200);
        assert_eq!(config.headers, HeaderStyle::Both);
        assert_eq!(config.retry_after_jitter, Some(Duration::from_millis(250)));
        assert_eq!(config.max_keys, 5000);
        assert!(config.build(&ClientIpResolver::default()).is_ok());

        let bad: RateLimitConfig =
            serde_json::from_value(serde_json::json!({"default": [{"quota": 0, "window": "1s"}]}))
                .unwrap();
        assert!(bad.build(&ClientIpResolver::default()).is_err());
        assert!(
            serde_json::from_value::<RateLimitConfig>(serde_json::json!({"tier_header": "x"}))
                .is_err()
        );
    }
}
