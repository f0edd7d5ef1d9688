//! The layer under axum 0.8 `Router::layer` and `route_layer` bounds, and served by
//! hyper on loopback.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};
use std::time::Duration;

use axum::{Router, body::Body, http::StatusCode, routing::put};
use gateway_layers_retry::RetryLayer;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

type Seen = Arc<Mutex<Vec<String>>>;

/// A handler answering 503 twice, then echoing the body, in every three calls; each
/// body it got is pushed onto `seen`.
fn app(calls: Arc<AtomicUsize>, seen: Seen, route_layer: bool) -> Router {
    let handler = move |body: String| {
        let (calls, seen) = (calls.clone(), seen.clone());
        async move {
            seen.lock().unwrap().push(body.clone());
            if calls.fetch_add(1, Ordering::SeqCst) % 3 < 2 {
                (StatusCode::SERVICE_UNAVAILABLE, String::new())
            } else {
                (StatusCode::OK, body)
            }
        }
    };
    let retry = RetryLayer::builder()
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .build()
        .unwrap();
    let router = Router::new().route("/items/{id}", put(handler));
    if route_layer {
        router.route_layer(retry)
    } else {
        router.layer(retry)
    }
}

#[tokio::test]
async fn retries_inside_axum_router() {
    for route_layer in [false, true] {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Seen::default();
        let response = app(calls.clone(), seen.clone(), route_layer)
            .oneshot(
                Request::put("/items/7")
                    .body(Body::from("same body each time"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "same body each time");
        assert_eq!(*seen.lock().unwrap(), vec!["same body each time"; 3]);
    }
}

/// Served by hyper on loopback, so the layer gets hyper's own request body: one that
/// arrived with its headers (kept whole at once) and one whose bytes come 50 ms after
/// them (streamed and kept as it goes). Both reach the handler identically three times.
#[tokio::test]
async fn retries_hyper_request_bodies_read_at_once_or_later() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let seen = Seen::default();
    let app = app(Arc::new(AtomicUsize::new(0)), seen.clone(), false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let body = "x".repeat(3000);
    for late in [false, true] {
        seen.lock().unwrap().clear();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "PUT /items/7 HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        if late {
            stream.write_all(head.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream.write_all(body.as_bytes()).await.unwrap();
        } else {
            stream
                .write_all(format!("{head}{body}").as_bytes())
                .await
                .unwrap();
        }
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "late {late}: {answer}");
        assert!(answer.ends_with(&body), "late {late}");
        assert_eq!(*seen.lock().unwrap(), vec![body.clone(); 3], "late {late}");
    }
    server.abort();
}
