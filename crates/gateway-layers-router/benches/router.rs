//! Match-and-dispatch time with 10, 100 and 1,000 routes: this router (host + path,
//! a quarter of the routes also requiring a header) vs axum's `Router` with the same
//! paths (path only), vs calling the route's service directly (baseline), in the
//! same run. Every route points to the same trivial service.
//!
//! `cargo bench -p gateway-layers-router --bench router -- --warm-up-time 1 --measurement-time 3`
//!
//! After the criterion groups, a short side-by-side timing prints the ratios.
#![allow(missing_docs, clippy::print_stdout)]

use std::{convert::Infallible, future::ready, hint::black_box, time::Instant};

use axum::body::Body;
use criterion::{BatchSize, Criterion, criterion_group};
use futures_util::FutureExt;
use gateway_layers_router::{Route, Router, ValueMatch};
use http::{Request, Response};
use tower::{Service, ServiceExt, service_fn};

const SIZES: [usize; 3] = [10, 100, 1_000];

fn leaf() -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    service_fn(|_req: Request<Body>| ready(Ok::<_, Infallible>(Response::new(Body::empty()))))
}

fn path(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("/svc{i}/items/{{id}}")
    } else {
        format!("/svc{i}/health")
    }
}

fn gateway(n: usize) -> Router<Body, Body> {
    let mut builder = Router::builder();
    for i in 0..n {
        let p = path(i);
        let mut route = Route::new(format!("r{i}")).host(format!("h{}.example.com", i % 10));
        route = if p.contains('{') {
            route.template(p)
        } else {
            route.exact(p)
        };
        if i % 4 == 0 {
            route = route.header("x-tenant", ValueMatch::Present);
        }
        builder = builder.route(route.service(leaf()));
    }
    builder.build().unwrap()
}

fn axum_router(n: usize) -> axum::Router {
    let mut router = axum::Router::new();
    for i in 0..n {
        router = router.route_service(&path(i), leaf());
    }
    router
}

/// The request for the middle route (a template route with a header matcher).
fn request(n: usize) -> Request<Body> {
    let i = (n / 2) / 4 * 4;
    Request::get(format!("/svc{i}/items/42"))
        .header("host", format!("h{}.example.com", i % 10))
        .header("x-tenant", "acme")
        .body(Body::empty())
        .unwrap()
}

fn call<S>(svc: &S, req: Request<Body>) -> u16
where
    S: Service<Request<Body>> + Clone,
    S::Response: Status,
    S::Error: std::fmt::Debug,
{
    let response = svc.clone().oneshot(req).now_or_never().unwrap().unwrap();
    response.status()
}

trait Status {
    fn status(&self) -> u16;
}
impl<B> Status for Response<B> {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

fn check(n: usize) {
    let g = gateway(n);
    let a = axum_router(n);
    assert_eq!(call(&g, request(n)), 200);
    assert_eq!(call(&a, request(n)), 200);
    assert_eq!(call(&leaf(), request(n)), 200);
}

fn bench(c: &mut Criterion) {
    for n in SIZES {
        check(n);
        let mut group = c.benchmark_group(format!("router/{n}_routes"));
        let baseline = leaf();
        group.bench_function("baseline_service", |b| {
            b.iter_batched(
                || request(n),
                |req| black_box(call(&baseline, req)),
                BatchSize::SmallInput,
            )
        });
        let g = gateway(n);
        group.bench_function("gateway_router_host_path_header", |b| {
            b.iter_batched(
                || request(n),
                |req| black_box(call(&g, req)),
                BatchSize::SmallInput,
            )
        });
        let a = axum_router(n);
        group.bench_function("axum_router_path", |b| {
            b.iter_batched(
                || request(n),
                |req| black_box(call(&a, req)),
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
    // `ROUTER_BENCH_NO_RATIOS=1` skips the side-by-side pass (e.g. when profiling).
    if std::env::var_os("ROUTER_BENCH_NO_RATIOS").is_none() {
        ratios();
    }
}

/// Interleaved side-by-side timing (requests built beforehand), printed as ratios.
fn ratios() {
    const ITERS: usize = 20_000;
    fn time(n: usize, f: &dyn Fn(Request<Body>) -> u16) -> f64 {
        let requests: Vec<_> = (0..ITERS).map(|_| request(n)).collect();
        let start = Instant::now();
        for req in requests {
            black_box(f(req));
        }
        start.elapsed().as_nanos() as f64 / ITERS as f64
    }
    println!("\nrouter ratios (ns per request, best of 10 interleaved rounds):");
    for n in SIZES {
        let baseline = leaf();
        let g = gateway(n);
        let a = axum_router(n);
        let (mut tb, mut tg, mut ta) = (f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..10 {
            tb = tb.min(time(n, &|r| call(&baseline, r)));
            tg = tg.min(time(n, &|r| call(&g, r)));
            ta = ta.min(time(n, &|r| call(&a, r)));
        }
        println!(
            "  {n:>5} routes: baseline {tb:7.1}  gateway {tg:7.1}  axum {ta:7.1}  \
             gateway/axum {:.2}x  gateway/baseline {:.2}x  axum/baseline {:.2}x  \
             (routing overhead over baseline: gateway {:.1} ns, axum {:.1} ns, {:.2}x)",
            tg / ta,
            tg / tb,
            ta / tb,
            tg - tb,
            ta - tb,
            (tg - tb) / (ta - tb)
        );
    }
}

criterion_group!(benches, bench);

/// `ROUTER_BENCH_ONLY=gateway|axum|baseline` (with `ROUTER_BENCH_ROUTES=n`) runs 10,000
/// calls of one variant and exits: for instruction counts under
/// `valgrind --tool=callgrind`, which a busy machine does not disturb.
fn main() {
    if let Ok(only) = std::env::var("ROUTER_BENCH_ONLY") {
        let n = std::env::var("ROUTER_BENCH_ROUTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000);
        let requests: Vec<_> = (0..10_000).map(|_| request(n)).collect();
        let (g, a, l) = (gateway(n), axum_router(n), leaf());
        for req in requests {
            let status = match only.as_str() {
                "gateway" => call(&g, req),
                "axum" => call(&a, req),
                _ => call(&l, req),
            };
            assert_eq!(status, 200);
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
