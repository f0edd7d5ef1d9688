//! Backoff, deadlines, timeouts, budget and readiness with in-process services on a
//! paused clock (deterministic: no wall-clock assertions).

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use gateway_layers_core::GatewayBody;
use gateway_layers_retry::{BudgetConfig, ReplayBody, RetryLayer, policy::Backoff};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

type Req = Request<ReplayBody<Full<Bytes>>>;
/// Call index -> (status, Retry-After, delay before answering).
type Script = dyn Fn(usize) -> (u16, Option<&'static str>, Duration) + Send + Sync;

/// Answers with `script(call_index)` after `delay(call_index)`; records call times.
#[derive(Clone)]
struct Scripted {
    calls: Arc<Mutex<Vec<Instant>>>,
    script: Arc<Script>,
    ready: Arc<AtomicBool>,
}

impl Scripted {
    fn new(
        script: impl Fn(usize) -> (u16, Option<&'static str>, Duration) + Send + Sync + 'static,
    ) -> Self {
        Self {
            calls: Arc::default(),
            script: Arc::new(script),
            ready: Arc::new(AtomicBool::new(true)),
        }
    }

    fn always(status: u16) -> Self {
        Self::new(move |_| (status, None, Duration::ZERO))
    }

    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl Service<Req> for Scripted {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.ready.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(Instant::now());
            calls.len() - 1
        };
        let (status, retry_after, delay) = (self.script)(n);
        Box::pin(async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            tokio::time::sleep(delay).await;
            let mut builder = Response::builder().status(status);
            if let Some(value) = retry_after {
                builder = builder.header("retry-after", value);
            }
            Ok(builder.body(Full::new(body)).unwrap())
        })
    }
}

fn plain_get() -> Request<Full<Bytes>> {
    Request::get("/").body(Full::new(Bytes::new())).unwrap()
}

async fn status<S>(svc: S) -> StatusCode
where
    S: Service<Request<Full<Bytes>>, Response = Response<GatewayBody<Full<Bytes>>>>,
    S::Error: std::fmt::Debug,
{
    svc.oneshot(plain_get()).await.unwrap().status()
}

#[tokio::test(start_paused = true)]
async fn backoff_delays_within_full_jitter_bounds() {
    let base = Duration::from_millis(100);
    let cap = Duration::from_millis(500);
    let bounds = Backoff::new(base, cap);
    let mut max_seen = [Duration::ZERO; 5];
    for _ in 0..40 {
        let upstream = Scripted::always(503);
        let svc = RetryLayer::builder()
            .max_attempts(6)
            .backoff(base, cap)
            .budget(None)
            .build()
            .unwrap()
            .layer(upstream.clone());
        assert_eq!(status(svc).await, StatusCode::SERVICE_UNAVAILABLE);
        let calls = upstream.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 6);
        for (n, pair) in calls.windows(2).enumerate() {
            let delay = pair[1] - pair[0];
            let ceiling = bounds.ceiling(n as u32);
            assert!(ceiling == (base * 2u32.pow(n as u32)).min(cap));
            // The timer wheel has 1 ms resolution.
            assert!(
                delay <= ceiling + Duration::from_millis(1),
                "retry {n}: {delay:?} > {ceiling:?}"
            );
            max_seen[n] = max_seen[n].max(delay);
        }
    }
    // Jitter uses the whole range, not only the bottom of it.
    for (n, seen) in max_seen.iter().enumerate() {
        assert!(
            *seen >= bounds.ceiling(n as u32) / 4,
            "retry {n}: max {seen:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_within_deadline() {
    let upstream = Scripted::new(|n| {
        if n == 0 {
            (503, Some("1"), Duration::ZERO)
        } else {
            (200, None, Duration::ZERO)
        }
    });
    let svc = RetryLayer::builder()
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap()
        .layer(upstream.clone());
    assert_eq!(status(svc).await, StatusCode::OK);
    let calls = upstream.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert!(calls[1] - calls[0] >= Duration::from_secs(1));

    // Retry-After: 5 with a 2 s deadline: no retry, the 503 is returned at once.
    let upstream = Scripted::new(|n| {
        if n == 0 {
            (503, Some("5"), Duration::ZERO)
        } else {
            (200, None, Duration::ZERO)
        }
    });
    let svc = RetryLayer::builder()
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap()
        .layer(upstream.clone());
    let start = Instant::now();
    assert_eq!(status(svc).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.count(), 1);
    assert!(Instant::now() - start < Duration::from_secs(2));

    // Longer than retry_after_cap: no retry.
    let upstream = Scripted::new(|_| (503, Some("30"), Duration::ZERO));
    let svc = RetryLayer::builder()
        .retry_after_cap(Duration::from_secs(10))
        .build()
        .unwrap()
        .layer(upstream.clone());
    assert_eq!(status(svc).await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_retries_then_answers_504() {
    // A slow first attempt is cut by the per-try timeout; the second answers.
    let upstream = Scripted::new(|n| {
        let delay = if n == 0 {
            Duration::from_secs(30)
        } else {
            Duration::ZERO
        };
        (200, None, delay)
    });
    let svc = RetryLayer::builder()
        .per_try_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
        .layer(upstream.clone());
    assert_eq!(status(svc).await, StatusCode::OK);
    assert_eq!(upstream.count(), 2);

    // Always slow: every attempt times out, then a 504 problem.
    let upstream = Scripted::new(|_| (200, None, Duration::from_secs(30)));
    let svc = RetryLayer::builder()
        .per_try_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
        .layer(upstream.clone());
    let response = svc.oneshot(plain_get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(upstream.count(), 3);
    let rejected = response
        .extensions()
        .get::<gateway_layers_core::Rejected>()
        .unwrap();
    assert_eq!(rejected.code, "upstream_timeout");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test(start_paused = true)]
async fn deadline_bounds_the_whole_request() {
    let upstream = Scripted::new(|_| (200, None, Duration::from_secs(30)));
    let svc = RetryLayer::builder()
        .per_try_timeout(Duration::from_secs(2))
        .deadline(Duration::from_secs(3))
        .max_attempts(10)
        .build()
        .unwrap()
        .layer(upstream.clone());
    let start = Instant::now();
    let response = svc.oneshot(plain_get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let rejected = response
        .extensions()
        .get::<gateway_layers_core::Rejected>()
        .unwrap();
    assert_eq!(rejected.code, "deadline_exceeded");
    assert_eq!(upstream.count(), 2);
    let elapsed = Instant::now() - start;
    assert!(
        elapsed <= Duration::from_secs(3) + Duration::from_millis(1),
        "{elapsed:?}"
    );

    // A custom responder renders the 504.
    let upstream = Scripted::new(|_| (200, None, Duration::from_secs(30)));
    let svc = RetryLayer::builder()
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap()
        .with_rejection_response(|r: &gateway_layers_core::Rejection| {
            Response::builder()
                .status(r.status())
                .body(Bytes::from_static(b"too slow"))
                .unwrap()
        })
        .layer(upstream);
    let response = svc.oneshot(plain_get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "too slow"
    );
}

#[tokio::test(start_paused = true)]
async fn not_ready_inner_means_no_retry() {
    let upstream = Scripted::always(503);
    let ready = upstream.ready.clone();
    let mut svc = RetryLayer::builder()
        .build()
        .unwrap()
        .layer(upstream.clone());
    svc.ready().await.unwrap();
    let future = svc.call(plain_get());
    // Like an open breaker: the inner service stops being ready after the first call.
    ready.store(false, Ordering::SeqCst);
    let response = future.await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn budget_bounds_attempts_under_total_failure() {
    let ratio = 0.2;
    let min_per_sec = 2;
    let ttl = Duration::from_secs(10);
    let upstream = Scripted::always(503);
    let layer = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .budget(BudgetConfig::new(ratio, min_per_sec, ttl))
        .build()
        .unwrap();
    // Two services from one layer, and clones of each: one budget.
    let a = layer.layer(upstream.clone());
    let b = layer.layer(upstream.clone());
    let served = Arc::new(AtomicUsize::new(0));
    let mut requests = 0usize;
    let start = Instant::now();
    // Steady load: 20 concurrent requests every 100 ms, for 9 s (within one TTL).
    while Instant::now() - start < Duration::from_secs(9) {
        let mut batch = Vec::new();
        for i in 0..20 {
            let svc = if i % 2 == 0 { a.clone() } else { b.clone() };
            let served = served.clone();
            batch.push(tokio::spawn(async move {
                let s = status(svc).await;
                served.fetch_add(1, Ordering::SeqCst);
                s
            }));
            requests += 1;
        }
        for handle in batch {
            assert_eq!(handle.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attempts = upstream.count();
    let bound = (1.0 + ratio) * requests as f64 + f64::from(min_per_sec) * ttl.as_secs_f64();
    assert_eq!(served.load(Ordering::SeqCst), requests);
    assert!(
        attempts as f64 <= bound,
        "{attempts} attempts for {requests} requests > {bound}"
    );
    // The budget did allow retries (it is not simply off).
    assert!(
        attempts as f64 >= (1.0 + ratio) * requests as f64 - 1.0,
        "{attempts}"
    );
    assert!(a.budget().unwrap().available() <= 1);
}

#[tokio::test]
async fn empty_budget_returns_the_failure_as_is() {
    let upstream = Scripted::always(503);
    let svc = RetryLayer::builder()
        .budget(BudgetConfig::new(0.0, 0, Duration::from_secs(1)))
        .build()
        .unwrap()
        .layer(upstream.clone());
    let response = svc.oneshot(plain_get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test]
async fn body_is_replayed_to_in_process_service() {
    let upstream = Scripted::new(|n| (if n < 2 { 503 } else { 200 }, None, Duration::ZERO));
    let svc = RetryLayer::builder()
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .build()
        .unwrap()
        .layer(upstream.clone());
    let response = svc
        .oneshot(
            Request::put("/")
                .body(Full::new(Bytes::from_static(b"payload")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.count(), 3);
    // The echo of the third attempt is the original body.
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "payload"
    );
}
