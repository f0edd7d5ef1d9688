//! The gateway's YAML document and its loading, with precise errors.

use std::{collections::BTreeMap, net::SocketAddr, path::Path};

use gateway_layers::{
    breaker::BreakerConfig,
    jwt::{ApiKeyConfig, JwtConfig},
    proxy::ProxyConfig,
    ratelimit::RateLimitConfig,
    retry::RetryConfig,
    router::config::RouterConfig,
    transform::TransformConfig,
};
use serde::Deserialize;

/// The whole document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the gateway listens (default `127.0.0.1:8080`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where `/metrics` and `/admin` listen (default `127.0.0.1:9090`).
    #[serde(default = "default_admin")]
    pub admin: SocketAddr,
    /// Proxies whose `X-Forwarded-For` is believed (CIDRs or addresses).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Upstreams by name: targets, balancing, health checks, timeouts.
    pub upstreams: BTreeMap<String, ProxyConfig>,
    /// Services by name: an upstream plus the plugins in front of it.
    pub services: BTreeMap<String, ServiceConfig>,
    /// Routes (hosts, paths, headers, methods, strip prefix, weighted splits) to
    /// services.
    pub router: RouterConfig,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

/// An upstream and its plugins, applied outermost first in this order: request id,
/// CORS, body limit, JWT, API key, rate limit, transform, retry, breaker.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The upstream (a key of `upstreams`).
    pub upstream: String,
    /// Set or accept `x-request-id` and echo it back.
    #[serde(default)]
    pub request_id: bool,
    /// CORS policy.
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    /// Largest request body in bytes (413 above it).
    #[serde(default)]
    pub body_limit: Option<usize>,
    /// JWT authentication.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// API-key authentication.
    #[serde(default)]
    pub api_key: Option<ApiKeyConfig>,
    /// Tiered rate limits.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Header and JSON body transforms.
    #[serde(default)]
    pub transform: Option<TransformConfig>,
    /// Retries.
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// Circuit breaker.
    #[serde(default)]
    pub breaker: Option<BreakerConfig>,
}

/// A CORS policy (tower-http's `CorsLayer`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Allowed origins; `["*"]` for any.
    pub allow_origins: Vec<String>,
    /// Allowed methods (default GET, POST).
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Preflight cache lifetime in seconds.
    #[serde(default)]
    pub max_age_secs: Option<u64>,
}

/// Why a document could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The document is not valid YAML or does not match the schema.
    #[error("{file}: at `{path}`: {message}")]
    Parse {
        /// The file.
        file: String,
        /// Where in the document (`services.users.retry.max_attempts`).
        path: String,
        /// What was expected.
        message: String,
    },
    /// The values are well-formed but invalid (a bad CIDR, an unknown upstream).
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong and where.
        message: String,
    },
}

impl LoadError {
    pub(crate) fn invalid(file: &str, message: impl std::fmt::Display) -> Self {
        Self::Invalid {
            file: file.to_owned(),
            message: message.to_string(),
        }
    }
}

/// The embedded demo document (its `demo:NAME` targets are the in-process demo
/// services).
pub const DEFAULT_CONFIG: &str = include_str!("../gateway.yaml");

impl GatewayConfig {
    /// Reads and parses `path`.
    pub fn from_file(path: &Path, demo: &crate::DemoTargets) -> Result<Self, LoadError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&file, &text, demo)
    }

    /// Parses `text`; `file` names it in errors. Strings `demo:users`, `demo:orders`,
    /// `demo:notifications` and `demo:recommendations` under `upstreams` become the
    /// demo services' URLs.
    pub fn parse(file: &str, text: &str, demo: &crate::DemoTargets) -> Result<Self, LoadError> {
        let parse_error = |path: String, message: String| LoadError::Parse {
            file: file.to_owned(),
            path: if path.is_empty() || path == "." {
                "(document)".to_owned()
            } else {
                path
            },
            message,
        };
        let mut value: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| parse_error(String::new(), e.to_string()))?;
        if let Some(upstreams) = value.get_mut("upstreams") {
            substitute_demo(upstreams, demo).map_err(|m| LoadError::invalid(file, m))?;
        }
        serde_path_to_error::deserialize(value)
            .map_err(|e| parse_error(e.path().to_string(), e.inner().to_string()))
    }
}

fn substitute_demo(
    value: &mut serde_norway::Value,
    demo: &crate::DemoTargets,
) -> Result<(), String> {
    match value {
        serde_norway::Value::String(text) if text.starts_with("demo:") => {
            let name = &text["demo:".len()..];
            let url = demo.url(name).ok_or_else(|| {
                format!(
                    "unknown demo service {text:?} (users, orders, notifications, recommendations)"
                )
            })?;
            *text = url;
        }
        serde_norway::Value::Sequence(items) => {
            for item in items {
                substitute_demo(item, demo)?;
            }
        }
        serde_norway::Value::Mapping(map) => {
            for (_, item) in map.iter_mut() {
                substitute_demo(item, demo)?;
            }
        }
        _ => {}
    }
    Ok(())
}
