//! Per-request overhead of the proxy on loopback, in the same run as:
//! - `direct`: a hyper-util client calling the upstream itself (no proxy hop);
//! - `bare_forwarder`: a naive hyper-util forwarding handler (the usual axum/hyper
//!   "reverse proxy in 20 lines": rewrite the URI, `client.request(req)`);
//! - `gateway_proxy`: this crate's `Proxy` behind the same hyper server.
//!
//! Each request is a keep-alive GET returning 2 bytes, sent one at a time (latency),
//! and in batches of 32 concurrent requests (throughput). After criterion, an
//! alternating timed loop prints the ratios gateway_proxy / bare_forwarder.
//!
//! `cargo bench -p gateway-layers-proxy --bench proxy -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs)]

use std::{
    convert::Infallible,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use gateway_layers_proxy::Proxy;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, runtime::Runtime};

type BenchClient = Client<HttpConnector, Empty<Bytes>>;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn serve<S>(service: S) -> SocketAddr
where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<UnsyncBoxBody<Bytes, BoxError>>,
            Error = Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn boxed<B>(body: B) -> UnsyncBoxBody<Bytes, BoxError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    UnsyncBoxBody::new(body.map_err(Into::into))
}

async fn upstream() -> SocketAddr {
    serve(hyper::service::service_fn(
        |_req: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(boxed(Full::new(Bytes::from_static(b"ok")))))
        },
    ))
    .await
}

async fn bare_forwarder(upstream: SocketAddr) -> SocketAddr {
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    serve(hyper::service::service_fn(
        move |mut req: Request<Incoming>| {
            let client = client.clone();
            async move {
                let pq = req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                *req.uri_mut() = format!("http://{upstream}{pq}").parse::<Uri>().unwrap();
                let response = match client.request(req).await {
                    Ok(response) => response.map(boxed),
                    Err(_) => {
                        let mut r = Response::new(boxed(Empty::new()));
                        *r.status_mut() = http::StatusCode::BAD_GATEWAY;
                        r
                    }
                };
                Ok::<_, Infallible>(response)
            }
        },
    ))
    .await
}

async fn gateway_proxy(upstream: SocketAddr) -> SocketAddr {
    let proxy = Proxy::new([format!("http://{upstream}")]).unwrap();
    let service = tower::ServiceBuilder::new()
        .map_response(|r: gateway_layers_proxy::ProxyResponse| r.map(boxed))
        .service(proxy);
    serve(TowerToHyperService::new(service)).await
}

async fn get(client: &BenchClient, uri: &Uri) {
    let response = client
        .request(Request::get(uri.clone()).body(Empty::new()).unwrap())
        .await
        .unwrap();
    assert!(response.status().is_success());
    response.into_body().collect().await.unwrap();
}

async fn batch(client: &BenchClient, uri: &Uri, n: usize) {
    let requests = (0..n).map(|_| get(client, uri));
    futures_util::future::join_all(requests).await;
}

struct Setup {
    rt: Runtime,
    client: BenchClient,
    targets: [(&'static str, Uri); 3],
}

fn setup() -> Setup {
    let rt = runtime();
    let (direct, bare, proxy) = rt.block_on(async {
        let up = upstream().await;
        let bare = bare_forwarder(up).await;
        let proxy = gateway_proxy(up).await;
        (up, bare, proxy)
    });
    let uri = |addr: SocketAddr| format!("http://{addr}/bench?x=1").parse::<Uri>().unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    Setup {
        rt,
        client,
        targets: [
            ("direct", uri(direct)),
            ("bare_forwarder", uri(bare)),
            ("gateway_proxy", uri(proxy)),
        ],
    }
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let mut group = c.benchmark_group("proxy/sequential");
    for (name, uri) in &s.targets {
        group.bench_function(*name, |b| {
            b.to_async(&s.rt).iter(|| get(&s.client, uri));
        });
    }
    group.finish();
    let mut group = c.benchmark_group("proxy/concurrent32");
    group.throughput(criterion::Throughput::Elements(32));
    for (name, uri) in &s.targets {
        group.bench_function(*name, |b| {
            b.to_async(&s.rt).iter(|| batch(&s.client, uri, 32));
        });
    }
    group.finish();
    ratios(&s);
}

/// Alternating timed rounds, so drift affects both sides alike.
fn ratios(s: &Setup) {
    let rounds = 6;
    let per_round = Duration::from_millis(500);
    let mut totals = [(0u64, Duration::ZERO); 3];
    for _ in 0..rounds {
        for (i, (_, uri)) in s.targets.iter().enumerate() {
            let start = Instant::now();
            let mut n = 0u64;
            s.rt.block_on(async {
                while start.elapsed() < per_round {
                    batch(&s.client, uri, 32).await;
                    n += 32;
                }
            });
            totals[i].0 += n;
            totals[i].1 += start.elapsed();
        }
    }
    let rate = |(n, t): (u64, Duration)| n as f64 / t.as_secs_f64();
    let [direct, bare, proxy] = totals.map(rate);
    eprintln!(
        "proxy ratios (32 concurrent, alternating): direct {direct:.0} req/s, bare_forwarder {bare:.0} req/s, gateway_proxy {proxy:.0} req/s; gateway_proxy/bare_forwarder = {:.2}x throughput",
        proxy / bare
    );
}

criterion_group!(proxy_benches, benches);

fn main() {
    proxy_benches();
    Criterion::default().configure_from_args().final_summary();
}
