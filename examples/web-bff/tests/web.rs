//! The web BFF end to end against the demo upstreams on loopback.

use std::time::Duration;

use axum::body::Body;
use example_demo_services::bff::{BffConfig, DEMO_SECRET};
use example_web_bff::{DASHBOARD, DemoUrls, app, mint_token};
use gateway_layers_test_support::body_json;
use http::{Request, StatusCode};
use tower::ServiceExt;

#[tokio::test]
async fn dashboard_is_rich_and_scrubbed() {
    let config = BffConfig {
        urls: DemoUrls::start().await.unwrap(),
        secret: DEMO_SECRET.to_vec(),
    };
    let token = mint_token(DEMO_SECRET, "1", "premium", Duration::from_secs(60));
    let response = app(&config)
        .oneshot(
            Request::get(DASHBOARD)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_json(response.into_body()).await;
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(body["user"]["address"]["city"], "London");
    assert!(body["user"].get("internal_notes").is_none());
    let orders = body["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 3);
    assert_eq!(orders[0]["total_cents"], 1999);
    assert_eq!(orders[0]["items"][0]["sku"], "SKU-100-A");
    assert!(orders[0]["items"][0].get("internal_id").is_none());
    assert_eq!(body["notifications"].as_array().unwrap().len(), 2);
    assert_eq!(body["recommendations"][0]["score"], 0.91);
    assert_eq!(body["_meta"]["partial"], false);
    assert!(!body.to_string().contains("internal"));
}

#[tokio::test]
async fn expired_token_is_401() {
    let config = BffConfig {
        urls: DemoUrls::start().await.unwrap(),
        secret: DEMO_SECRET.to_vec(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": example_demo_services::bff::DEMO_ISSUER, "sub": "1", "tier": "premium",
        "iat": now - 7200, "exp": now - 3600,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(DEMO_SECRET),
    )
    .unwrap();
    let response = app(&config)
        .oneshot(
            Request::get(DASHBOARD)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
