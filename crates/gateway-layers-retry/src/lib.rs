//! Retries for [gateway-layers]: full-jitter exponential backoff, `Retry-After`, a retry
//! budget shared by all clones, per-try timeouts with an overall deadline, and bounded
//! replay of the request body.
//!
//! [`RetryLayer`] retries a request when the [`Classify`](gateway_layers_core::Classify)
//! classifier calls the outcome a failure ([`RetryClassifier`] by default: 502, 503,
//! 504, connection errors, resets and timeouts), and only when it is safe:
//!
//! - **Method.** GET, HEAD, OPTIONS, PUT, DELETE and TRACE; POST, PATCH and others only
//!   with an `Idempotency-Key` header, or with [`NonIdempotent::Always`].
//! - **Body.** The body's chunks are kept (reference-counted, not copied) while it
//!   streams to the first attempt, up to
//!   [`max_replay_bytes`](RetryConfig::max_replay_bytes) (64 KiB). A larger body streams
//!   through without being kept and the request is not retried. See [`ReplayBody`].
//! - **Time.** Retry `n` waits a random time in `[0, min(max_backoff, base_backoff *
//!   2^n)]`, or what the upstream asked for with `Retry-After` / `X-RateLimit-Reset` (up
//!   to [`retry_after_cap`](RetryConfig::retry_after_cap)). A wait that would reach the
//!   overall [`deadline`](RetryConfig::deadline) means no retry.
//! - **Budget.** [`RetryBudget`]: retries may add at most `ratio` of the traffic (plus
//!   `min_per_sec`) over a window; an empty budget returns the failure as it is.
//! - **Readiness.** Before a retry the inner service must be ready at once; if it is not
//!   (an open breaker, a full pool), the last response is returned.
//!
//! When a per-try timeout or the deadline ends the last attempt, the layer answers 504
//! with an `application/problem+json` body (code `upstream_timeout` or
//! `deadline_exceeded`), replaceable with
//! [`with_rejection_response`](RetryLayer::with_rejection_response). Errors of the inner
//! service are returned as they are.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, sync::{Arc, atomic::{AtomicUsize, Ordering}}, time::Duration};
//! use bytes::Bytes;
//! use gateway_layers_retry::{ReplayBody, RetryLayer};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let counter = calls.clone();
//! // An upstream that is unavailable twice, then answers.
//! let upstream = service_fn(move |_req: Request<ReplayBody<Full<Bytes>>>| {
//!     let n = counter.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         let status = if n < 2 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!         Ok::<_, Infallible>(Response::builder().status(status).body(Full::new(Bytes::new())).unwrap())
//!     }
//! });
//!
//! let retry = RetryLayer::builder()
//!     .max_attempts(3)
//!     .backoff(Duration::from_millis(1), Duration::from_millis(10))
//!     .deadline(Duration::from_secs(2))
//!     .build()?;
//! let service = ServiceBuilder::new().layer(retry).service(upstream);
//!
//! let response = service.oneshot(Request::get("/").body(Full::new(Bytes::new()))?).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # Ok(())
//! # }
//! ```
//!
//! # Observability
//!
//! `tracing` events (target `gateway_layers::retry`): `retry.scheduled`,
//! `retry.stopped` (field `reason`), `retry.succeeded`. Metrics through
//! [`gateway_layers_core::metrics`]: `gateway.retry.attempts` (label `outcome`, `kind`),
//! `gateway.retry.retries`, `gateway.retry.backoff` (seconds) and
//! `gateway.retry.stopped` (label `reason`).
//!
//! [gateway-layers]: https://docs.rs/gateway-layers
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod budget;
pub mod classify;
pub mod config;
mod future;
mod layer;
pub mod policy;

pub use body::ReplayBody;
pub use budget::RetryBudget;
pub use classify::{DEFAULT_RETRY_STATUSES, RetryClassifier};
pub use config::{BudgetConfig, DEFAULT_MAX_REPLAY_BYTES, HeaderMatch, RetryConfig};
pub use future::ResponseFuture;
pub use layer::{Retry, RetryLayer};
pub use policy::{NonIdempotent, Stop};
