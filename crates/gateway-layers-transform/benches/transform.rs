//! Transform layer benchmarks, beside their peers in the same run:
//!
//! - `header_set`: one header set on the request by `TransformLayer` (`set_header`) vs
//!   tower-http's `SetRequestHeaderLayer::overriding` vs the bare inner service.
//! - `json_4k` / `json_256k`: a response JSON transform (remove `items[*].internal_id`)
//!   through the layer vs a hand-written `serde_json::Value` round trip doing the same
//!   (the floor).
//!
//! Run: `cargo bench -p gateway-layers-transform --bench transform -- --warm-up-time 1 --measurement-time 3`.
//! Ratios are printed at the end: from criterion's medians, and from an interleaved
//! run (variants in turns, best round each) that resists load from other processes.
#![allow(missing_docs)]
#![allow(clippy::print_stdout)]

use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    hint::black_box,
    path::PathBuf,
    pin::pin,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{BatchSize, Criterion};
use gateway_layers_transform::{Rules, TransformConfig};
use http::{HeaderName, HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::Full;
use serde_json::Value;
use tower::{Layer, Service};
use tower_http::set_header::SetRequestHeaderLayer;

/// The inner service: answers at once with a clone of `body`.
#[derive(Clone)]
struct Answer {
    body: Bytes,
    json: bool,
}

impl<B> Service<Request<B>> for Answer {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        black_box(request.headers());
        let mut response = Response::new(Full::new(self.body.clone()));
        if self.json {
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response.headers_mut().insert(
                http::header::CONTENT_LENGTH,
                HeaderValue::from(self.body.len()),
            );
        }
        ready(Ok(response))
    }
}

/// Polls a future that completes without waiting.
fn now<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the benchmarked future must not wait"),
    }
}

/// Reads every data frame of a body that never waits.
fn drain<B: Body<Data = Bytes>>(body: B) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut body = pin!(body);
    let mut len = 0;
    while let Poll::Ready(Some(Ok(frame))) = body.as_mut().poll_frame(&mut cx) {
        if let Ok(data) = frame.into_data() {
            len += black_box(data).len();
        }
    }
    len
}

fn request() -> Request<Full<Bytes>> {
    Request::get("/orders/7?page=2")
        .header("host", "api.example.com")
        .header("accept", "application/json")
        .header("user-agent", "bench/1.0")
        .header("x-gateway", "forged")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Each routine returns a `bool`, so the response is dropped inside the measurement and
/// criterion's vector of outputs stays small for every variant alike (a vector of whole
/// responses would measure memory traffic that depends on the response type's size).
fn header_set(c: &mut Criterion) {
    let inner = Answer {
        body: Bytes::new(),
        json: false,
    };
    let mut group = c.benchmark_group("header_set");
    {
        let mut svc = inner.clone();
        group.bench_function("baseline", |b| {
            b.iter_batched(
                request,
                |r| black_box(now(svc.call(r))).is_ok(),
                BatchSize::SmallInput,
            )
        });
    }
    {
        let mut svc = SetRequestHeaderLayer::overriding(
            HeaderName::from_static("x-gateway"),
            HeaderValue::from_static("v1"),
        )
        .layer(inner.clone());
        group.bench_function("tower_http", |b| {
            b.iter_batched(
                request,
                |r| black_box(now(svc.call(r))).is_ok(),
                BatchSize::SmallInput,
            )
        });
    }
    {
        let mut svc = TransformConfig::new()
            .request(Rules::new().set_header("x-gateway", "v1"))
            .build()
            .unwrap()
            .layer(inner);
        group.bench_function("transform", |b| {
            b.iter_batched(
                request,
                |r| black_box(now(svc.call(r))).is_ok(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// A JSON document of about `size` bytes: `{"items":[{"id":..,"name":..,"internal_id":..,"price":..}],"total":..}`.
fn document(size: usize) -> Bytes {
    let mut items = Vec::new();
    let mut len = 20;
    let mut i = 0u64;
    while len < size {
        let item = serde_json::json!({
            "id": i,
            "name": format!("item number {i}"),
            "internal_id": format!("int-{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            "price": (i as f64) * 1.25,
            "tags": ["a", "b"],
        });
        len += item.to_string().len() + 1;
        items.push(item);
        i += 1;
    }
    let total = items.len();
    Bytes::from(serde_json::json!({"items": items, "total": total}).to_string())
}

/// The floor: what a hand-written transform must do at least.
fn floor(body: &Bytes) -> Bytes {
    let mut doc: Value = serde_json::from_slice(body).unwrap();
    if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            if let Some(item) = item.as_object_mut() {
                item.remove("internal_id");
            }
        }
    }
    Bytes::from(serde_json::to_vec(&doc).unwrap())
}

fn json(c: &mut Criterion, name: &str, size: usize) {
    let body = document(size);
    let layer = TransformConfig::new()
        .response(Rules::new().remove_field("items[*].internal_id"))
        .build()
        .unwrap();
    let mut svc = layer.layer(Answer {
        body: body.clone(),
        json: true,
    });
    // Same output both ways.
    let via_layer = now(svc.call(request())).unwrap();
    assert_eq!(drain(via_layer.into_body()), floor(&body).len());

    let mut group = c.benchmark_group(name);
    group.throughput(criterion::Throughput::Bytes(body.len() as u64));
    group.bench_function("serde_value_floor", |b| {
        b.iter(|| black_box(floor(black_box(&body))))
    });
    group.bench_function("transform", |b| {
        b.iter_batched(
            request,
            |r| {
                let response = now(svc.call(r)).unwrap();
                black_box(drain(response.into_body()))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The median of a benchmark from criterion's files, in nanoseconds.
fn median(group: &str, id: &str) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            exe.ancestors()
                .find(|p| p.file_name().is_some_and(|n| n == "target"))
                .map(PathBuf::from)
        })?;
    let path = target
        .join("criterion")
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn report() {
    println!("\nratios (medians, this run):");
    let rows = [
        ("header_set", "transform", "tower_http", "goal <= 1.2"),
        ("header_set", "transform", "baseline", ""),
        ("header_set", "tower_http", "baseline", ""),
        ("json_4k", "transform", "serde_value_floor", "goal <= 1.3"),
        ("json_256k", "transform", "serde_value_floor", "goal <= 1.3"),
    ];
    for (group, a, b, goal) in rows {
        match (median(group, a), median(group, b)) {
            (Some(x), Some(y)) => println!(
                "  {group}: {a} {x:.1} ns / {b} {y:.1} ns = {:.3}x {goal}",
                x / y
            ),
            _ => println!("  {group}: {a} vs {b}: not measured in this run"),
        }
    }
}

/// A second, noise-resistant measure for a shared machine: the variants run in turns
/// (round robin, `rounds` times `iters` iterations each) and the fastest round of each
/// is compared, so load from other processes hits all of them alike.
fn interleaved(name: &str, variants: &mut [(&str, &mut dyn FnMut(usize) -> Duration)]) {
    const ROUNDS: usize = 40;
    let iters = if name.contains("256k") { 5 } else { 2000 };
    let mut best = vec![f64::INFINITY; variants.len()];
    for _ in 0..ROUNDS {
        for (i, (_, run)) in variants.iter_mut().enumerate() {
            let ns = run(iters).as_nanos() as f64 / iters as f64;
            best[i] = best[i].min(ns);
        }
    }
    let line: Vec<String> = variants
        .iter()
        .zip(&best)
        .map(|((label, _), ns)| format!("{label} {ns:.1} ns"))
        .collect();
    println!(
        "  {name} (interleaved, best of {ROUNDS}): {}",
        line.join(", ")
    );
    for (i, (label, _)) in variants.iter().enumerate().skip(1) {
        println!(
            "    {} / {label} = {:.3}x",
            variants[0].0,
            best[0] / best[i]
        );
    }
}

fn interleaved_all(filter: &str) {
    println!("\ninterleaved ratios (this run):");
    let inner = Answer {
        body: Bytes::new(),
        json: false,
    };
    let mut baseline = inner.clone();
    let mut peer = SetRequestHeaderLayer::overriding(
        HeaderName::from_static("x-gateway"),
        HeaderValue::from_static("v1"),
    )
    .layer(inner.clone());
    let mut ours = TransformConfig::new()
        .request(Rules::new().set_header("x-gateway", "v1"))
        .build()
        .unwrap()
        .layer(inner);
    fn timed<S>(svc: &mut S, n: usize) -> Duration
    where
        S: Service<Request<Full<Bytes>>>,
    {
        let requests: Vec<_> = (0..n).map(|_| request()).collect();
        let mut out = Vec::with_capacity(n);
        let start = Instant::now();
        for r in requests {
            out.push(now(svc.call(r)).is_ok());
        }
        let elapsed = start.elapsed();
        black_box(out);
        elapsed
    }
    if "header_set".contains(filter) || filter.contains("header_set") {
        interleaved(
            "header_set",
            &mut [
                ("transform", &mut |n| timed(&mut ours, n)),
                ("tower_http", &mut |n| timed(&mut peer, n)),
                ("baseline", &mut |n| timed(&mut baseline, n)),
            ],
        );
    }
    for (name, size) in [("json_4k", 4 * 1024), ("json_256k", 256 * 1024)] {
        if !name.contains(filter) && !filter.contains(name) {
            continue;
        }
        let body = document(size);
        let mut svc = TransformConfig::new()
            .response(Rules::new().remove_field("items[*].internal_id"))
            .build()
            .unwrap()
            .layer(Answer {
                body: body.clone(),
                json: true,
            });
        interleaved(
            name,
            &mut [
                ("transform", &mut |n| {
                    let requests: Vec<_> = (0..n).map(|_| request()).collect();
                    let start = Instant::now();
                    for r in requests {
                        let response = now(svc.call(r)).unwrap();
                        black_box(drain(response.into_body()));
                    }
                    start.elapsed()
                }),
                ("serde_value_floor", &mut |n| {
                    let start = Instant::now();
                    for _ in 0..n {
                        black_box(floor(black_box(&body)));
                    }
                    start.elapsed()
                }),
            ],
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    header_set(&mut c);
    json(&mut c, "json_4k", 4 * 1024);
    json(&mut c, "json_256k", 256 * 1024);
    c.final_summary();
    report();
    // The same filter as criterion's (first argument not starting with `-`).
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-') && a.parse::<f64>().is_err())
        .unwrap_or_default();
    interleaved_all(filter.split('/').next().unwrap_or(""));
}
