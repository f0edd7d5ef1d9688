//! Success-path overhead of the retry layer, beside a no-op baseline and
//! `tower::retry` (with a `TpsBudget` and request cloning, the usual way to retry HTTP
//! with tower) in the same run.
//!
//! Run: `cargo bench -p gateway-layers-retry --bench retry -- --warm-up-time 1 --measurement-time 3`
//!
//! What each side does per request:
//!
//! - `baseline`: the upstream alone; it reads the request body to the end and answers 200.
//! - `gateway_layers_retry`: `RetryLayer::new()` (default config: budget on, 64 KiB
//!   replay cap) in front of the same upstream; the body is wrapped in a `ReplayBody`,
//!   which keeps a body that is whole at once (both PUT cases here) as its one chunk,
//!   and otherwise keeps the chunks while the upstream reads them.
//! - `tower_retry`: `tower::retry::Retry` with a `TpsBudget` policy whose
//!   `clone_request` clones the whole `Request` before the attempt.
//!
//! Cases:
//!
//! - `get`: an empty `Full<Bytes>` body.
//! - `put_1kib`: a 1 KiB `Full<Bytes>` body. `tower::retry` is handed the body already
//!   whole in memory, so cloning it is one reference-count increment; this is the
//!   cheapest possible case for the peer.
//! - `put_1kib_streamed`: the same 1 KiB arrives as a streamed, non-`Clone` body (one
//!   chunk, exact size hint: what hyper's `Incoming` gives for a small request with
//!   `Content-Length`). `tower::retry` cannot clone it, so its side first collects it
//!   (`BodyExt::collect` -> `to_bytes` -> `Full<Bytes>`), as a tower user has to; ours
//!   takes the stream as it is.
//!
//! Every future here is ready at once, so a no-op waker drives them. No tokio runtime is
//! entered: the default config creates no timers, and outside a runtime
//! `tokio::time::Instant::now()` is the plain `std` clock, as in production builds
//! (inside a runtime, the `test-util` feature that dev-dependencies enable adds a mutex to
//! every clock read, which release builds do not have).
//!
//! The criterion groups and the interleaved best-of-150 pass build requests beforehand,
//! outside the timing; the peer's collect in `put_1kib_streamed` is timed, as it is part
//! of what the peer has to do per request. Also printed: `(ours - baseline) / (tower -
//! baseline)`, the ratio of what each layer adds.
//!
//! `RETRY_BENCH_VARIANT=baseline|ours|tower RETRY_BENCH_CASE=get|put_1kib|put_1kib_streamed
//! RETRY_BENCH_CALLS=<n>`: only make `n` calls (request construction included) of one
//! variant and exit, for instruction counting under `valgrind --tool=callgrind`; run with
//! two values of `n` and divide the difference by the difference of `n`.
#![allow(missing_docs)]

use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    hint::black_box,
    pin::{Pin, pin},
    sync::Arc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group};
use gateway_layers_retry::RetryLayer;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
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

/// A streamed request body: one chunk, an exact size hint, not `Clone` (like hyper's
/// `Incoming` for a small body with `Content-Length`).
struct Streamed {
    chunk: Option<Bytes>,
    len: u64,
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunk.take().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunk.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(if self.chunk.is_some() { self.len } else { 0 })
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

fn put_request<B>(len: usize, body: B) -> Request<B> {
    Request::put("http://upstream.internal/api/v1/items/42")
        .header("host", "upstream.internal")
        .header("content-type", "application/octet-stream")
        .header("content-length", len)
        .body(body)
        .unwrap()
}

fn call<S, B>(service: &mut S, request: Request<B>)
where
    S: Service<Request<B>>,
{
    let _ = block_on(std::future::poll_fn(|cx| service.poll_ready(cx)));
    black_box(block_on(service.call(request)).is_ok());
}

/// What a `tower::retry` user does with a streamed body: collect it, then call.
fn call_collected<S>(service: &mut S, request: Request<Streamed>)
where
    S: Service<Request<Full<Bytes>>>,
{
    let (parts, body) = request.into_parts();
    let Ok(collected) = block_on(body.collect());
    call(
        service,
        Request::from_parts(parts, Full::new(collected.to_bytes())),
    );
}

type Ours = gateway_layers_retry::Retry<Upstream>;
type Peer = tower::retry::Retry<TowerPolicy, Upstream>;

fn ours() -> Ours {
    RetryLayer::new().layer(Upstream)
}

fn peer() -> Peer {
    let policy = TowerPolicy {
        budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
        attempts: 3,
    };
    TowerRetryLayer::new(policy).layer(Upstream)
}

/// Where a case's requests come from.
type Make<B> = dyn Fn() -> Request<B>;

fn kib() -> Bytes {
    Bytes::from(vec![7u8; 1024])
}

fn make_get() -> Box<Make<Full<Bytes>>> {
    Box::new(get_request)
}

fn make_put() -> Box<Make<Full<Bytes>>> {
    let kib = kib();
    Box::new(move || put_request(kib.len(), Full::new(kib.clone())))
}

fn make_streamed() -> Box<Make<Streamed>> {
    let kib = kib();
    Box::new(move || {
        put_request(
            kib.len(),
            Streamed {
                chunk: Some(kib.clone()),
                len: kib.len() as u64,
            },
        )
    })
}

fn group<B>(c: &mut Criterion, name: &str, make: &Make<B>, tower_call: fn(&mut Peer, Request<B>))
where
    B: Body<Data = Bytes> + Unpin + 'static,
    B::Error: Into<gateway_layers_core::BoxError>,
{
    let mut group = c.benchmark_group(format!("retry/success_{name}"));
    let (mut baseline, mut o, mut t) = (Upstream, ours(), peer());
    // Request construction is setup, not measured.
    group.bench_function(BenchmarkId::from_parameter("baseline"), |b| {
        b.iter_batched(make, |r| call(&mut baseline, r), BatchSize::SmallInput)
    });
    group.bench_function(BenchmarkId::from_parameter("gateway_layers_retry"), |b| {
        b.iter_batched(make, |r| call(&mut o, r), BatchSize::SmallInput)
    });
    group.bench_function(BenchmarkId::from_parameter("tower_retry"), |b| {
        b.iter_batched(make, |r| tower_call(&mut t, r), BatchSize::SmallInput)
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    group(c, "get", &*make_get(), call);
    group(c, "put_1kib", &*make_put(), call);
    group(c, "put_1kib_streamed", &*make_streamed(), call_collected);
    eprintln!();
    ratios("get", &*make_get(), call);
    ratios("put_1kib", &*make_put(), call);
    ratios("put_1kib_streamed", &*make_streamed(), call_collected);
    let (mut o, mut t) = (ours(), peer());
    eprintln!(
        "future sizes: gateway_layers_retry {} bytes, tower_retry {} bytes",
        std::mem::size_of_val(&o.call(put_request(0, Full::new(Bytes::new())))),
        std::mem::size_of_val(&t.call(put_request(0, Full::new(Bytes::new()))))
    );
}

/// Interleaved timing of the services in the same process (requests built beforehand),
/// best of 150 rounds each, printed as ratios.
fn ratios<B>(name: &str, make: &Make<B>, tower_call: fn(&mut Peer, Request<B>))
where
    B: Body<Data = Bytes> + Unpin + 'static,
    B::Error: Into<gateway_layers_core::BoxError>,
{
    const N: usize = 2_000;
    fn time<B>(make: &Make<B>, mut f: impl FnMut(Request<B>)) -> f64 {
        let requests: Vec<_> = (0..N).map(|_| make()).collect();
        let start = Instant::now();
        for request in requests {
            f(request);
        }
        start.elapsed().as_nanos() as f64 / N as f64
    }
    let (mut baseline, mut o, mut t) = (Upstream, ours(), peer());
    let (mut bn, mut on, mut tn) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..150 {
        bn = bn.min(time(make, |r| call(&mut baseline, r)));
        on = on.min(time(make, |r| call(&mut o, r)));
        tn = tn.min(time(make, |r| tower_call(&mut t, r)));
    }
    eprintln!(
        "ratio success_{name}: baseline {bn:.1} ns, gateway_layers_retry {on:.1} ns, \
         tower_retry {tn:.1} ns; retry/tower = {:.2}x, \
         (retry - baseline)/(tower - baseline) = {:.2}x",
        on / tn,
        (on - bn) / (tn - bn)
    );
}

criterion_group!(benches, bench);

/// `RETRY_BENCH_VARIANT` mode: `n` calls (request construction included) of one
/// variant, then exit.
fn single<B>(variant: &str, make: &Make<B>, tower_call: fn(&mut Peer, Request<B>), n: u64)
where
    B: Body<Data = Bytes> + Unpin + 'static,
    B::Error: Into<gateway_layers_core::BoxError>,
{
    let (mut baseline, mut o, mut t) = (Upstream, ours(), peer());
    match variant {
        "baseline" => (0..n).for_each(|_| call(&mut baseline, make())),
        "ours" => (0..n).for_each(|_| call(&mut o, make())),
        "tower" => (0..n).for_each(|_| tower_call(&mut t, make())),
        other => panic!("unknown variant {other}"),
    }
}

fn main() {
    if let Ok(variant) = std::env::var("RETRY_BENCH_VARIANT") {
        let case = std::env::var("RETRY_BENCH_CASE").unwrap_or_else(|_| "put_1kib".into());
        let n = std::env::var("RETRY_BENCH_CALLS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        match case.as_str() {
            "get" => single(&variant, &*make_get(), call, n),
            "put_1kib" => single(&variant, &*make_put(), call, n),
            "put_1kib_streamed" => single(&variant, &*make_streamed(), call_collected, n),
            other => panic!("unknown case {other}"),
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
