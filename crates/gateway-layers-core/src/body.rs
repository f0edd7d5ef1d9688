//! [`GatewayBody`]: the response body of every layer.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

pin_project! {
    /// The inner service's body, or the body of a rejection the layer answered with.
    ///
    /// Layers return `Response<GatewayBody<B>>` for any inner body `B` with `Bytes`
    /// chunks, which keeps them generic over bodies while satisfying axum's
    /// `Router::layer` bounds (`GatewayBody<B>` is a `Body<Data = Bytes>` whose error is
    /// `B::Error`).
    #[derive(Debug)]
    pub struct GatewayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { body: Full<Bytes> },
    }
}

impl<B> GatewayBody<B> {
    /// Wraps the inner service's body.
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A complete body, e.g. a rendered rejection.
    pub fn rejection(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                body: Full::new(bytes),
            },
        }
    }

    /// A complete body produced by the layer (a transformed or replayed body); the same
    /// as [`rejection`](Self::rejection), named for what it holds.
    pub fn full(bytes: Bytes) -> Self {
        Self::rejection(bytes)
    }

    /// Whether this body is the layer's own rather than the inner service's.
    pub fn is_rejection(&self) -> bool {
        matches!(self.kind, Kind::Full { .. })
    }

    /// The inner service's body, if this is not the layer's own.
    pub fn into_inner(self) -> Option<B> {
        match self.kind {
            Kind::Inner { body } => Some(body),
            Kind::Full { .. } => None,
        }
    }
}

impl<B> Default for GatewayBody<B> {
    fn default() -> Self {
        Self::rejection(Bytes::new())
    }
}

impl<B> Body for GatewayBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { body } => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { body } => body.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { body } => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn both_variants_stream() {
        let inner: GatewayBody<Full<Bytes>> = GatewayBody::inner(Full::new(Bytes::from("abc")));
        assert!(!inner.is_rejection());
        assert_eq!(inner.size_hint().exact(), Some(3));
        assert_eq!(inner.collect().await.unwrap().to_bytes(), "abc");

        let own: GatewayBody<Full<Bytes>> = GatewayBody::rejection(Bytes::from("nope"));
        assert!(own.is_rejection());
        assert_eq!(own.size_hint().exact(), Some(4));
        assert_eq!(own.collect().await.unwrap().to_bytes(), "nope");
    }
}
