//! JWT and API-key authentication for [gateway-layers]: a Tower layer that verifies
//! bearer tokens once at the gateway, authorizes by scopes, roles or a predicate, and
//! hands the verified identity to the services behind it.
//!
//! - **Keys** are pinned to one algorithm each (HS256/384/512, RS*, PS*, ES256/384,
//!   EdDSA); `alg: none` in any casing is refused; HMAC secrets shorter than the hash
//!   output are a configuration error. Static keys ([`JwtKey`], [`KeySet`]), a remote
//!   JWKS with one shared refresher per URL ([`RemoteJwks`]) and OIDC discovery.
//!   `jku`, `x5u`, `x5c` and embedded `jwk` headers are never followed.
//! - **Claims**: `exp` required, `nbf`/`iat` checked with a 30 s leeway, `iss`, `aud`
//!   (any of; a token with `aud` is refused when none is configured), `sub`, `typ`,
//!   maximum lifetime, required claims; `crit` refused unless understood; wrongly
//!   typed registered claims refused.
//! - **Sources**: `Authorization: Bearer` (any case), custom headers, cookies, query
//!   (opt-in). Two tokens are refused; tokens over 8 KiB are refused unparsed.
//! - **Outputs**: core [`Identity`](gateway_layers_core::Identity) and typed
//!   [`JwtClaims<C>`] in request extensions, claims forwarded as headers (incoming
//!   copies always removed), optional `Authorization` removal, anonymous mode, CORS
//!   preflight bypass.
//! - **Refusals**: 401 with an RFC 6750 `WWW-Authenticate` challenge, 403
//!   `insufficient_scope`, bodies through the core rejection (replaceable).
//! - **Cache**: verified tokens (every algorithm), keyed by a randomly keyed hash of
//!   the whole token and served only to the byte-identical token, bounded by entries
//!   and bytes, valid until `exp` and until the keys rotate.
//! - [`ApiKeyLayer`]: hashed API keys mapped to identity and tier.
//!
//! # Example
//!
//! ```
//! use gateway_layers_jwt::{JwtAuthLayer, JwtClaims, Provider, Requirement, Rule};
//! use jsonwebtoken::{Algorithm, EncodingKey, Header};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let secret = b"0123456789abcdef0123456789abcdef";
//! let layer = JwtAuthLayer::builder()
//!     .provider(Provider::hmac(secret, Algorithm::HS256).unwrap().issuer("https://issuer.example"))
//!     .rule(Rule::path("/admin").require(Requirement::any_role(["admin"])))
//!     .forward_claim("sub", "x-user-id")
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new().layer(layer).service_fn(|req: http::Request<()>| async move {
//!     let user = req.headers()["x-user-id"].to_str().unwrap().to_owned();
//!     let claims = req.extensions().get::<JwtClaims>().unwrap();
//!     assert_eq!(claims["sub"], "user-7");
//!     Ok::<_, std::convert::Infallible>(http::Response::new(user))
//! });
//!
//! let exp = jsonwebtoken::get_current_timestamp() + 300;
//! let claims = serde_json::json!({"sub": "user-7", "iss": "https://issuer.example", "exp": exp});
//! let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims,
//!     &EncodingKey::from_secret(secret)).unwrap();
//! let req = http::Request::get("/orders")
//!     .header("authorization", format!("Bearer {token}"))
//!     .header("x-user-id", "forged")
//!     .body(()).unwrap();
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.into_body().into_inner().unwrap(), "user-7");
//!
//! // Not an admin: 403 insufficient_scope.
//! let req = http::Request::get("/admin/users")
//!     .header("authorization", format!("Bearer {token}")).body(()).unwrap();
//! assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 403);
//! // No token: 401 with a challenge.
//! let res = svc.oneshot(http::Request::new(())).await.unwrap();
//! assert_eq!(res.status(), 401);
//! assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"api\"");
//! # });
//! ```
//!
//! See `docs/jwt.md` for JWKS, OIDC, per-route scopes, claim forwarding and the
//! security defaults.
//!
//! [gateway-layers]: https://docs.rs/gateway-layers
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod apikey;
mod authz;
mod cache;
#[cfg(feature = "serde")]
mod config;
mod error;
#[cfg(feature = "axum")]
mod extract;
pub mod jwks;
pub mod keys;
mod layer;
mod source;
mod token;

pub use apikey::{ApiKey, ApiKeyAuth, ApiKeyBuilder, ApiKeyLayer, MAX_API_KEY_BYTES};
pub use authz::{GrantKind, MatchMode, Predicate, Requirement, Rule};
pub use cache::CacheConfig;
#[cfg(feature = "serde")]
pub use config::{
    ApiKeyConfig, ApiKeyEntry, ForwardConfig, HeaderSourceConfig, JwtConfig, KeysConfig,
    ProviderConfig, SourcesConfig,
};
pub use error::AuthError;
#[cfg(feature = "axum")]
pub use extract::MissingClaims;
pub use jsonwebtoken::Algorithm;
pub use jwks::{JwksOptions, RemoteJwks};
pub use keys::{JwtKey, KeySet};
pub use layer::{
    ClaimsMap, JwtAuth, JwtAuthBuilder, JwtAuthLayer, JwtClaims, LAYER, Provider, ResponseFuture,
};
pub use source::{DEFAULT_MAX_TOKEN_BYTES, TokenSources};
pub use token::{ClaimRules, DEFAULT_LEEWAY_SECS, SubjectMatcher, verify_jws};
