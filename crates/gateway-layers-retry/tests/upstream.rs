//! The retry layer against a real loopback upstream (`MockUpstream`) through a
//! hyper-util client: bodies, framing, connections.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use gateway_layers_core::{BoxError, classify::error_kind};
use gateway_layers_retry::{NonIdempotent, ReplayBody, RetryLayer};
use gateway_layers_test_support::{MockUpstream, Reply, fnv1a};
use http::{HeaderMap, Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use tower::{Layer, Service, ServiceExt};

type TestBody = BoxBody<Bytes, BoxError>;

/// A hyper-util client as a tower service, sending every request to one upstream.
#[derive(Clone)]
struct Upstream {
    client: Client<HttpConnector, ReplayBody<TestBody>>,
    base: String,
}

impl Upstream {
    fn new(upstream: &MockUpstream) -> Self {
        Self {
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            base: upstream.url(),
        }
    }
}

impl Service<Request<ReplayBody<TestBody>>> for Upstream {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<ReplayBody<TestBody>>) -> Self::Future {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        *request.uri_mut() = format!("{}{path}", self.base).parse().unwrap();
        let client = self.client.clone();
        Box::pin(async move { client.request(request).await.map_err(BoxError::from) })
    }
}

fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// A body of scripted frames with an unknown length (chunked on the wire).
struct Frames(VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::new()
    }
}

fn streamed(chunks: impl IntoIterator<Item = Bytes>, trailers: Option<HeaderMap>) -> TestBody {
    let mut frames: VecDeque<_> = chunks.into_iter().map(Frame::data).collect();
    if let Some(t) = trailers {
        frames.push_back(Frame::trailers(t));
    }
    Frames(frames).boxed()
}

fn fast() -> gateway_layers_retry::RetryConfig {
    RetryLayer::builder().backoff(Duration::from_millis(1), Duration::from_millis(2))
}

fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn get_retried_exactly_max_attempts_then_succeeds() {
    let upstream = MockUpstream::statuses([503, 503, 200]).await;
    let svc = fast()
        .max_attempts(3)
        .attempt_header("x-retry-attempt")
        .build()
        .unwrap()
        .layer(Upstream::new(&upstream));
    let response = svc
        .clone()
        .oneshot(Request::get("/items").body(full("")).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.requests(), 3);
    let attempts: Vec<String> = upstream
        .received()
        .iter()
        .flat_map(|r| r.header_values("x-retry-attempt"))
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);

    // Always 503: exactly max_attempts attempts, then the last 503 is returned.
    let failing = MockUpstream::statuses([503]).await;
    let svc = fast()
        .max_attempts(4)
        .build()
        .unwrap()
        .layer(Upstream::new(&failing));
    let response = svc
        .oneshot(Request::get("/").body(full("")).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(failing.requests(), 4);
}

#[tokio::test]
async fn post_needs_an_idempotency_key() {
    let upstream = MockUpstream::statuses([503, 200]).await;
    let svc = fast().build().unwrap().layer(Upstream::new(&upstream));
    let response = svc
        .clone()
        .oneshot(Request::post("/orders").body(full("{}")).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(upstream.requests(), 1);

    upstream.reset();
    let upstream2 = MockUpstream::statuses([503, 200]).await;
    let svc = fast().build().unwrap().layer(Upstream::new(&upstream2));
    let response = svc
        .oneshot(
            Request::post("/orders")
                .header("idempotency-key", "k-1")
                .body(full("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream2.requests(), 2);
    assert!(
        upstream2
            .received()
            .iter()
            .all(|r| r.body.as_ref() == b"{}")
    );

    // PATCH with the explicit policy `Never` is not retried even with a key.
    let upstream3 = MockUpstream::statuses([503, 200]).await;
    let svc = fast()
        .non_idempotent(NonIdempotent::Never)
        .build()
        .unwrap()
        .layer(Upstream::new(&upstream3));
    let response = svc
        .oneshot(
            Request::patch("/orders/1")
                .header("idempotency-key", "k-2")
                .body(full("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(upstream3.requests(), 1);
}

#[tokio::test]
async fn put_10kb_replayed_identically_with_content_length() {
    let upstream = MockUpstream::statuses([503, 200]).await;
    let svc = fast().build().unwrap().layer(Upstream::new(&upstream));
    let body = pattern(10_000);
    let response = svc
        .oneshot(
            Request::put("/blob")
                .header(header::CONTENT_LENGTH, body.len())
                .body(full(body.clone()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let received = upstream.received();
    assert_eq!(received.len(), 2);
    for r in &received {
        assert_eq!(r.body_len, 10_000);
        assert_eq!(r.body_hash, fnv1a(&body));
        assert_eq!(r.headers[header::CONTENT_LENGTH], "10000");
        assert!(!r.headers.contains_key(header::TRANSFER_ENCODING));
    }
}

#[tokio::test]
async fn chunked_body_with_trailers_replayed() {
    let upstream = MockUpstream::statuses([502, 200]).await;
    let svc = fast().build().unwrap().layer(Upstream::new(&upstream));
    let chunks = [pattern(3000), pattern(5000), pattern(2000)];
    let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "f00d".parse().unwrap());
    let response = svc
        .oneshot(
            Request::put("/stream")
                .header(header::TRAILER, "x-checksum")
                .body(streamed(chunks.clone(), Some(trailers)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let received = upstream.received();
    assert_eq!(received.len(), 2);
    for r in &received {
        assert_eq!(r.body_len, whole.len() as u64);
        assert_eq!(r.body_hash, fnv1a(&whole));
        assert!(!r.headers.contains_key(header::CONTENT_LENGTH));
        assert_eq!(r.headers[header::TRANSFER_ENCODING], "chunked");
        let t = r.trailers.as_ref().expect("trailers kept");
        assert_eq!(t["x-checksum"], "f00d");
    }
}

#[tokio::test]
async fn body_over_cap_not_retried_and_intact() {
    // Unknown length: the copy overflows while streaming.
    let upstream = MockUpstream::statuses([503, 200]).await;
    let svc = fast()
        .max_replay_bytes(64 * 1024)
        .build()
        .unwrap()
        .layer(Upstream::new(&upstream));
    let chunks: Vec<Bytes> = (0..13).map(|i| pattern(8 * 1024 + i)).collect();
    let whole: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    assert!(whole.len() > 64 * 1024);
    let response = svc
        .clone()
        .oneshot(Request::put("/big").body(streamed(chunks, None)).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(upstream.requests(), 1);
    let r = upstream.last().unwrap();
    assert_eq!(r.body_len, whole.len() as u64);
    assert_eq!(r.body_hash, fnv1a(&whole));

    // Known length over the cap: streamed through without a copy.
    let upstream = MockUpstream::statuses([503, 200]).await;
    let svc = fast().build().unwrap().layer(Upstream::new(&upstream));
    let big = pattern(100 * 1024);
    let response = svc
        .oneshot(Request::put("/big").body(full(big.clone())).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(upstream.requests(), 1);
    let r = upstream.last().unwrap();
    assert_eq!(r.body_len, big.len() as u64);
    assert_eq!(r.body_hash, fnv1a(&big));
    assert_eq!(r.headers[header::CONTENT_LENGTH], "102400");
}

#[tokio::test]
async fn retry_after_beyond_deadline_means_no_retry() {
    let upstream = MockUpstream::builder()
        .handler(|req, n| {
            if n == 0 {
                Reply::echo(req).with_status(503).header("retry-after", "5")
            } else {
                Reply::echo(req)
            }
        })
        .start()
        .await;
    let svc = fast()
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap()
        .layer(Upstream::new(&upstream));
    let response = svc
        .oneshot(Request::get("/").body(full("")).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(upstream.requests(), 1);
}

#[tokio::test]
async fn connection_reset_is_retried() {
    let upstream = MockUpstream::builder()
        .handler(|req, n| {
            if n == 0 {
                Reply::abort()
            } else {
                Reply::echo(req)
            }
        })
        .start()
        .await;
    let svc = fast().build().unwrap().layer(Upstream::new(&upstream));
    let response = svc
        .oneshot(Request::get("/reset").body(full("")).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.requests(), 2);
}

#[tokio::test]
async fn refused_connection_error_returned_after_attempts() {
    let mut upstream = MockUpstream::echo().await;
    let client = Upstream::new(&upstream);
    upstream.stop().await;
    let svc = fast().build().unwrap().layer(client);
    let error = svc
        .oneshot(Request::get("/").body(full("")).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        error_kind(&*error),
        gateway_layers_core::ErrorKind::Connection,
        "{error:?}"
    );
}

#[tokio::test]
async fn response_header_match_is_retried() {
    let upstream = MockUpstream::builder()
        .handler(|req, n| {
            if n == 0 {
                Reply::echo(req).header("x-retry", "yes")
            } else {
                Reply::echo(req)
            }
        })
        .start()
        .await;
    let svc = fast()
        .retry_on_header("x-retry", Some("yes"))
        .build()
        .unwrap()
        .layer(Upstream::new(&upstream));
    let response = svc
        .oneshot(Request::get("/").body(full("")).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("x-retry"));
    assert_eq!(upstream.requests(), 2);
}
