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
//! use gateway_layers::prelude::*;
//! use axum::{Router, routing::get};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(ClientIpLayer::new(ClientIpResolver::new(TrustedProxies::loopback())));
//! let response = app
//!     .oneshot(http::Request::get("/").body(axum::body::Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(response.status(), 200);
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use gateway_layers_core as core;

/// The types most gateway code needs, in one import.
pub mod prelude {
    pub use gateway_layers_core::{
        Classify, ClientIp, ClientIpLayer, ClientIpResolver, ConfigError, DefaultClassifier,
        ForwardedHeader, Identity, Key, KeyExtractor, KeyPolicy, OnMissingKey, ProblemJson,
        Rejection, RejectionResponder, Tier, TrustedProxies,
    };
}
