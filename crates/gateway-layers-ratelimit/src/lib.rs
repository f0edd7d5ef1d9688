//! Tiered rate limiting for Tower services: several windows per tier enforced at
//! once, GCRA, an in-process sharded store and an atomic Redis backend shared by
//! several gateway instances.
//!
//! A [`RateLimitLayer`] keys each request (client IP, subject, API key, header, route
//! or a composite, through the core [`KeyPolicy`](gateway_layers_core::KeyPolicy)),
//! picks the policy of the request's tier (from the verified
//! [`Identity`](gateway_layers_core::Identity) by default), charges the request's cost
//! to every window of that policy and either passes it on or answers
//! `429 Too Many Requests` (RFC 9457 problem+json, `Retry-After`, `RateLimit` headers).
//! The service is always ready: it decides in `call` (the local store) or inside the
//! response future (Redis), never by holding `poll_ready`.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, net::SocketAddr};
//! use bytes::Bytes;
//! use gateway_layers_core::{Identity, KeyPolicy, key::{ClientIpKey, FirstKey, SubjectKey}};
//! use gateway_layers_ratelimit::{Limit, Policy, RateLimitLayer};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = RateLimitLayer::builder()
//!     // The subject when authenticated, else the client IP.
//!     .key(KeyPolicy::new(FirstKey::new([
//!         std::sync::Arc::new(SubjectKey) as _,
//!         std::sync::Arc::new(ClientIpKey::default()) as _,
//!     ])))
//!     .default_policy([Limit::per_second(2), Limit::per_hour(100)])
//!     .tier("premium", [Limit::per_second(100).with_burst(200), Limit::per_day(1_000_000)])
//!     .tier("enterprise", Policy::unlimited())
//!     .build()?;
//! let svc = layer.layer(service_fn(|_req: Request<()>| async {
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
//! }));
//!
//! let anonymous = || {
//!     let mut req = Request::new(());
//!     req.extensions_mut().insert("203.0.113.7:5000".parse::<SocketAddr>().unwrap());
//!     req
//! };
//! assert_eq!(svc.clone().oneshot(anonymous()).await?.status(), StatusCode::OK);
//! let res = svc.clone().oneshot(anonymous()).await?;
//! assert_eq!(res.headers()["ratelimit"], "\"2/1s\";r=0;t=1");
//! let res = svc.clone().oneshot(anonymous()).await?;
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(res.headers()["retry-after"], "1");
//!
//! // A premium user, as the JWT / API-key layer would have marked it.
//! let mut req = Request::new(());
//! req.extensions_mut().insert(Identity::new().with_subject("u-1").with_tier("premium"));
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["ratelimit"], "\"100/1s\";r=199;t=1");
//! # Ok(())
//! # }
//! ```
//!
//! # The algorithm
//!
//! Each window is a GCRA (Generic Cell Rate Algorithm) limiter: per key it stores one
//! timestamp, the *theoretical arrival time* (TAT). With `quota` per `window` the
//! emission interval is `T = window / quota` and the tolerance `τ = burst × T`. A
//! request of cost `c` at `now` conforms when `max(TAT, now) + c·T − now ≤ τ`; if every
//! window of the policy conforms, every TAT advances by `c·T`, otherwise nothing
//! changes. Consequences:
//!
//! - exact and O(1) per window: no counters to reset, no boundary bursts of fixed
//!   windows, 8 bytes per window per key;
//! - after a quiet period a key may send `burst` requests at once, then one per `T`;
//!   idling never banks more than the burst;
//! - over any span of length `L` at most `burst + L / T` requests pass, so with the
//!   default `burst = quota` a window admits at most `2 × quota − 1` requests in any
//!   sliding span of its length (and exactly `quota` from a standing start). Lower the
//!   burst to tighten that;
//! - windows are all-or-nothing: a request refused by the daily window does not use
//!   up the per-second window.
//!
//! The local store is a sharded GCRA table of its own rather than `governor`'s keyed
//! limiter (which implements the same algorithm): governor decides one quota per
//! limiter with a compare-and-swap per key, so several windows would need several
//! limiters that cannot be charged atomically (a refusal by the third would already
//! have consumed the first two). The store reads the same clock as governor by
//! default ([`Clock::Fast`], quanta's); tests that pause tokio's clock build the
//! layer with [`clock(Clock::Tokio)`](RateLimitBuilder::clock). See
//! `docs/rate-limiting.md` for the comparison and benchmark.
//!
//! # Responses
//!
//! - Refused: `429` problem+json with `code: "rate_limited"`, `Retry-After` (whole
//!   seconds, rounded up, plus optional [jitter](RateLimitBuilder::retry_after_jitter)),
//!   and a [`RateLimitDecision`] in the extensions. A request whose cost exceeds a
//!   burst can never pass and gets no `Retry-After`.
//! - Headers ([`HeaderStyle`]): `RateLimit-Policy` lists every window of the tier
//!   (`"10/1s";q=10;w=1, "1000/1h";q=1000;w=3600`) and `RateLimit` reports the window
//!   closest to exhaustion (`"10/1s";r=7;t=1`: 7 unit requests left, fully recovered in
//!   1 s), per draft-ietf-httpapi-ratelimit-headers; or legacy `X-RateLimit-Limit`,
//!   `X-RateLimit-Remaining`, `X-RateLimit-Reset` (seconds from now); both; or none.
//! - Backend trouble: `503` with `code: "ratelimit_unavailable"` (Redis failed in
//!   fail-closed mode) or `"ratelimit_store_full"` (the local store is full of keys that
//!   are still being limited) — never 429, the client did nothing wrong.
//! - A missing key: the key policy's status (400 by default).
//! - [Shadow mode](RateLimitBuilder::shadow) lets refused requests through and marks
//!   them; [`count_rejected`](RateLimitBuilder::count_rejected) charges refusals too.
//!
//! # Observability
//!
//! `tracing` events: `ratelimit.rejected` (debug; tier, status, code),
//! `ratelimit.shadow_rejected` (info), `ratelimit.backend_error` (warn; backend, mode,
//! error), `ratelimit.missing_key` (debug). Metrics through
//! [`gateway_layers_core::metrics`]: counters `gateway.ratelimit.allowed`,
//! `gateway.ratelimit.rejected` (labels `tier`, `code`),
//! `gateway.ratelimit.shadow_rejected`, `gateway.ratelimit.backend_errors` (labels
//! `backend`, `mode`) and the histogram `gateway.ratelimit.redis.duration` (seconds).
//!
//! # Features
//!
//! - `redis`: `RedisBackend` (one Lua script per decision with `EVALSHA`, Redis
//!   `TIME`, key TTLs, reconnects, timeout, fail-open / fail-closed / local fallback).
//! - `serde`: [`RateLimitConfig`] and the policy types implement `Deserialize`.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod decision;
mod duration;
mod gcra;
mod layer;
mod policy;
#[cfg(feature = "redis")]
mod redis;
mod store;

pub use config::RateLimitConfig;
#[cfg(feature = "redis")]
pub use config::RedisConfig;
pub use decision::{
    DecisionSource, RATELIMIT, RATELIMIT_POLICY, RateLimitDecision, X_RATELIMIT_LIMIT,
    X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};
pub use layer::{
    Clock, CostFn, DEFAULT_MAX_KEYS, LOCAL_ENTRY_BYTES, RateLimit, RateLimitBuilder,
    RateLimitLayer, ResponseFuture,
};
pub use policy::{HeaderStyle, Limit, Policy, TierFn, TierSource};
#[cfg(feature = "redis")]
pub use redis::{DEFAULT_RETRY_INTERVAL, DEFAULT_TIMEOUT, OnBackendError, RedisBackend, SCRIPT};
