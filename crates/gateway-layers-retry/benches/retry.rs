//! Success-path overhead of the retry layer, beside a no-op baseline and
//! `tower::retry` (with a `TpsBudget` and request cloning, the usual way to retry HTTP
//! with tower) in the same run.
//!
//! Run: `cargo bench -p gateway-layers-retry --bench retry -- --warm-up-time 1 --measurement-time 3`
//!
//! Every future here is ready at once, so a no-op waker drives them. No tokio runtime is
//! entered: the default config creates no timers, and outside a runtime
//! `tokio::time::Instant::now()` is the plain `std` clock, as in production builds
//! (inside a runtime, the `test-util` feature that dev-dependencies enable adds a mutex to
//! every clock read, which release builds do not have).
#![allow(missing_docs)]

use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    hint::black_box,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group};
use gateway_layers_retry::RetryLayer;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use tower::{
    Layer, Service,
    retry::{Policy, RetryLayer as TowerRetryLayer, budget::TpsBudget},
};

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// The upstream: reads the request body to the end, answers 200.
#[derive(Clone, Copy)]
struct Upstream;

impl<B: Body> Service<Request<B>> for Upstream {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut body = pin!(request.into_body());
        let mut cx = Context::from_waker(Waker::noop());
        let mut read = 0usize;
        while let Poll::Ready(Some(Ok(frame))) = body.as_mut().poll_frame(&mut cx) {
            if let Some(data) = frame.data_ref() {
                read += bytes::Buf::remaining(data);
            }
        }
        black_box(read);
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::OK;
        ready(Ok(response))
    }
}

/// tower::retry policy: retry 5xx within a TpsBudget, clone the request every time.
#[derive(Clone)]
struct TowerPolicy {
    budget: Arc<TpsBudget>,
    attempts: usize,
}

impl<B: Clone> Policy<Request<B>, Response<Full<Bytes>>, Infallible> for TowerPolicy {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<B>,
        result: &mut Result<Response<Full<Bytes>>, Infallible>,
    ) -> Option<Self::Future> {
        use tower::retry::budget::Budget;
        match result {
            Ok(response) if response.status().is_server_error() && self.attempts > 1 => {
                if self.budget.withdraw() {
                    self.attempts -= 1;
                    Some(ready(()))
                } else {
                    None
                }
            }
            _ => {
                self.budget.deposit();
                None
            }
        }
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        Some(req.clone())
    }
}

fn get_request() -> Request<Full<Bytes>> {
    Request::get("http://upstream.internal/api/v1/items?page=2")
        .header("host", "upstream.internal")
        .header("user-agent", "bench/1.0")
        .header("accept", "application/json")
        .header("x-request-id", "0b6d1f2c-3f5e-4a57-9f0e-1a2b3c4d5e6f")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn put_request(body: &Bytes) -> Request<Full<Bytes>> {
    Request::put("http://upstream.internal/api/v1/items/42")
        .header("host", "upstream.internal")
        .header("content-type", "application/octet-stream")
        .header("content-length", body.len())
        .body(Full::new(body.clone()))
        .unwrap()
}

type Make = fn() -> Request<Full<Bytes>>;
type Case = (&'static str, Box<dyn Fn() -> Request<Full<Bytes>>>);

fn call<S>(service: &mut S, request: Request<Full<Bytes>>)
where
    S: Service<Request<Full<Bytes>>>,
{
    let _ = block_on(std::future::poll_fn(|cx| service.poll_ready(cx)));
    black_box(block_on(service.call(request)).is_ok());
}

fn services() -> (
    Upstream,
    gateway_layers_retry::Retry<Upstream>,
    tower::retry::Retry<TowerPolicy, Upstream>,
) {
    let ours = RetryLayer::new().layer(Upstream);
    let policy = TowerPolicy {
        budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        attempts: 3,
    };
    let tower_retry = TowerRetryLayer::new(policy).layer(Upstream);
    (Upstream, ours, tower_retry)
}

fn bench(c: &mut Criterion) {
    let kib = Bytes::from(vec![7u8; 1024]);
    let cases: [Case; 2] = [
        ("get", Box::new(get_request as Make)),
        ("put_1kib", Box::new(move || put_request(&kib))),
    ];
    for (name, make) in &cases {
        let mut group = c.benchmark_group(format!("retry/success_{name}"));
        let (mut baseline, mut ours, mut tower_retry) = services();
        // Request construction is setup, not measured.
        group.bench_function(BenchmarkId::from_parameter("baseline"), |b| {
            b.iter_batched(make, |r| call(&mut baseline, r), BatchSize::SmallInput)
        });
        group.bench_function(BenchmarkId::from_parameter("gateway_layers_retry"), |b| {
            b.iter_batched(make, |r| call(&mut ours, r), BatchSize::SmallInput)
        });
        group.bench_function(BenchmarkId::from_parameter("tower_retry"), |b| {
            b.iter_batched(make, |r| call(&mut tower_retry, r), BatchSize::SmallInput)
        });
        group.finish();
    }
    ratios(&cases);
}

/// Interleaved timing of the services in the same process (requests built beforehand),
/// best of 150 rounds each, printed as ratios.
fn ratios(cases: &[Case]) {
    const N: usize = 2_000;
    fn time<S: Service<Request<Full<Bytes>>>>(
        service: &mut S,
        make: &dyn Fn() -> Request<Full<Bytes>>,
    ) -> f64 {
        let requests: Vec<_> = (0..N).map(|_| make()).collect();
        let start = Instant::now();
        for request in requests {
            call(service, request);
        }
        start.elapsed().as_nanos() as f64 / N as f64
    }
    for (name, make) in cases {
        let (mut baseline, mut ours, mut tower_retry) = services();
        let mut unbudgeted = RetryLayer::builder()
            .budget(None)
            .build()
            .unwrap()
            .layer(Upstream);
        let (mut b, mut o, mut t, mut u) = (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..150 {
            b = b.min(time(&mut baseline, make.as_ref()));
            o = o.min(time(&mut ours, make.as_ref()));
            t = t.min(time(&mut tower_retry, make.as_ref()));
            u = u.min(time(&mut unbudgeted, make.as_ref()));
        }
        eprintln!(
            "ratio success_{name}: baseline {b:.1} ns, gateway_layers_retry {o:.1} ns \
             (without budget {u:.1} ns), tower_retry {t:.1} ns; retry/tower = {:.2}x, \
             retry/baseline = {:.2}x, tower/baseline = {:.2}x",
            o / t,
            o / b,
            t / b
        );
        eprintln!(
            "  future sizes: gateway_layers_retry {} bytes, tower_retry {} bytes",
            std::mem::size_of_val(&ours.call(make())),
            std::mem::size_of_val(&tower_retry.call(make()))
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    // `RETRY_BENCH_PROFILE=ours|tower`: only run one service on the GET case, for
    // `perf record`.
    if let Some(which) = std::env::var_os("RETRY_BENCH_PROFILE") {
        let (_, mut ours, mut tower_retry) = services();
        for _ in 0..200 {
            let requests: Vec<_> = (0..10_000).map(|_| get_request()).collect();
            for request in requests {
                if which == "tower" {
                    call(&mut tower_retry, request);
                } else {
                    call(&mut ours, request);
                }
            }
        }
        return;
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
