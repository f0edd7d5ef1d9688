//! Counts every request and records its duration (`gateway.requests`,
//! `gateway.request.duration`), as a plain Tower layer: it neither clones nor boxes
//! what it wraps.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use gateway_layers::core::{Rejected, metrics};
use http::{Method, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// Records request metrics around the inner service.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestMetricsLayer;

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics { inner }
    }
}

/// The service made by [`RequestMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for RequestMetrics<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ResponseFuture {
            start: Instant::now(),
            method: request.method().clone(),
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// The response future of [`RequestMetrics`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        method: Method,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let class = match response.status().as_u16() {
                100..=199 => "1xx",
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            };
            let rejected_by = response
                .extensions()
                .get::<Rejected>()
                .map_or("none", |r| r.layer);
            metrics::counter(
                "gateway.requests",
                1,
                &[
                    ("method", this.method.as_str()),
                    ("status", class),
                    ("rejected_by", rejected_by),
                ],
            );
            metrics::histogram(
                "gateway.request.duration",
                this.start.elapsed().as_secs_f64(),
                &[("status", class)],
            );
        }
        Poll::Ready(result)
    }
}
