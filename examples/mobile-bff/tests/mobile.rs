//! The mobile BFF end to end against the demo upstreams on loopback.

use std::time::Duration;

use axum::body::Body;
use example_demo_services::bff::{BffConfig, DEMO_SECRET};
use example_mobile_bff::{DemoUrls, HOME, app, format_total, mint_token};
use gateway_layers_test_support::{MockUpstream, body_json};
use http::{Request, StatusCode};
use tower::ServiceExt;

fn request(token: &str) -> Request<Body> {
    Request::get(HOME)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn home_is_reduced_for_mobile() {
    let config = BffConfig {
        urls: DemoUrls::start().await.unwrap(),
        secret: DEMO_SECRET.to_vec(),
    };
    let token = mint_token(DEMO_SECRET, "1", "premium", Duration::from_secs(60));
    let response = app(&config).oneshot(request(&token)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_json(response.into_body()).await;
    assert_eq!(
        body["user"],
        serde_json::json!({"name": "Ada Lovelace", "avatar": "https://img.example.com/avatars/1.png?w=64"})
    );
    let orders = body["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 3);
    assert_eq!(orders[0]["total"], "€19.99");
    assert_eq!(
        orders[0]["thumbnail"],
        "https://img.example.com/products/100-a.jpg?w=120"
    );
    assert!(
        orders[0].get("items").is_none(),
        "items are not sent to mobile"
    );
    assert_eq!(body["unread_notifications"], 1);
    assert_eq!(body["recommendations"][0]["name"], "Sprocket");
    assert!(body["recommendations"][0].get("score").is_none());
    assert_eq!(body["_meta"]["partial"], false);
    // Nothing internal leaks.
    let text = body.to_string();
    assert!(!text.contains("internal"), "{text}");
}

#[tokio::test]
async fn missing_notifications_leave_the_rest() {
    let mut urls = DemoUrls::start().await.unwrap();
    let mut dead = MockUpstream::echo().await;
    urls.notifications = dead.url();
    dead.stop().await;
    let config = BffConfig {
        urls,
        secret: DEMO_SECRET.to_vec(),
    };
    let token = mint_token(DEMO_SECRET, "2", "free", Duration::from_secs(60));
    let body = body_json(
        app(&config)
            .oneshot(request(&token))
            .await
            .unwrap()
            .into_body(),
    )
    .await;
    assert_eq!(body["user"]["name"], "Grace Hopper");
    assert!(body.get("unread_notifications").is_none());
    assert_eq!(body["_meta"]["parts"]["notifications"]["status"], "error");
}

#[tokio::test]
async fn no_token_is_401() {
    let config = BffConfig {
        urls: DemoUrls::start().await.unwrap(),
        secret: DEMO_SECRET.to_vec(),
    };
    let response = app(&config)
        .oneshot(Request::get(HOME).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn totals() {
    assert_eq!(format_total(1999, "EUR"), "€19.99");
    assert_eq!(format_total(5, "USD"), "$0.05");
    assert_eq!(format_total(123_456, "CHF"), "1234.56 CHF");
}
