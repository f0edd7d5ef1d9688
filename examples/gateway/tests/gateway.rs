//! The example gateway against real loopback upstreams, through `oneshot` and over TCP.

use axum::body::Body;
use example_gateway::{Upstreams, app, start_demo_upstreams};
use gateway_layers_test_support::{MockUpstream, body_json, http_client};
use http::{Request, StatusCode};
use tower::ServiceExt;

#[tokio::test]
async fn routes_reach_demo_upstreams() {
    let upstreams = start_demo_upstreams().await.unwrap();
    let app = app(&upstreams);

    let response = app
        .clone()
        .oneshot(Request::get("/api/users/1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body_json(response.into_body()).await["name"],
        "Ada Lovelace"
    );

    let response = app
        .clone()
        .oneshot(Request::get("/api/orders").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_json(response.into_body()).await[0]["id"], 100);

    let response = app
        .clone()
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_route_is_problem_json_404() {
    let upstreams = start_demo_upstreams().await.unwrap();
    let response = app(&upstreams)
        .oneshot(Request::get("/nowhere").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(body_json(response.into_body()).await["code"], "no_route");
}

#[tokio::test]
async fn forwards_path_headers_and_client_ip() {
    let upstream = MockUpstream::echo().await;
    let upstreams = Upstreams {
        users: upstream.url(),
        orders: upstream.url(),
    };
    let mut request = Request::get("/api/users/7?x=1")
        .header("connection", "close, x-user-id")
        .header("x-user-id", "forged")
        .header("x-forwarded-for", "6.6.6.6")
        .body(Body::empty())
        .unwrap();
    request.extensions_mut().insert(axum::extract::ConnectInfo(
        "198.51.100.20:5555"
            .parse::<std::net::SocketAddr>()
            .unwrap(),
    ));
    let response = app(&upstreams).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let echo = body_json(response.into_body()).await;
    assert_eq!(echo["uri"], "/users/7?x=1");
    assert!(echo["headers"].get("x-user-id").is_none());
    // The untrusted peer's XFF entry is kept as history, and its real address appended.
    assert_eq!(
        echo["headers"]["x-forwarded-for"][0],
        "6.6.6.6, 198.51.100.20"
    );
}

#[tokio::test]
async fn dead_upstream_is_502_problem() {
    let mut upstream = MockUpstream::echo().await;
    let upstreams = Upstreams {
        users: upstream.url(),
        orders: upstream.url(),
    };
    upstream.stop().await;
    let response = app(&upstreams)
        .oneshot(Request::get("/api/users/1").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        body_json(response.into_body()).await["code"],
        "upstream_unavailable"
    );
}

#[tokio::test]
async fn serves_over_tcp() {
    let upstreams = start_demo_upstreams().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(example_gateway::serve(listener, app(&upstreams)));
    let response = http_client()
        .request(
            Request::get(format!("http://{addr}/api/users/2"))
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body_json(response.into_body()).await["name"],
        "Grace Hopper"
    );
    server.abort();
}
