//! Circuit breaker overhead, in one run:
//!
//! - closed state: a no-op service alone, behind this crate's breaker (one circuit and
//!   per-key), and behind tower-resilience's circuit breaker;
//! - open state: the cost of a refusal (503 problem+json with `Retry-After`) against
//!   tower-resilience's open-circuit error.
//!
//! After criterion's report, a short interleaved timing loop prints the overheads
//! (time minus the no-op baseline) and their ratio.
//!
//! `cargo bench -p gateway-layers-breaker --bench breaker -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs)]

use std::{
    convert::Infallible,
    future::{Ready, ready},
    hint::black_box,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group};
use futures_util::FutureExt;
use gateway_layers_breaker::BreakerLayer;
use http::{Request, Response, StatusCode};
use tower::{Layer, Service};

/// The inner service: answers 200 at once.
#[derive(Clone, Copy)]
struct Noop;

impl Service<Request<()>> for Noop {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

/// One call: poll_ready, call, poll the future once (every service here is ready and
/// answers at once).
#[inline]
fn once<S>(svc: &mut S, req: Request<()>) -> StatusCode
where
    S: Service<Request<()>>,
    S::Response: Into<Status>,
{
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("not ready"),
    }
    match svc.call(req).now_or_never() {
        Some(Ok(res)) => res.into().0,
        Some(Err(_)) => StatusCode::SERVICE_UNAVAILABLE,
        None => panic!("future not ready"),
    }
}

struct Status(StatusCode);

impl<B> From<Response<B>> for Status {
    fn from(r: Response<B>) -> Self {
        Status(r.status())
    }
}

fn request() -> Request<()> {
    Request::new(())
}

fn keyed_request() -> Request<()> {
    Request::builder()
        .header("host", "orders.internal")
        .body(())
        .unwrap()
}

fn ours() -> impl Service<Request<()>, Response = Response<gateway_layers_core::GatewayBody<()>>> {
    BreakerLayer::builder().build().unwrap().layer(Noop)
}

fn ours_keyed()
-> impl Service<Request<()>, Response = Response<gateway_layers_core::GatewayBody<()>>> {
    BreakerLayer::builder()
        .per_authority()
        .build()
        .unwrap()
        .layer(Noop)
}

fn ours_open()
-> impl Service<Request<()>, Response = Response<gateway_layers_core::GatewayBody<()>>> {
    #[derive(Clone, Copy)]
    struct Failing;
    impl Service<Request<()>> for Failing {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = Ready<Result<Response<()>, Infallible>>;
        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _req: Request<()>) -> Self::Future {
            let mut r = Response::new(());
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            ready(Ok(r))
        }
    }
    let mut svc = BreakerLayer::builder()
        .consecutive_failures(1)
        // A realistic open time: Retry-After values up to 600 s come from a table.
        .open_duration(Duration::from_secs(60))
        .build()
        .unwrap()
        .layer(Failing);
    assert_eq!(once(&mut svc, request()), StatusCode::BAD_GATEWAY);
    assert_eq!(once(&mut svc, request()), StatusCode::SERVICE_UNAVAILABLE);
    svc
}

fn peer_builder() -> tower_resilience::circuitbreaker::CircuitBreakerConfigBuilder {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(20)
}

fn peer() -> impl Service<Request<()>, Response = Response<()>> {
    peer_builder()
        .classify_response(|r: &Response<()>| r.status().is_server_error())
        .build()
        .unwrap()
        .layer(Noop)
}

fn peer_open() -> impl Service<Request<()>, Response = Response<()>> {
    let layer = peer_builder()
        .wait_duration_in_open(Duration::from_secs(3600))
        .classify_response(|r: &Response<()>| r.status().is_server_error())
        .build()
        .unwrap();
    let svc = layer.layer(Noop);
    futures_util::FutureExt::now_or_never(svc.force_open()).expect("uncontended lock");
    let mut svc = svc;
    assert_eq!(once(&mut svc, request()), StatusCode::SERVICE_UNAVAILABLE);
    svc
}

fn closed(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("breaker_closed");
    let mut noop = Noop;
    group.bench_function("noop", |b| b.iter(|| once(&mut noop, black_box(request()))));
    let mut svc = ours();
    group.bench_function("gateway_layers", |b| {
        b.iter(|| once(&mut svc, black_box(request())))
    });
    let mut svc = ours_keyed();
    group.bench_function("gateway_layers_per_authority", |b| {
        b.iter(|| once(&mut svc, black_box(keyed_request())))
    });
    let mut noop = Noop;
    group.bench_function("noop_with_host_header", |b| {
        b.iter(|| once(&mut noop, black_box(keyed_request())))
    });
    let mut svc = peer();
    group.bench_function("tower_resilience", |b| {
        b.iter(|| once(&mut svc, black_box(request())))
    });
    group.finish();
}

fn open(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("breaker_open_rejection");
    let mut svc = ours_open();
    group.bench_function("gateway_layers_503", |b| {
        b.iter(|| once(&mut svc, black_box(request())))
    });
    let mut svc = peer_open();
    group.bench_function("tower_resilience_error", |b| {
        b.iter(|| once(&mut svc, black_box(request())))
    });
    group.finish();
}

/// Mean ns per call over `n` calls.
fn time<S>(svc: &mut S, make: fn() -> Request<()>, n: u32) -> f64
where
    S: Service<Request<()>>,
    S::Response: Into<Status>,
{
    let start = Instant::now();
    for _ in 0..n {
        black_box(once(svc, black_box(make())));
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

/// Interleaved timing of every variant (so machine load hits them alike), best of
/// `ROUNDS`, then the overheads and their ratios.
fn ratios() {
    const ROUNDS: usize = 15;
    const N: u32 = 200_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let (mut ours, mut keyed, mut peer, mut ours_open, mut peer_open) =
        (ours(), ours_keyed(), peer(), ours_open(), peer_open());
    let mut best = [f64::INFINITY; 7];
    for _ in 0..ROUNDS {
        let times = [
            time(&mut Noop, request, N),
            time(&mut Noop, keyed_request, N),
            time(&mut ours, request, N),
            time(&mut keyed, keyed_request, N),
            time(&mut peer, request, N),
            time(&mut ours_open, request, N / 4),
            time(&mut peer_open, request, N / 4),
        ];
        for (b, t) in best.iter_mut().zip(times) {
            *b = b.min(t);
        }
    }
    let [
        base,
        base_host,
        ours_ns,
        keyed_ns,
        peer_ns,
        open_ns,
        peer_open_ns,
    ] = best;
    let ours_over = (ours_ns - base).max(0.1);
    let keyed_over = (keyed_ns - base_host).max(0.1);
    let peer_over = (peer_ns - base).max(0.1);
    eprintln!();
    eprintln!("== breaker overhead (interleaved, best of {ROUNDS} x {N} calls, ns/call) ==");
    eprintln!("no-op service                 {base:8.1}");
    eprintln!("gateway-layers breaker        {ours_ns:8.1}  overhead {ours_over:7.1}");
    eprintln!(
        "gateway-layers per authority  {keyed_ns:8.1}  overhead {keyed_over:7.1} (no-op with Host header {base_host:.1})"
    );
    eprintln!("tower-resilience breaker      {peer_ns:8.1}  overhead {peer_over:7.1}");
    eprintln!(
        "closed-state overhead, tower-resilience / gateway-layers: {:.1}x (goal >= 5x); per-authority circuits: {:.1}x",
        peer_over / ours_over,
        peer_over / keyed_over
    );
    eprintln!(
        "open-state refusal: gateway-layers 503 problem+json {open_ns:.1} ns/call, tower-resilience CircuitBreakerError {peer_open_ns:.1} ns/call"
    );
}

criterion_group!(benches, closed, open);

/// `BREAKER_BENCH_VARIANT=<name> BREAKER_BENCH_CALLS=<n>`: only make `n` calls of one
/// variant and exit, for instruction counting under `valgrind --tool=callgrind` (load
/// independent): run with two values of `n` and divide the difference.
fn single_variant(variant: &str, n: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _enter = rt.enter();
    match variant {
        "noop" => drop(time(&mut Noop, request, n)),
        "noop_host" => drop(time(&mut Noop, keyed_request, n)),
        "ours" => drop(time(&mut ours(), request, n)),
        "ours_keyed" => drop(time(&mut ours_keyed(), keyed_request, n)),
        "peer" => drop(time(&mut peer(), request, n)),
        "ours_open" => drop(time(&mut ours_open(), request, n)),
        "peer_open" => drop(time(&mut peer_open(), request, n)),
        other => panic!("unknown variant {other}"),
    }
}

fn main() {
    if let Ok(variant) = std::env::var("BREAKER_BENCH_VARIANT") {
        let n = std::env::var("BREAKER_BENCH_CALLS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        single_variant(&variant, n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    ratios();
}
