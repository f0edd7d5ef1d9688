//! The Redis backend against a real `redis-server` (test support starts a private one).
#![cfg(feature = "redis")]

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use gateway_layers_core::{GatewayBody, Rejected};
use gateway_layers_ratelimit::{
    DecisionSource, Limit, OnBackendError, RateLimitDecision, RateLimitLayer, RedisBackend,
};
use gateway_layers_test_support::RedisServer;
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

fn layer(redis: &RedisServer, limit: Limit, on_error: OnBackendError) -> RateLimitLayer {
    layer_with_timeout(redis, limit, on_error, Duration::from_secs(2))
}

fn layer_with_timeout(
    redis: &RedisServer,
    limit: Limit,
    on_error: OnBackendError,
    timeout: Duration,
) -> RateLimitLayer {
    RateLimitLayer::builder()
        .default_policy(limit)
        .expose_decision(true)
        .redis(
            RedisBackend::new(&redis.url())
                .unwrap()
                .prefix("test")
                .timeout(timeout)
                .retry_interval(Duration::from_millis(100))
                .on_error(on_error),
        )
        .build()
        .unwrap()
}

async fn raw(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_limit_exactly() {
    let redis = RedisServer::start();
    let services: Vec<_> = (0..3)
        .map(|_| {
            // A generous timeout: this test is about exactness, not failure modes, and
            // the machine may be loaded.
            svc(&layer_with_timeout(
                &redis,
                Limit::per_hour(100),
                OnBackendError::Deny,
                Duration::from_secs(30),
            ))
        })
        .collect();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let svc = services[i % 3].clone();
            tokio::spawn(async move {
                let res = svc.oneshot(from("198.51.100.1")).await.unwrap();
                let source = res.extensions().get::<RateLimitDecision>().unwrap().source;
                (res.status(), source)
            })
        })
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for task in tasks {
        let (status, source) = task.await.unwrap();
        assert_eq!(source, DecisionSource::Redis);
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, limited), (100, 900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_have_prefix_ttl_and_script_survives_flush() {
    let redis = RedisServer::start();
    // Per minute, not per second: the sixth request must be refused even when the
    // machine is slow (a per-second limit refills within 200 ms of wall time).
    let layer = layer(
        &redis,
        Limit::per_minute(5).with_burst(5),
        OnBackendError::Deny,
    );
    let s = svc(&layer);
    for _ in 0..5 {
        let res = s.clone().oneshot(from("192.0.2.1")).await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let res = s.clone().oneshot(from("192.0.2.1")).await.unwrap();
    assert_eq!(res.status(), 429);
    let header: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=12).contains(&header), "{header}");
    let retry = res
        .extensions()
        .get::<RateLimitDecision>()
        .unwrap()
        .retry_after
        .unwrap();
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(12),
        "{retry:?}"
    );

    let mut conn = raw(&redis).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, ["test:{default:192.0.2.1}"]);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_001, "{ttl}");

    // The script cache is emptied: EVALSHA gets NOSCRIPT and the script is reloaded.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let res = s.clone().oneshot(from("192.0.2.2")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.extensions().get::<RateLimitDecision>().unwrap().source,
        DecisionSource::Redis
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_windows_in_one_script() {
    let redis = RedisServer::start();
    let layer = RateLimitLayer::builder()
        .default_policy([Limit::per_second(3), Limit::per_hour(5)])
        .redis(
            RedisBackend::new(&redis.url())
                .unwrap()
                .timeout(Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    let s = svc(&layer);
    let mut ok = 0;
    for _ in 0..3 {
        if s.clone().oneshot(from("192.0.2.9")).await.unwrap().status() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 3);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut last = None;
    for _ in 0..5 {
        let res = s.clone().oneshot(from("192.0.2.9")).await.unwrap();
        if res.status() == 200 {
            ok += 1;
        } else {
            last = Some(res);
        }
    }
    assert_eq!(ok, 5);
    let res = last.unwrap();
    assert!(
        res.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"5/1h\";r=0;t=")
    );
}

async fn decide(
    s: &(impl Service<Request<()>, Response = Res, Error = Infallible> + Clone),
) -> Res {
    // Generous outer bound over the decision timeout (2 s; a refused connection
    // fails at once).
    tokio::time::timeout(
        Duration::from_secs(10),
        s.clone().oneshot(from("192.0.2.1")),
    )
    .await
    .expect("decision did not return")
    .unwrap()
}

fn source(res: &Res) -> Option<DecisionSource> {
    res.extensions()
        .get::<RateLimitDecision>()
        .map(|d| d.source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_then_back_without_rebuilding() {
    let mut redis = RedisServer::start();
    let allow = svc(&layer(&redis, Limit::per_hour(1000), OnBackendError::Allow));
    let deny = svc(&layer(&redis, Limit::per_hour(1000), OnBackendError::Deny));
    let local = svc(&layer(&redis, Limit::per_hour(1000), OnBackendError::Local));
    for s in [&allow, &deny, &local] {
        let res = decide(s).await;
        assert_eq!(res.status(), 200);
        assert_eq!(source(&res), Some(DecisionSource::Redis));
    }

    redis.stop();
    for _ in 0..5 {
        let res = decide(&allow).await;
        assert_eq!(res.status(), 200);
        assert_eq!(source(&res), Some(DecisionSource::FailOpen));

        let res = decide(&deny).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            res.extensions().get::<Rejected>().unwrap().code,
            "ratelimit_unavailable"
        );

        let res = decide(&local).await;
        assert_eq!(res.status(), 200);
        assert_eq!(source(&res), Some(DecisionSource::LocalFallback));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }

    redis.restart();
    for s in [&allow, &deny, &local] {
        let mut back = false;
        for _ in 0..200 {
            let res = decide(s).await;
            if source(&res) == Some(DecisionSource::Redis) {
                assert_eq!(res.status(), 200);
                back = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(back, "decisions did not come from Redis again");
    }
    let mut conn = raw(&redis).await;
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert!(n >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_never_reachable_uses_the_fallback() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop();
    let layer = RateLimitLayer::builder()
        .default_policy(Limit::per_hour(2))
        .expose_decision(true)
        .redis(
            RedisBackend::new(&url)
                .unwrap()
                .timeout(Duration::from_millis(100))
                .on_error(OnBackendError::Local),
        )
        .build()
        .unwrap();
    let s = svc(&layer);
    let mut ok = 0;
    for _ in 0..5 {
        let res = decide(&s).await;
        if res.status() == 200 {
            ok += 1;
            assert_eq!(source(&res), Some(DecisionSource::LocalFallback));
        }
    }
    assert_eq!(ok, 2);
}

#[test]
fn invalid_redis_settings_are_config_errors() {
    assert!(RedisBackend::new("not a url").is_err());
    let backend = || RedisBackend::new("redis://127.0.0.1:1/").unwrap();
    for bad in [backend().timeout(Duration::ZERO), backend().prefix("a{b}")] {
        assert!(RateLimitLayer::builder().redis(bad).build().is_err());
    }
    // Faster than 1/µs is fine locally but not in Redis.
    let fast = Limit::per_second(2_000_000);
    assert!(
        RateLimitLayer::builder()
            .default_policy(fast.clone())
            .build()
            .is_ok()
    );
    assert!(
        RateLimitLayer::builder()
            .default_policy(fast)
            .redis(backend())
            .build()
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_connection_can_be_passed_in() {
    // What a Redis Cluster or Sentinel deployment does: build the connection, hand it over.
    let redis = RedisServer::start();
    let layer = RateLimitLayer::builder()
        .default_policy(Limit::per_hour(3))
        .expose_decision(true)
        .redis(
            RedisBackend::from_connection(raw(&redis).await)
                .prefix("custom")
                .timeout(Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    let s = svc(&layer);
    let mut ok = 0;
    for _ in 0..5 {
        let res = decide(&s).await;
        assert_eq!(source(&res), Some(DecisionSource::Redis));
        if res.status() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 3);
    let mut conn = raw(&redis).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("custom:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, ["custom:{default:192.0.2.1}"]);
}
