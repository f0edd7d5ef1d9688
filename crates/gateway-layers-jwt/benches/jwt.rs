//! JWT layer overhead vs raw `jsonwebtoken::decode` (same aws-lc-rs backend), the
//! verified-token cache, and the peer crate jwt-authorizer, in one run.
//!
//! `cargo bench -p gateway-layers-jwt --bench jwt -- --warm-up-time 1 --measurement-time 3`
//!
//! After the criterion groups a summary measures every variant again with a plain
//! timing loop and prints the ratios to stderr.
//!
//! For instruction counts (load independent), `JWT_BENCH_VARIANT=<case>/<variant>`
//! with `JWT_BENCH_CALLS=<n>` makes `n` calls of one variant and exits: run it under
//! `valgrind --tool=callgrind` with two values of `n` and divide the difference of
//! the totals by the difference of `n`, so setup cancels. Cases: `hs256`, `rs256`,
//! `es256`; variants: `raw`, `noop`, `layer`, `cached`, `peer`, and for `hs256`
//! `fresh_cache_on`.
#![allow(missing_docs)]

use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group};
use gateway_layers_jwt::{CacheConfig, JwtAuthLayer, Provider};
use gateway_layers_test_support::jwt::{self, TestAlg};
use http::{Request, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tower::{Layer, Service, service_fn};

/// Polls a future that completes without I/O.
fn drive<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

fn noop(_req: Request<()>) -> Ready<Result<Response<()>, Infallible>> {
    ready(Ok(Response::new(())))
}

fn request(token: &str) -> Request<()> {
    Request::get("/orders")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

struct Case {
    name: &'static str,
    alg: Algorithm,
    token: String,
    key: DecodingKey,
    provider: fn() -> Provider,
    peer: fn() -> jwt_authorizer::AuthorizerBuilder<Value>,
}

fn cases() -> Vec<Case> {
    let claims = jwt::claims("user-1", 3600);
    vec![
        Case {
            name: "hs256",
            alg: Algorithm::HS256,
            token: jwt::mint(TestAlg::Hs256, &claims),
            key: DecodingKey::from_secret(jwt::HMAC_SECRET),
            provider: || Provider::hmac(jwt::HMAC_SECRET, Algorithm::HS256).unwrap(),
            peer: || {
                jwt_authorizer::JwtAuthorizer::from_secret(
                    std::str::from_utf8(jwt::HMAC_SECRET).unwrap(),
                )
            },
        },
        Case {
            name: "rs256",
            alg: Algorithm::RS256,
            token: jwt::mint(TestAlg::Rs256, &claims),
            key: DecodingKey::from_rsa_pem(jwt::RSA_PUBLIC_PEM.as_bytes()).unwrap(),
            provider: || Provider::pem(jwt::RSA_PUBLIC_PEM, Algorithm::RS256).unwrap(),
            peer: || jwt_authorizer::JwtAuthorizer::from_rsa_pem_text(jwt::RSA_PUBLIC_PEM),
        },
        Case {
            name: "es256",
            alg: Algorithm::ES256,
            token: jwt::mint(TestAlg::Es256, &claims),
            key: DecodingKey::from_ec_pem(jwt::EC_PUBLIC_PEM.as_bytes()).unwrap(),
            provider: || Provider::pem(jwt::EC_PUBLIC_PEM, Algorithm::ES256).unwrap(),
            peer: || jwt_authorizer::JwtAuthorizer::from_ec_pem_text(jwt::EC_PUBLIC_PEM),
        },
    ]
}

fn layer(case: &Case, cache: CacheConfig) -> JwtAuthLayer {
    JwtAuthLayer::builder()
        .provider((case.provider)())
        .cache(cache)
        .build()
        .unwrap()
}

type PeerResponse = Response<axum07::body::Body>;

fn peer_noop(_req: Request<()>) -> Ready<Result<PeerResponse, Infallible>> {
    ready(Ok(Response::new(axum07::body::Body::empty())))
}

/// Every measured variant of one case, as closures returning the status.
struct Variants {
    raw: Box<dyn FnMut() -> bool>,
    baseline: Box<dyn FnMut() -> u16>,
    layer: Box<dyn FnMut() -> u16>,
    layer_cached: Box<dyn FnMut() -> u16>,
    /// A new token every call with the cache on (HS256 only): the miss and insert
    /// cost a first-seen token pays for caching.
    layer_fresh_cache_on: Option<Box<dyn FnMut() -> u16>>,
    peer: Box<dyn FnMut() -> u16>,
}

/// Distinct HS256 tokens (different `jti`), cheap to mint.
fn distinct_hs256_tokens(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut claims = jwt::claims("user-1", 3600);
            claims["jti"] = Value::from(format!("{i:08}"));
            jwt::mint(TestAlg::Hs256, &claims)
        })
        .collect()
}

fn variants(case: &Case, runtime: &tokio::runtime::Runtime) -> Variants {
    let token = case.token.clone();
    let key = case.key.clone();
    let validation = Validation::new(case.alg);
    let raw = Box::new(move || {
        jsonwebtoken::decode::<Map<String, Value>>(black_box(&token), &key, &validation).is_ok()
    });

    let token = case.token.clone();
    let mut base = service_fn(noop);
    let baseline = Box::new(move || drive(base.call(request(&token))).unwrap().status().as_u16());

    let token = case.token.clone();
    let mut svc = layer(case, CacheConfig::disabled()).layer(service_fn(noop));
    let layer_fresh = Box::new(move || {
        let response = drive(svc.call(request(&token))).unwrap();
        assert_eq!(response.status(), 200);
        200
    });

    let token = case.token.clone();
    let mut cached = layer(case, CacheConfig::default()).layer(service_fn(noop));
    let layer_cached = Box::new(move || {
        drive(cached.call(request(&token)))
            .unwrap()
            .status()
            .as_u16()
    });

    let layer_fresh_cache_on = (case.alg == Algorithm::HS256).then(|| {
        // 1,024 tokens cycled through a 64-entry cache: every call misses and inserts
        // (evicting), the worst case for a first-seen token.
        let tokens = distinct_hs256_tokens(1024);
        let small = CacheConfig {
            max_entries: 64,
            ..CacheConfig::default()
        };
        let mut svc = layer(case, small).layer(service_fn(noop));
        let mut next = 0;
        Box::new(move || {
            next = (next + 1) % tokens.len();
            let response = drive(svc.call(request(&tokens[next]))).unwrap();
            assert_eq!(response.status(), 200);
            200u16
        }) as Box<dyn FnMut() -> u16>
    });

    let token = case.token.clone();
    let authorizer = runtime.block_on(async {
        use jwt_authorizer::IntoLayer;
        // Algorithms default to the key's family, as in the layer.
        (case.peer)().build().await.unwrap().into_layer()
    });
    let mut peer = authorizer.layer(service_fn(peer_noop));
    let handle = runtime.handle().clone();
    let peer = Box::new(move || {
        let _guard = handle.enter();
        let response = drive(peer.call(request(&token))).unwrap();
        assert_eq!(response.status(), 200);
        200
    });
    Variants {
        raw,
        baseline,
        layer: layer_fresh,
        layer_cached,
        layer_fresh_cache_on,
        peer,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    for case in cases() {
        let mut v = variants(&case, &rt);
        let mut group = c.benchmark_group(format!("jwt/{}", case.name));
        group.bench_function("raw_jsonwebtoken_decode", |b| b.iter(&mut v.raw));
        group.bench_function("noop_service_baseline", |b| b.iter(&mut v.baseline));
        group.bench_function("layer_fresh", |b| b.iter(&mut v.layer));
        group.bench_function("layer_cached_repeat", |b| b.iter(&mut v.layer_cached));
        if let Some(f) = v.layer_fresh_cache_on.as_mut() {
            group.bench_function("layer_fresh_cache_on", |b| b.iter(&mut *f));
        }
        group.bench_function("peer_jwt_authorizer", |b| b.iter(&mut v.peer));
        group.finish();
    }
}

/// Nanoseconds per call: the best of 5 runs of `budget / 5` each.
fn ns_per_call(mut f: impl FnMut() -> u16, budget: Duration) -> f64 {
    let mut best = f64::MAX;
    let run = budget / 5;
    for _ in 0..5 {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < run {
            for _ in 0..64 {
                black_box(f());
            }
            calls += 64;
        }
        best = best.min(start.elapsed().as_nanos() as f64 / calls as f64);
    }
    best
}

fn summary(_c: &mut Criterion) {
    let rt = runtime();
    let budget = Duration::from_millis(1500);
    eprintln!("\n== gateway-layers-jwt summary (ns per request, best of 5) ==");
    let mut raw_rs256 = None;
    for case in cases() {
        let v = variants(&case, &rt);
        let mut raw_fn = v.raw;
        let raw = ns_per_call(move || u16::from(raw_fn()), budget);
        let base = ns_per_call(v.baseline, budget);
        let layer = ns_per_call(v.layer, budget);
        let peer = ns_per_call(v.peer, budget);
        let overhead = (layer - base) / raw;
        eprintln!(
            "{}: raw decode {raw:.0} | noop {base:.0} | layer {layer:.0} | jwt-authorizer {peer:.0}",
            case.name
        );
        eprintln!(
            "  layer/raw = {:.3}x, (layer - noop)/raw = {overhead:.3}x, layer/jwt-authorizer = {:.3}x",
            layer / raw,
            layer / peer
        );
        let cached = ns_per_call(v.layer_cached, budget);
        let net = if cached > base {
            format!("1/{:.1}", raw / (cached - base))
        } else {
            "n/a (the no-op measured slower: noise)".to_owned()
        };
        eprintln!(
            "  cached repeat {cached:.0} ns = 1/{:.1} of raw decode, (cached - noop)/raw = {net}",
            raw / cached,
        );
        if case.alg == Algorithm::RS256 {
            raw_rs256 = Some((raw, cached));
        }
        if let Some(f) = v.layer_fresh_cache_on {
            let fresh_on = ns_per_call(f, budget);
            eprintln!(
                "  new token each call, cache on (miss + insert) {fresh_on:.0} ns: (that - noop)/raw = {:.3}x",
                (fresh_on - base) / raw
            );
        }
    }
    if let Some((raw, cached)) = raw_rs256 {
        eprintln!(
            "cache goal (<= 1/30 of raw RS256 decode): 1/{:.1}",
            raw / cached
        );
    }
}

/// `n` calls of one variant (`case/variant`), for `valgrind --tool=callgrind`.
fn single_variant(spec: &str, n: u64) {
    let (case_name, variant) = spec
        .split_once('/')
        .expect("JWT_BENCH_VARIANT is <case>/<variant>");
    let rt = runtime();
    let case = cases()
        .into_iter()
        .find(|c| c.name == case_name)
        .unwrap_or_else(|| panic!("unknown case {case_name}"));
    let v = variants(&case, &rt);
    let mut f: Box<dyn FnMut() -> u16> = match variant {
        "raw" => {
            let mut raw = v.raw;
            Box::new(move || u16::from(raw()))
        }
        "noop" => v.baseline,
        "layer" => v.layer,
        "cached" => v.layer_cached,
        "fresh_cache_on" => v
            .layer_fresh_cache_on
            .expect("fresh_cache_on is measured for hs256 only"),
        "peer" => v.peer,
        other => panic!("unknown variant {other}"),
    };
    for _ in 0..n {
        black_box(f());
    }
}

criterion_group!(benches, bench, summary);

fn main() {
    if let Ok(spec) = std::env::var("JWT_BENCH_VARIANT") {
        let n = std::env::var("JWT_BENCH_CALLS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(10_000);
        single_variant(&spec, n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
