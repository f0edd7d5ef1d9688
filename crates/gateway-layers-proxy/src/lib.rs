//! The service at the end of a gateway stack: an HTTP reverse proxy to a set of
//! upstream targets, with connection pooling (HTTP/1.1 connections driven by the
//! requests that use them; hyper-util for the rest), HTTP/1.1 and HTTP/2 (h2c)
//! toward upstreams (TLS with rustls behind the `tls` feature), streaming bodies, load
//! balancing and health checks. Guide: `docs/proxy.md`.
//!
//! - **Forwarding.** The request path and query (as left by routers that strip or
//!   rewrite it) are joined to the target's base URL. Hop-by-hop headers, including
//!   those named in `Connection`, are removed both ways. `X-Forwarded-For` gets the
//!   peer's address appended; a chain sent by a peer that is not a trusted proxy is
//!   replaced, never trusted. `X-Forwarded-Proto`, `X-Forwarded-Host`, RFC 7239
//!   `Forwarded` and `Via` are optional. `Host` is preserved or set to the target.
//!   Bodies stream frame by frame in both directions; `Upgrade` (WebSocket) requests
//!   are bridged once both sides switched protocols.
//! - **Failures** are responses, never service errors: connection errors answer
//!   `502`, connect/response-header/total timeouts `504`, no usable target `503`, as
//!   problem+json by default (replaceable with
//!   [`with_rejection_response`](ProxyBuilder::with_rejection_response)). The
//!   [`ProxyError`] in the response's extensions wraps core's `ConnectError` /
//!   `TimeoutError`, so `classify::error_kind` recognises it.
//! - **Load balancing** ([`Strategy`]): round robin, smooth weighted round robin,
//!   power-of-two-choices least request, consistent hashing on a core
//!   [`KeyExtractor`](gateway_layers_core::KeyExtractor) (ip-hash with core's
//!   `ClientIpKey`, a header with `HeaderKey`, a cookie with [`CookieKey`], ...).
//! - **Health**: [`ActiveHealth`] checks and [`PassiveHealth`] ejection; unusable
//!   targets are skipped. Targets can be replaced at run time
//!   ([`Proxy::set_targets`], or a watch channel with [`ProxyBuilder::discovery`]).
//! - **Composition**: every response carries an [`UpstreamTarget`] extension naming
//!   the target, for a breaker keyed on target authority and for logs; a request that
//!   carries one avoids that target, so a retry lands on another.
//! - **Metrics** (through `gateway_layers_core::metrics`, label `target`):
//!   `gateway.proxy.requests`, `gateway.proxy.errors`, `gateway.proxy.latency`
//!   (seconds to the response head), `gateway.proxy.target.healthy`,
//!   `gateway.proxy.target.ejected`, `gateway.proxy.unavailable`.
//!
//! # Example
//!
//! ```
//! use gateway_layers_proxy::{Proxy, Strategy, UpstreamTarget};
//! use gateway_layers_test_support::MockUpstream;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let upstream = MockUpstream::echo().await;
//! let proxy = Proxy::builder()
//!     .target(upstream.url())
//!     .strategy(Strategy::RoundRobin)
//!     .build()
//!     .unwrap();
//!
//! let request = http::Request::get("/orders?id=7")
//!     .header("host", "api.example")
//!     .body(http_body_util::Empty::<bytes::Bytes>::new())
//!     .unwrap();
//! let response = proxy.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//! let target = response.extensions().get::<UpstreamTarget>().unwrap();
//! assert_eq!(target.authority().as_str(), upstream.addr().to_string());
//! let seen = upstream.last().unwrap();
//! assert_eq!(seen.uri, "/orders?id=7");
//! assert_eq!(seen.headers["host"], "api.example");
//! # }
//! ```
//!
//! A target that refuses connections is a `502` problem:
//!
//! ```
//! use gateway_layers_proxy::Proxy;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
//! let proxy = Proxy::new([format!("http://{closed}")]).unwrap();
//! let request = http::Request::new(http_body_util::Empty::<bytes::Bytes>::new());
//! let response = proxy.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 502);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod balance;
mod body;
mod config;
mod conn;
mod cookie;
mod error;
mod forward;
mod health;
mod service;
mod target;

pub use balance::Strategy;
pub use body::ProxyBody;
pub use config::{
    ActiveHealth, Forwarding, HostHeader, MAX_WEIGHT, PassiveHealth, Pool, Protocol, ProxyConfig,
    Target, Timeouts,
};
pub use cookie::CookieKey;
pub use error::{ProxyError, ProxyErrorKind};
pub use service::{Proxy, ProxyBuilder, ProxyResponse, ResponseFuture};
pub use target::{TargetStatus, UpstreamTarget};

/// Entry points for the fuzz targets in `fuzz/` (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    /// A response head as the HTTP/1.1 client parsed it.
    #[derive(Debug)]
    pub struct ParsedHead {
        /// The head, without its body.
        pub response: http::Response<()>,
        /// How the body is framed: `"done"`, `"length N"`, `"chunked"` or `"eof"`.
        pub framing: String,
        /// Whether the connection may carry another request.
        pub keep_alive: bool,
        /// How many bytes the head (interim heads included) took.
        pub used: usize,
    }

    /// Parses a response head off the front of `bytes` as the HTTP/1.1 client does
    /// (`head_request`: the answer to a `HEAD`); `Ok(None)` if more bytes are needed.
    pub fn parse_response_head(
        bytes: &[u8],
        head_request: bool,
    ) -> Result<Option<ParsedHead>, String> {
        crate::conn::fuzz_parse_head(bytes, head_request)
    }
}
