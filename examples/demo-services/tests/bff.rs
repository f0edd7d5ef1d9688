//! The BFF shell shared by the examples, end to end against real loopback upstreams:
//! authentication failures, tier limits, partial results and required-part failures.

use std::time::Duration;

use axum::body::Body;
use example_demo_services::{
    DemoUrls,
    bff::{BffConfig, DEMO_SECRET, bff_router, mint_token},
};
use gateway_layers_test_support::{MockUpstream, Reply, body_json};
use http::{Request, StatusCode};
use tower::ServiceExt;

fn shape(composition: gateway_layers::compose::Composition) -> serde_json::Value {
    composition.into_json()
}

async fn config() -> BffConfig {
    BffConfig {
        urls: DemoUrls::start().await.unwrap(),
        secret: DEMO_SECRET.to_vec(),
    }
}

fn get(token: Option<&str>) -> Request<Body> {
    let mut builder = Request::get("/home");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::empty()).unwrap()
}

fn token(sub: &str, tier: &str) -> String {
    mint_token(DEMO_SECRET, sub, tier, Duration::from_secs(300))
}

#[tokio::test]
async fn authentication_is_required() {
    let app = bff_router("/home", &config().await, shape);
    let response = app.clone().oneshot(get(None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let forged = mint_token(
        b"another-secret-of-at-least-32-bytes!",
        "1",
        "enterprise",
        Duration::from_secs(60),
    );
    let response = app.clone().oneshot(get(Some(&forged))).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        body_json(response.into_body()).await["code"],
        "invalid_token"
    );
    let health = app
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn complete_composition_for_a_valid_token() {
    let app = bff_router("/home", &config().await, shape);
    let response = app
        .oneshot(get(Some(&token("1", "premium"))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_json(response.into_body()).await;
    assert_eq!(body["user"]["name"], "Ada Lovelace");
    assert_eq!(body["orders"].as_array().unwrap().len(), 3);
    assert_eq!(body["_meta"]["partial"], false);
}

#[tokio::test]
async fn free_tier_is_limited_per_subject_premium_is_not() {
    let app = bff_router("/home", &config().await, shape);
    let free = token("2", "free");
    // The burst of 5 always passes.
    for _ in 0..5 {
        let response = app.clone().oneshot(get(Some(&free))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Then 429 comes, at the latest when the 100/min window is spent.
    let mut limited = None;
    for _ in 0..120 {
        let response = app.clone().oneshot(get(Some(&free))).await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("the free tier must be limited");
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    // Another subject on a higher tier has its own bucket.
    for _ in 0..10 {
        let response = app
            .clone()
            .oneshot(get(Some(&token("1", "premium"))))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_dead_optional_upstream_gives_a_partial_result() {
    let mut config = config().await;
    let mut dead = MockUpstream::echo().await;
    config.urls.recommendations = dead.url();
    dead.stop().await;
    let app = bff_router("/home", &config, shape);
    let response = app
        .oneshot(get(Some(&token("1", "premium"))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_json(response.into_body()).await;
    assert_eq!(body["user"]["id"], 1);
    assert!(body.get("recommendations").is_none());
    assert_eq!(body["_meta"]["partial"], true);
    assert_eq!(body["_meta"]["parts"]["recommendations"]["status"], "error");
}

#[tokio::test]
async fn required_part_failures_are_502_and_504() {
    let mut config = config().await;
    let mut dead = MockUpstream::echo().await;
    config.urls.users = dead.url();
    dead.stop().await;
    let response = bff_router("/home", &config, shape)
        .oneshot(get(Some(&token("1", "premium"))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        body_json(response.into_body()).await["code"],
        "required_part_failed"
    );

    let slow = MockUpstream::builder()
        .handler(|req, _| Reply::echo(req).delay(Duration::from_secs(3)))
        .start()
        .await;
    config.urls.users = slow.url();
    let response = bff_router("/home", &config, shape)
        .oneshot(get(Some(&token("1", "premium"))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        body_json(response.into_body()).await["code"],
        "required_part_timeout"
    );
}
