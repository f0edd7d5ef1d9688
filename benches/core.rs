//! Hot-path costs of the shared pieces every layer uses: client IP resolution behind
//! trusted proxies, key extraction, classification, and rendering a rejection.
//!
//! Run: `cargo bench -p gateway-layers --bench core`.
#![allow(missing_docs)]

use std::{hint::black_box, net::SocketAddr, sync::Arc};

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_layers::core::{
    Classify, ClientIpResolver, DefaultClassifier, Identity, KeyExtractor, KeyPolicy, ProblemJson,
    Rejection, RequestView, TrustedProxies,
    key::{ClientIpKey, CompositeKey, RouteKey, SharedKeyExtractor, SubjectKey},
};
use http::{HeaderMap, Request, StatusCode};

fn request() -> Request<()> {
    let mut request = Request::builder()
        .uri("/orders/42")
        .header("x-forwarded-for", "198.51.100.7, 10.0.0.9")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert("10.0.0.2:40000".parse::<SocketAddr>().unwrap());
    request
        .extensions_mut()
        .insert(Identity::new().with_subject("user-42"));
    request
}

fn client_ip(c: &mut Criterion) {
    let request = request();
    let resolver = ClientIpResolver::new(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
    let untrusted = ClientIpResolver::default();
    let mut group = c.benchmark_group("core/client_ip");
    group.bench_function("xff_two_hops", |b| {
        b.iter(|| resolver.resolve(black_box(&RequestView::new(&request))))
    });
    group.bench_function("no_trusted_proxies", |b| {
        b.iter(|| untrusted.resolve(black_box(&RequestView::new(&request))))
    });
    group.finish();
}

fn keys(c: &mut Criterion) {
    let request = request();
    let ip = KeyPolicy::new(ClientIpKey::new(ClientIpResolver::new(
        TrustedProxies::new(["10.0.0.0/8"]).unwrap(),
    )));
    let subject = SubjectKey;
    let composite = CompositeKey::new([
        Arc::new(SubjectKey) as SharedKeyExtractor,
        Arc::new(RouteKey),
    ]);
    let mut group = c.benchmark_group("core/key");
    group.bench_function("client_ip", |b| {
        b.iter(|| ip.resolve(black_box(&RequestView::new(&request))))
    });
    group.bench_function("subject", |b| {
        b.iter(|| subject.extract(black_box(&RequestView::new(&request))))
    });
    group.bench_function("composite_missing_route", |b| {
        b.iter(|| composite.extract(black_box(&RequestView::new(&request))))
    });
    group.finish();
}

fn classify(c: &mut Criterion) {
    let classifier = DefaultClassifier::new();
    let headers = HeaderMap::new();
    c.bench_function("core/classify/status", |b| {
        b.iter(|| classifier.classify_response(black_box(StatusCode::BAD_GATEWAY), &headers))
    });
}

fn rejection(c: &mut Criterion) {
    c.bench_function("core/rejection/problem_json", |b| {
        b.iter(|| {
            Rejection::new(StatusCode::TOO_MANY_REQUESTS, "ratelimit", "rate_limited")
                .with_detail("quota exceeded")
                .into_response::<http_body_util::Empty<bytes::Bytes>>(&ProblemJson)
        })
    });
}

criterion_group!(benches, client_ip, keys, classify, rejection);
criterion_main!(benches);
