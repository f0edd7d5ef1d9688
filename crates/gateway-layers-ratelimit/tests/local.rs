//! The layer with the local backend: the correctness cases of the issue.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use gateway_layers_core::{
    ClientIpResolver, GatewayBody, Identity, KeyPolicy, Rejected, TrustedProxies,
    key::{ClientIpKey, HeaderKey, SubjectKey},
};
use gateway_layers_ratelimit::{
    Clock, DecisionSource, HeaderStyle, Limit, Policy, RateLimitBuilder, RateLimitDecision,
    RateLimitLayer, TierSource,
};
use gateway_layers_test_support::body_json;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt, service_fn};

type Res = Response<GatewayBody<Full<Bytes>>>;

fn svc(
    layer: &RateLimitLayer,
) -> impl Service<Request<()>, Response = Res, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static
+ use<> {
    layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }))
}

fn from(peer: &str) -> Request<()> {
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(format!("{peer}:1234").parse::<SocketAddr>().unwrap());
    req
}

/// A builder on the tokio clock, for the tests that run with a paused one.
fn paused() -> RateLimitBuilder {
    RateLimitLayer::builder().clock(Clock::Tokio)
}

async fn send<S>(svc: &S, req: Request<()>) -> Res
where
    S: Service<Request<()>, Response = Res, Error = Infallible> + Clone,
{
    svc.clone().oneshot(req).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn five_per_second_exactly_then_retry_after() {
    let layer = paused()
        .default_policy(Limit::per_second(5).with_burst(5))
        .build()
        .unwrap();
    let svc = svc(&layer);
    for i in 0..5 {
        let res = send(&svc, from("192.0.2.1")).await;
        assert_eq!(res.status(), StatusCode::OK, "request {i}");
        assert_eq!(
            res.headers()["ratelimit"],
            format!("\"5/1s\";r={};t=1", 4 - i)
        );
        assert_eq!(res.headers()["ratelimit-policy"], "\"5/1s\";q=5;w=1");
    }
    let res = send(&svc, from("192.0.2.1")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.headers()["ratelimit"], "\"5/1s\";r=0;t=1");
    let decision = *res.extensions().get::<RateLimitDecision>().unwrap();
    assert_eq!(decision.retry_after, Some(Duration::from_millis(200)));
    assert_eq!(decision.source, DecisionSource::Local);
    assert_eq!(
        res.extensions().get::<Rejected>().unwrap().code,
        "rate_limited"
    );
    let body = body_json(res.into_body()).await;
    assert_eq!(body["status"], 429);
    assert_eq!(body["code"], "rate_limited");

    // Another client is not affected.
    assert_eq!(send(&svc, from("192.0.2.2")).await.status(), StatusCode::OK);

    // Allowed again exactly at the retry time, not a nanosecond before.
    tokio::time::advance(Duration::from_millis(200) - Duration::from_nanos(1)).await;
    assert_eq!(
        send(&svc, from("192.0.2.1")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::advance(Duration::from_nanos(1)).await;
    assert_eq!(send(&svc, from("192.0.2.1")).await.status(), StatusCode::OK);
    assert_eq!(
        send(&svc, from("192.0.2.1")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // Idling for an hour banks no more than the burst.
    tokio::time::advance(Duration::from_secs(3600)).await;
    let mut admitted = 0;
    for _ in 0..50 {
        if send(&svc, from("192.0.2.1")).await.status() == StatusCode::OK {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5);
}

/// The default clock (quanta's) in real time: exactly the burst, then refused until
/// the Retry-After time has passed.
#[tokio::test]
async fn default_clock_in_real_time() {
    // 10/s, burst 2: two pass, the third waits up to 100 ms (a pause of that long
    // between the calls would let it pass, so the margin is wide).
    let layer = RateLimitLayer::builder()
        .default_policy(Limit::per_second(10).with_burst(2))
        .build()
        .unwrap();
    let svc = svc(&layer);
    let started = std::time::Instant::now();
    for _ in 0..2 {
        assert_eq!(send(&svc, from("192.0.2.1")).await.status(), StatusCode::OK);
    }
    let res = send(&svc, from("192.0.2.1")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = res
        .extensions()
        .get::<RateLimitDecision>()
        .unwrap()
        .retry_after
        .unwrap();
    assert!(wait <= Duration::from_millis(100), "{wait:?}");
    assert!(
        wait + started.elapsed() >= Duration::from_millis(99),
        "{wait:?} after {:?}",
        started.elapsed()
    );
    tokio::time::sleep(wait + Duration::from_millis(2)).await;
    assert_eq!(send(&svc, from("192.0.2.1")).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_against_one_hundred() {
    let layer = RateLimitLayer::builder()
        .default_policy(Limit::per_hour(100))
        .build()
        .unwrap();
    let svc = svc(&layer);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(from("198.51.100.7")).await.unwrap().status() })
        })
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, limited), (100, 900));
}

#[tokio::test(start_paused = true)]
async fn rotating_forwarded_for_from_untrusted_peer_shares_one_bucket() {
    let resolver = ClientIpResolver::new(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
    let layer = paused()
        .key(KeyPolicy::new(ClientIpKey::new(resolver)))
        .default_policy(Limit::per_minute(3))
        .build()
        .unwrap();
    let svc = svc(&layer);
    let mut admitted = 0;
    for i in 0..20 {
        let mut req = from("203.0.113.9");
        req.headers_mut().insert(
            "x-forwarded-for",
            format!("198.51.100.{i}").parse().unwrap(),
        );
        if send(&svc, req).await.status() == StatusCode::OK {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3);
    // Behind the trusted proxy each forwarded client has its own bucket.
    let mut admitted = 0;
    for i in 0..20 {
        let mut req = from("10.0.0.2");
        req.headers_mut().insert(
            "x-forwarded-for",
            format!("198.51.100.{i}").parse().unwrap(),
        );
        if send(&svc, req).await.status() == StatusCode::OK {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 20);
}

fn tiered() -> gateway_layers_ratelimit::RateLimitBuilder {
    paused()
        .key(KeyPolicy::new(SubjectKey))
        .default_policy(Limit::per_minute(2))
        .tier("premium", Limit::per_minute(10))
        .tier("enterprise", Policy::unlimited())
}

async fn admitted<S>(svc: &S, make: impl Fn() -> Request<()>) -> usize
where
    S: Service<Request<()>, Response = Res, Error = Infallible> + Clone,
{
    let mut n = 0;
    for _ in 0..30 {
        if send(svc, make()).await.status() == StatusCode::OK {
            n += 1;
        }
    }
    n
}

fn as_user(user: &str, tier: Option<&'static str>, header: Option<&str>) -> Request<()> {
    let mut req = Request::new(());
    let mut identity = Identity::new().with_subject(user.to_owned());
    if let Some(tier) = tier {
        identity = identity.with_tier(tier);
    }
    req.extensions_mut().insert(identity);
    if let Some(header) = header {
        req.headers_mut().insert("x-tier", header.parse().unwrap());
    }
    req
}

#[tokio::test(start_paused = true)]
async fn tiers_come_from_identity_and_a_tier_header_is_ignored() {
    let svc = svc(&tiered().build().unwrap());
    assert_eq!(
        admitted(&svc, || as_user("a", None, Some("enterprise"))).await,
        2
    );
    assert_eq!(
        admitted(&svc, || as_user("b", Some("premium"), None)).await,
        10
    );
    assert_eq!(
        admitted(&svc, || as_user("c", Some("enterprise"), None)).await,
        30
    );
    // Unknown tier: the default policy.
    assert_eq!(admitted(&svc, || as_user("d", Some("gold"), None)).await, 2);
}

#[tokio::test(start_paused = true)]
async fn other_tier_sources() {
    let header = tiered()
        .tier_source(TierSource::TrustedHeader("x-tier".parse().unwrap()))
        .build()
        .unwrap();
    let svc1 = svc(&header);
    assert_eq!(
        admitted(&svc1, || as_user("a", None, Some("premium"))).await,
        10
    );

    let map = tiered()
        .tier_source(TierSource::static_map([("vip", "premium")]))
        .build()
        .unwrap();
    let svc2 = svc(&map);
    assert_eq!(admitted(&svc2, || as_user("vip", None, None)).await, 10);
    assert_eq!(
        admitted(&svc2, || as_user("nobody", Some("premium"), None)).await,
        2
    );

    let func = tiered()
        .tier_source(TierSource::function(|req| {
            (req.uri.path() == "/big").then(|| "enterprise".into())
        }))
        .build()
        .unwrap();
    let svc3 = svc(&func);
    let big = || {
        let mut req = as_user("u", None, None);
        *req.uri_mut() = "/big".parse().unwrap();
        req
    };
    assert_eq!(admitted(&svc3, big).await, 30);
}

#[tokio::test(start_paused = true)]
async fn a_static_tier_map_matches_ip_and_header_keys() {
    let by_ip = paused()
        .default_policy(Limit::per_minute(2))
        .tier("premium", Limit::per_minute(10))
        .tier_source(TierSource::static_map([("192.0.2.7", "premium")]))
        .build()
        .unwrap();
    let s = svc(&by_ip);
    assert_eq!(admitted(&s, || from("192.0.2.7")).await, 10);
    assert_eq!(admitted(&s, || from("192.0.2.8")).await, 2);

    let by_header = paused()
        .key(KeyPolicy::new(HeaderKey::new("x-api-key").unwrap()))
        .default_policy(Limit::per_minute(2))
        .tier("premium", Limit::per_minute(10))
        .tier_source(TierSource::static_map([("k-vip", "premium")]))
        .build()
        .unwrap();
    let s = svc(&by_header);
    let with_key = |k: &'static str| {
        move || {
            let mut req = Request::new(());
            req.headers_mut().insert("x-api-key", k.parse().unwrap());
            req
        }
    };
    assert_eq!(admitted(&s, with_key("k-vip")).await, 10);
    assert_eq!(admitted(&s, with_key("k-other")).await, 2);
}

#[tokio::test(start_paused = true)]
async fn several_windows_and_the_tightest_one_is_reported() {
    let layer = paused()
        .default_policy([
            Limit::per_second(10),
            Limit::per_minute(12).with_name("minute"),
        ])
        .headers(HeaderStyle::Both)
        .build()
        .unwrap();
    let svc = svc(&layer);
    let mut admitted = 0;
    let mut last = None;
    for _ in 0..40 {
        let res = send(&svc, from("192.0.2.5")).await;
        if res.status() == StatusCode::OK {
            admitted += 1;
        } else {
            last = Some(res);
        }
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    assert_eq!(admitted, 12);
    let res = last.unwrap();
    assert_eq!(
        res.headers()["ratelimit-policy"],
        "\"10/1s\";q=10;w=1, \"minute\";q=12;w=60"
    );
    let rl = res.headers()["ratelimit"].to_str().unwrap();
    assert!(rl.starts_with("\"minute\";r=0;t="), "{rl}");
    assert_eq!(res.headers()["x-ratelimit-limit"], "12");
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
}

#[tokio::test(start_paused = true)]
async fn header_styles_shadow_cost_and_count_rejected() {
    // No headers at all.
    let layer = paused()
        .default_policy(Limit::per_minute(1))
        .headers(HeaderStyle::None)
        .build()
        .unwrap();
    let svc0 = svc(&layer);
    let res = send(&svc0, from("192.0.2.1")).await;
    assert!(res.headers().is_empty());
    let res = send(&svc0, from("192.0.2.1")).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "60");
    assert!(!res.headers().contains_key("ratelimit"));

    // Shadow: refused requests pass, marked.
    let layer = paused()
        .default_policy(Limit::per_minute(1))
        .shadow(true)
        .build()
        .unwrap();
    let svc1 = svc(&layer);
    assert_eq!(send(&svc1, from("192.0.2.1")).await.status(), 200);
    let res = send(&svc1, from("192.0.2.1")).await;
    assert_eq!(res.status(), 200);
    let d = res.extensions().get::<RateLimitDecision>().unwrap();
    assert!(d.shadowed && !d.allowed);

    // Cost from the request.
    let layer = paused()
        .default_policy(Limit::per_minute(10))
        .cost(|req| {
            req.headers
                .get("x-cost")
                .map_or(1, |v| v.to_str().unwrap().parse().unwrap())
        })
        .build()
        .unwrap();
    let svc2 = svc(&layer);
    let costly = |c: &str| {
        let mut req = from("192.0.2.1");
        req.headers_mut().insert("x-cost", c.parse().unwrap());
        req
    };
    assert_eq!(send(&svc2, costly("8")).await.status(), 200);
    assert_eq!(send(&svc2, costly("3")).await.status(), 429);
    assert_eq!(send(&svc2, costly("2")).await.status(), 200);
    let res = send(&svc2, costly("11")).await;
    assert_eq!(res.status(), 429);
    assert!(!res.headers().contains_key("retry-after"));

    // Counting refused requests keeps a hammering client out longer.
    for count in [false, true] {
        let layer = paused()
            .default_policy(Limit::per_second(1))
            .count_rejected(count)
            .build()
            .unwrap();
        let s = svc(&layer);
        assert_eq!(send(&s, from("192.0.2.1")).await.status(), 200);
        for _ in 0..5 {
            assert_eq!(send(&s, from("192.0.2.1")).await.status(), 429);
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        let want = if count { 429 } else { 200 };
        assert_eq!(
            send(&s, from("192.0.2.1")).await.status(),
            want,
            "count={count}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn jitter_missing_key_and_custom_response() {
    let layer = paused()
        .default_policy(Limit::per_second(1))
        .retry_after_jitter(Duration::from_secs(5))
        .build()
        .unwrap();
    let s = svc(&layer);
    send(&s, from("192.0.2.1")).await;
    for _ in 0..50 {
        let res = send(&s, from("192.0.2.1")).await;
        let secs: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=6).contains(&secs), "{secs}");
    }

    let layer = paused()
        .key(KeyPolicy::new(HeaderKey::new("x-api-key").unwrap()))
        .default_policy(Limit::per_second(1))
        .build()
        .unwrap()
        .with_rejection_response(|r: &gateway_layers_core::Rejection| {
            Response::builder()
                .status(r.status())
                .body(Bytes::from(format!("nope: {}", r.code())))
                .unwrap()
        });
    let s = svc(&layer);
    let res = send(&s, Request::new(())).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let keyed = || {
        let mut req = Request::new(());
        req.headers_mut().insert("x-api-key", "k".parse().unwrap());
        req
    };
    assert_eq!(send(&s, keyed()).await.status(), 200);
    let res = send(&s, keyed()).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
    let body = gateway_layers_test_support::body_bytes(res.into_body()).await;
    assert_eq!(body, "nope: rate_limited");
}

#[tokio::test(start_paused = true)]
async fn distinct_keys_are_evicted_once_idle() {
    // See store.rs for the larger count; this is the same through the layer.
    let layer = paused()
        .default_policy(Limit::per_second(10))
        .build()
        .unwrap();
    let s = svc(&layer);
    for i in 0..20_000u32 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        assert_eq!(send(&s, from(&ip.to_string())).await.status(), 200);
    }
    assert_eq!(layer.local_keys(), 20_000);
    let peak = layer.local_table_bytes();
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..64 {
        tokio::time::advance(Duration::from_millis(50)).await;
        send(&s, from("192.0.2.200")).await;
    }
    assert!(layer.local_keys() <= 1, "{}", layer.local_keys());
    assert!(layer.local_table_bytes() < peak / 10);
}

#[tokio::test(start_paused = true)]
async fn full_store_refuses_new_keys_with_503_not_a_fresh_bucket() {
    let layer = paused()
        .default_policy(Limit::per_minute(1))
        .max_keys(64)
        .build()
        .unwrap();
    let s = svc(&layer);
    let mut unavailable = 0;
    for i in 0..2000u32 {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        let res = send(&s, from(&ip.to_string())).await;
        match res.status().as_u16() {
            200 => {}
            503 => {
                unavailable += 1;
                assert_eq!(
                    res.extensions().get::<Rejected>().unwrap().code,
                    "ratelimit_store_full"
                );
                assert!(res.headers().contains_key("retry-after"));
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(layer.local_keys(), 64);
    assert_eq!(unavailable, 2000 - 64);
}

#[tokio::test]
async fn works_in_an_axum_router() {
    use axum::{Router, routing::get};
    let layer = RateLimitLayer::builder()
        .key(KeyPolicy::new(gateway_layers_core::key::ConstantKey("all")))
        .default_policy(Limit::per_minute(1))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/a", get(|| async { "a" }))
        .route_layer(layer.clone())
        .route("/b", get(|| async { "b" }))
        .layer(layer);
    let get = |path: &str| Request::get(path).body(axum::body::Body::empty()).unwrap();
    assert_eq!(app.clone().oneshot(get("/b")).await.unwrap().status(), 200);
    assert_eq!(app.clone().oneshot(get("/b")).await.unwrap().status(), 429);
    assert_eq!(app.clone().oneshot(get("/a")).await.unwrap().status(), 429);
}

/// The default key (and `key: client_ip` in a config) resolves the IP without the
/// key policy's trait object; it must behave exactly as `ClientIpKey` does.
#[tokio::test(start_paused = true)]
async fn default_client_ip_key_behaves_like_client_ip_key() {
    use gateway_layers_core::ClientIp;

    let quiet = |key: Option<KeyPolicy>| {
        let mut b = paused()
            .default_policy(Limit::per_second(1))
            .headers(HeaderStyle::None);
        if let Some(key) = key {
            b = b.key(key);
        }
        b.build().unwrap()
    };
    for layer in [
        quiet(None),
        quiet(Some(KeyPolicy::new(ClientIpKey::default()))),
    ] {
        let s = svc(&layer);
        // Admitted quietly: no headers, no decision in the extensions.
        let res = send(&s, from("192.0.2.1")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().is_empty());
        assert!(res.extensions().get::<RateLimitDecision>().is_none());
        let res = send(&s, from("192.0.2.1")).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()["retry-after"], "1");
        assert!(res.extensions().get::<RateLimitDecision>().is_some());
        // Another client is separate.
        assert_eq!(send(&s, from("192.0.2.2")).await.status(), StatusCode::OK);
        // A resolved `ClientIp` wins over the peer address.
        let mut req = from("192.0.2.3");
        req.extensions_mut()
            .insert(ClientIp("192.0.2.1".parse().unwrap()));
        assert_eq!(send(&s, req).await.status(), StatusCode::TOO_MANY_REQUESTS);
        // No peer address: the key policy's 400.
        let res = send(&s, Request::new(())).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
}

/// The default key looks up the peer address alone when it is the request's only
/// extension, and otherwise goes through `ClientIpResolver::resolve`: every way of
/// carrying the address, alone or beside others, must give the same key.
#[tokio::test(start_paused = true)]
async fn client_ip_key_is_the_same_whatever_the_extensions() {
    use axum::extract::ConnectInfo;
    use gateway_layers_core::{ClientIp, client_ip::PeerAddr};

    #[derive(Clone)]
    struct Other;

    let layer = paused()
        .default_policy(Limit::per_minute(1))
        .headers(HeaderStyle::None)
        .build()
        .unwrap();
    let s = svc(&layer);
    let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
    let with = |f: &dyn Fn(&mut http::Extensions)| {
        let mut req = Request::new(());
        f(req.extensions_mut());
        req
    };
    // Each client spends its one request in the first way, then is refused in all the
    // others: alone, beside an unrelated extension, as an IPv4-mapped IPv6 address.
    type Way<'a> = &'a dyn Fn(&mut http::Extensions, &str);
    let ways: [Way<'_>; 6] = [
        &|e, ip| {
            e.insert(ConnectInfo(addr(&format!("{ip}:1"))));
        },
        &|e, ip| {
            e.insert(addr(&format!("{ip}:2")));
        },
        &|e, ip| {
            e.insert(PeerAddr(addr(&format!("{ip}:3"))));
        },
        &|e, ip| {
            e.insert(ConnectInfo(addr(&format!("[::ffff:{ip}]:4"))));
        },
        &|e, ip| {
            e.insert(Other);
            e.insert(ConnectInfo(addr(&format!("{ip}:5"))));
        },
        &|e, ip| {
            e.insert(ClientIp(ip.parse().unwrap()));
        },
    ];
    for (first, way) in ways.iter().enumerate() {
        let ip = format!("192.0.2.{}", first + 10);
        let res = send(&s, with(&|e| way(e, &ip))).await;
        assert_eq!(res.status(), StatusCode::OK, "first request, way {first}");
        for (n, again) in ways.iter().enumerate() {
            let res = send(&s, with(&|e| again(e, &ip))).await;
            assert_eq!(
                res.status(),
                StatusCode::TOO_MANY_REQUESTS,
                "way {n} after way {first}"
            );
        }
    }
    // A resolved `ClientIp` wins over the peer address, alone or not.
    let res = send(
        &s,
        with(&|e| {
            e.insert(ConnectInfo(addr("198.51.100.1:1")));
            e.insert(ClientIp("192.0.2.10".parse().unwrap()));
        }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        send(
            &s,
            with(&|e| {
                e.insert(ConnectInfo(addr("198.51.100.1:1")));
            })
        )
        .await
        .status(),
        StatusCode::OK
    );
    // One extension that is no address, or none: the key policy's 400.
    let res = send(
        &s,
        with(&|e| {
            e.insert(Other);
        }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        send(&s, Request::new(())).await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[cfg(feature = "serde")]
#[tokio::test(start_paused = true)]
async fn config_client_ip_key_honours_trusted_proxies() {
    let config: gateway_layers_ratelimit::RateLimitConfig =
        serde_json::from_value(serde_json::json!({
            "key": "client_ip",
            "default": [{"quota": 1, "window": "1s"}],
            "headers": "none"
        }))
        .unwrap();
    let resolver = ClientIpResolver::new(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
    let layer = config.build(&resolver).unwrap();
    let s = svc(&layer);
    let via_proxy = |client: &str| {
        let mut req = from("10.0.0.1");
        req.headers_mut()
            .insert("x-forwarded-for", client.parse().unwrap());
        req
    };
    assert_eq!(send(&s, via_proxy("198.51.100.1")).await.status(), 200);
    assert_eq!(send(&s, via_proxy("198.51.100.2")).await.status(), 200);
    assert_eq!(send(&s, via_proxy("198.51.100.1")).await.status(), 429);
    // The same behind the proxy when the peer address is not the only extension
    // (`resolve` rather than the single-extension path) and from axum's `ConnectInfo`.
    #[derive(Clone)]
    struct Other;
    let mut req = via_proxy("198.51.100.2");
    req.extensions_mut().insert(Other);
    assert_eq!(send(&s, req).await.status(), 429);
    let mut req = Request::new(());
    req.extensions_mut().insert(axum::extract::ConnectInfo(
        "10.0.0.2:1".parse::<SocketAddr>().unwrap(),
    ));
    req.headers_mut()
        .insert("x-forwarded-for", "198.51.100.3".parse().unwrap());
    assert_eq!(send(&s, req).await.status(), 200);
    // An untrusted peer's header is ignored: the peer is the client.
    let mut req = from("203.0.113.1");
    req.headers_mut()
        .insert("x-forwarded-for", "198.51.100.4".parse().unwrap());
    assert_eq!(send(&s, req).await.status(), 200);
    let mut req = from("203.0.113.1");
    req.headers_mut()
        .insert("x-forwarded-for", "198.51.100.5".parse().unwrap());
    assert_eq!(send(&s, req).await.status(), 429);
    assert_eq!(send(&s, Request::new(())).await.status(), 400);
}
