//! The HTTP/1.1 connection pool of `http://` targets, against real loopback upstreams:
//! reuse, bodies read whole or not, stale connections, idle timeout and bounds.

mod common;

use std::time::Duration;

use common::request;
use gateway_layers_proxy::{Pool, Proxy};
use gateway_layers_test_support::{MockUpstream, Reply};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A proxy to `upstream` with pool settings `pool`.
fn pooled(upstream: &MockUpstream, pool: Pool) -> Proxy {
    Proxy::builder()
        .target(upstream.url())
        .pool(pool)
        .build()
        .unwrap()
}

async fn get(proxy: &Proxy, path: &str) -> (StatusCode, bytes::Bytes) {
    let response = proxy
        .clone()
        .oneshot(request(path, "203.0.113.9:4000"))
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let upstream = MockUpstream::builder()
        .handler(|r, i| Reply::status(200).body(format!("{} #{i}", r.uri.path())))
        .start()
        .await;
    let proxy = Proxy::new([upstream.url()]).unwrap();
    for i in 0..20 {
        let (status, body) = get(&proxy, &format!("/item/{i}")).await;
        assert_eq!(status, 200);
        assert_eq!(body, format!("/item/{i} #{i}"));
    }
    assert_eq!(upstream.requests(), 20);
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn empty_responses_release_their_connection() {
    // 204, a HEAD answer and an empty 200: the server side may never poll such a
    // body, so the connection must go back to the pool when the head arrives.
    let upstream = MockUpstream::builder()
        .handler(|_, i| match i % 3 {
            0 => Reply::status(204),
            1 => Reply::status(200).body("not sent for HEAD"),
            _ => Reply::status(200),
        })
        .start()
        .await;
    let proxy = Proxy::new([upstream.url()]).unwrap();
    for i in 0..9 {
        let mut req = request("/empty", "203.0.113.9:4000");
        if i % 3 == 1 {
            *req.method_mut() = http::Method::HEAD;
        }
        let response = proxy.clone().oneshot(req).await.unwrap();
        assert!(response.status().is_success());
        // Not read: dropped as a server would after `is_end_stream`.
        drop(response);
    }
    assert_eq!(upstream.requests(), 9);
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn a_body_dropped_early_closes_its_connection() {
    let upstream = MockUpstream::builder()
        .handler(|r, _| {
            if r.uri.path() == "/big" {
                Reply::status(200).streamed(vec![b'x'; 16 * 1024], 256)
            } else {
                Reply::status(200).body("small")
            }
        })
        .start()
        .await;
    let proxy = Proxy::new([upstream.url()]).unwrap();
    let response = proxy
        .clone()
        .oneshot(request("/big", "203.0.113.9:4000"))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(!first.into_data().unwrap().is_empty());
    drop(body); // 4 MiB unread: this connection cannot carry another request

    let (status, body) = get(&proxy, "/small").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"small"[..]));
    assert_eq!(upstream.connections(), 2);
    // The new one is pooled again.
    let (status, _) = get(&proxy, "/small").await;
    assert_eq!(status, 200);
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_upstream_is_replaced() {
    let mut upstream = MockUpstream::echo().await;
    let proxy = Proxy::new([upstream.url()]).unwrap();
    assert_eq!(get(&proxy, "/one").await.0, 200);
    // The upstream restarts on the same port: the pooled connection is dead.
    upstream.stop().await;
    upstream.restart().await;
    for path in ["/two", "/three"] {
        let (status, body) = get(&proxy, path).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    assert_eq!(upstream.requests(), 3);
    assert_eq!(
        upstream.connections(),
        2,
        "one before the restart, one after"
    );
}

#[tokio::test]
async fn idle_connections_expire() {
    let upstream = MockUpstream::echo().await;
    let proxy = pooled(
        &upstream,
        Pool {
            idle_timeout: Duration::from_millis(100),
            ..Pool::default()
        },
    );
    assert_eq!(get(&proxy, "/a").await.0, 200);
    assert_eq!(get(&proxy, "/b").await.0, 200);
    assert_eq!(upstream.connections(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&proxy, "/c").await.0, 200);
    assert_eq!(upstream.connections(), 2);
}

#[tokio::test]
async fn at_most_max_idle_connections_are_kept() {
    let upstream = MockUpstream::builder()
        .handler(|_, _| {
            Reply::status(200)
                .body("ok")
                .delay(Duration::from_millis(200))
        })
        .start()
        .await;
    let proxy = pooled(
        &upstream,
        Pool {
            max_idle_per_target: 2,
            ..Pool::default()
        },
    );
    let batch = || {
        let proxy = proxy.clone();
        async move {
            let calls = (0..8).map(|i| {
                let proxy = proxy.clone();
                async move { get(&proxy, &format!("/{i}")).await.0 }
            });
            for status in futures_util::future::join_all(calls).await {
                assert_eq!(status, 200);
            }
        }
    };
    batch().await;
    assert_eq!(
        upstream.connections(),
        8,
        "eight at once need eight connections"
    );
    batch().await;
    assert_eq!(
        upstream.connections(),
        8 + 6,
        "two were kept idle, six are new"
    );
}

#[tokio::test]
async fn streamed_request_bodies_and_keep_alive() {
    // A POST whose body arrives in chunks, then a GET on the same connection.
    let upstream = MockUpstream::echo().await;
    let proxy = Proxy::new([upstream.url()]).unwrap();
    let chunks: Vec<Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>> = (0..64)
        .map(|i| {
            Ok(http_body::Frame::data(bytes::Bytes::from(vec![
                b'a' + (i % 26)
                    as u8;
                1000
            ])))
        })
        .collect();
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
    let mut req = Request::post("/upload")
        .header("host", "gateway.example")
        .body(body)
        .unwrap();
    req.extensions_mut()
        .insert("203.0.113.9:4000".parse::<std::net::SocketAddr>().unwrap());
    let response = proxy.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let echo = gateway_layers_test_support::body_json(response.into_body()).await;
    assert_eq!(echo["body"].as_str().unwrap().len(), 64_000);
    assert_eq!(echo["headers"]["transfer-encoding"][0], "chunked");
    let get = proxy
        .clone()
        .oneshot(request("/after", "203.0.113.9:4000"))
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    get.into_body().collect().await.unwrap();
    assert_eq!(upstream.connections(), 1);
}

fn idle(proxy: &Proxy) -> usize {
    proxy.targets()[0].idle_connections
}

#[tokio::test]
async fn expired_idle_connections_are_closed_without_traffic() {
    let upstream = MockUpstream::echo().await;
    let proxy = pooled(
        &upstream,
        Pool {
            idle_timeout: Duration::from_millis(200),
            ..Pool::default()
        },
    );
    assert_eq!(get(&proxy, "/a").await.0, 200);
    assert_eq!(idle(&proxy), 1);
    // No further request: the reaper (every 100 ms here) closes it. (That it also
    // closes connections the upstream closed is a unit test in `conn.rs`.)
    common::eventually("the idle connection is closed", || idle(&proxy) == 0).await;
}

#[tokio::test]
async fn an_upstream_closing_after_each_response_gets_a_new_connection_each_time() {
    let upstream = MockUpstream::builder()
        .handler(|_, i| {
            Reply::status(200)
                .header("connection", "close")
                .body(format!("#{i}"))
        })
        .start()
        .await;
    let proxy = Proxy::new([upstream.url()]).unwrap();
    for i in 0..3 {
        let (status, body) = get(&proxy, "/close").await;
        assert_eq!(
            (status, body),
            (StatusCode::OK, bytes::Bytes::from(format!("#{i}")))
        );
    }
    assert_eq!(upstream.connections(), 3);
    assert_eq!(idle(&proxy), 0);
}
