//! A circuit breaker [`Layer`](tower_layer::Layer) for gateways: stop calling an
//! upstream that is failing, answer at once with `503` and `Retry-After`, and probe it
//! back carefully.
//!
//! - **Trip conditions**: failure rate over a count- or time-based sliding window with
//!   a minimum number of calls, consecutive failures, slow-call rate. What a failure is
//!   comes from the core [`Classify`](gateway_layers_core::Classify) (default: 5xx and
//!   errors; 4xx are not failures).
//! - **States**: closed, open (fixed or exponentially growing open time with a cap and
//!   jitter), half-open (exactly N probes, M successes close, one failure reopens, a
//!   maximum wait). Every transition bumps a generation; results of calls admitted
//!   under an earlier generation never move the new state.
//! - **Per-key circuits** ([`BreakerBuilder::per_authority`],
//!   [`BreakerBuilder::per_key`]) in a bounded map.
//! - **Control**: a [`BreakerHandle`] to read state and counters and to force open,
//!   force closed or reset; transitions as `tracing` events
//!   (`event = "breaker.transition"`), metrics (`gateway.breaker.transitions`,
//!   `gateway.breaker.state`, `gateway.breaker.rejected`) and a callback.
//! - **Hot path**: in the closed state a call loads one atomic word and records its
//!   result with a few atomic operations; no lock, no allocation, no boxed future.
//!
//! See the guide `docs/circuit-breaker.md` for the state diagram and how to choose
//! thresholds.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use bytes::Bytes;
//! use gateway_layers_breaker::{BreakerLayer, State};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = BreakerLayer::builder()
//!     .consecutive_failures(3)
//!     .open_duration(Duration::from_secs(10))
//!     .build()
//!     .unwrap();
//! let handle = breaker.handle();
//! let upstream = service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, Infallible>(Response::builder().status(502).body(Full::new(Bytes::new())).unwrap())
//! });
//! let service = ServiceBuilder::new().layer(breaker).service(upstream);
//!
//! for _ in 0..3 {
//!     let response = service.clone().oneshot(Request::new(Full::default())).await.unwrap();
//!     assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
//! }
//! assert_eq!(handle.circuit().state(), State::Open);
//!
//! // Open: refused at once, without calling the upstream.
//! let response = service.oneshot(Request::new(Full::default())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! assert_eq!(response.headers()["retry-after"], "10");
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod handle;
mod key;
mod layer;
mod machine;
mod service;
mod shared;

pub use config::{BreakerConfig, CircuitKey, NamedKey, SlidingWindow};
pub use handle::{BreakerHandle, CircuitHandle};
pub use key::AuthorityKey;
pub use layer::{BreakerBuilder, BreakerLayer};
pub use machine::{Counters, Reason, State, WindowSnapshot};
pub use service::{Breaker, BreakerOpen, ResponseFuture};
pub use shared::TransitionEvent;
