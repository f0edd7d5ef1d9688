//! Header and JSON body transforms for [gateway-layers]: reshape traffic between clients
//! and upstreams with one Tower layer, [`TransformLayer`].
//!
//! - **Headers** on requests and responses, in a fixed order: `remove`, `rename`,
//!   `replace` (only if present), `add` (only if absent), `append`. Values are
//!   templates over the request: `{header.x-client-id}`, `{query.page}`, `{path.id}`
//!   (router captures), `{claim.sub}` (verified identity), `{client_ip}`,
//!   `{request_id}`, ... A rendered value with CR, LF, NUL or another control character
//!   is never injected: the request gets 400, or the operation is skipped
//!   ([`OnTemplateError`]).
//! - **JSON bodies** on requests and responses: `remove`, `rename`, `replace`, `add`,
//!   `append`, `cast`, then an `allow` list, at nested paths (JSON Pointer `/a/0/b` or
//!   dot paths with wildcards `items[*].internal_id`), with literal or templated values.
//! - Only `application/json` and `*/*+json` bodies are touched; everything else streams
//!   through untouched, never buffered. gzip/deflate bodies are decoded, transformed and
//!   encoded again (or passed through, [`CompressedBodies`]); other codings (br, zstd)
//!   pass through.
//! - **Limits.** A body is buffered up to [`TransformConfig::max_body_bytes`] (default
//!   1 MiB, decoded size): a request over it gets 413, a response over it passes through
//!   untransformed and intact (the bytes read so far are replayed ahead of the rest).
//!   `Content-Length` is recomputed.
//! - **Malformed JSON**: a request gets 400 problem+json; a response passes through
//!   unchanged with a `transform.response_passthrough` warning and an [`Untransformed`]
//!   response extension.
//! - Correlation ids with tower-http's request-id layers: [`request_id`].
//!
//! ```
//! use gateway_layers_transform::{Rules, TransformConfig, ValueSpec};
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = TransformConfig::new()
//!     .request(Rules::new().set_header("x-page", "{query.page}"))
//!     .response(
//!         Rules::new()
//!             .remove_field("items[*].internal_id")
//!             .add_field("page", ValueSpec::template("{query.page}")),
//!     )
//!     .build()
//!     .unwrap();
//! let upstream = service_fn(|request: Request<_>| async move {
//!     assert_eq!(request.headers()["x-page"], "2");
//!     let body = r#"{"items":[{"id":1,"internal_id":"x"},{"id":2,"internal_id":"y"}]}"#;
//!     Ok::<_, std::convert::Infallible>(
//!         Response::builder()
//!             .header("content-type", "application/json")
//!             .body(Full::new(Bytes::from(body)))
//!             .unwrap(),
//!     )
//! });
//! let response = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(upstream)
//!     .oneshot(Request::get("/items?page=2").body(Full::new(Bytes::new())).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(response.headers()["content-length"], "40");
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, r#"{"items":[{"id":1},{"id":2}],"page":"2"}"#);
//! # }
//! ```
//!
//! Declared in a file (feature `serde`), a route's transforms look like the JSON in
//! [`config`]. The guide is `docs/transform.md`.
//!
//! [gateway-layers]: https://docs.rs/gateway-layers
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod codec;
pub mod config;
mod future;
mod headers;
mod json;
mod layer;
pub mod request_id;

pub use body::TransformBody;
pub use config::{
    CastType, CompressedBodies, DEFAULT_MAX_BODY_BYTES, HeaderRules, JsonRules, OnTemplateError,
    Rules, TransformConfig, ValueSpec,
};
pub use future::ResponseFuture;
pub use layer::{Transform, TransformLayer};

/// Why a JSON response was passed through untransformed; found in the response's
/// extensions (a warning event `transform.response_passthrough` is also emitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Untransformed {
    /// The body (or its decoded form) is larger than the buffer cap.
    TooLarge,
    /// The body is not valid JSON.
    MalformedJson,
    /// The body claims gzip/deflate but does not decode.
    Undecodable,
    /// The content coding is left untouched (br, zstd, stacked, or passthrough configured).
    Encoding,
    /// The inner body failed while being read; the error is passed on after the bytes read.
    BodyError,
}

impl Untransformed {
    /// A stable name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::MalformedJson => "malformed_json",
            Self::Undecodable => "undecodable",
            Self::Encoding => "encoding",
            Self::BodyError => "body_error",
        }
    }
}
