//! W3C trace context: continue the client's trace, or start one, and pass it upstream.
//!
//! [`TraceContextLayer`] reads the request's `traceparent` per
//! [W3C Trace Context](https://www.w3.org/TR/trace-context/#traceparent-header), with a
//! hand-written parser (no propagator, no OpenTelemetry `Context` per request):
//!
//! - `version-traceid-parentid-flags`, all lowercase hex: a two-digit version other than
//!   `ff`, a 32-digit trace id and a 16-digit parent id that are not all zeros, and
//!   two-digit flags whose lowest bit means *sampled*.
//! - Version `00` is exactly 55 bytes. A higher version is at least 55 bytes and, if
//!   longer, has a `-` at byte 55; whatever follows is ignored (fields of a future
//!   version).
//! - Only the first `traceparent` value is read. Anything else (missing, wrong length,
//!   uppercase, `ff`, zero ids) is not a valid parent.
//!
//! A valid parent keeps its trace id and sampling flag, and the client's `tracestate`
//! is forwarded untouched. A missing or malformed one starts a new, sampled trace and
//! any `tracestate` is removed (it belongs to a trace that is not continued). The
//! gateway mints its own span id (and trace id, for a new trace) from a thread-local
//! PRNG and replaces the request's `traceparent` with
//! `00-<trace id>-<gateway's span id>-<00|01>`, so whatever forwards the request (the
//! proxy, a composition part) carries `trace_id` + the gateway's span as parent. The
//! resulting [`TraceContext`] (fixed-size ids, no allocation) is put in request
//! extensions, and the inner call runs inside a DEBUG-level `tracing` span
//! `gateway.request` with `trace_id` and `span_id` fields (hex, formatted only when the
//! span is enabled).
//!
//! ```
//! use gateway_layers_core::trace::{TraceContext, TraceContextLayer, TraceId};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(TraceContextLayer::new())
//!     .service(service_fn(|req: http::Request<()>| async move {
//!         let ctx = *req.extensions().get::<TraceContext>().unwrap();
//!         let sent = req.headers()["traceparent"].to_str().unwrap().to_owned();
//!         Ok::<_, std::convert::Infallible>((ctx, sent))
//!     }));
//! let req = http::Request::builder()
//!     .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
//!     .body(()).unwrap();
//! let (ctx, sent) = svc.oneshot(req).await.unwrap();
//! assert_eq!(ctx.trace_id, TraceId::from(0x0af7651916cd43dd8448eb211c80319c));
//! assert_eq!(ctx.trace_id.to_string(), "0af7651916cd43dd8448eb211c80319c");
//! assert!(ctx.sampled);
//! assert_eq!(sent, format!("00-{}-{}-01", ctx.trace_id, ctx.span_id));
//! assert!(!sent.contains("b7ad6b7169203331"));
//! # }
//! ```

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderName, HeaderValue, Request, header::Entry};
/// The ids of [`TraceContext`] (OpenTelemetry's, re-exported): `Copy`, hex via
/// `Display`.
pub use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Instrument, instrument::Instrumented};

/// The trace position of a request, in request extensions.
///
/// The ids are fixed-size values; `Display` (and `{:x}`) writes them as lowercase hex
/// (32 digits for [`TraceId`], 16 for [`SpanId`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace id (never all zeros).
    pub trace_id: TraceId,
    /// The gateway's span id, the parent the upstream sees (never all zeros).
    pub span_id: SpanId,
    /// The client's span id, when the client sent a valid `traceparent`.
    pub parent_span_id: Option<SpanId>,
    /// Whether the trace is sampled.
    pub sampled: bool,
}

/// A valid incoming `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parent {
    trace_id: u128,
    span_id: u64,
    sampled: bool,
}

/// Length of a version-00 `traceparent`, the only one the gateway writes.
const TRACEPARENT_LEN: usize = 55;

/// Lowercase hex digit -> value; anything else -> `0xff`.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Parses lowercase hex digits (at most 16) into a number.
#[inline]
fn parse_hex(digits: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    let mut invalid = 0u8;
    for &d in digits {
        let v = HEX_VALUE[d as usize];
        invalid |= v;
        value = (value << 4) | u64::from(v & 0x0f);
    }
    // Valid digits are < 16, so bit 7 is set only by an invalid one.
    (invalid & 0x80 == 0).then_some(value)
}

/// Parses a `traceparent` value; `None` when it is not a valid parent.
fn parse_traceparent(value: &[u8]) -> Option<Parent> {
    if value.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = parse_hex(&value[0..2])?;
    if version == 0xff
        || (version == 0 && value.len() != TRACEPARENT_LEN)
        || (value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-')
        || value[2] != b'-'
        || value[35] != b'-'
        || value[52] != b'-'
    {
        return None;
    }
    let high = parse_hex(&value[3..19])?;
    let low = parse_hex(&value[19..35])?;
    let trace_id = (u128::from(high) << 64) | u128::from(low);
    let span_id = parse_hex(&value[36..52])?;
    let flags = parse_hex(&value[53..55])?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Writes `bytes` as lowercase hex, two digits each, into `out` (twice as long).
#[inline]
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(b >> 4)];
        pair[1] = HEX_DIGITS[usize::from(b & 0x0f)];
    }
}

/// `00-<trace id>-<span id>-<flags>`: 55 bytes on the stack, one allocation for the
/// header value.
fn traceparent(trace_id: TraceId, span_id: SpanId, sampled: bool) -> HeaderValue {
    let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
    write_hex(&mut buf[3..35], &trace_id.to_bytes());
    write_hex(&mut buf[36..52], &span_id.to_bytes());
    if sampled {
        buf[54] = b'1';
    }
    HeaderValue::from_bytes(&buf).expect("hex digits and '-' are valid header bytes")
}

/// A random non-zero span id.
#[inline]
fn new_span_id(ids: &RandomIdGenerator) -> SpanId {
    loop {
        let id = ids.new_span_id();
        if id != SpanId::INVALID {
            return id;
        }
    }
}

/// A random non-zero trace id.
#[inline]
fn new_trace_id(ids: &RandomIdGenerator) -> TraceId {
    loop {
        let id = ids.new_trace_id();
        if id != TraceId::INVALID {
            return id;
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

/// Reads the incoming `traceparent`, mints the gateway's span id, and rewrites the
/// request's `traceparent` / `tracestate` as described in the [module docs](self).
pub fn continue_trace(headers: &mut HeaderMap) -> TraceContext {
    let ids = RandomIdGenerator::default();
    let span_id = new_span_id(&ids);
    let entry = headers.entry(const { HeaderName::from_static("traceparent") });
    let parent = match &entry {
        Entry::Occupied(e) => parse_traceparent(e.get().as_bytes()),
        Entry::Vacant(_) => None,
    };
    let context = match parent {
        Some(parent) => TraceContext {
            trace_id: TraceId::from(parent.trace_id),
            span_id,
            parent_span_id: Some(SpanId::from(parent.span_id)),
            sampled: parent.sampled,
        },
        None => TraceContext {
            trace_id: new_trace_id(&ids),
            span_id,
            parent_span_id: None,
            sampled: true,
        },
    };
    let value = traceparent(context.trace_id, context.span_id, context.sampled);
    match entry {
        Entry::Occupied(mut e) => {
            e.insert(value);
        }
        Entry::Vacant(e) => {
            e.insert(value);
        }
    }
    if parent.is_none() {
        headers.remove(const { HeaderName::from_static("tracestate") });
    }
    context
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

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const TRACE: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
    const SPAN: u64 = 0x00f0_67aa_0ba9_02b7;

    fn headers(traceparent: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Some(value) = traceparent {
            map.insert("traceparent", HeaderValue::from_str(value).unwrap());
            map.insert("tracestate", HeaderValue::from_static("vendor=abc"));
        }
        map
    }

    /// The request's `traceparent` after the layer, checked against `ctx`.
    fn assert_sent(h: &HeaderMap, ctx: &TraceContext) {
        let sent = h["traceparent"].to_str().unwrap();
        let flags = if ctx.sampled { "01" } else { "00" };
        assert_eq!(sent, format!("00-{}-{}-{flags}", ctx.trace_id, ctx.span_id));
        assert_eq!(h.get_all("traceparent").iter().count(), 1);
        assert_eq!(
            parse_traceparent(sent.as_bytes()).unwrap().sampled,
            ctx.sampled
        );
    }

    #[test]
    fn valid_parent_is_continued() {
        let mut h = headers(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ));
        let ctx = continue_trace(&mut h);
        assert_eq!(ctx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            ctx.parent_span_id.map(|id| id.to_string()).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(!ctx.sampled);
        let sent = h["traceparent"].to_str().unwrap();
        assert_eq!(sent, format!("00-{}-{}-00", ctx.trace_id, ctx.span_id));
        assert_ne!(ctx.span_id.to_string(), "00f067aa0ba902b7");
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
            assert_eq!(ctx.trace_id.to_string().len(), 32);
            assert_ne!(ctx.trace_id, TraceId::INVALID);
            assert_ne!(ctx.trace_id, TraceId::from(TRACE), "{bad:?}");
            assert!(ctx.sampled);
            assert_eq!(
                h["traceparent"].to_str().unwrap(),
                format!("00-{}-{}-01", ctx.trace_id, ctx.span_id)
            );
        }
    }

    #[test]
    fn version_ff_is_refused() {
        assert_eq!(
            parse_traceparent(b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None
        );
        let mut h = headers(Some(
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        let ctx = continue_trace(&mut h);
        assert_eq!(ctx.parent_span_id, None);
        assert_ne!(ctx.trace_id, TraceId::from(TRACE));
        assert_sent(&h, &ctx);
    }

    #[test]
    fn future_version_with_extra_fields_is_accepted() {
        let expected = Some(Parent {
            trace_id: TRACE,
            span_id: SPAN,
            sampled: true,
        });
        for value in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
            "fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-",
        ] {
            assert_eq!(parse_traceparent(value.as_bytes()), expected, "{value}");
        }
        // Longer, but byte 55 is not '-'.
        assert_eq!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"),
            None
        );
        let mut h = headers(Some(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
        ));
        let ctx = continue_trace(&mut h);
        assert_eq!(ctx.trace_id, TraceId::from(TRACE));
        assert_eq!(ctx.parent_span_id, Some(SpanId::from(SPAN)));
        assert!(ctx.sampled);
        // Forwarded as version 00, without the future fields.
        assert_sent(&h, &ctx);
        assert_eq!(h["tracestate"], "vendor=abc");
    }

    #[test]
    fn uppercase_is_refused() {
        for value in [
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473A-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        ] {
            assert_eq!(parse_traceparent(value.as_bytes()), None, "{value}");
            let mut h = headers(Some(value));
            assert_eq!(continue_trace(&mut h).parent_span_id, None, "{value}");
        }
        // The same digits in lowercase are a valid parent.
        assert!(
            parse_traceparent(b"0a-4bf92f3577b34da6a3ce929d0e0e473a-00f067aa0ba902b7-0a").is_some()
        );
    }

    #[test]
    fn wrong_length_or_shape_is_refused() {
        for value in [
            "",
            "00",
            // One digit short / long in each field.
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Version 00 is exactly 55 bytes, even with a trailing field.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // Separators and non-hex digits.
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-+1",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(value.as_bytes()), None, "{value:?}");
            let mut h = headers(Some(value));
            let ctx = continue_trace(&mut h);
            assert_eq!(ctx.parent_span_id, None, "{value:?}");
            assert_ne!(ctx.trace_id, TraceId::from(TRACE), "{value:?}");
            assert_sent(&h, &ctx);
        }
        assert!(parse_traceparent(PARENT.as_bytes()).is_some());
    }

    #[test]
    fn sampled_flag_is_the_low_bit() {
        for (flags, sampled) in [
            ("00", false),
            ("01", true),
            ("02", false),
            ("03", true),
            ("ff", true),
        ] {
            let value = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}");
            let mut h = headers(Some(&value));
            let ctx = continue_trace(&mut h);
            assert_eq!(ctx.parent_span_id, Some(SpanId::from(SPAN)), "{flags}");
            assert_eq!(ctx.sampled, sampled, "{flags}");
            // Only the sampled bit is forwarded.
            assert_sent(&h, &ctx);
            assert!(h["traceparent"].to_str().unwrap().ends_with(if sampled {
                "-01"
            } else {
                "-00"
            }));
        }
    }

    #[test]
    fn tracestate_is_kept_for_a_valid_parent_and_removed_otherwise() {
        // Kept as sent, every value, even one OpenTelemetry would not parse.
        let mut h = headers(Some(PARENT));
        h.insert(
            "tracestate",
            HeaderValue::from_static("vendor=abc, Not A Valid=Member"),
        );
        h.append("tracestate", HeaderValue::from_static("other=1"));
        let ctx = continue_trace(&mut h);
        assert_eq!(ctx.parent_span_id, Some(SpanId::from(SPAN)));
        let states: Vec<_> = h.get_all("tracestate").iter().collect();
        assert_eq!(states, ["vendor=abc, Not A Valid=Member", "other=1"]);

        // Removed (every value) with an invalid parent or none.
        for traceparent in [
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None,
        ] {
            let mut h = headers(traceparent);
            h.append("tracestate", HeaderValue::from_static("vendor=abc"));
            h.append("tracestate", HeaderValue::from_static("other=1"));
            let ctx = continue_trace(&mut h);
            assert_eq!(ctx.parent_span_id, None);
            assert!(h.get("tracestate").is_none(), "{traceparent:?}");
            assert_sent(&h, &ctx);
        }
    }

    #[test]
    fn new_span_id_differs_from_the_parent() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let mut h = headers(Some(PARENT));
            let ctx = continue_trace(&mut h);
            assert_eq!(ctx.parent_span_id, Some(SpanId::from(SPAN)));
            assert_ne!(ctx.span_id, SpanId::from(SPAN));
            assert_ne!(ctx.span_id, SpanId::INVALID);
            assert!(seen.insert(ctx.span_id), "span ids repeat");
            assert_sent(&h, &ctx);
        }
    }

    #[test]
    fn a_chain_of_gateways_keeps_the_trace() {
        let mut h = headers(Some(PARENT));
        let first = continue_trace(&mut h);
        let second = continue_trace(&mut h);
        assert_eq!(second.trace_id, first.trace_id);
        assert_eq!(second.parent_span_id, Some(first.span_id));
        assert_eq!(h["tracestate"], "vendor=abc");
        assert_sent(&h, &second);
    }

    #[test]
    fn hex_round_trip() {
        for id in [1u128, TRACE, u128::MAX, 0x0123_4567_89ab_cdef] {
            let value = traceparent(TraceId::from(id), SpanId::from(id as u64 | 1), true);
            let parent = parse_traceparent(value.as_bytes()).unwrap();
            assert_eq!((parent.trace_id, parent.span_id), (id, id as u64 | 1));
            assert_eq!(
                value.to_str().unwrap(),
                format!("00-{id:032x}-{:016x}-01", id as u64 | 1)
            );
        }
    }
}
