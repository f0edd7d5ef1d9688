//! Shared pieces of [gateway-layers]: every layer refuses, identifies clients, picks
//! keys and classifies failures the same way, through the types in this crate.
//!
//! - [`rejection`]: a refusal ([`Rejection`]) rendered as RFC 9457
//!   `application/problem+json` by a replaceable [`RejectionResponder`], with the typed
//!   reason in the response's extensions.
//! - [`body`]: [`GatewayBody`], the response body of every layer (the inner body or a
//!   rejection), so layers stay generic over bodies.
//! - [`client_ip`]: the client address from the connection and, only behind trusted
//!   proxies, from `X-Forwarded-For` / `Forwarded`.
//! - [`identity`]: the authenticated [`Identity`] that auth layers put in request
//!   extensions.
//! - [`key`]: [`KeyExtractor`], the one idea of "which bucket / circuit / hash key does
//!   this request belong to".
//! - [`classify`]: [`Classify`], what counts as a failure for the breaker and retry.
//! - [`headers`]: hop-by-hop headers and validation of header values built at run time.
//! - [`template`]: header value templates such as `user-{claim.sub}`.
//! - [`duration`]: one duration syntax for every configuration file.
//! - [`metrics`]: a process-wide metrics hook, a Prometheus text recorder, and an
//!   OpenTelemetry recorder behind the `otel` feature.
//! - `trace` (feature `otel`): W3C trace context taken from clients and passed on to
//!   upstreams.
//!
//! # Example
//!
//! ```
//! use gateway_layers_core::{Rejection, ProblemJson, RejectionResponder};
//! use http::StatusCode;
//!
//! let rejection = Rejection::new(StatusCode::TOO_MANY_REQUESTS, "ratelimit", "rate_limited")
//!     .with_title("Too Many Requests")
//!     .with_detail("quota of 10 requests per second exceeded")
//!     .with_header(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
//! let response = rejection.into_response::<http_body_util::Empty<bytes::Bytes>>(&ProblemJson);
//! assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! assert_eq!(response.headers()["retry-after"], "1");
//! ```
//!
//! [gateway-layers]: https://docs.rs/gateway-layers
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod classify;
pub mod client_ip;
pub mod duration;
mod error;
pub mod ext;
pub mod headers;
pub mod identity;
pub mod key;
pub mod metrics;
pub mod rejection;
pub mod template;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod trace;
mod view;

pub use body::GatewayBody;
pub use classify::{AsDynError, Classification, Classify, DefaultClassifier, ErrorKind};
pub use client_ip::{ClientIp, ClientIpLayer, ClientIpResolver, ForwardedHeader, TrustedProxies};
pub use error::ConfigError;
pub use identity::{Identity, Tier};
pub use key::{Key, KeyExtractor, KeyPolicy, OnMissingKey, SharedKeyExtractor};
pub use rejection::{ProblemJson, Rejected, Rejection, RejectionResponder, SharedResponder};
pub use view::RequestView;

/// Boxed error type used where a layer's errors are type-erased.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
