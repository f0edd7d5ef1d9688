//! W3C trace context: continue the client's trace, or start one, and pass it upstream.
//!
//! [`TraceContextLayer`] reads `traceparent` / `tracestate` with OpenTelemetry's
//! `TraceContextPropagator`. A valid parent keeps its trace id and sampling flag; a
//! missing or malformed one starts a new trace. The gateway's own span id replaces the
//! client's in the request's `traceparent`, so whatever forwards the request (the proxy,
//! a composition part) carries `trace_id` + the gateway's span as parent. The resulting
//! [`TraceContext`] is put in request extensions, and the inner call runs inside a
//! DEBUG-level `tracing` span `gateway.request` with `trace_id` and `span_id` fields.
//!
//! ```
//! use gateway_layers_core::trace::{TraceContext, TraceContextLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(TraceContextLayer::new())
//!     .service(service_fn(|req: http::Request<()>| async move {
//!         let ctx = req.extensions().get::<TraceContext>().cloned().unwrap();
//!         let sent = req.headers()["traceparent"].to_str().unwrap().to_owned();
//!         Ok::<_, std::convert::Infallible>((ctx, sent))
//!     }));
//! let req = http::Request::builder()
//!     .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
//!     .body(()).unwrap();
//! let (ctx, sent) = svc.oneshot(req).await.unwrap();
//! assert_eq!(ctx.trace_id, "0af7651916cd43dd8448eb211c80319c");
//! assert!(sent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
//! assert!(!sent.contains("b7ad6b7169203331"));
//! # }
//! ```

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{SpanContext, TraceContextExt, TraceFlags, TraceState},
};
use opentelemetry_sdk::{
    propagation::TraceContextPropagator,
    trace::{IdGenerator, RandomIdGenerator},
};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Instrument, instrument::Instrumented};

/// The trace position of a request, in request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The gateway's span id (16 hex digits), the parent the upstream sees.
    pub span_id: String,
    /// The client's span id, when the client sent a valid `traceparent`.
    pub parent_span_id: Option<String>,
    /// Whether the trace is sampled.
    pub sampled: bool,
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Continues or starts a W3C trace per request; see the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct TraceContextLayer {
    _priv: (),
}

impl TraceContextLayer {
    /// A new layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for TraceContextLayer {
    type Service = TraceContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContextService { inner }
    }
}

/// The service made by [`TraceContextLayer`].
#[derive(Debug, Clone)]
pub struct TraceContextService<S> {
    inner: S,
}

impl<S> TraceContextService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the wrapper.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

pin_project! {
    /// The response future of [`TraceContextService`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<F>,
    }
}

impl<F: Future> Future for ResponseFuture<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

/// Reads the incoming context, mints the gateway's span id, and rewrites the request's
/// `traceparent` / `tracestate`.
pub fn continue_trace(headers: &mut HeaderMap) -> TraceContext {
    let propagator = TraceContextPropagator::new();
    let ids = RandomIdGenerator::default();
    let parent = propagator.extract(&HeaderExtractor(headers));
    let parent = parent.span().span_context().clone();
    let (trace_id, flags, state, parent_span_id) = if parent.is_valid() {
        (
            parent.trace_id(),
            parent.trace_flags(),
            parent.trace_state().clone(),
            Some(parent.span_id().to_string()),
        )
    } else {
        (
            ids.new_trace_id(),
            TraceFlags::SAMPLED,
            TraceState::default(),
            None,
        )
    };
    let ours = SpanContext::new(trace_id, ids.new_span_id(), flags, false, state);
    headers.remove("traceparent");
    headers.remove("tracestate");
    let cx = opentelemetry::Context::new().with_remote_span_context(ours.clone());
    propagator.inject_context(&cx, &mut HeaderInjector(headers));
    TraceContext {
        trace_id: ours.trace_id().to_string(),
        span_id: ours.span_id().to_string(),
        parent_span_id,
        sampled: ours.is_sampled(),
    }
}

impl<S, B> Service<Request<B>> for TraceContextService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let context = continue_trace(request.headers_mut());
        let span = tracing::debug_span!(
            "gateway.request",
            trace_id = %context.trace_id,
            span_id = %context.span_id,
            method = %request.method(),
            path = %request.uri().path(),
        );
        request.extensions_mut().insert(context);
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        ResponseFuture {
            inner: inner.instrument(span),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(traceparent: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Some(value) = traceparent {
            map.insert("traceparent", HeaderValue::from_str(value).unwrap());
            map.insert("tracestate", HeaderValue::from_static("vendor=abc"));
        }
        map
    }

    #[test]
    fn valid_parent_is_continued() {
        let mut h = headers(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ));
        let ctx = continue_trace(&mut h);
        assert_eq!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(!ctx.sampled);
        let sent = h["traceparent"].to_str().unwrap();
        assert_eq!(sent, format!("00-{}-{}-00", ctx.trace_id, ctx.span_id));
        assert_ne!(ctx.span_id, "00f067aa0ba902b7");
        assert_eq!(h["tracestate"], "vendor=abc");
    }

    #[test]
    fn malformed_or_missing_parent_starts_a_trace() {
        for bad in [
            None,
            Some("garbage"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        ] {
            let mut h = headers(bad);
            let ctx = continue_trace(&mut h);
            assert!(ctx.parent_span_id.is_none(), "{bad:?}");
            assert_eq!(ctx.trace_id.len(), 32);
            assert_ne!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", "{bad:?}");
            assert!(ctx.sampled);
            assert_eq!(
                h["traceparent"].to_str().unwrap(),
                format!("00-{}-{}-01", ctx.trace_id, ctx.span_id)
            );
        }
    }
}
