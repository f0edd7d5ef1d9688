//! [`ProxyBody`]: the upstream's response body, streamed through.

use std::{
    fmt,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
};

use bytes::Bytes;
use gateway_layers_core::BoxError;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::{conn::H1Conn, target::TargetState};

/// Counts a request as in flight on its target until dropped.
pub(crate) struct InFlight(pub(crate) Arc<TargetState>);

impl InFlight {
    pub(crate) fn new(target: Arc<TargetState>) -> Self {
        target.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(target)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InFlight({})", self.0.label())
    }
}

pin_project! {
    /// The upstream response body, streamed frame by frame (never buffered). `Unpin`.
    ///
    /// The request counts as in flight on its target (for least-request balancing)
    /// until this body ends or is dropped. With a total timeout, a body still
    /// streaming at the deadline ends with a
    /// [`TimeoutError`](gateway_layers_core::classify::TimeoutError).
    pub struct ProxyBody {
        #[pin]
        inner: Incoming,
        deadline: Option<Pin<Box<Sleep>>>,
        in_flight: Option<InFlight>,
        // The upstream connection this body is read from (HTTP/1.1 `http://`
        // targets): driven here, pooled again when the body has been read whole.
        conn: Option<Box<H1Conn>>,
    }
}

impl ProxyBody {
    pub(crate) fn new(
        inner: Incoming,
        deadline: Option<Sleep>,
        in_flight: InFlight,
        conn: Option<Box<H1Conn>>,
    ) -> Self {
        Self {
            inner,
            deadline: deadline.map(Box::pin),
            in_flight: Some(in_flight),
            conn,
        }
    }

    /// For a body that is already complete (no content): hands the connection back
    /// now, since the server may never poll an empty body.
    pub(crate) fn release_if_ended(&mut self, cx: &mut Context<'_>) {
        if self.inner.is_end_stream() {
            release(&mut self.conn, self.in_flight.take(), cx);
        }
    }
}

/// Ends the request's in-flight count and pools its connection.
fn release(conn: &mut Option<Box<H1Conn>>, in_flight: Option<InFlight>, cx: &mut Context<'_>) {
    if let (Some(conn), Some(in_flight)) = (conn.take(), in_flight.as_ref()) {
        conn.release(&in_flight.0, cx);
    }
    drop(in_flight);
}

impl fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyBody")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(conn) = this.conn.as_mut()
            && conn.drive(cx)
        {
            // Ended: whatever it read is in the body channel already.
            *this.conn = None;
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    release(this.conn, this.in_flight.take(), cx);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.conn.take();
                this.in_flight.take();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                release(this.conn, this.in_flight.take(), cx);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut() {
                    let deadline = deadline.as_mut();
                    if deadline.poll(cx).is_ready() {
                        this.conn.take();
                        this.in_flight.take();
                        tracing::debug!(name: "proxy.body.timeout", "total timeout while streaming the response body");
                        return Poll::Ready(Some(Err(Box::new(
                            gateway_layers_core::classify::TimeoutError,
                        ))));
                    }
                }
                Poll::Pending
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
