//! Typed plugin stacks: each optional plugin of a service is a [`Plugin`], either the
//! layer's service or a pass-through, so a service's whole stack is one concrete type
//! that is boxed once (instead of once per plugin).
//!
//! Boxing each plugin separately costs, per request and per plugin, a boxed future, a
//! re-boxed response body and, because routers and retries clone the service they call,
//! one allocation per plugin for every clone of the stack. A typed stack clones by
//! bumping the plugins' reference counts.

use std::{
    convert::Infallible,
    marker::PhantomData,
    pin::Pin,
    task::{Context, Poll},
};

use axum::body::Body;
use bytes::Bytes;
use gateway_layers::{
    core::{BoxError, GatewayBody},
    retry::ReplayBody,
};
use http::{Request, Response};
use http_body_util::Either;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// A plugin that is on (`L`'s service around `S`) or off (`S` behind `W`'s request
/// adapter, so both arms see the same inner request type).
#[derive(Debug, Clone)]
pub enum Plugin<On, Off> {
    /// The plugin's service.
    On(On),
    /// The inner service alone.
    Off(Off),
}

/// `layer` around `inner` when configured, else `inner` with the request body adapted
/// as the layer would have adapted it (`W`).
pub fn plugin<W, L, S>(layer: Option<L>, inner: S) -> Plugin<L::Service, Pass<S, W>>
where
    L: Layer<S>,
{
    match layer {
        Some(layer) => Plugin::On(layer.layer(inner)),
        None => Plugin::Off(Pass::new(inner)),
    }
}

impl<R, On, Off, X, Y> Service<R> for Plugin<On, Off>
where
    On: Service<R, Response = Response<X>, Error = Infallible>,
    Off: Service<R, Response = Response<Y>, Error = Infallible>,
{
    type Response = Response<Either<X, Y>>;
    type Error = Infallible;
    type Future = PluginFuture<On::Future, Off::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self {
            Plugin::On(s) => s.poll_ready(cx),
            Plugin::Off(s) => s.poll_ready(cx),
        }
    }

    #[inline]
    fn call(&mut self, request: R) -> Self::Future {
        match self {
            Plugin::On(s) => PluginFuture {
                kind: Kind::On {
                    future: s.call(request),
                },
            },
            Plugin::Off(s) => PluginFuture {
                kind: Kind::Off {
                    future: s.call(request),
                },
            },
        }
    }
}

pin_project! {
    /// The response future of [`Plugin`].
    #[derive(Debug)]
    pub struct PluginFuture<A, B> {
        #[pin]
        kind: Kind<A, B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<A, B> {
        On { #[pin] future: A },
        Off { #[pin] future: B },
    }
}

impl<A, B, X, Y> Future for PluginFuture<A, B>
where
    A: Future<Output = Result<Response<X>, Infallible>>,
    B: Future<Output = Result<Response<Y>, Infallible>>,
{
    type Output = Result<Response<Either<X, Y>>, Infallible>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::On { future } => future
                .poll(cx)
                .map(|r| r.map(|response| response.map(Either::Left))),
            KindProj::Off { future } => future
                .poll(cx)
                .map(|r| r.map(|response| response.map(Either::Right))),
        }
    }
}

/// How a plugin that is off adapts the request body to what its layer passes inward.
pub trait Wrap {
    /// The adapted body.
    type Body<B>;
    /// Adapts `body` (a pass-through).
    fn wrap<B>(body: B) -> Self::Body<B>;
}

/// Leaves the body as it is.
#[derive(Debug, Clone, Copy)]
pub enum Same {}

impl Wrap for Same {
    type Body<B> = B;
    #[inline]
    fn wrap<B>(body: B) -> B {
        body
    }
}

/// For the retry layer: a body that is never replayed.
#[derive(Debug, Clone, Copy)]
pub enum Replay {}

impl Wrap for Replay {
    type Body<B> = ReplayBody<B>;
    #[inline]
    fn wrap<B>(body: B) -> ReplayBody<B> {
        ReplayBody::passthrough(body)
    }
}

/// For the transform layer: the body as it was.
#[derive(Debug, Clone, Copy)]
pub enum Untransformed {}

impl Wrap for Untransformed {
    type Body<B> = GatewayBody<B>;
    #[inline]
    fn wrap<B>(body: B) -> GatewayBody<B> {
        GatewayBody::inner(body)
    }
}

/// `L` over `S` with `S`'s response body boxed to axum's [`Body`], for layers that
/// need a `Default` body (CORS answers preflights itself).
#[derive(Debug, Clone)]
pub struct OverBoxed<L>(pub L);

impl<L, S> Layer<S> for OverBoxed<L>
where
    L: Layer<Boxed<S>>,
{
    type Service = L::Service;

    fn layer(&self, inner: S) -> L::Service {
        self.0.layer(Boxed(inner))
    }
}

/// `S` with its response body boxed to axum's [`Body`].
#[derive(Debug, Clone)]
pub struct Boxed<S>(S);

impl<S, R, B> Service<R> for Boxed<S>
where
    S: Service<R, Response = Response<B>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxedFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: R) -> Self::Future {
        BoxedFuture {
            inner: self.0.call(request),
        }
    }
}

pin_project! {
    /// The response future of [`Boxed`].
    #[derive(Debug)]
    pub struct BoxedFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B, E> Future for BoxedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .inner
            .poll(cx)
            .map(|r| r.map(|response| response.map(Body::new)))
    }
}

/// `S` with its response future on the heap: [`HeapFuture::new`].
///
/// Every layer's future holds the future of the layer inside it, and each `call` moves
/// the inner future into its own. Deep in a stack these futures are large (the proxy's
/// about 500 bytes, retry's about 900 with its replay copy of the request), so every
/// layer above moves them again. One allocation below such a future makes all the
/// futures above it small: in the example's stack, one under the breaker and one
/// under retry save about 1k instructions per request (`benches/e2e/instructions.sh`),
/// more than the two allocations cost. Static dispatch: the box holds `S::Future`
/// itself, not a trait object.
#[derive(Debug, Clone)]
pub struct HeapFuture<S>(S);

impl<S> HeapFuture<S> {
    /// `inner`, whose response futures are boxed.
    pub fn new(inner: S) -> Self {
        Self(inner)
    }
}

impl<S, R> Service<R> for HeapFuture<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<S::Future>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: R) -> Self::Future {
        Box::pin(self.0.call(request))
    }
}

/// `S` with the request body adapted by `W`.
#[derive(Debug)]
pub struct Pass<S, W> {
    inner: S,
    _wrap: PhantomData<fn() -> W>,
}

impl<S, W> Pass<S, W> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            _wrap: PhantomData,
        }
    }
}

impl<S: Clone, W> Clone for Pass<S, W> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone())
    }
}

impl<S, W, B> Service<Request<B>> for Pass<S, W>
where
    W: Wrap,
    S: Service<Request<W::Body<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<B>) -> S::Future {
        self.inner.call(request.map(W::wrap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use tower::{ServiceExt, service_fn, util::MapRequestLayer};

    async fn echo(request: Request<GatewayBody<()>>) -> Result<Response<String>, Infallible> {
        let seen = request
            .headers()
            .get("x-on")
            .map(|v| v.to_str().unwrap().to_owned());
        Ok(Response::new(seen.unwrap_or_else(|| "off".into())))
    }

    #[tokio::test]
    async fn on_applies_the_layer_and_off_passes_through() {
        let mark = |mut request: Request<()>| {
            request
                .headers_mut()
                .insert("x-on", HeaderValue::from_static("on"));
            request
        };
        // Both arms hand the inner service the same request type.
        let inner = service_fn(echo);
        let on = plugin::<Same, _, _>(
            Some(MapRequestLayer::new(mark)),
            Pass::<_, Untransformed>::new(inner),
        );
        let off = plugin::<Untransformed, _, _>(None::<MapRequestLayer<fn(_) -> _>>, inner);
        let on = on.oneshot(Request::new(())).await.unwrap().into_body();
        assert!(matches!(on, Either::Left(ref b) if b == "on"), "{on:?}");
        let off = off.oneshot(Request::new(())).await.unwrap().into_body();
        assert!(matches!(off, Either::Right(ref b) if b == "off"), "{off:?}");
    }

    #[tokio::test]
    async fn heap_future_answers_as_its_inner_service() {
        let inner = service_fn(echo);
        let mut request = Request::new(GatewayBody::inner(()));
        request
            .headers_mut()
            .insert("x-on", HeaderValue::from_static("boxed"));
        let response = HeapFuture::new(inner).oneshot(request).await.unwrap();
        assert_eq!(response.into_body(), "boxed");
    }
}
