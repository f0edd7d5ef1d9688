//! The proxy against real loopback upstreams.

mod common;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use common::{eventually, request};
use gateway_layers_core::{
    ClientIpResolver, Rejected, TrustedProxies,
    classify::{ErrorKind, error_kind},
    key::HeaderKey,
};
use gateway_layers_proxy::{
    ActiveHealth, HostHeader, PassiveHealth, Proxy, ProxyError, ProxyErrorKind, Strategy, Target,
    UpstreamTarget,
};
use gateway_layers_test_support::{MockUpstream, Reply, body_json};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use tower::ServiceExt;

async fn send(
    proxy: &Proxy,
    path: &str,
) -> http::Response<gateway_layers_core::GatewayBody<gateway_layers_proxy::ProxyBody>> {
    proxy
        .clone()
        .oneshot(request(path, "203.0.113.50:4000"))
        .await
        .unwrap()
}

async fn status_of(proxy: &Proxy, path: &str) -> StatusCode {
    let response = send(proxy, path).await;
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

/// Requests each upstream received, health checks excluded.
fn served(upstream: &MockUpstream) -> usize {
    upstream
        .received()
        .iter()
        .filter(|r| !r.uri.path().starts_with("/health"))
        .count()
}

#[tokio::test]
async fn forwards_path_query_method_body_and_host() {
    let upstream = MockUpstream::echo().await;
    let proxy = Proxy::builder()
        .target(format!("{}/base", upstream.url()))
        .via("gw")
        .build()
        .unwrap();
    let mut req = Request::post("/orders/7?expand=items&x=%20")
        .header("host", "api.example")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"qty\":2}")))
        .unwrap();
    req.extensions_mut()
        .insert("198.51.100.3:5000".parse::<SocketAddr>().unwrap());
    let response = proxy.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["via"], "1.1 gw");
    let target = response
        .extensions()
        .get::<UpstreamTarget>()
        .unwrap()
        .clone();
    assert_eq!(target.authority().as_str(), upstream.addr().to_string());
    let echo = body_json(response.into_body()).await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/base/orders/7?expand=items&x=%20");
    assert_eq!(echo["body"], "{\"qty\":2}");
    assert_eq!(echo["headers"]["host"][0], "api.example");
    assert_eq!(echo["headers"]["x-forwarded-host"][0], "api.example");
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "http");
    assert_eq!(echo["headers"]["via"][0], "1.1 gw");
    assert_eq!(echo["version"], "HTTP/1.1");

    let upstream_host = Proxy::builder()
        .target(upstream.url())
        .host_header(HostHeader::Upstream)
        .build()
        .unwrap();
    status_of(&upstream_host, "/h").await;
    assert_eq!(
        upstream.last().unwrap().header_values("host"),
        [upstream.addr().to_string()]
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let upstream = MockUpstream::builder()
        .handler(|req, _| {
            Reply::echo(req)
                .header("connection", "x-upstream-secret")
                .header("x-upstream-secret", "s3cret")
                .header("keep-alive", "timeout=5")
                .header("proxy-authenticate", "Basic")
                .header("x-kept", "yes")
        })
        .start()
        .await;
    let proxy = Proxy::new([upstream.url()]).unwrap();
    let mut req = Request::get("/")
        .header("connection", "close, X-Forwarded-For, X-User-Id")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-user-id", "admin")
        .header("keep-alive", "timeout=1")
        .header("proxy-authorization", "Basic Zm9v")
        .header("te", "trailers")
        .header("upgrade", "h2c")
        .header("x-kept", "yes")
        .body(Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert("198.51.100.7:5000".parse::<SocketAddr>().unwrap());
    let response = proxy.oneshot(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers();
    assert!(h.get("x-upstream-secret").is_none(), "{h:?}");
    assert!(h.get("keep-alive").is_none());
    assert!(h.get("proxy-authenticate").is_none());
    assert_eq!(h["x-kept"], "yes");
    response.into_body().collect().await.unwrap();

    let seen = upstream.last().unwrap();
    assert!(seen.header_values("x-user-id").is_empty());
    assert!(seen.header_values("proxy-authorization").is_empty());
    assert!(seen.header_values("keep-alive").is_empty());
    assert!(seen.header_values("upgrade").is_empty());
    assert!(
        !seen
            .header_values("connection")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("x-user-id") || v.contains("close"))
    );
    // The client's X-Forwarded-For was named in Connection and the peer is not
    // trusted: only the peer's address remains.
    assert_eq!(seen.header_values("x-forwarded-for"), ["198.51.100.7"]);
    assert_eq!(seen.header_values("te"), ["trailers"]);
    assert_eq!(seen.header_values("x-kept"), ["yes"]);
}

#[tokio::test]
async fn x_forwarded_for_is_appended_only_for_trusted_peers() {
    let upstream = MockUpstream::echo().await;
    let client = gateway_layers_test_support::http_client();
    let spoofed = |addr: SocketAddr| {
        Request::get(format!("http://{addr}/who"))
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-proto", "https")
            .body(Full::<Bytes>::default())
            .unwrap()
    };

    // Untrusted peer (default): the chain is replaced by the peer's address.
    let untrusted = common::serve(
        Proxy::builder()
            .target(upstream.url())
            .forwarded(true)
            .build()
            .unwrap(),
    )
    .await;
    let response = client.request(spoofed(untrusted)).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.last().unwrap();
    assert_eq!(seen.header_values("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.header_values("x-forwarded-proto"), ["http"]);
    assert_eq!(
        seen.header_values("forwarded"),
        [format!("for=127.0.0.1;host=\"{untrusted}\";proto=http")]
    );

    // Loopback trusted: the chain is kept and the peer appended.
    let trusted = common::serve(
        Proxy::builder()
            .target(upstream.url())
            .client_ip_resolver(ClientIpResolver::new(TrustedProxies::loopback()))
            .build()
            .unwrap(),
    )
    .await;
    let response = client.request(spoofed(trusted)).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.last().unwrap();
    assert_eq!(
        seen.header_values("x-forwarded-for"),
        ["6.6.6.6, 127.0.0.1"]
    );
    assert_eq!(seen.header_values("x-forwarded-proto"), ["https"]);

    // No peer known: the client IP an earlier layer resolved is used.
    let proxy = Proxy::new([upstream.url()]).unwrap();
    let mut req = Request::get("/")
        .header("x-forwarded-for", "6.6.6.6")
        .body(Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(gateway_layers_core::ClientIp("192.0.2.8".parse().unwrap()));
    proxy.oneshot(req).await.unwrap();
    assert_eq!(
        upstream.last().unwrap().header_values("x-forwarded-for"),
        ["192.0.2.8"]
    );
}

#[tokio::test]
async fn response_header_and_total_timeouts_answer_504() {
    let upstream = MockUpstream::builder()
        .handler(|req, _| Reply::echo(req).delay(Duration::from_secs(3)))
        .start()
        .await;
    for builder in [
        Proxy::builder().response_header_timeout(Duration::from_millis(100)),
        Proxy::builder().total_timeout(Duration::from_millis(100)),
    ] {
        let proxy = builder.target(upstream.url()).build().unwrap();
        let response = send(&proxy, "/slow").await;
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let error = response.extensions().get::<ProxyError>().unwrap().clone();
        assert_eq!(error.kind(), ProxyErrorKind::Timeout);
        assert_eq!(error_kind(&error), ErrorKind::Timeout);
        assert_eq!(
            response.extensions().get::<Rejected>().unwrap().code,
            "upstream_timeout"
        );
        assert!(response.extensions().get::<UpstreamTarget>().is_some());
        let json = body_json(response.into_body()).await;
        assert_eq!(json["status"], 504);
        assert_eq!(proxy.targets()[0].errors, 1);
    }
}

#[tokio::test]
async fn total_timeout_cuts_a_slow_body() {
    // Headers come at once; the body is a long stream that outlives the deadline.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(|_req| async {
            let (tx, rx) = tokio::sync::mpsc::channel::<
                Result<http_body::Frame<Bytes>, std::convert::Infallible>,
            >(1);
            tokio::spawn(async move {
                for _ in 0..100 {
                    if tx
                        .send(Ok(http_body::Frame::data(Bytes::from_static(b"tick"))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            let body = http_body_util::StreamBody::new(ReceiverStream(rx));
            Ok::<_, std::convert::Infallible>(http::Response::new(body))
        });
        let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    });
    let proxy = Proxy::builder()
        .target(format!("http://{addr}"))
        .total_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let response = send(&proxy, "/stream").await;
    assert_eq!(response.status(), 200);
    let error = response.into_body().collect().await.unwrap_err();
    assert_eq!(error_kind(&*error), ErrorKind::Timeout);
    assert_eq!(proxy.targets()[0].in_flight, 0);
}

struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_util::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

#[tokio::test]
async fn refused_connection_answers_502() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = Proxy::new([format!("http://{closed}")]).unwrap();
    let response = send(&proxy, "/").await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let error = response.extensions().get::<ProxyError>().unwrap().clone();
    assert_eq!(error.kind(), ProxyErrorKind::Connect);
    assert_eq!(error_kind(&error), ErrorKind::Connection);
    assert_eq!(
        error.target().unwrap().authority().as_str(),
        closed.to_string()
    );
    let json = body_json(response.into_body()).await;
    assert_eq!(json["code"], "upstream_unavailable");
    assert_eq!(json["status"], 502);
}

#[tokio::test]
async fn custom_rejection_response() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = Proxy::builder()
        .target(format!("http://{closed}"))
        .with_rejection_response(|r: &gateway_layers_core::Rejection| {
            http::Response::builder()
                .status(r.status())
                .body(Bytes::from(format!("upstream down: {}", r.code())))
                .unwrap()
        })
        .build()
        .unwrap();
    let response = send(&proxy, "/").await;
    assert_eq!(response.status(), 502);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "upstream down: upstream_unavailable");
}

async fn three() -> [MockUpstream; 3] {
    [
        MockUpstream::echo().await,
        MockUpstream::echo().await,
        MockUpstream::echo().await,
    ]
}

#[tokio::test]
async fn round_robin_and_weighted_distributions() {
    let upstreams = three().await;
    let proxy = Proxy::new(upstreams.iter().map(|u| u.url())).unwrap();
    for _ in 0..30 {
        assert_eq!(status_of(&proxy, "/rr").await, 200);
    }
    for upstream in &upstreams {
        assert_eq!(upstream.requests(), 10);
    }
    let stats = proxy.targets();
    assert!(
        stats
            .iter()
            .all(|t| t.requests == 10 && t.in_flight == 0 && t.is_usable())
    );

    let weighted = Proxy::builder()
        .target(Target::new(upstreams[0].url()).weight(3))
        .target(Target::new(upstreams[1].url()).weight(1))
        .target(Target::new(upstreams[2].url()).weight(2))
        .strategy(Strategy::WeightedRoundRobin)
        .build()
        .unwrap();
    for upstream in &upstreams {
        upstream.reset();
    }
    for _ in 0..60 {
        assert_eq!(status_of(&weighted, "/w").await, 200);
    }
    let counts: Vec<usize> = upstreams.iter().map(MockUpstream::requests).collect();
    assert_eq!(counts, [30, 10, 20]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_avoids_the_busy_target() {
    let slow = MockUpstream::builder()
        .handler(|req, _| Reply::echo(req).delay(Duration::from_millis(300)))
        .start()
        .await;
    let fast = MockUpstream::echo().await;
    let proxy = Proxy::builder()
        .targets([slow.url(), fast.url()])
        .strategy(Strategy::LeastRequest)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                assert_eq!(status_of(&proxy, &format!("/{worker}/{i}")).await, 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(slow.requests() + fast.requests(), 40);
    assert!(
        fast.requests() > 2 * slow.requests(),
        "fast {} slow {}",
        fast.requests(),
        slow.requests()
    );
}

#[tokio::test]
async fn consistent_hash_sticks_keys_to_targets() {
    let upstreams = three().await;
    let proxy = Proxy::builder()
        .targets(upstreams.iter().map(|u| u.url()))
        .consistent_hash(HeaderKey::new("x-user").unwrap())
        .build()
        .unwrap();
    let mut homes = std::collections::HashMap::new();
    for user in 0..60 {
        for _ in 0..3 {
            let req = Request::get("/")
                .header("x-user", format!("user-{user}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response = proxy.clone().oneshot(req).await.unwrap();
            let target = response
                .extensions()
                .get::<UpstreamTarget>()
                .unwrap()
                .clone();
            let home = homes.entry(user).or_insert_with(|| target.clone());
            assert_eq!(*home, target, "user-{user} moved");
        }
    }
    for upstream in &upstreams {
        assert!(upstream.requests() >= 15, "{}", upstream.requests());
    }

    // ip-hash (core ClientIpKey) and cookie stickiness.
    for extractor in [
        Arc::new(gateway_layers_core::key::ClientIpKey::default())
            as gateway_layers_core::SharedKeyExtractor,
        Arc::new(gateway_layers_proxy::CookieKey::new("sid").unwrap()),
    ] {
        let proxy = Proxy::builder()
            .targets(upstreams.iter().map(|u| u.url()))
            .consistent_hash(extractor)
            .build()
            .unwrap();
        let mut seen = std::collections::HashSet::new();
        for client in 0..30 {
            let mut home = None;
            for _ in 0..3 {
                let mut req = request("/", &format!("198.51.100.{client}:4000"));
                req.headers_mut()
                    .insert("cookie", format!("a=1; sid=s{client}").parse().unwrap());
                let response = proxy.clone().oneshot(req).await.unwrap();
                let target = response
                    .extensions()
                    .get::<UpstreamTarget>()
                    .unwrap()
                    .clone();
                assert_eq!(home.get_or_insert(target.clone()), &target);
                seen.insert(target.url().to_owned());
            }
        }
        assert_eq!(seen.len(), 3, "30 keys spread over all targets");
    }
}

#[tokio::test]
async fn a_request_carrying_its_failed_target_goes_elsewhere() {
    let upstreams = three().await;
    let proxy = Proxy::new(upstreams.iter().map(|u| u.url())).unwrap();
    let first = send(&proxy, "/").await;
    let failed = first.extensions().get::<UpstreamTarget>().unwrap().clone();
    for _ in 0..10 {
        let mut retry = request("/", "127.0.0.1:1");
        retry.extensions_mut().insert(failed.clone());
        let response = proxy.clone().oneshot(retry).await.unwrap();
        assert_ne!(
            response.extensions().get::<UpstreamTarget>().unwrap(),
            &failed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_and_restoration() {
    let mut a = MockUpstream::echo().await;
    let b = MockUpstream::echo().await;
    let proxy = Proxy::builder()
        .targets([a.url(), b.url()])
        .passive_health(
            // Long enough that the ten requests below all fall inside the ejection,
            // even on a loaded machine.
            PassiveHealth::new(2).ejection_time(Duration::from_secs(2), Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    for _ in 0..4 {
        assert_eq!(status_of(&proxy, "/").await, 200);
    }
    a.stop().await;
    let mut bad_gateways = 0;
    for _ in 0..6 {
        if status_of(&proxy, "/").await == StatusCode::BAD_GATEWAY {
            bad_gateways += 1;
        }
    }
    assert_eq!(bad_gateways, 2, "two consecutive failures eject the target");
    assert!(proxy.targets()[0].ejected);
    b.reset();
    for _ in 0..10 {
        assert_eq!(status_of(&proxy, "/").await, 200);
    }
    assert_eq!(b.requests(), 10, "every request went to the healthy target");

    a.restart().await;
    a.reset();
    eventually("ejection ends", || !proxy.targets()[0].ejected).await;
    for _ in 0..10 {
        assert_eq!(status_of(&proxy, "/").await, 200);
    }
    assert_eq!(a.requests(), 5, "round robin includes the restored target");
    assert!(!proxy.targets()[0].ejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ejected_fraction_keeps_targets_in_rotation() {
    let closed: Vec<String> = (0..2)
        .map(|_| {
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            format!("http://{addr}")
        })
        .collect();
    let live = MockUpstream::echo().await;
    let proxy = Proxy::builder()
        .targets(closed.iter().cloned().chain([live.url()]))
        .passive_health(PassiveHealth::new(1).max_ejected_fraction(0.34))
        .build()
        .unwrap();
    for _ in 0..12 {
        status_of(&proxy, "/").await;
    }
    let ejected = proxy.targets().iter().filter(|t| t.ejected).count();
    assert_eq!(ejected, 1, "{:?}", proxy.targets());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_mark_down_and_up() {
    let mut a = MockUpstream::builder()
        .handler(|req, _| {
            if req.uri.path() == "/healthz" {
                Reply::status(204)
            } else {
                Reply::echo(req)
            }
        })
        .start()
        .await;
    let b = MockUpstream::echo().await;
    let proxy = Proxy::builder()
        .targets([a.url(), b.url()])
        .active_health(
            ActiveHealth::new("/healthz")
                .interval(Duration::from_millis(50))
                .timeout(Duration::from_millis(500))
                .thresholds(2, 2)
                .expected_statuses([204]),
        )
        .build()
        .unwrap();
    // b answers /healthz with an echo 200, which is not an expected status.
    eventually("b unhealthy", || !proxy.targets()[1].healthy).await;
    assert!(proxy.targets()[0].healthy);

    a.stop().await;
    eventually("a unhealthy", || !proxy.targets()[0].healthy).await;
    assert_eq!(
        status_of(&proxy, "/").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let response = send(&proxy, "/").await;
    assert_eq!(
        response.extensions().get::<ProxyError>().unwrap().kind(),
        ProxyErrorKind::NoHealthyTarget
    );
    assert_eq!(
        body_json(response.into_body()).await["code"],
        "no_healthy_upstream"
    );

    a.restart().await;
    eventually("a healthy again", || proxy.targets()[0].healthy).await;
    a.reset();
    for _ in 0..4 {
        assert_eq!(status_of(&proxy, "/").await, 200);
    }
    assert_eq!(served(&a), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_skip_a_killed_target() {
    let mut a = MockUpstream::echo().await;
    let b = MockUpstream::echo().await;
    let proxy = Proxy::builder()
        .targets([a.url(), b.url()])
        .active_health(
            ActiveHealth::default()
                .interval(Duration::from_millis(50))
                .thresholds(1, 1),
        )
        .build()
        .unwrap();
    a.stop().await;
    eventually("a unhealthy", || !proxy.targets()[0].healthy).await;
    let before = served(&b);
    for _ in 0..10 {
        assert_eq!(status_of(&proxy, "/").await, 200);
    }
    assert_eq!(served(&b) - before, 10);
    a.restart().await;
    eventually("a healthy", || proxy.targets()[0].healthy).await;
    let before = served(&a);
    for _ in 0..10 {
        assert_eq!(status_of(&proxy, "/").await, 200);
    }
    assert_eq!(served(&a) - before, 5);
}

#[tokio::test]
async fn http2_upstream() {
    let upstream = MockUpstream::echo().await;
    let proxy = Proxy::new([Target::new(upstream.url()).http2()]).unwrap();
    for _ in 0..3 {
        let response = send(&proxy, "/h2?x=1").await;
        assert_eq!(response.status(), 200);
        let echo = body_json(response.into_body()).await;
        assert_eq!(echo["version"], "HTTP/2.0");
        assert_eq!(echo["path"], "/h2");
        assert_eq!(echo["headers"]["host"][0], "gateway.example");
    }
    assert_eq!(upstream.connections(), 1, "one multiplexed connection");
}

#[tokio::test]
async fn pooled_connections_are_reused() {
    let upstream = MockUpstream::echo().await;
    let proxy = Proxy::new([upstream.url()]).unwrap();
    for _ in 0..5 {
        assert_eq!(status_of(&proxy, "/").await, 200);
    }
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn targets_change_at_run_time() {
    let a = MockUpstream::echo().await;
    let b = MockUpstream::echo().await;
    let proxy = Proxy::new([a.url()]).unwrap();
    assert_eq!(status_of(&proxy, "/").await, 200);
    proxy.set_targets([b.url()]).unwrap();
    assert_eq!(status_of(&proxy, "/").await, 200);
    assert_eq!((a.requests(), b.requests()), (1, 1));
    assert!(proxy.set_targets(Vec::<String>::new()).is_err());
    assert!(proxy.set_targets(["ftp://x"]).is_err());

    let (tx, rx) = tokio::sync::watch::channel(vec![Target::new(a.url())]);
    let discovered = Proxy::builder().discovery(rx).build().unwrap();
    assert_eq!(status_of(&discovered, "/").await, 200);
    assert_eq!(a.requests(), 2);
    tx.send(vec![Target::new(b.url())]).unwrap();
    eventually("discovery applied", || {
        discovered.targets()[0].url == b.url()
    })
    .await;
    assert_eq!(status_of(&discovered, "/").await, 200);
    assert_eq!(b.requests(), 2);
}

#[tokio::test]
async fn builder_validation() {
    assert!(Proxy::builder().build().is_err());
    assert!(
        Proxy::builder()
            .target("http://a")
            .strategy(Strategy::ConsistentHash)
            .build()
            .is_err()
    );
    assert!(
        Proxy::builder()
            .target("http://a")
            .passive_health(PassiveHealth::new(0))
            .build()
            .is_err()
    );
    assert!(
        Proxy::builder()
            .target("http://a")
            .passive_health(PassiveHealth::default().max_ejected_fraction(1.5))
            .build()
            .is_err()
    );
    assert!(
        Proxy::builder()
            .target("http://a")
            .active_health(ActiveHealth::new("no-slash"))
            .build()
            .is_err()
    );
    assert!(
        Proxy::builder()
            .target("http://a")
            .via("bad\r\nvia")
            .build()
            .is_err()
    );
    assert!(
        Proxy::builder()
            .target("http://a")
            .connect_timeout(Duration::ZERO)
            .build()
            .is_err()
    );
}

#[test]
fn active_health_needs_a_runtime() {
    let error = Proxy::builder()
        .target("http://127.0.0.1:1")
        .active_health(ActiveHealth::default())
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("runtime"), "{error}");
}

#[tokio::test]
async fn works_as_an_axum_route_service() {
    let upstream = MockUpstream::echo().await;
    let proxy = Proxy::new([upstream.url()]).unwrap();
    let app = axum::Router::new()
        .route_service("/api/{*rest}", proxy.clone())
        .fallback_service(proxy);
    let response = app
        .oneshot(
            Request::get("/api/users?id=1")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last().unwrap().uri, "/api/users?id=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let proxy = Proxy::new([format!("http://{ws_addr}")]).unwrap();
    let front = common::serve(proxy.clone()).await;
    let stream = tokio::net::TcpStream::connect(front).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(format!("ws://{front}/chat"), stream)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "through", "the proxy"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_data().as_ref(), [1, 2, 3]);
    ws.close(None).await.unwrap();
    assert_eq!(proxy.targets()[0].requests, 1);
}

#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<(String, String)>>);

impl gateway_layers_core::metrics::MetricsRecorder for Recorder {
    fn counter(&self, name: &'static str, _value: u64, labels: &[(&'static str, &str)]) {
        let target = labels
            .iter()
            .find(|(k, _)| *k == "target")
            .map(|(_, v)| v.to_string());
        self.0
            .lock()
            .unwrap()
            .push((name.to_owned(), target.unwrap_or_default()));
    }
    fn histogram(&self, name: &'static str, _value: f64, labels: &[(&'static str, &str)]) {
        self.counter(name, 1, labels);
    }
    fn gauge(&self, name: &'static str, _value: i64, labels: &[(&'static str, &str)]) {
        self.counter(name, 1, labels);
    }
}

#[tokio::test]
async fn per_target_metrics() {
    let recorder: &'static Recorder = Box::leak(Box::default());
    if gateway_layers_core::metrics::set_recorder(recorder).is_err() {
        return;
    }
    let upstream = MockUpstream::statuses([200, 500]).await;
    let proxy = Proxy::new([upstream.url()]).unwrap();
    status_of(&proxy, "/").await;
    status_of(&proxy, "/").await;
    let label = upstream.addr().to_string();
    let seen = recorder.0.lock().unwrap().clone();
    let count = |name: &str| {
        seen.iter()
            .filter(|(n, t)| n == name && *t == label)
            .count()
    };
    assert_eq!(count("gateway.proxy.requests"), 2);
    assert_eq!(count("gateway.proxy.latency"), 2);
    assert_eq!(count("gateway.proxy.errors"), 1);
    assert_eq!(proxy.targets()[0].errors, 1);
}

#[cfg(feature = "serde")]
#[tokio::test]
async fn builds_from_a_config_file() {
    let upstreams = three().await;
    let config: gateway_layers_proxy::ProxyConfig = serde_json::from_value(serde_json::json!({
        "targets": [
            {"url": upstreams[0].url(), "weight": 2},
            {"url": upstreams[1].url()},
            {"url": upstreams[2].url(), "protocol": "http2"},
        ],
        "strategy": "consistent_hash",
        "hash_key": {"header": "x-user"},
        "timeouts": {"connect": "1s", "response_headers": 2000, "total": "1m"},
        "active_health": {"path": "/health", "interval": "50ms", "expected_statuses": [200]},
        "passive_health": {"consecutive_failures": 3, "base_ejection_time": "10s"},
        "forwarding": {"host": "upstream", "forwarded": true, "via": "gw", "trusted_proxies": ["10.0.0.0/8"]},
        "pool": {"idle_timeout": "30s", "max_idle_per_target": 8},
    }))
    .unwrap();
    assert_eq!(config.timeouts.total, Some(Duration::from_secs(60)));
    let proxy = gateway_layers_proxy::ProxyBuilder::from_config(config)
        .unwrap()
        .build()
        .unwrap();
    let mut first = None;
    for _ in 0..5 {
        let req = Request::get("/cfg")
            .header("x-user", "alice")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = proxy.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["via"], "1.1 gw");
        let target = response
            .extensions()
            .get::<UpstreamTarget>()
            .unwrap()
            .clone();
        assert_eq!(first.get_or_insert(target.clone()), &target);
    }

    let unknown = serde_json::from_value::<gateway_layers_proxy::ProxyConfig>(
        serde_json::json!({"targets": [], "retries": 3}),
    );
    assert!(unknown.is_err());
    let no_key = gateway_layers_proxy::ProxyConfig {
        targets: vec![Target::new("http://a")],
        strategy: Strategy::ConsistentHash,
        ..Default::default()
    };
    assert!(
        gateway_layers_proxy::ProxyBuilder::from_config(no_key)
            .unwrap()
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn http2_client_to_http1_upstream_keeps_the_authority_as_host() {
    let upstream = MockUpstream::echo().await;
    let front = common::serve(Proxy::new([upstream.url()]).unwrap()).await;
    let client: hyper_util::client::legacy::Client<_, Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let response = client
        .request(
            Request::get(format!("http://{front}/h2-in?q=1"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let seen = upstream.last().unwrap();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.uri, "/h2-in?q=1");
    assert_eq!(seen.header_values("host"), [front.to_string()]);
    assert_eq!(seen.header_values("x-forwarded-host"), [front.to_string()]);
}

#[tokio::test]
async fn connect_timeout_answers_504() {
    // A loopback listener that never accepts, its accept queue filled: further SYNs
    // are dropped by the kernel, so connecting hangs until the connect timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            held.push(stream);
        }
    }
    let proxy = Proxy::builder()
        .target(format!("http://{addr}"))
        .connect_timeout(Duration::from_millis(150))
        .response_header_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let response = send(&proxy, "/").await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let error = response.extensions().get::<ProxyError>().unwrap();
    assert_eq!(error.kind(), ProxyErrorKind::Timeout);
    drop((held, listener));
}
