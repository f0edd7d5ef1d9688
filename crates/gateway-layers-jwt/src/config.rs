//! File configuration (feature `serde`): [`JwtConfig`] and [`ApiKeyConfig`].
//!
//! ```
//! let yaml_like = serde_json::json!({
//!     "providers": [{
//!         "issuer": "https://issuer.example",
//!         "audiences": ["orders-api"],
//!         "keys": {"secret": "0123456789abcdef0123456789abcdef", "alg": "HS256"}
//!     }],
//!     "rules": [{"path_prefix": "/admin", "require": [
//!         {"kind": "roles", "mode": "any_of", "values": ["admin"]}
//!     ]}],
//!     "forward": [{"claim": "sub", "header": "x-user-id"}]
//! });
//! let config: gateway_layers_jwt::JwtConfig = serde_json::from_value(yaml_like).unwrap();
//! let layer = config.into_builder().unwrap().build().unwrap();
//! # let _ = layer;
//! ```

use std::time::Duration;

use gateway_layers_core::{ConfigError, Tier};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    ApiKey, ApiKeyBuilder, ApiKeyLayer, CacheConfig, JwksOptions, JwtAuthBuilder, JwtAuthLayer,
    JwtKey, KeySet, Provider, RemoteJwks, Requirement, Rule, SubjectMatcher, TokenSources,
    keys::parse_algorithm,
};

/// Where a provider's keys come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum KeysConfig {
    /// An HMAC secret (UTF-8 text) pinned to `alg`.
    Secret {
        /// The secret.
        secret: String,
        /// `HS256`, `HS384` or `HS512`.
        alg: String,
        /// Optional key id.
        #[serde(default)]
        kid: Option<String>,
    },
    /// A PEM public key pinned to `alg`.
    Pem {
        /// The PEM text.
        pem: String,
        /// The algorithm.
        alg: String,
        /// Optional key id.
        #[serde(default)]
        kid: Option<String>,
    },
    /// One JWK.
    Jwk {
        /// The JWK object.
        jwk: Value,
    },
    /// A JWKS document.
    Jwks {
        /// The document.
        jwks: Value,
    },
    /// A remote JWKS.
    JwksUrl {
        /// The URL.
        jwks_url: String,
        /// Freshness in seconds (default 300).
        #[serde(default)]
        ttl_secs: Option<u64>,
        /// Seconds between refetches caused by unknown kids (default 30).
        #[serde(default)]
        unknown_kid_cooldown_secs: Option<u64>,
        /// Fetch timeout in seconds (default 5).
        #[serde(default)]
        fetch_timeout_secs: Option<u64>,
    },
    /// OIDC discovery from the provider's issuer.
    Oidc {
        /// The issuer URL.
        oidc_issuer: String,
    },
}

/// One provider.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderConfig {
    /// Selects the provider by `iss` and requires it.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted audiences.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Leeway in seconds (default 30).
    #[serde(default)]
    pub leeway_secs: Option<u64>,
    /// Accept tokens without `exp`.
    #[serde(default)]
    pub allow_missing_exp: bool,
    /// Maximum lifetime in seconds.
    #[serde(default)]
    pub max_lifetime_secs: Option<u64>,
    /// `sub` constraint.
    #[serde(default)]
    pub subject: Option<SubjectMatcher>,
    /// Accepted `typ` values.
    #[serde(default)]
    pub token_types: Vec<String>,
    /// Required claims.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// The keys.
    pub keys: KeysConfig,
}

/// A claim forwarded as a header.
#[derive(Debug, Clone, Deserialize)]
pub struct ForwardConfig {
    /// Claim name or JSON Pointer.
    pub claim: String,
    /// Header name.
    pub header: String,
}

/// A custom header token source.
#[derive(Debug, Clone, Deserialize)]
pub struct HeaderSourceConfig {
    /// Header name.
    pub name: String,
    /// Value prefix, e.g. `Token `.
    #[serde(default)]
    pub prefix: String,
}

fn yes() -> bool {
    true
}

/// Token sources.
#[derive(Debug, Clone, Deserialize)]
pub struct SourcesConfig {
    /// `Authorization: Bearer` (default true).
    #[serde(default = "yes")]
    pub bearer: bool,
    /// Custom headers.
    #[serde(default)]
    pub headers: Vec<HeaderSourceConfig>,
    /// Cookies.
    #[serde(default)]
    pub cookies: Vec<String>,
    /// Query parameters (explicit opt-in).
    #[serde(default)]
    pub query: Vec<String>,
    /// Size limit (default 8 KiB).
    #[serde(default)]
    pub max_token_bytes: Option<usize>,
}

impl Default for SourcesConfig {
    fn default() -> Self {
        Self {
            bearer: true,
            headers: Vec::new(),
            cookies: Vec::new(),
            query: Vec::new(),
            max_token_bytes: None,
        }
    }
}

/// The whole JWT layer configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct JwtConfig {
    /// Providers (at least one).
    pub providers: Vec<ProviderConfig>,
    /// Token sources.
    #[serde(default)]
    pub sources: SourcesConfig,
    /// Requirements for every request.
    #[serde(default)]
    pub require: Vec<Requirement>,
    /// Per-route rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Roles claim (default `roles`).
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Tier claim.
    #[serde(default)]
    pub tier_claim: Option<String>,
    /// Claims forwarded as headers.
    #[serde(default)]
    pub forward: Vec<ForwardConfig>,
    /// Remove `Authorization` before forwarding.
    #[serde(default)]
    pub strip_authorization: bool,
    /// Anonymous mode.
    #[serde(default)]
    pub anonymous: bool,
    /// CORS preflight bypass.
    #[serde(default)]
    pub allow_preflight: bool,
    /// Cache bounds.
    #[serde(default)]
    pub cache: Option<CacheConfig>,
    /// Realm.
    #[serde(default)]
    pub realm: Option<String>,
    /// Understood `crit` names.
    #[serde(default)]
    pub understood_crit: Vec<String>,
}

fn alg(name: &str) -> Result<jsonwebtoken::Algorithm, ConfigError> {
    parse_algorithm(name).ok_or_else(|| {
        ConfigError::invalid("jwt.keys.alg", format!("unsupported algorithm {name:?}"))
    })
}

impl ProviderConfig {
    fn into_provider(self) -> Result<Provider, ConfigError> {
        let mut provider = match self.keys {
            KeysConfig::Secret {
                secret,
                alg: a,
                kid,
            } => {
                let mut key = JwtKey::hmac(secret.as_bytes(), alg(&a)?)?;
                if let Some(kid) = kid {
                    key = key.with_kid(kid);
                }
                Provider::key(key)
            }
            KeysConfig::Pem { pem, alg: a, kid } => {
                let mut key = JwtKey::from_pem(pem.as_bytes(), alg(&a)?)?;
                if let Some(kid) = kid {
                    key = key.with_kid(kid);
                }
                Provider::key(key)
            }
            KeysConfig::Jwk { jwk } => {
                Provider::new(KeySet::new().with(JwtKey::from_jwk(&jwk, None)?))
            }
            KeysConfig::Jwks { jwks } => Provider::jwks(&jwks)?,
            KeysConfig::JwksUrl {
                jwks_url,
                ttl_secs,
                unknown_kid_cooldown_secs,
                fetch_timeout_secs,
            } => {
                let mut options = JwksOptions::default();
                if let Some(s) = ttl_secs {
                    options.ttl = Duration::from_secs(s);
                }
                if let Some(s) = unknown_kid_cooldown_secs {
                    options.unknown_kid_cooldown = Duration::from_secs(s);
                }
                if let Some(s) = fetch_timeout_secs {
                    options.fetch_timeout = Duration::from_secs(s);
                }
                Provider::remote(RemoteJwks::shared(&jwks_url, options)?)
            }
            KeysConfig::Oidc { oidc_issuer } => {
                Provider::oidc(&oidc_issuer, JwksOptions::default())?
            }
        };
        if let Some(issuer) = self.issuer {
            provider = provider.issuer(issuer);
        }
        for audience in self.audiences {
            provider = provider.audience(audience);
        }
        if let Some(s) = self.leeway_secs {
            provider = provider.leeway(Duration::from_secs(s));
        }
        if self.allow_missing_exp {
            provider = provider.allow_missing_exp();
        }
        if let Some(s) = self.max_lifetime_secs {
            provider = provider.max_lifetime(Duration::from_secs(s));
        }
        if let Some(subject) = self.subject {
            provider = provider.subject(subject);
        }
        for typ in self.token_types {
            provider = provider.token_type(typ);
        }
        for claim in self.required_claims {
            provider = provider.require_claim(claim);
        }
        Ok(provider)
    }
}

impl JwtConfig {
    /// A builder with everything from the file; add a predicate or responder in code.
    pub fn into_builder(self) -> Result<JwtAuthBuilder, ConfigError> {
        let mut builder = JwtAuthLayer::builder();
        for provider in self.providers {
            builder = builder.provider(provider.into_provider()?);
        }
        let mut sources = if self.sources.bearer {
            TokenSources::bearer()
        } else {
            TokenSources::none()
        };
        for header in &self.sources.headers {
            sources = sources.header(&header.name, &header.prefix)?;
        }
        for cookie in &self.sources.cookies {
            sources = sources.cookie(cookie);
        }
        for query in &self.sources.query {
            sources = sources.query(query);
        }
        if let Some(max) = self.sources.max_token_bytes {
            sources = sources.max_bytes(max);
        }
        builder = builder.sources(sources);
        for requirement in self.require {
            builder = builder.require(requirement);
        }
        for rule in self.rules {
            builder = builder.rule(rule);
        }
        if let Some(claim) = self.roles_claim {
            builder = builder.roles_claim(claim);
        }
        if let Some(claim) = self.tier_claim {
            builder = builder.tier_claim(claim);
        }
        for forward in self.forward {
            builder = builder.forward_claim(forward.claim, forward.header);
        }
        if let Some(cache) = self.cache {
            builder = builder.cache(cache);
        }
        if let Some(realm) = self.realm {
            builder = builder.realm(realm);
        }
        Ok(builder
            .strip_authorization(self.strip_authorization)
            .anonymous(self.anonymous)
            .allow_preflight(self.allow_preflight)
            .understood_crit(self.understood_crit))
    }
}

/// One API key in a file: give `sha256` (hex digest) rather than `key` where possible.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeyEntry {
    /// The id (logged; never the key).
    pub id: String,
    /// The key in clear.
    #[serde(default)]
    pub key: Option<String>,
    /// The hex SHA-256 digest of the key.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The tier (default `free`).
    #[serde(default)]
    pub tier: Option<Tier>,
    /// The subject (default the id).
    #[serde(default)]
    pub subject: Option<String>,
    /// Scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// API-key layer configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeyConfig {
    /// The keys.
    pub keys: Vec<ApiKeyEntry>,
    /// Header (default `x-api-key`).
    #[serde(default)]
    pub header: Option<String>,
    /// Query parameter (opt-in).
    #[serde(default)]
    pub query: Option<String>,
    /// Realm.
    #[serde(default)]
    pub realm: Option<String>,
}

impl ApiKeyConfig {
    /// A builder with everything from the file.
    pub fn into_builder(self) -> Result<ApiKeyBuilder, ConfigError> {
        let mut builder = ApiKeyLayer::builder();
        for entry in self.keys {
            let mut key = match (entry.key, entry.sha256) {
                (Some(key), None) => ApiKey::new(entry.id, key),
                (None, Some(hex)) => ApiKey::from_sha256_hex(entry.id, &hex)?,
                _ => {
                    return Err(ConfigError::invalid(
                        "api_key.keys",
                        "each key needs exactly one of `key` and `sha256`",
                    ));
                }
            };
            if let Some(tier) = entry.tier {
                key = key.tier(tier);
            }
            if let Some(subject) = entry.subject {
                key = key.subject(subject);
            }
            builder = builder.key(key.scopes(entry.scopes));
        }
        if let Some(header) = self.header {
            builder = builder.header(header);
        }
        if let Some(query) = self.query {
            builder = builder.query(query);
        }
        if let Some(realm) = self.realm {
            builder = builder.realm(realm);
        }
        Ok(builder)
    }
}
