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
use tokio::time::Sleep;

use crate::{conn::H1Body, target::TargetState};

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

/// Where the response body comes from.
pub(crate) enum Inner {
    /// hyper-util's client (HTTP/2, TLS, upgrades).
    Hyper(Incoming),
    /// The in-place HTTP/1.1 client: read off the connection itself.
    Direct(H1Body),
}

/// The upstream response body, streamed frame by frame (never buffered). `Unpin`.
///
/// The request counts as in flight on its target (for least-request balancing)
/// until this body ends or is dropped. With a total timeout, a body still
/// streaming at the deadline ends with a
/// [`TimeoutError`](gateway_layers_core::classify::TimeoutError).
pub struct ProxyBody {
    inner: Inner,
    deadline: Option<Pin<Box<Sleep>>>,
    in_flight: Option<InFlight>,
}

impl ProxyBody {
    pub(crate) fn new(inner: Inner, deadline: Option<Sleep>, in_flight: InFlight) -> Self {
        Self {
            inner,
            deadline: deadline.map(Box::pin),
            in_flight: Some(in_flight),
        }
    }

    /// For a body that is already complete (no content): hands the connection back
    /// now, since the server may never poll an empty body.
    pub(crate) fn release_if_ended(&mut self) {
        if self.is_end_stream() {
            self.release();
        }
    }

    /// Ends the request's in-flight count and pools its connection if it can be
    /// used again.
    fn release(&mut self) {
        if let Some(in_flight) = self.in_flight.take()
            && let Inner::Direct(body) = &mut self.inner
            && let Some(conn) = body.take_reusable()
        {
            conn.release(&in_flight.0);
        }
    }

    /// Ends the in-flight count; the connection (if any) is closed with the body.
    fn abandon(&mut self) {
        self.in_flight.take();
        if let Inner::Direct(body) = &mut self.inner {
            // Taken out either way: dropping it closes the connection.
            drop(body.take_reusable());
        }
    }
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
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Inner::Direct(body) => Pin::new(body).poll_frame(cx),
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if this.is_end_stream() {
                    this.release();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.abandon();
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.release();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut()
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    this.abandon();
                    this.deadline = None;
                    tracing::debug!(name: "proxy.body.timeout", "total timeout while streaming the response body");
                    return Poll::Ready(Some(Err(Box::new(
                        gateway_layers_core::classify::TimeoutError,
                    ))));
                }
                Poll::Pending
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Hyper(body) => body.is_end_stream(),
            Inner::Direct(body) => body.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Hyper(body) => body.size_hint(),
            Inner::Direct(body) => body.size_hint(),
        }
    }
}
