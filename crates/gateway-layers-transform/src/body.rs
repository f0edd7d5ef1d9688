//! [`TransformBody`]: the response body of the transform layer.

use std::{
    collections::VecDeque,
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use gateway_layers_core::GatewayBody;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The response body of [`Transform`](crate::Transform): the inner body untouched,
    /// a rejection, a transformed body, or the bytes read so far replayed ahead of the
    /// rest of the inner body (a response that could not be transformed loses nothing).
    pub struct TransformBody<B: Body> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B: Body> {
        Inner { #[pin] body: GatewayBody<B> },
        Replay { replay: Box<Replay<B>> },
    }
}

struct Replay<B: Body> {
    prefix: VecDeque<Bytes>,
    error: Option<B::Error>,
    rest: Option<Pin<Box<B>>>,
    trailers: Option<HeaderMap>,
}

impl<B: Body> fmt::Debug for TransformBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { body } => f
                .debug_struct("TransformBody")
                .field("rejection", &body.is_rejection())
                .finish_non_exhaustive(),
            Kind::Replay { replay } => f
                .debug_struct("TransformBody")
                .field("buffered_chunks", &replay.prefix.len())
                .field("streaming_rest", &replay.rest.is_some())
                .finish_non_exhaustive(),
        }
    }
}

impl<B: Body> TransformBody<B> {
    pub(crate) fn inner(body: GatewayBody<B>) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// Chunks already read, then (when set) the error met, then the rest of `rest`,
    /// then `trailers`.
    pub(crate) fn replay(
        prefix: impl Into<VecDeque<Bytes>>,
        error: Option<B::Error>,
        rest: Option<Pin<Box<B>>>,
        trailers: Option<HeaderMap>,
    ) -> Self {
        Self {
            kind: Kind::Replay {
                replay: Box::new(Replay {
                    prefix: prefix.into(),
                    error,
                    rest,
                    trailers,
                }),
            },
        }
    }

    /// Whether this is a rejection the layer answered with.
    pub fn is_rejection(&self) -> bool {
        matches!(&self.kind, Kind::Inner { body } if body.is_rejection())
    }
}

impl<B> Body for TransformBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Replay { replay } => {
                if let Some(chunk) = replay.prefix.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                if let Some(error) = replay.error.take() {
                    replay.rest = None;
                    replay.trailers = None;
                    return Poll::Ready(Some(Err(error)));
                }
                if let Some(rest) = replay.rest.as_mut() {
                    match rest.as_mut().poll_frame(cx) {
                        Poll::Ready(None) => replay.rest = None,
                        Poll::Ready(Some(Err(e))) => {
                            replay.rest = None;
                            return Poll::Ready(Some(Err(e)));
                        }
                        other => return other,
                    }
                }
                Poll::Ready(replay.trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Replay { replay } => {
                replay.prefix.is_empty()
                    && replay.error.is_none()
                    && replay.trailers.is_none()
                    && replay.rest.as_ref().is_none_or(|r| r.is_end_stream())
            }
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Replay { replay } => {
                let buffered: u64 = replay.prefix.iter().map(|c| c.len() as u64).sum();
                match &replay.rest {
                    None if replay.error.is_none() => SizeHint::with_exact(buffered),
                    None => SizeHint::default(),
                    Some(rest) => {
                        let rest = rest.size_hint();
                        let mut hint = SizeHint::new();
                        // Saturating: a wrapped upper bound below the lower one would
                        // make `set_upper` panic.
                        hint.set_lower(buffered.saturating_add(rest.lower()));
                        if let Some(upper) = rest.upper() {
                            hint.set_upper(buffered.saturating_add(upper));
                        }
                        hint
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn replay_prefix_then_rest_then_trailers() {
        let rest = Full::new(Bytes::from_static(b"rest"));
        let mut trailers = HeaderMap::new();
        trailers.insert("x-t", "1".parse().unwrap());
        let body: TransformBody<Full<Bytes>> = TransformBody::replay(
            vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")],
            None,
            Some(Box::pin(rest)),
            Some(trailers),
        );
        assert_eq!(body.size_hint().exact(), Some(8));
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-t"], "1");
        assert_eq!(collected.to_bytes(), "abcdrest");
    }

    /// A body with no frames and a `&str` error, to give the replay an error type.
    /// A body whose size hint has no useful upper bound.
    struct Huge;

    impl Body for Huge {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(None)
        }
        fn size_hint(&self) -> SizeHint {
            let mut hint = SizeHint::new();
            hint.set_lower(u64::MAX - 1);
            hint.set_upper(u64::MAX);
            hint
        }
    }

    #[test]
    fn replay_size_hint_saturates() {
        let body: TransformBody<Huge> = TransformBody::replay(
            vec![Bytes::from_static(b"ab")],
            None,
            Some(Box::pin(Huge)),
            None,
        );
        let hint = body.size_hint();
        assert_eq!(hint.lower(), u64::MAX);
        assert_eq!(hint.upper(), Some(u64::MAX));
    }

    #[derive(Debug)]
    struct Failing;

    impl Body for Failing {
        type Data = Bytes;
        type Error = &'static str;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            Poll::Ready(None)
        }
    }

    #[tokio::test]
    async fn replay_keeps_the_error() {
        let body: TransformBody<Failing> =
            TransformBody::replay(vec![Bytes::from_static(b"ab")], Some("boom"), None, None);
        let mut body = std::pin::pin!(body);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "ab");
        assert_eq!(body.frame().await.unwrap().unwrap_err(), "boom");
        assert!(body.frame().await.is_none());
    }
}
