use std::{
    collections::VecDeque,
    convert::Infallible,
    fmt,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::{Map, Value, json};
use tokio::{net::TcpListener, task::JoinSet};

/// At most this many request body bytes are kept in a [`RecordedRequest`]; longer
/// bodies are still counted and hashed in full.
pub const KEPT_BODY_BYTES: usize = 1024 * 1024;

/// At most this many requests are kept for [`MockUpstream::received`].
const KEPT_REQUESTS: usize = 1024;

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Method.
    pub method: Method,
    /// Request target.
    pub uri: Uri,
    /// HTTP version on the wire.
    pub version: Version,
    /// Headers as received.
    pub headers: HeaderMap,
    /// The first [`KEPT_BODY_BYTES`] of the body.
    pub body: Bytes,
    /// Total body length.
    pub body_len: u64,
    /// FNV-1a hash of the whole body (see [`fnv1a`]).
    pub body_hash: u64,
    /// Trailers, if any were sent.
    pub trailers: Option<HeaderMap>,
    /// The peer's address (the proxy's, when proxied).
    pub peer: SocketAddr,
}

impl RecordedRequest {
    /// The echo document for this request (what [`Reply::echo`] sends).
    pub fn echo_json(&self) -> Value {
        let mut headers = Map::new();
        for name in self.headers.keys() {
            let values: Vec<Value> = self
                .headers
                .get_all(name)
                .iter()
                .map(|v| Value::from(String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            headers.insert(name.as_str().to_owned(), Value::Array(values));
        }
        let trailers = self.trailers.as_ref().map(|t| {
            t.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        Value::from(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                    )
                })
                .collect::<Map<_, _>>()
        });
        json!({
            "method": self.method.as_str(),
            "uri": self.uri.to_string(),
            "path": self.uri.path(),
            "query": self.uri.query(),
            "version": format!("{:?}", self.version),
            "headers": headers,
            "body": String::from_utf8_lossy(&self.body),
            "body_len": self.body_len,
            "body_hash": self.body_hash,
            "trailers": trailers,
            "peer": self.peer.to_string(),
        })
    }

    /// All values of header `name`, as strings.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

/// FNV-1a 64-bit hash, as used for [`RecordedRequest::body_hash`].
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_update(0xcbf2_9ce4_8422_2325, bytes)
}

fn fnv1a_update(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What the upstream answers.
#[derive(Debug, Clone)]
pub struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: ReplyBody,
    delay: Duration,
    abort: bool,
}

#[derive(Debug, Clone)]
enum ReplyBody {
    Full(Bytes),
    Repeat { chunk: Bytes, count: usize },
}

impl Reply {
    /// An empty response with `status`.
    ///
    /// # Panics
    ///
    /// On a status outside 100-999.
    pub fn status(status: u16) -> Self {
        Self {
            status: StatusCode::from_u16(status).expect("valid status"),
            headers: Vec::new(),
            body: ReplyBody::Full(Bytes::new()),
            delay: Duration::ZERO,
            abort: false,
        }
    }

    /// 200 with the request's echo document ([`RecordedRequest::echo_json`]).
    pub fn echo(request: &RecordedRequest) -> Self {
        Self::status(200).json(&request.echo_json())
    }

    /// Closes the connection without answering (a reset, from the client's side).
    pub fn abort() -> Self {
        let mut reply = Self::status(500);
        reply.abort = true;
        reply
    }

    /// Sets the status.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = StatusCode::from_u16(status).expect("valid status");
        self
    }

    /// Adds a header.
    ///
    /// # Panics
    ///
    /// On an invalid name or value.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        ));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = ReplyBody::Full(body.into());
        self
    }

    /// Sets a JSON body and `content-type: application/json`.
    #[must_use]
    pub fn json(self, value: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }

    /// Streams `chunk` `count` times (a large body without holding it in memory).
    #[must_use]
    pub fn streamed(mut self, chunk: impl Into<Bytes>, count: usize) -> Self {
        self.body = ReplyBody::Repeat {
            chunk: chunk.into(),
            count,
        };
        self
    }

    /// Waits `delay` before answering.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = Arc<dyn Fn(&RecordedRequest, usize) -> Reply + Send + Sync>;

/// Builds a [`MockUpstream`].
pub struct MockUpstreamBuilder {
    handler: Handler,
    addr: SocketAddr,
}

impl fmt::Debug for MockUpstreamBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockUpstreamBuilder")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockUpstreamBuilder {
    /// Answers with `handler(request, index)`; `index` counts requests from 0.
    #[must_use]
    pub fn handler(
        mut self,
        handler: impl Fn(&RecordedRequest, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        self.handler = Arc::new(handler);
        self
    }

    /// Listens on `addr` (must be loopback) instead of `127.0.0.1:0`.
    ///
    /// # Panics
    ///
    /// On a non-loopback address.
    #[must_use]
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        assert!(
            addr.ip().is_loopback(),
            "test upstreams listen on loopback only"
        );
        self.addr = addr;
        self
    }

    /// Starts the server.
    pub async fn start(self) -> MockUpstream {
        let shared = Arc::new(Shared {
            handler: self.handler,
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            received: Mutex::new(VecDeque::new()),
        });
        let listener = TcpListener::bind(self.addr).await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let task = spawn_server(listener, shared.clone());
        MockUpstream {
            addr,
            shared,
            task: Some(task),
        }
    }
}

struct Shared {
    handler: Handler,
    requests: AtomicUsize,
    connections: AtomicUsize,
    received: Mutex<VecDeque<RecordedRequest>>,
}

/// A real HTTP server on loopback with scripted behaviour.
///
/// ```no_run
/// # async fn demo() {
/// use gateway_layers_test_support::{MockUpstream, Reply};
///
/// // 503, 503, then 200 (the last reply repeats).
/// let upstream = MockUpstream::statuses([503, 503, 200]).await;
/// // Any behaviour:
/// let slow = MockUpstream::builder()
///     .handler(|req, _n| Reply::echo(req).delay(std::time::Duration::from_millis(50)))
///     .start()
///     .await;
/// assert_eq!(upstream.requests(), 0);
/// # }
/// ```
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for MockUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockUpstream")
            .field("addr", &self.addr)
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl MockUpstream {
    /// A builder; the default answers with [`Reply::echo`].
    pub fn builder() -> MockUpstreamBuilder {
        MockUpstreamBuilder {
            handler: Arc::new(|req, _| Reply::echo(req)),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// Echoes every request as JSON.
    pub async fn echo() -> Self {
        Self::builder().start().await
    }

    /// Answers the statuses in order, then repeats the last; bodies echo the request.
    ///
    /// # Panics
    ///
    /// On an empty list.
    pub async fn statuses(statuses: impl IntoIterator<Item = u16>) -> Self {
        let statuses: Vec<u16> = statuses.into_iter().collect();
        assert!(!statuses.is_empty(), "at least one status");
        Self::builder()
            .handler(move |req, n| {
                Reply::echo(req).with_status(statuses[n.min(statuses.len() - 1)])
            })
            .start()
            .await
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url_for(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received so far (whole requests, read to the end).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The last requests received (at most 1,024), oldest first.
    pub fn received(&self) -> Vec<RecordedRequest> {
        self.shared
            .received
            .lock()
            .expect("lock")
            .iter()
            .cloned()
            .collect()
    }

    /// The last request received.
    pub fn last(&self) -> Option<RecordedRequest> {
        self.shared.received.lock().expect("lock").back().cloned()
    }

    /// Sets the counters to zero and forgets received requests.
    pub fn reset(&self) {
        self.shared.requests.store(0, Ordering::SeqCst);
        self.shared.connections.store(0, Ordering::SeqCst);
        self.shared.received.lock().expect("lock").clear();
    }

    /// Stops listening and drops every open connection (a killed upstream).
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Whether it is running.
    pub fn is_running(&self) -> bool {
        self.task.is_some()
    }

    /// Starts again on the same port, with the same behaviour and counters.
    ///
    /// # Panics
    ///
    /// When the port cannot be bound again within 5 s.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if tries < 100 => {
                    tries += 1;
                    tracing::debug!(error = %e, "rebinding test upstream");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.task = Some(spawn_server(listener, self.shared.clone()));
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn spawn_server(listener: TcpListener, shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Connections live in this set: aborting the server task drops them all.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, peer)) = accepted else { continue };
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let shared = shared.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |req| handle(req, peer, shared.clone()));
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    })
}

#[derive(Debug)]
struct Aborted;

impl fmt::Display for Aborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection aborted by the test upstream")
    }
}

impl std::error::Error for Aborted {}

async fn handle(
    request: Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Aborted> {
    let (parts, mut body) = request.into_parts();
    let mut kept = Vec::new();
    let mut len = 0u64;
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(Aborted);
        };
        match frame.into_data() {
            Ok(data) => {
                len += data.len() as u64;
                hash = fnv1a_update(hash, &data);
                let room = KEPT_BODY_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&data[..room.min(data.len())]);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    let recorded = RecordedRequest {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body: Bytes::from(kept),
        body_len: len,
        body_hash: hash,
        trailers,
        peer,
    };
    let index = shared.requests.fetch_add(1, Ordering::SeqCst);
    let reply = (shared.handler)(&recorded, index);
    {
        let mut received = shared.received.lock().expect("lock");
        if received.len() == KEPT_REQUESTS {
            received.pop_front();
        }
        received.push_back(recorded);
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if reply.abort {
        return Err(Aborted);
    }
    let body = match reply.body {
        ReplyBody::Full(bytes) => BoxBody::new(Full::new(bytes)),
        ReplyBody::Repeat { chunk, count } => BoxBody::new(RepeatBody {
            chunk,
            remaining: count,
        }),
    };
    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    for (name, value) in reply.headers {
        response.headers_mut().append(name, value);
    }
    Ok(response)
}

struct RepeatBody {
    chunk: Bytes,
    remaining: usize,
}

impl Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        self.remaining -= 1;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.chunk.len() * self.remaining) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_client as client;

    #[tokio::test]
    async fn echo_sequence_stop_restart() {
        let mut upstream = MockUpstream::statuses([503, 200]).await;
        let client = client();
        let url = upstream.url_for("/a?b=1");
        let get = |body: &'static str| {
            Request::post(url.as_str())
                .header("x-test", "1")
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        };
        let first = client.request(get("hello")).await.unwrap();
        assert_eq!(first.status(), 503);
        let echo = crate::body_json(first.into_body()).await;
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["uri"], "/a?b=1");
        assert_eq!(echo["headers"]["x-test"][0], "1");
        assert_eq!(echo["body"], "hello");
        assert_eq!(echo["body_hash"], fnv1a(b"hello"));
        assert_eq!(client.request(get("x")).await.unwrap().status(), 200);
        assert_eq!(client.request(get("x")).await.unwrap().status(), 200);
        assert_eq!(upstream.requests(), 3);
        assert_eq!(upstream.last().unwrap().body, "x");

        upstream.stop().await;
        let fresh = self::client();
        assert!(fresh.request(get("x")).await.is_err());
        upstream.restart().await;
        let fresh = self::client();
        assert_eq!(fresh.request(get("x")).await.unwrap().status(), 200);
        assert_eq!(upstream.requests(), 4);
    }

    #[tokio::test]
    async fn streamed_and_aborted() {
        let upstream = MockUpstream::builder()
            .handler(|req, _| {
                if req.uri.path() == "/abort" {
                    Reply::abort()
                } else {
                    Reply::status(200).streamed(Bytes::from(vec![b'x'; 1024]), 1024)
                }
            })
            .start()
            .await;
        let client = client();
        let response = client
            .request(
                Request::get(upstream.url_for("/big"))
                    .body(Full::default())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            crate::body_bytes(response.into_body()).await.len(),
            1024 * 1024
        );
        let aborted = client
            .request(
                Request::get(upstream.url_for("/abort"))
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
        assert!(aborted.is_err());
    }
}
