//! The HTTP/1.1 client of plain `http://` targets: hyper's connection API with a
//! small per-target pool, where each connection is driven by the request that holds
//! it (its response future, then its response body) instead of a spawned task.
//!
//! hyper-util's pooled client runs every connection in a task of its own, so each
//! exchange hops between the server task and the connection task through channels
//! (request in, response head out, body frames out), a few task wake-ups per
//! request. Driving the connection in place removes those hops: about a quarter of
//! the user-space instructions of a proxied request (benches/proxy/instructions.sh).
//! HTTP/2, TLS and upgrade requests still go through hyper-util's client.
//!
//! A connection goes back to the pool only when its response body has been read to
//! the end and hyper says it is ready for the next request; a body dropped early,
//! an error or a timeout closes it. An idle connection is not polled; one the
//! upstream closed meanwhile is noticed when it is taken again (hyper reads the end
//! of stream) or by the proxy's reaper task, which also closes expired ones; a request
//! that could not be written on it is sent on another connection (never one that was
//! written: that is the retry layer's decision).

use std::{
    collections::VecDeque,
    fmt,
    future::{Future, poll_fn},
    pin::{Pin, pin},
    sync::{Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use gateway_layers_core::{
    BoxError,
    classify::{ConnectError, TimeoutError},
};
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::{
    body::Incoming,
    client::conn::http1::{self, Connection, SendRequest},
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, time::Instant};

use crate::target::{TargetInfo, TargetState};

/// The request body type sent to upstreams (the client's body, boxed once).
pub(crate) type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

type Io = TokioIo<TcpStream>;

/// The future of an exchange up to the response head.
pub(crate) type ExchangeFuture =
    Pin<Box<dyn Future<Output = Result<(Response<Incoming>, Box<H1Conn>), BoxError>> + Send>>;

/// Pool limits, copied into every connection so it can check itself back in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle: usize,
    pub(crate) connect_timeout: Duration,
}

/// One upstream connection: hyper's sending half and the connection itself.
pub(crate) struct H1Conn {
    tx: SendRequest<UpstreamBody>,
    conn: Connection<Io, UpstreamBody>,
    /// The connection future has completed (closed or failed): never poll it again.
    done: bool,
    idle_since: Instant,
    settings: PoolSettings,
}

impl fmt::Debug for H1Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H1Conn")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl H1Conn {
    /// Drives the connection (writes the request, reads the response into its body
    /// channel). Returns true once it has ended.
    #[inline]
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.done && Pin::new(&mut self.conn).poll(cx).is_ready() {
            self.done = true;
        }
        self.done
    }

    /// Puts the connection back into `target`'s pool if hyper can send the next
    /// request on it now; otherwise closes it (by dropping it).
    pub(crate) fn release(mut self: Box<Self>, target: &TargetState, cx: &mut Context<'_>) {
        if self.drive(cx) || !matches!(self.tx.poll_ready(cx), Poll::Ready(Ok(()))) {
            return;
        }
        target.idle.checkin(self);
    }
}

/// Idle connections of one target, newest last.
#[derive(Default)]
pub(crate) struct IdleConns {
    // Boxed: a connection is a few hundred bytes and travels through futures and
    // bodies; it is allocated once, when opened.
    conns: Mutex<VecDeque<Box<H1Conn>>>,
}

impl fmt::Debug for IdleConns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdleConns")
            .field("idle", &self.len())
            .finish()
    }
}

impl IdleConns {
    /// Idle connections now.
    pub(crate) fn len(&self) -> usize {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The most recently used connection that has not been idle too long (older
    /// ones are closed).
    fn checkout(&self, idle_timeout: Duration) -> Option<Box<H1Conn>> {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let newest = conns.pop_back()?;
        let now = Instant::now();
        if now.saturating_duration_since(newest.idle_since) < idle_timeout {
            // Those before it are older; close the expired ones outside the lock.
            let expired = conns
                .iter()
                .take_while(|c| now.saturating_duration_since(c.idle_since) >= idle_timeout)
                .count();
            let expired: Vec<Box<H1Conn>> = conns.drain(..expired).collect();
            drop(conns);
            drop(expired);
            Some(newest)
        } else {
            // The newest expired: all did.
            let all: Vec<Box<H1Conn>> = conns.drain(..).collect();
            drop(conns);
            drop((newest, all));
            None
        }
    }

    /// Closes the idle connections that expired or that the upstream closed (polling
    /// each once notices an end of stream); returns how many are left.
    pub(crate) fn reap(&self, idle_timeout: Duration) -> usize {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let now = Instant::now();
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let before = conns.len();
        let mut closed = Vec::new();
        let mut kept = VecDeque::with_capacity(before);
        for mut conn in conns.drain(..) {
            if now.saturating_duration_since(conn.idle_since) >= idle_timeout || conn.drive(&mut cx)
            {
                closed.push(conn);
            } else {
                kept.push_back(conn);
            }
        }
        *conns = kept;
        let left = conns.len();
        drop(conns);
        drop(closed);
        left
    }

    fn checkin(&self, mut conn: Box<H1Conn>) {
        conn.idle_since = Instant::now();
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        if conns.len() < conn.settings.max_idle {
            conns.push_back(conn);
        }
    }
}

/// Opens a connection to `target`.
async fn connect(target: &TargetInfo, settings: PoolSettings) -> Result<Box<H1Conn>, BoxError> {
    let stream = match tokio::time::timeout(
        settings.connect_timeout,
        TcpStream::connect(&*target.connect_addr),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Box::new(ConnectError(Box::new(e)))),
        Err(_) => return Err(Box::new(TimeoutError)),
    };
    stream
        .set_nodelay(true)
        .map_err(|e| ConnectError(Box::new(e)))?;
    let (tx, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError(Box::new(e)))?;
    Ok(Box::new(H1Conn {
        tx,
        conn,
        done: false,
        idle_since: Instant::now(),
        settings,
    }))
}

/// Sends `request` (origin-form URI, `Host` set) to `target` on a pooled or new
/// connection and drives it until the response head arrives.
pub(crate) async fn exchange(
    target: std::sync::Arc<TargetState>,
    mut request: Request<UpstreamBody>,
    settings: PoolSettings,
) -> Result<(Response<Incoming>, Box<H1Conn>), BoxError> {
    loop {
        let (mut conn, reused) = match target.idle.checkout(settings.idle_timeout) {
            Some(conn) => (conn, true),
            None => (connect(&target.info, settings).await?, false),
        };
        let mut sent = pin!(conn.tx.try_send_request(request));
        let answer = poll_fn(|cx| {
            let closed = conn.drive(cx);
            match sent.as_mut().poll(cx) {
                Poll::Ready(result) => Poll::Ready(Some(result)),
                // Ended without answering: the request is still queued.
                Poll::Pending if closed => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let (result, conn) = match answer {
            Some(result) => (result, Some(conn)),
            None => {
                // Dropping the connection cancels the queued request and hands it back.
                drop(conn);
                (sent.await, None)
            }
        };
        match (result, conn) {
            (Ok(response), Some(conn)) => return Ok((response, conn)),
            (Ok(_), None) => {
                return Err(Box::new(ConnectError("upstream connection closed".into())));
            }
            (Err(mut e), _) => match e.take_message() {
                // Not written: a stale pooled connection; try another one.
                Some(message) if reused => request = message,
                _ => return Err(Box::new(e.into_error())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;

    #[tokio::test]
    async fn reap_closes_connections_the_upstream_closed_and_keeps_live_ones() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = TargetInfo::parse(&Target::new(format!("http://{addr}"))).unwrap();
        let settings = PoolSettings {
            // Far away: nothing here expires, so only a closed connection goes.
            idle_timeout: Duration::from_secs(3600),
            max_idle: 8,
            connect_timeout: Duration::from_secs(5),
        };
        let pool = IdleConns::default();
        let (first, second) = (
            connect(&target, settings).await.unwrap(),
            connect(&target, settings).await.unwrap(),
        );
        let (server_first, _) = listener.accept().await.unwrap();
        let (server_second, _) = listener.accept().await.unwrap();
        pool.checkin(first);
        pool.checkin(second);
        assert_eq!(pool.reap(settings.idle_timeout), 2, "both alive");
        drop(server_first);
        // The end of stream reaches the client side asynchronously: look a bounded
        // number of times.
        let mut left = 2;
        for _ in 0..200 {
            left = pool.reap(settings.idle_timeout);
            if left == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(left, 1, "the closed one is gone, the live one stays");
        drop(server_second);
    }

    #[tokio::test]
    async fn checkout_skips_expired_connections_and_checkin_is_bounded() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = TargetInfo::parse(&Target::new(format!("http://{addr}"))).unwrap();
        let settings = PoolSettings {
            idle_timeout: Duration::from_secs(3600),
            max_idle: 2,
            connect_timeout: Duration::from_secs(5),
        };
        let pool = IdleConns::default();
        let mut server_sides = Vec::new();
        for _ in 0..3 {
            let conn = connect(&target, settings).await.unwrap();
            server_sides.push(listener.accept().await.unwrap());
            pool.checkin(conn);
        }
        assert_eq!(pool.len(), 2, "max_idle bounds the pool");
        assert!(pool.checkout(settings.idle_timeout).is_some());
        assert_eq!(pool.len(), 1);
        // With a zero idle timeout everything idle has expired.
        assert!(pool.checkout(Duration::ZERO).is_none());
        assert_eq!(pool.len(), 0, "expired connections are closed, not kept");
    }
}
