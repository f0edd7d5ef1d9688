//! The layer under axum 0.8 `Router::layer` and `route_layer` bounds.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use std::time::Duration;

use axum::{Router, body::Body, http::StatusCode, routing::put};
use gateway_layers_retry::RetryLayer;
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

fn app(calls: Arc<AtomicUsize>, route_layer: bool) -> Router {
    let handler = move |body: String| {
        let calls = calls.clone();
        async move {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n < 2 {
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
        let response = app(calls.clone(), route_layer)
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
    }
}
