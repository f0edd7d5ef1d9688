//! # gateway-layers
//!
//! Tower layers for building API gateways and backends-for-frontends in-process: stack
//! them onto your own axum or hyper service.
//!
//! Each layer lives in its own crate and is re-exported here behind a cargo feature
//! named after it. The shared pieces (rejections, client IP, key extraction,
//! identity, failure classification, header hygiene) are always available as
//! [`core`].
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use gateway_layers::{breaker::BreakerLayer, core::key::SubjectKey, jwt::Algorithm, prelude::*};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = b"an-hs256-secret-of-32-bytes-min!";
//! let jwt = JwtAuthLayer::builder()
//!     .provider(Provider::hmac(secret, Algorithm::HS256)?.issuer("https://auth.example.com"))
//!     .tier_claim("tier")
//!     .forward_claim("sub", "x-user-id") // incoming copies are always removed first
//!     .build()?;
//! let limits = RateLimitLayer::builder()
//!     .key(KeyPolicy::new(SubjectKey))
//!     .default_policy(Policy::new().limit(Limit::per_second(5)).limit(Limit::per_minute(100)))
//!     .tier("premium", Policy::new().limit(Limit::per_second(50)))
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/orders", get(|| async { "orders" }))
//!     .layer(
//!         ServiceBuilder::new()
//!             // Resolve the client IP once; only a proxy on this host may report another.
//!             .layer(ClientIpLayer::new(ClientIpResolver::new(TrustedProxies::loopback())))
//!             .layer(jwt) // 401 / 403 with WWW-Authenticate
//!             .layer(limits) // 429 with Retry-After and RateLimit headers
//!             .layer(BreakerLayer::builder().build()?), // 503 while open
//!     );
//!
//! // No token: refused by the JWT layer with an RFC 6750 challenge and problem+json.
//! let response = app
//!     .clone()
//!     .oneshot(http::Request::get("/orders").body(Body::empty())?)
//!     .await?;
//! assert_eq!(response.status(), 401);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//!
//! // A valid token passes every layer.
//! let exp = jsonwebtoken::get_current_timestamp() + 60;
//! let claims = serde_json::json!({"sub": "u1", "iss": "https://auth.example.com", "exp": exp});
//! let token = jsonwebtoken::encode(
//!     &jsonwebtoken::Header::new(Algorithm::HS256),
//!     &claims,
//!     &jsonwebtoken::EncodingKey::from_secret(secret),
//! )?;
//! let request = http::Request::get("/orders")
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! assert!(response.headers().contains_key("ratelimit"));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use gateway_layers_core as core;

#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
pub use gateway_layers_breaker as breaker;
#[cfg(feature = "compose")]
#[cfg_attr(docsrs, doc(cfg(feature = "compose")))]
pub use gateway_layers_compose as compose;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use gateway_layers_jwt as jwt;
#[cfg(feature = "proxy")]
#[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
pub use gateway_layers_proxy as proxy;
#[cfg(feature = "ratelimit")]
#[cfg_attr(docsrs, doc(cfg(feature = "ratelimit")))]
pub use gateway_layers_ratelimit as ratelimit;
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub use gateway_layers_retry as retry;
#[cfg(feature = "router")]
#[cfg_attr(docsrs, doc(cfg(feature = "router")))]
pub use gateway_layers_router as router;
#[cfg(feature = "transform")]
#[cfg_attr(docsrs, doc(cfg(feature = "transform")))]
pub use gateway_layers_transform as transform;

/// The types most gateway code needs, in one import.
pub mod prelude {
    pub use gateway_layers_core::{
        Classify, ClientIp, ClientIpLayer, ClientIpResolver, ConfigError, DefaultClassifier,
        ForwardedHeader, Identity, Key, KeyExtractor, KeyPolicy, OnMissingKey, ProblemJson,
        Rejection, RejectionResponder, Tier, TrustedProxies,
    };

    #[cfg(feature = "compose")]
    pub use gateway_layers_compose::{Compose, Part, part_service};
    #[cfg(feature = "jwt")]
    pub use gateway_layers_jwt::{
        ApiKey, ApiKeyLayer, JwtAuthLayer, JwtClaims, Provider, Requirement, Rule,
    };
    #[cfg(feature = "ratelimit")]
    pub use gateway_layers_ratelimit::{Limit, Policy, RateLimitLayer};
}
