//! A gateway router: routes by host, path, method, headers and query to per-route
//! services, after one path normalization whose result is used for matching *and*
//! forwarding.
//!
//! - **Matchers**: hosts (`example.com`, `example.com:8443`, `*.example.com`,
//!   `api.*`), paths ([`PathMatch`]: exact, segment-aware prefix, matchit template with
//!   captures, regex with named captures), method sets, headers and query parameters
//!   ([`ValueMatch`]: exact, regex, present, absent).
//! - **Priority** (highest first): exact host (with port, then without), `*.suffix`
//!   (longest first), `prefix.*` (longest first), any host; then exact path, template
//!   (segment by segment, literal > parameter > catch-all), prefix (longest first),
//!   regex, no path matcher; then more matchers (methods, each header and query rule)
//!   over fewer; then declaration order.
//! - **Normalization** ([`Normalization`]): RFC 3986 dot segments, unreserved escapes
//!   decoded, other escapes in uppercase hex, slash merging, a policy for `%2F`/`%5C`
//!   ([`EncodedSlash`]); NUL and bad escapes are refused with 400. The raw path is in
//!   [`RawPath`](gateway_layers_core::ext::RawPath).
//! - **Actions**: strip a prefix at a segment boundary, rewrite the path from captures,
//!   rewrite the host, split between weighted services ([`Split`]), sticky by a core
//!   [`KeyExtractor`](gateway_layers_core::KeyExtractor) with a header/cookie override
//!   for canaries.
//! - The chosen route's name and captures are in
//!   [`RouteName`](gateway_layers_core::ext::RouteName) and
//!   [`PathParams`](gateway_layers_core::ext::PathParams); a split sets [`SplitBackend`].
//! - No route: 404 `application/problem+json` (or the fallback service); a route that
//!   matches all but the method: 405 with `Allow`.
//!
//! The router is always ready and calls only the chosen route's service (a clone,
//! through `oneshot`), so one slow route never blocks the others.
//!
//! # Example
//!
//! ```
//! use gateway_layers_router::{Route, Router, ValueMatch};
//! use gateway_layers_core::ext::PathParams;
//! use http::{Method, Request, Response, StatusCode};
//! use tower::{ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! // A service that answers with the path it received and its `id` capture.
//! let echo = service_fn(|req: Request<String>| async move {
//!     let id = req.extensions().get::<PathParams>().and_then(|p| p.get("id")).unwrap_or("-");
//!     Ok::<_, std::convert::Infallible>(Response::new(format!("{} {id}", req.uri().path())))
//! });
//! let router = Router::builder()
//!     .route(Route::new("user").host("api.example.com").template("/users/{id}")
//!         .method(Method::GET).service(echo.clone()))
//!     .route(Route::new("beta").host("*.example.com").prefix("/v1")
//!         .header("x-beta", ValueMatch::Present).strip_prefix("/v1").service(echo))
//!     .build()
//!     .unwrap();
//!
//! let get = |host: &str, path: &str| Request::get(path).header("host", host)
//!     .header("x-beta", "1").body(String::new()).unwrap();
//! let response = router.clone().oneshot(get("API.example.com.", "/a/../users/7")).await.unwrap();
//! assert_eq!(response.into_body().into_inner().unwrap(), "/users/7 7");
//!
//! let response = router.clone().oneshot(get("web.example.com:8080", "/v1/x")).await.unwrap();
//! assert_eq!(response.into_body().into_inner().unwrap(), "/x -");
//!
//! let post = Request::post("/users/7").header("host", "api.example.com").body(String::new()).unwrap();
//! let response = router.oneshot(post).await.unwrap();
//! assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
//! assert_eq!(response.headers()["allow"], "GET, HEAD");
//! # });
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod matcher;
pub mod normalize;
mod route;
mod router;
mod split;
mod table;

#[cfg(feature = "serde")]
pub mod config;

pub use normalize::{EncodedSlash, Normalization, PathError};
pub use route::{HostAction, PathMatch, Route, ValueMatch};
pub use router::{ResponseFuture, Router, RouterBuilder, RouterLayer};
pub use split::{Split, SplitBackend};

/// The boxed, cloneable service each route holds (with its own layers).
pub type RouteService<B, RB, E> =
    tower::util::BoxCloneSyncService<http::Request<B>, http::Response<RB>, E>;
