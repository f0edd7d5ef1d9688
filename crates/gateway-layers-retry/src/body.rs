//! [`ReplayBody`]: a request body that can be sent again, up to a byte cap.
//!
//! The idea is linkerd2-proxy's `ReplayBody`: the first attempt streams the client's
//! body to the upstream as it arrives and keeps a copy of each chunk (and the
//! trailers). A retry replays the copy, then continues reading the client's body if the
//! first attempt did not read it to the end. Once more than the cap has been read, the
//! copy is dropped, the rest streams through without buffering, and the request can no
//! longer be retried.
//!
//! Each replay reports the original body's size hint, so an exact length stays an
//! exact length (`Content-Length`) and an unknown length stays unknown (chunked
//! framing). A superseded attempt's body (one a retry replaced) fails if polled again,
//! so two attempts never race for the client's body.

use std::{
    fmt,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
};

use bytes::Bytes;
use gateway_layers_core::BoxError;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// The error an attempt's body returns if polled after a retry replaced it.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body superseded by a retry")]
pub struct Superseded;

pin_project! {
    /// The request body the retry layer hands to the inner service.
    ///
    /// See the [module docs](self) for how replay works.
    pub struct ReplayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        // The client sent no body (`is_end_stream` at the start): nothing to keep.
        Empty,
        // Not replayable (larger than the cap by its size hint): streamed as is.
        Passthrough { #[pin] body: B },
        // Streamed and copied, replayable while under the cap.
        Replay { reader: Reader<B> },
    }
}

struct Reader<B> {
    shared: Arc<Mutex<Shared<B>>>,
    /// Which attempt this reader belongs to; only the newest may read the source.
    generation: u64,
    /// The next buffered chunk to yield.
    next: usize,
    /// Bytes this reader has yielded.
    yielded: u64,
    trailers_sent: bool,
    /// The size hint of the client's body when the request arrived.
    hint: SizeHint,
}

/// The copied chunks; the first inline, as most small bodies arrive in one chunk.
#[derive(Default)]
struct Chunks {
    first: Option<Bytes>,
    rest: Vec<Bytes>,
}

impl Chunks {
    #[inline]
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// The chunk at `index` (`index < len()`).
    #[inline]
    fn get(&self, index: usize) -> Bytes {
        match (index, &self.first) {
            (0, Some(first)) => first.clone(),
            _ => self.rest[index - 1].clone(),
        }
    }

    #[inline]
    fn push(&mut self, chunk: Bytes) {
        if self.first.is_none() {
            self.first = Some(chunk);
        } else {
            self.rest.push(chunk);
        }
    }
}

struct Shared<B> {
    /// The client's body, until it ends.
    source: Option<Pin<Box<B>>>,
    chunks: Chunks,
    buffered: usize,
    cap: usize,
    /// More than `cap` bytes were read: the copy was dropped.
    overflowed: bool,
    trailers: Option<HeaderMap>,
    /// The newest reader's generation.
    generation: u64,
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Empty => "empty",
            Kind::Passthrough { .. } => "passthrough",
            Kind::Replay { .. } => "replay",
        };
        f.debug_struct("ReplayBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

fn lock<B>(shared: &Mutex<Shared<B>>) -> MutexGuard<'_, Shared<B>> {
    // Counters and byte chunks stay consistent even if a poll panicked.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<B> ReplayBody<B>
where
    B: Body<Data = Bytes>,
{
    /// Wraps the client's body, keeping up to `cap` bytes for replay.
    ///
    /// An empty body needs no copy; a body whose size hint already exceeds `cap` is
    /// streamed through and cannot be replayed.
    pub fn new(body: B, cap: usize) -> Self {
        let kind = if body.is_end_stream() {
            Kind::Empty
        } else if body.size_hint().lower() > cap as u64 {
            Kind::Passthrough { body }
        } else {
            let hint = body.size_hint();
            Kind::Replay {
                reader: Reader {
                    shared: Arc::new(Mutex::new(Shared {
                        source: Some(Box::pin(body)),
                        chunks: Chunks::default(),
                        buffered: 0,
                        cap,
                        overflowed: false,
                        trailers: None,
                        generation: 0,
                    })),
                    generation: 0,
                    next: 0,
                    yielded: 0,
                    trailers_sent: false,
                    hint,
                },
            }
        };
        Self { kind }
    }
}

impl<B> ReplayBody<B> {
    /// Streams `body` through without keeping a copy (never replayable).
    pub fn passthrough(body: B) -> Self {
        Self {
            kind: Kind::Passthrough { body },
        }
    }

    /// Whether [`replay`](Self::replay) can produce an identical body now.
    pub fn is_replayable(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Passthrough { .. } => false,
            Kind::Replay { reader } => !lock(&reader.shared).overflowed,
        }
    }

    /// A new body with the same content for the next attempt, or `None` when the body
    /// is not replayable. Readers of earlier attempts are superseded.
    pub fn replay(&self) -> Option<Self> {
        match &self.kind {
            Kind::Empty => Some(Self { kind: Kind::Empty }),
            Kind::Passthrough { .. } => None,
            Kind::Replay { reader } => {
                let mut shared = lock(&reader.shared);
                if shared.overflowed {
                    return None;
                }
                shared.generation += 1;
                let generation = shared.generation;
                drop(shared);
                Some(Self {
                    kind: Kind::Replay {
                        reader: Reader {
                            shared: reader.shared.clone(),
                            generation,
                            next: 0,
                            yielded: 0,
                            trailers_sent: false,
                            hint: reader.hint,
                        },
                    },
                })
            }
        }
    }

    /// A handle that keeps the buffered copy alive without being an attempt's body.
    pub(crate) fn handle(&self) -> Option<Self> {
        match &self.kind {
            Kind::Empty => Some(Self { kind: Kind::Empty }),
            Kind::Passthrough { .. } => None,
            Kind::Replay { reader } => Some(Self {
                kind: Kind::Replay {
                    reader: Reader {
                        shared: reader.shared.clone(),
                        // Never the newest: this handle is not meant to be polled.
                        generation: u64::MAX,
                        next: 0,
                        yielded: 0,
                        trailers_sent: false,
                        hint: reader.hint,
                    },
                },
            }),
        }
    }
}

impl<B> Reader<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut shared = lock(&self.shared);
        if shared.generation != self.generation {
            return Poll::Ready(Some(Err(Superseded.into())));
        }
        if !shared.overflowed && self.next < shared.chunks.len() {
            let chunk = shared.chunks.get(self.next);
            self.next += 1;
            self.yielded += chunk.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        let Some(source) = shared.source.as_mut() else {
            // The client's body ended: trailers, then the end.
            if !self.trailers_sent {
                self.trailers_sent = true;
                if let Some(trailers) = shared.trailers.clone() {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
            }
            return Poll::Ready(None);
        };
        match source.as_mut().poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                shared.source = None;
                if !self.trailers_sent {
                    self.trailers_sent = true;
                    if let Some(trailers) = shared.trailers.clone() {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                // A broken client body cannot be replayed either.
                shared.source = None;
                shared.overflowed = true;
                shared.chunks = Chunks::default();
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(data) => {
                        self.yielded += data.len() as u64;
                        if !shared.overflowed {
                            if shared.buffered + data.len() <= shared.cap {
                                shared.buffered += data.len();
                                shared.chunks.push(data.clone());
                                self.next += 1;
                            } else {
                                shared.overflowed = true;
                                shared.chunks = Chunks::default();
                                shared.buffered = 0;
                            }
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Err(frame) => frame,
                };
                if let Some(trailers) = frame.trailers_ref() {
                    if !shared.overflowed {
                        shared.trailers = Some(trailers.clone());
                    }
                    self.trailers_sent = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let shared = lock(&self.shared);
        if shared.generation != self.generation {
            return false;
        }
        if !shared.overflowed && self.next < shared.chunks.len() {
            return false;
        }
        match &shared.source {
            Some(source) => source.is_end_stream(),
            None => self.trailers_sent || shared.trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = SizeHint::new();
        hint.set_lower(self.hint.lower().saturating_sub(self.yielded));
        if let Some(upper) = self.hint.upper() {
            hint.set_upper(upper.saturating_sub(self.yielded));
        }
        hint
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Empty => Poll::Ready(None),
            KindProj::Passthrough { body } => match body.poll_frame(cx) {
                Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            KindProj::Replay { reader } => reader.poll_frame(cx),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Passthrough { body } => body.is_end_stream(),
            Kind::Replay { reader } => reader.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Passthrough { body } => body.size_hint(),
            Kind::Replay { reader } => reader.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use std::{collections::VecDeque, convert::Infallible};

    /// A body yielding scripted frames, with an optional unknown length.
    struct Frames {
        frames: VecDeque<Frame<Bytes>>,
        exact: Option<u64>,
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.frames.pop_front().map(Ok))
        }
        fn size_hint(&self) -> SizeHint {
            self.exact.map_or_else(SizeHint::new, SizeHint::with_exact)
        }
    }

    fn chunked(parts: &[&'static str], trailer: bool) -> Frames {
        let mut frames: VecDeque<_> = parts
            .iter()
            .map(|p| Frame::data(Bytes::from_static(p.as_bytes())))
            .collect();
        if trailer {
            let mut t = HeaderMap::new();
            t.insert("x-checksum", "abc".parse().unwrap());
            frames.push_back(Frame::trailers(t));
        }
        Frames {
            frames,
            exact: None,
        }
    }

    #[tokio::test]
    async fn full_body_replays_identically() {
        let body = ReplayBody::new(Full::new(Bytes::from_static(b"hello world")), 64);
        assert_eq!(body.size_hint().exact(), Some(11));
        let template = body.handle().unwrap();
        let first = body.collect().await.unwrap().to_bytes();
        assert_eq!(first, "hello world");
        assert!(template.is_replayable());
        let second = template.replay().unwrap();
        assert_eq!(second.size_hint().exact(), Some(11));
        assert_eq!(second.collect().await.unwrap().to_bytes(), "hello world");
    }

    #[tokio::test]
    async fn chunked_with_trailers_replays_after_partial_read() {
        let mut body = ReplayBody::new(chunked(&["ab", "cd", "ef"], true), 64);
        assert_eq!(body.size_hint().exact(), None);
        let template = body.handle().unwrap();
        // The first attempt reads one chunk and is abandoned.
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "ab");
        let second = template.replay().unwrap();
        // The superseded body fails rather than racing the new one.
        assert!(body.frame().await.unwrap().is_err());
        let collected = second.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc");
        assert_eq!(collected.to_bytes(), "abcdef");
        // And once more, entirely from the copy.
        let third = template.replay().unwrap().collect().await.unwrap();
        assert_eq!(third.trailers().unwrap()["x-checksum"], "abc");
        assert_eq!(third.to_bytes(), "abcdef");
    }

    #[tokio::test]
    async fn over_cap_streams_intact_and_is_not_replayable() {
        let body = ReplayBody::new(chunked(&["aaaa", "bbbb", "cccc"], true), 6);
        let template = body.handle().unwrap();
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc");
        assert_eq!(collected.to_bytes(), "aaaabbbbcccc");
        assert!(!template.is_replayable());
        assert!(template.replay().is_none());
    }

    #[test]
    fn known_large_body_is_passthrough_and_empty_is_free() {
        let big = ReplayBody::new(Full::new(Bytes::from(vec![0u8; 100])), 10);
        assert!(!big.is_replayable());
        assert_eq!(big.size_hint().exact(), Some(100));
        let empty = ReplayBody::new(Full::new(Bytes::new()), 10);
        assert!(empty.is_replayable());
        assert!(empty.is_end_stream());
        assert!(format!("{empty:?}").contains("empty"));
    }
}
