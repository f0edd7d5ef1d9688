//! Rate-limit overhead, side by side in one run:
//!
//! - `keyed_10k_2threads/{baseline,gateway,tower_governor}`: one call through the
//!   service with 10,000 client IPs, two threads at once (the baseline is the bare inner
//!   service; overhead = layer − baseline). Neither limiter refuses anything here.
//!   `keyed_10k_1thread` is the same on one thread.
//! - the keyed case once more with the three interleaved round by round, best and
//!   median rounds and their overhead ratios (steadier on a shared machine).
//! - `windows/{1,2,3,4}`: the same on one thread with 1–4 windows per policy.
//! - bytes per key of the local store, and (feature `redis`) Redis decisions per second
//!   with p50/p99 latency on loopback against a private `redis-server`.
//!
//! `cargo bench -p gateway-layers-ratelimit --features redis --bench ratelimit -- --warm-up-time 1 --measurement-time 3`
//!
//! This package's dev-dependencies switch on tokio's `test-util` (for paused-clock
//! tests), which makes `tokio::time::Instant::now()` check whether a clock was ever
//! paused. The root package's `ratelimit_prod` bench runs this same file without it,
//! as a production build has it: `cargo bench -p gateway-layers --bench ratelimit_prod`.
#![allow(clippy::print_stdout, missing_docs)]

use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    hint::black_box,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    pin::pin,
    sync::{Arc, Barrier},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use axum::{body::Body, extract::ConnectInfo};
use criterion::{Criterion, criterion_group};
use gateway_layers_ratelimit::{HeaderStyle, LOCAL_ENTRY_BYTES, Limit, Policy, RateLimitLayer};
use http::{Request, Response};
use tower::{Layer, Service, service_fn};

const KEYS: usize = 10_000;

fn addrs() -> Arc<Vec<SocketAddr>> {
    Arc::new(
        (0..KEYS as u32)
            .map(|i| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 40_000))
            .collect(),
    )
}

fn inner() -> impl Service<
    Request<()>,
    Response = Response<Body>,
    Error = Infallible,
    Future = Ready<Result<Response<Body>, Infallible>>,
> + Clone
+ Send
+ 'static {
    service_fn(|_req: Request<()>| ready(Ok::<_, Infallible>(Response::new(Body::empty()))))
}

/// Calls `svc` once and expects an immediate answer (every path here is synchronous).
#[inline]
fn call_once<S>(svc: &mut S, cx: &mut Context<'_>, addr: SocketAddr) -> bool
where
    S: Service<Request<()>>,
{
    let mut req = Request::new(());
    req.extensions_mut().insert(ConnectInfo(addr));
    assert!(matches!(svc.poll_ready(cx), Poll::Ready(Ok(()))));
    let fut = pin!(svc.call(req));
    match fut.poll(cx) {
        Poll::Ready(Ok(res)) => {
            black_box(&res);
            true
        }
        _ => false,
    }
}

/// `iters` calls on each of `threads` threads at once; returns the mean per-thread time.
fn run<S>(svc: &S, threads: usize, iters: u64, addrs: &Arc<Vec<SocketAddr>>) -> Duration
where
    S: Service<Request<()>> + Clone + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mut svc = svc.clone();
            let addrs = addrs.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut cx = Context::from_waker(Waker::noop());
                barrier.wait();
                let start = Instant::now();
                for i in 0..iters as usize {
                    let addr = addrs[(i * 7 + t * 5003) % addrs.len()];
                    assert!(call_once(&mut svc, &mut cx, addr));
                }
                start.elapsed()
            })
        })
        .collect();
    let total: Duration = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total / threads as u32
}

fn ours(policy: impl Into<Policy>, style: HeaderStyle) -> RateLimitLayer {
    RateLimitLayer::builder()
        .default_policy(policy)
        .headers(style)
        .build()
        .unwrap()
}

fn generous() -> Limit {
    Limit::per_second(1_000_000)
}

/// tower_governor with the same quota as [`generous`] (one cell per microsecond, burst
/// 1,000,000), keyed by the peer IP of `ConnectInfo`. Its default config adds no
/// headers to admitted responses; `use_headers()` adds `x-ratelimit-limit` and
/// `x-ratelimit-remaining`.
macro_rules! governor_layer {
    ($($headers:ident)?) => {
        tower_governor::GovernorLayer::new(
            tower_governor::governor::GovernorConfigBuilder::default()
                .per_nanosecond(1000)
                .burst_size(1_000_000)
                $(.$headers())?
                .finish()
                .unwrap(),
        )
    };
}

fn keyed(c: &mut Criterion) {
    let addrs = addrs();
    let governor_layer = governor_layer!();
    let governor_headers_layer = governor_layer!(use_headers);
    for threads in [2, 1] {
        let mut group = c.benchmark_group(format!(
            "keyed_10k_{threads}thread{}",
            if threads > 1 { "s" } else { "" }
        ));
        let baseline = inner();
        group.bench_function("baseline", |b| {
            b.iter_custom(|iters| run(&baseline, threads, iters, &addrs))
        });
        let gateway = ours(generous(), HeaderStyle::None).layer(inner());
        group.bench_function("gateway", |b| {
            b.iter_custom(|iters| run(&gateway, threads, iters, &addrs))
        });
        let governor = governor_layer.layer(inner());
        group.bench_function("tower_governor", |b| {
            b.iter_custom(|iters| run(&governor, threads, iters, &addrs))
        });
        // Headers on: ours with legacy `X-RateLimit-*` (limit, remaining, reset) and
        // with the draft `RateLimit-Policy` / `RateLimit`; tower_governor with
        // `use_headers()` (limit, remaining).
        let legacy = ours(generous(), HeaderStyle::Legacy).layer(inner());
        group.bench_function("gateway_legacy_headers", |b| {
            b.iter_custom(|iters| run(&legacy, threads, iters, &addrs))
        });
        let draft = ours(generous(), HeaderStyle::Draft).layer(inner());
        group.bench_function("gateway_draft_headers", |b| {
            b.iter_custom(|iters| run(&draft, threads, iters, &addrs))
        });
        let governor_headers = governor_headers_layer.layer(inner());
        group.bench_function("tower_governor_headers", |b| {
            b.iter_custom(|iters| run(&governor_headers, threads, iters, &addrs))
        });
        group.finish();
    }
}

fn windows(c: &mut Criterion) {
    let addrs = addrs();
    let mut group = c.benchmark_group("windows_1thread");
    let all = [
        generous(),
        Limit::per_minute(60_000_000),
        Limit::per_hour(3_600_000_000),
        Limit::per_day(86_400_000_000),
    ];
    for n in 1..=4 {
        let svc = ours(Policy::from(all[..n].to_vec()), HeaderStyle::None).layer(inner());
        group.bench_function(format!("{n}"), |b| {
            b.iter_custom(|iters| run(&svc, 1, iters, &addrs))
        });
    }
    group.finish();
}

/// The keyed case again, interleaved: each round times 10,000 calls of the baseline,
/// ours and tower_governor in turn (on 2 threads, then on 1), so that a slow stretch
/// of a shared machine hits all three alike; prints each one's best and median round
/// and the overhead ratio `(ours - baseline) / (tower_governor - baseline)` of both.
/// `RATELIMIT_BENCH_ROUNDS` rounds (default 100).
fn interleaved() {
    let addrs = addrs();
    let rounds: usize = std::env::var("RATELIMIT_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    const ITERS: u64 = 10_000;
    for threads in [2, 1] {
        let baseline = inner();
        let gateway = ours(generous(), HeaderStyle::None).layer(inner());
        let governor = governor_layer!().layer(inner());
        let mut times: [Vec<f64>; 3] = Default::default();
        for _ in 0..rounds {
            let per_call = |d: Duration| d.as_secs_f64() * 1e9 / ITERS as f64;
            times[0].push(per_call(run(&baseline, threads, ITERS, &addrs)));
            times[1].push(per_call(run(&gateway, threads, ITERS, &addrs)));
            times[2].push(per_call(run(&governor, threads, ITERS, &addrs)));
        }
        let stats = times.map(|mut t| {
            t.sort_by(f64::total_cmp);
            (t[0], t[t.len() / 2])
        });
        let [(b_best, b_med), (g_best, g_med), (t_best, t_med)] = stats;
        println!(
            "keyed_10k interleaved, {threads} thread(s), {rounds} rounds of {ITERS} calls: \
             best / median ns per call: baseline {b_best:.1} / {b_med:.1}, \
             gateway {g_best:.1} / {g_med:.1}, tower_governor {t_best:.1} / {t_med:.1}; \
             overhead ours / tower_governor: best {:.2}x, median {:.2}x",
            (g_best - b_best) / (t_best - b_best),
            (g_med - b_med) / (t_med - b_med),
        );
    }
}

fn bytes_per_key() {
    let layer = ours(Limit::per_hour(10), HeaderStyle::None);
    let mut svc = layer.layer(inner());
    let mut cx = Context::from_waker(Waker::noop());
    let n = 100_000u32;
    for i in 0..n {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(i)), 1);
        call_once(&mut svc, &mut cx, addr);
    }
    let keys = layer.local_keys();
    let bytes = layer.local_table_bytes();
    println!(
        "bytes per key: {:.1} at current capacity ({} IPv4 keys, 1 window, {} table bytes; compact 16 B entries + 1 control byte per slot; other keys use {} B entries; IP keys own no heap data)",
        bytes as f64 / keys as f64,
        keys,
        bytes,
        LOCAL_ENTRY_BYTES
    );
}

#[cfg(feature = "redis")]
fn redis_throughput() {
    use gateway_layers_ratelimit::{OnBackendError, RedisBackend};
    use gateway_layers_test_support::RedisServer;
    use tower::ServiceExt;

    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let layer = RateLimitLayer::builder()
        .default_policy([generous(), Limit::per_hour(3_600_000_000)])
        .headers(HeaderStyle::None)
        .redis(
            RedisBackend::new(&redis.url())
                .unwrap()
                .timeout(Duration::from_secs(1))
                .on_error(OnBackendError::Deny),
        )
        .build()
        .unwrap();
    let svc = layer.layer(inner());
    for concurrency in [1usize, 32] {
        let per_task = 20_000 / concurrency;
        let (elapsed, mut latencies) = runtime.block_on(async {
            // Warm up the connection and the script cache.
            for i in 0..200u32 {
                let mut req = Request::new(());
                req.extensions_mut().insert(ConnectInfo(SocketAddr::from((
                    [10, 1, 0, (i % 200) as u8],
                    1,
                ))));
                svc.clone().oneshot(req).await.unwrap();
            }
            let start = Instant::now();
            let tasks: Vec<_> = (0..concurrency)
                .map(|t| {
                    let svc = svc.clone();
                    tokio::spawn(async move {
                        let mut lat = Vec::with_capacity(per_task);
                        for i in 0..per_task {
                            let ip =
                                Ipv4Addr::from(0x0b00_0000 + (t * per_task + i) as u32 % 10_000);
                            let mut req = Request::new(());
                            req.extensions_mut()
                                .insert(ConnectInfo(SocketAddr::new(IpAddr::V4(ip), 1)));
                            let t0 = Instant::now();
                            let res = svc.clone().oneshot(req).await.unwrap();
                            lat.push(t0.elapsed());
                            assert_eq!(res.status(), 200);
                        }
                        lat
                    })
                })
                .collect();
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await.unwrap());
            }
            (start.elapsed(), all)
        });
        latencies.sort();
        let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
        println!(
            "redis (2 windows, loopback, concurrency {concurrency}): {:.0} decisions/s, p50 {:?}, p99 {:?} over {} decisions",
            latencies.len() as f64 / elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            latencies.len()
        );
    }
}

criterion_group!(benches, keyed, windows);

/// `RATELIMIT_BENCH_VARIANT=<name> RATELIMIT_BENCH_CALLS=<n>`: only make `n` calls of
/// one variant on one thread and exit, for instruction counting under
/// `valgrind --tool=callgrind` (load independent): run with two values of `n` and
/// divide the difference by the difference of `n`. Count the calling thread only
/// (`--collect-atstart=no '--toggle-collect=*thread_start*'`): building a layer
/// calibrates quanta's clock (ours and tower_governor's) for a stretch of wall time,
/// whose instruction count differs from run to run. Variants: `baseline`, `gateway`,
/// `gateway_legacy`, `gateway_draft`, `tower_governor`, `tower_governor_headers`,
/// `windows_1` … `windows_4`.
fn single_variant(variant: &str, n: u64) {
    let addrs = addrs();
    let windows = |n: usize| {
        let all = [
            generous(),
            Limit::per_minute(60_000_000),
            Limit::per_hour(3_600_000_000),
            Limit::per_day(86_400_000_000),
        ];
        ours(Policy::from(all[..n].to_vec()), HeaderStyle::None).layer(inner())
    };
    let elapsed = match variant {
        "baseline" => run(&inner(), 1, n, &addrs),
        "gateway" => run(
            &ours(generous(), HeaderStyle::None).layer(inner()),
            1,
            n,
            &addrs,
        ),
        "gateway_legacy" => run(
            &ours(generous(), HeaderStyle::Legacy).layer(inner()),
            1,
            n,
            &addrs,
        ),
        "gateway_draft" => run(
            &ours(generous(), HeaderStyle::Draft).layer(inner()),
            1,
            n,
            &addrs,
        ),
        "tower_governor" => run(&governor_layer!().layer(inner()), 1, n, &addrs),
        "tower_governor_headers" => run(&governor_layer!(use_headers).layer(inner()), 1, n, &addrs),
        "windows_1" => run(&windows(1), 1, n, &addrs),
        "windows_2" => run(&windows(2), 1, n, &addrs),
        "windows_3" => run(&windows(3), 1, n, &addrs),
        "windows_4" => run(&windows(4), 1, n, &addrs),
        other => panic!("unknown variant {other}"),
    };
    black_box(elapsed);
}

/// Also the entry point of the root package's `ratelimit_prod` bench, which includes
/// this file as a module so that the same code is built without tokio's `test-util`.
pub(crate) fn main() {
    if let Ok(variant) = std::env::var("RATELIMIT_BENCH_VARIANT") {
        let n = std::env::var("RATELIMIT_BENCH_CALLS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        single_variant(&variant, n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    interleaved();
    bytes_per_key();
    #[cfg(feature = "redis")]
    redis_throughput();
}
