//! [`ReplayBody`]: a request body that can be sent again, up to a byte cap.
//!
//! The idea is linkerd2-proxy's `ReplayBody`: the first attempt streams the client's
//! body to the upstream as it arrives and keeps each chunk (a reference-counted
//! [`Bytes`] handle, not a copy of the bytes) and the trailers. A retry replays the
//! kept chunks as they came (never joined), then continues reading the client's body if
//! the first attempt did not read it to the end. Once more than the cap has been read,
//! the kept chunks are dropped, the rest streams through without buffering, and the
//! request can no longer be retried.
//!
//! Most request bodies that can be retried are small and arrive with their headers:
//! [`ReplayBody::new`] reads the first frame if it is ready at once, and a body that
//! has then ended (`Full`, or hyper's body with a `Content-Length` that has all
//! arrived) is kept as that one [`Bytes`] handle: each attempt gets a clone of it, with
//! no shared state, lock or allocation.
//!
//! Each replay reports the original body's size hint, so an exact length stays an
//! exact length (`Content-Length`) and an unknown length stays unknown (chunked
//! framing). A superseded attempt's body (one a retry replaced) fails if polled again,
//! so two attempts never race for the client's body; one that had already yielded the
//! whole body just ends.

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

use crate::policy::Stop;

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
        // The whole body, read at once in one data frame: yielded as is, then the end.
        // `hint` is the client body's size hint, reported until the chunk is yielded.
        Whole { chunk: Option<Bytes>, hint: SizeHint },
        // Not replayable: a first chunk already over the cap, then the rest streamed.
        Prefixed { first: Option<Bytes>, #[pin] body: B },
        // The client's body failed on its first read: that error, then the end.
        Failed { error: Option<BoxError> },
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
    /// This reader has yielded the whole body (every chunk, the trailers, the end):
    /// its last poll and `is_end_stream` answer without the lock.
    done: bool,
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
    source: Option<B>,
    chunks: Chunks,
    buffered: usize,
    cap: usize,
    /// More than `cap` bytes were read, or the client's body failed: the copy was
    /// dropped.
    overflowed: bool,
    /// The client's body failed (the reason `overflowed` is set).
    failed: bool,
    /// Boxed: rare, and a `HeaderMap` inline would make every request's state larger.
    trailers: Option<Box<HeaderMap>>,
    /// The newest reader's generation.
    generation: u64,
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Empty => "empty",
            Kind::Passthrough { .. } | Kind::Prefixed { .. } => "passthrough",
            Kind::Whole { .. } => "whole",
            Kind::Replay { .. } => "replay",
            Kind::Failed { .. } => "failed",
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
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// Wraps the client's body, keeping up to `cap` bytes for replay.
    ///
    /// An empty body needs no copy; a body whose size hint already exceeds `cap` is
    /// streamed through and cannot be replayed. Otherwise the body's first frame is
    /// read now if it is ready (polled once with a no-op waker: a body that is not
    /// ready is polled again by the attempt, with its task's waker). A body that has
    /// then ended is kept as that one chunk; any other is streamed and kept as it
    /// goes.
    ///
    /// Reading the first frame early means that a client that sent
    /// `Expect: 100-continue` is told to go on when this layer wraps its body, before
    /// the upstream has answered; Envoy and nginx, by default, answer
    /// `100 Continue` themselves too.
    #[inline]
    pub fn new(mut body: B, cap: usize) -> Self {
        if body.is_end_stream() {
            return Self { kind: Kind::Empty };
        }
        let hint = body.size_hint();
        if hint.lower() > cap as u64 {
            return Self::passthrough(body);
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let first = match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Pending => None,
            Poll::Ready(None) => return Self { kind: Kind::Empty },
            Poll::Ready(Some(Err(error))) => {
                return Self {
                    kind: Kind::Failed {
                        error: Some(error.into()),
                    },
                };
            }
            Poll::Ready(Some(Ok(frame))) => Some(frame),
        };
        let (mut chunks, mut trailers) = (Chunks::default(), None);
        match first.map(Frame::into_data) {
            None => {}
            Some(Ok(data)) if data.len() > cap => {
                return Self {
                    kind: Kind::Prefixed {
                        first: Some(data),
                        body,
                    },
                };
            }
            Some(Ok(data)) => {
                if body.is_end_stream() {
                    return Self {
                        kind: Kind::Whole {
                            chunk: Some(data),
                            hint,
                        },
                    };
                }
                chunks.push(data);
            }
            // Trailers first (no data): kept, then the rest as usual.
            Some(Err(frame)) => trailers = frame.into_trailers().ok().map(Box::new),
        }
        let shared = Shared {
            source: Some(body),
            buffered: chunks.first.as_ref().map_or(0, Bytes::len),
            chunks,
            cap,
            overflowed: false,
            failed: false,
            trailers,
            generation: 0,
        };
        Self {
            kind: Kind::Replay {
                reader: Reader {
                    shared: Arc::new(Mutex::new(shared)),
                    generation: 0,
                    next: 0,
                    yielded: 0,
                    trailers_sent: false,
                    done: false,
                    hint,
                },
            },
        }
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
            Kind::Empty | Kind::Whole { .. } => true,
            Kind::Passthrough { .. } | Kind::Prefixed { .. } | Kind::Failed { .. } => false,
            Kind::Replay { reader } => !lock(&reader.shared).overflowed,
        }
    }

    /// A new body with the same content for the next attempt, or `None` when the body
    /// is not replayable. Readers of earlier attempts are superseded.
    pub fn replay(&self) -> Option<Self> {
        match &self.kind {
            Kind::Empty => Some(Self { kind: Kind::Empty }),
            Kind::Whole { chunk, hint } => Some(Self::whole(chunk, *hint)),
            Kind::Passthrough { .. } | Kind::Prefixed { .. } | Kind::Failed { .. } => None,
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
                            done: false,
                            hint: reader.hint,
                        },
                    },
                })
            }
        }
    }

    /// A handle that keeps the buffered copy alive without being an attempt's body.
    #[inline]
    pub(crate) fn handle(&self) -> Option<Self> {
        match &self.kind {
            Kind::Empty => Some(Self { kind: Kind::Empty }),
            Kind::Whole { chunk, hint } => Some(Self::whole(chunk, *hint)),
            Kind::Passthrough { .. } | Kind::Prefixed { .. } | Kind::Failed { .. } => None,
            Kind::Replay { reader } => Some(Self {
                kind: Kind::Replay {
                    reader: Reader {
                        shared: reader.shared.clone(),
                        // Never the newest: this handle is not meant to be polled.
                        generation: u64::MAX,
                        next: 0,
                        yielded: 0,
                        trailers_sent: false,
                        done: false,
                        hint: reader.hint,
                    },
                },
            }),
        }
    }
}

impl<B> ReplayBody<B> {
    /// Why this body cannot be replayed (when [`is_replayable`](Self::is_replayable)
    /// says so): a failed client body, or one over the cap.
    pub(crate) fn not_replayable(&self) -> Stop {
        match &self.kind {
            Kind::Failed { .. } => Stop::BodyFailed,
            Kind::Replay { reader } if lock(&reader.shared).failed => Stop::BodyFailed,
            _ => Stop::BodyTooLarge,
        }
    }

    /// Another body of the whole chunk a [`Kind::Whole`] body holds (even once that
    /// one has yielded it: a handle's chunk is never taken).
    #[inline]
    fn whole(chunk: &Option<Bytes>, hint: SizeHint) -> Self {
        Self {
            kind: Kind::Whole {
                chunk: chunk.clone(),
                hint,
            },
        }
    }
}

/// After the client's body ended: a reader's trailers (once), then the end.
fn finish<B>(
    trailers_sent: &mut bool,
    done: &mut bool,
    shared: &Shared<B>,
) -> Option<Result<Frame<Bytes>, BoxError>> {
    if !*trailers_sent {
        *trailers_sent = true;
        if let Some(trailers) = &shared.trailers {
            return Some(Ok(Frame::trailers(HeaderMap::clone(trailers))));
        }
    }
    *done = true;
    None
}

impl<B> Reader<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            // Everything was yielded; a superseded reader that already has the whole
            // body races nobody.
            return Poll::Ready(None);
        }
        let mut shared = lock(&self.shared);
        if shared.generation != self.generation {
            return Poll::Ready(Some(Err(Superseded.into())));
        }
        if !shared.overflowed && self.next < shared.chunks.len() {
            let chunk = shared.chunks.get(self.next);
            self.next += 1;
            self.yielded += chunk.len() as u64;
            // The last copied chunk of a body that ended without trailers: done.
            self.done = self.next == shared.chunks.len()
                && shared.source.is_none()
                && shared.trailers.is_none();
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        let Some(source) = shared.source.as_mut().filter(|s| !s.is_end_stream()) else {
            // The client's body ended: trailers, then the end.
            shared.source = None;
            return Poll::Ready(finish(&mut self.trailers_sent, &mut self.done, &shared));
        };
        match Pin::new(source).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                shared.source = None;
                Poll::Ready(finish(&mut self.trailers_sent, &mut self.done, &shared))
            }
            Poll::Ready(Some(Err(error))) => {
                // A broken client body cannot be replayed either.
                shared.source = None;
                shared.overflowed = true;
                shared.failed = true;
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
                        // Most bodies say they ended with their last chunk (`Full`, a
                        // `Content-Length` body read to the end): release the source
                        // now, so neither this reader nor the upstream polls it again.
                        if shared.source.as_ref().is_some_and(|s| s.is_end_stream()) {
                            shared.source = None;
                            self.trailers_sent = true;
                            self.done = true;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Err(frame) => frame,
                };
                if let Some(trailers) = frame.trailers_ref() {
                    if !shared.overflowed {
                        shared.trailers = Some(Box::new(trailers.clone()));
                    }
                    self.trailers_sent = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.done {
            return true;
        }
        let shared = lock(&self.shared);
        if shared.generation != self.generation {
            return false;
        }
        if !shared.overflowed && self.next < shared.chunks.len() {
            return false;
        }
        // Kept trailers not yet sent by this reader come before the end, even when
        // the client's body already says it ended (an earlier attempt read them).
        let trailers_done = self.trailers_sent || shared.trailers.is_none();
        match &shared.source {
            Some(source) => source.is_end_stream() && trailers_done,
            None => trailers_done,
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
    B: Body<Data = Bytes> + Unpin,
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
            KindProj::Whole { chunk, .. } => Poll::Ready(chunk.take().map(|c| Ok(Frame::data(c)))),
            KindProj::Prefixed { first, body } => match first.take() {
                Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                None => body.poll_frame(cx).map_err(Into::into),
            },
            KindProj::Failed { error } => Poll::Ready(error.take().map(Err)),
            KindProj::Replay { reader } => reader.poll_frame(cx),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Passthrough { body } => body.is_end_stream(),
            Kind::Whole { chunk, .. } => chunk.is_none(),
            Kind::Prefixed { first, body } => first.is_none() && body.is_end_stream(),
            Kind::Failed { error } => error.is_none(),
            Kind::Replay { reader } => reader.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Passthrough { body } => body.size_hint(),
            Kind::Whole { chunk, hint } => match chunk {
                Some(_) => *hint,
                None => SizeHint::with_exact(0),
            },
            Kind::Prefixed { first, body } => {
                let len = first.as_ref().map_or(0, |f| f.len() as u64);
                let inner = body.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(len));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(len));
                }
                hint
            }
            Kind::Failed { .. } => SizeHint::default(),
            Kind::Replay { reader } => reader.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use std::{collections::VecDeque, convert::Infallible};

    /// A body yielding scripted frames, with an optional unknown length; `says_end`:
    /// `is_end_stream` once they are all yielded (else never, like a plain stream);
    /// `late`: not ready at the first poll (the client has not sent it yet).
    #[derive(Default)]
    struct Frames {
        frames: VecDeque<Frame<Bytes>>,
        exact: Option<u64>,
        says_end: bool,
        late: bool,
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if std::mem::take(&mut self.late) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(self.frames.pop_front().map(Ok))
        }
        fn is_end_stream(&self) -> bool {
            self.says_end && self.frames.is_empty()
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
            ..Frames::default()
        }
    }

    #[tokio::test]
    async fn full_body_replays_identically() {
        let body = ReplayBody::new(Full::new(Bytes::from_static(b"hello world")), 64);
        // Whole in memory: kept as its one chunk, no shared state.
        assert!(format!("{body:?}").contains("whole"));
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

    /// Every data chunk of a body, in order, and its trailers.
    async fn frames<B>(mut body: B) -> (Vec<Bytes>, Option<HeaderMap>)
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: fmt::Debug,
    {
        let (mut chunks, mut trailers) = (Vec::new(), None);
        while let Some(frame) = body.frame().await {
            match frame.unwrap().into_data() {
                Ok(data) => chunks.push(data),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        assert!(body.is_end_stream());
        (chunks, trailers)
    }

    fn with_length(parts: &[&'static str]) -> Frames {
        let mut body = chunked(parts, false);
        body.exact = Some(parts.iter().map(|p| p.len() as u64).sum());
        body
    }

    #[tokio::test]
    async fn multi_chunk_body_replays_the_same_chunks_twice() {
        let body = ReplayBody::new(chunked(&["one ", "two ", "three"], true), 64);
        let template = body.handle().unwrap();
        let first = frames(body).await;
        assert_eq!(first.0, ["one ", "two ", "three"]);
        for _ in 0..2 {
            let replay = frames(template.replay().unwrap()).await;
            assert_eq!(replay.0, first.0);
            assert_eq!(replay.1.unwrap()["x-checksum"], "abc");
        }
    }

    #[tokio::test]
    async fn content_length_stays_exact_and_chunked_stays_unknown() {
        let sized = ReplayBody::new(with_length(&["abc", "defg"]), 64);
        let template = sized.handle().unwrap();
        assert_eq!(sized.size_hint().exact(), Some(7));
        assert_eq!(frames(sized).await.0, ["abc", "defg"]);
        let replay = template.replay().unwrap();
        assert_eq!(replay.size_hint().exact(), Some(7));
        assert_eq!(frames(replay).await.0, ["abc", "defg"]);

        let unsized_body = ReplayBody::new(chunked(&["abc", "defg"], false), 64);
        let template = unsized_body.handle().unwrap();
        assert_eq!(unsized_body.size_hint().exact(), None);
        assert_eq!(frames(unsized_body).await.0, ["abc", "defg"]);
        let replay = template.replay().unwrap();
        assert_eq!(replay.size_hint().exact(), None);
        assert_eq!(frames(replay).await.0, ["abc", "defg"]);
    }

    #[tokio::test]
    async fn body_exactly_at_the_cap_is_replayable_one_byte_more_is_not() {
        // Streamed with an unknown length: the cap is checked as chunks arrive.
        let at_cap = ReplayBody::new(chunked(&["1234", "5678"], true), 8);
        let template = at_cap.handle().unwrap();
        frames(at_cap).await;
        assert!(template.is_replayable());
        let replay = frames(template.replay().unwrap()).await;
        assert_eq!(replay.0, ["1234", "5678"]);
        assert_eq!(replay.1.unwrap()["x-checksum"], "abc");

        let over = ReplayBody::new(chunked(&["1234", "56789"], true), 8);
        let template = over.handle().unwrap();
        let streamed = frames(over).await;
        assert_eq!(streamed.0, ["1234", "56789"]);
        assert_eq!(streamed.1.unwrap()["x-checksum"], "abc");
        assert!(!template.is_replayable());
        assert!(template.replay().is_none());

        // With `Content-Length`: exactly the cap is kept, one byte over is never copied.
        let at_cap = ReplayBody::new(with_length(&["1234", "5678"]), 8);
        let template = at_cap.handle().unwrap();
        frames(at_cap).await;
        assert_eq!(frames(template.replay().unwrap()).await.0, ["1234", "5678"]);
        let over = ReplayBody::new(with_length(&["1234", "56789"]), 8);
        assert!(format!("{over:?}").contains("passthrough"));
        assert!(over.handle().is_none());
        assert_eq!(over.collect().await.unwrap().to_bytes(), "123456789");
    }

    #[tokio::test]
    async fn a_body_that_says_it_ended_is_released_with_its_last_chunk() {
        let mut body = ReplayBody::new(Full::new(Bytes::from_static(b"whole")), 64);
        let template = body.handle().unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "whole");
        // `Full` said it ended: no second poll of the client's body is needed.
        assert!(body.is_end_stream());
        let replay = template.replay().unwrap();
        // A superseded body that already yielded everything just ends.
        assert!(body.frame().await.is_none());
        assert_eq!(frames(replay).await.0, ["whole"]);
    }

    #[tokio::test]
    async fn trailers_are_replayed_after_a_partial_first_attempt() {
        let mut body = ReplayBody::new(chunked(&["ab", "cd"], true), 64);
        let template = body.handle().unwrap();
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ab"
        );
        assert!(!body.is_end_stream());
        // The retry reads the kept chunk, then the rest of the client's body.
        let second = frames(template.replay().unwrap()).await;
        assert_eq!(second.0, ["ab", "cd"]);
        assert_eq!(second.1.unwrap()["x-checksum"], "abc");
        let third = frames(template.replay().unwrap()).await;
        assert_eq!(third.0, ["ab", "cd"]);
        assert_eq!(third.1.unwrap()["x-checksum"], "abc");
    }

    #[tokio::test]
    async fn a_whole_body_of_unknown_length_stays_unknown() {
        let body = ReplayBody::new(
            Frames {
                says_end: true,
                ..chunked(&["chunked"], false)
            },
            64,
        );
        assert!(format!("{body:?}").contains("whole"));
        let template = body.handle().unwrap();
        assert_eq!(body.size_hint().exact(), None);
        assert_eq!(frames(body).await.0, ["chunked"]);
        for _ in 0..2 {
            let replay = template.replay().unwrap();
            assert_eq!(replay.size_hint().exact(), None);
            assert!(!replay.is_end_stream());
            assert_eq!(frames(replay).await.0, ["chunked"]);
        }
    }

    #[tokio::test]
    async fn a_first_chunk_over_the_cap_streams_intact_and_is_not_replayable() {
        // Unknown length, so the cap can only be checked on the chunk itself.
        let body = ReplayBody::new(chunked(&["0123456789", "ab"], true), 8);
        assert!(format!("{body:?}").contains("passthrough"));
        assert!(body.handle().is_none());
        assert!(!body.is_replayable());
        assert_eq!(body.size_hint().lower(), 10);
        // (`frames` would check `is_end_stream`, which this test body never says.)
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc");
        assert_eq!(collected.to_bytes(), "0123456789ab");
    }

    /// A client body that fails, after one good chunk if it has one.
    struct Broken {
        good: Option<Bytes>,
    }

    impl Body for Broken {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(Some(match self.good.take() {
                Some(chunk) => Ok(Frame::data(chunk)),
                None => Err(std::io::Error::other("client went away")),
            }))
        }
    }

    #[tokio::test]
    async fn a_body_failing_on_its_first_read_passes_the_error_on() {
        let mut body = ReplayBody::new(Broken { good: None }, 64);
        assert!(body.handle().is_none());
        assert_eq!(body.not_replayable(), Stop::BodyFailed);
        assert!(!body.is_end_stream());
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "client went away");
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());

        // Failing after a good chunk: streamed, then not replayable for that reason.
        let mut body = ReplayBody::new(
            Broken {
                good: Some(Bytes::from_static(b"ab")),
            },
            64,
        );
        let template = body.handle().unwrap();
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ab"
        );
        assert!(body.frame().await.unwrap().is_err());
        assert!(!template.is_replayable());
        assert_eq!(template.not_replayable(), Stop::BodyFailed);
        // A body over the cap says so instead.
        let over = ReplayBody::new(chunked(&["0123456789"], false), 4);
        assert_eq!(over.not_replayable(), Stop::BodyTooLarge);
    }

    #[tokio::test]
    async fn a_body_not_ready_at_once_is_streamed_and_kept() {
        let body = ReplayBody::new(
            Frames {
                late: true,
                says_end: true,
                ..with_length(&["late"])
            },
            64,
        );
        assert!(format!("{body:?}").contains("replay"));
        let template = body.handle().unwrap();
        assert_eq!(frames(body).await.0, ["late"]);
        let replay = template.replay().unwrap();
        assert_eq!(replay.size_hint().exact(), Some(4));
        assert_eq!(frames(replay).await.0, ["late"]);
    }

    #[tokio::test]
    async fn trailers_only_are_kept_and_replayed() {
        let body = ReplayBody::new(chunked(&[], true), 64);
        let template = body.handle().unwrap();
        let (chunks, trailers) = frames(body).await;
        assert!(chunks.is_empty());
        assert_eq!(trailers.unwrap()["x-checksum"], "abc");
        let (chunks, trailers) = frames(template.replay().unwrap()).await;
        assert!(chunks.is_empty());
        assert_eq!(trailers.unwrap()["x-checksum"], "abc");
    }

    /// A first attempt that stops reading once the client's body says it ended (as
    /// hyper does) leaves the trailers with the copy: a replay must still send them
    /// before it says it ended.
    #[tokio::test]
    async fn a_replay_sends_the_trailers_before_it_says_it_ended() {
        let mut body = ReplayBody::new(
            Frames {
                says_end: true,
                ..chunked(&["ab", "cd"], true)
            },
            64,
        );
        let template = body.handle().unwrap();
        for _ in 0..3 {
            body.frame().await.unwrap().unwrap();
        }
        assert!(body.is_end_stream());
        let mut replay = template.replay().unwrap();
        for expected in ["ab", "cd"] {
            let frame = replay.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), expected);
        }
        assert!(!replay.is_end_stream(), "the trailers are still to come");
        let trailers = replay
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_trailers()
            .unwrap();
        assert_eq!(trailers["x-checksum"], "abc");
        assert!(replay.is_end_stream());
        assert!(replay.frame().await.is_none());
    }
}
