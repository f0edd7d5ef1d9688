//! The router inside and around axum, and over real HTTP on loopback.

use std::{convert::Infallible, time::Duration};

use axum::{body::Body, routing::get};
use gateway_layers_core::ext::{PathParams, RouteName};
use gateway_layers_router::{Route, Router};
use http::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{ServiceExt, service_fn};

fn named(
    name: &'static str,
) -> impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    service_fn(move |req: Request<Body>| async move {
        let route = req
            .extensions()
            .get::<RouteName>()
            .map(|r| r.0.to_string())
            .unwrap_or_default();
        let id = req
            .extensions()
            .get::<PathParams>()
            .and_then(|p| p.get("id").map(str::to_owned));
        Ok(Response::new(Body::from(format!(
            "{name} route={route} path={} id={}",
            req.uri().path(),
            id.unwrap_or_default()
        ))))
    })
}

fn gateway() -> Router<Body, Body> {
    // A protected route with its own layer: refuses without a token.
    let admin = tower::ServiceBuilder::new().service(service_fn(|req: Request<Body>| async move {
        if req.headers().contains_key("authorization") {
            named("admin").oneshot(req).await
        } else {
            Ok(Response::builder().status(401).body(Body::empty()).unwrap())
        }
    }));
    // An axum app mounted under /app, seeing the stripped path.
    let app = axum::Router::new().route("/hello", get(|| async { "hello from axum" }));
    Router::builder()
        .route(Route::new("admin").prefix("/admin").service(admin))
        .route(
            Route::new("user")
                .template("/users/{id}")
                .service(named("users")),
        )
        .route(
            Route::new("app")
                .prefix("/app")
                .strip_prefix("/app")
                .service(app),
        )
        .build()
        .unwrap()
}

async fn text<B>(response: Response<B>) -> String
where
    B: http_body_util::BodyExt,
    B::Error: std::fmt::Debug,
{
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn get_req(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn inside_axum_as_fallback_service() {
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .fallback_service(gateway());
    let response = app.clone().oneshot(get_req("/health")).await.unwrap();
    assert_eq!(text(response).await, "ok");
    let response = app.clone().oneshot(get_req("/users/9")).await.unwrap();
    assert_eq!(text(response).await, "users route=user path=/users/9 id=9");
    let response = app.clone().oneshot(get_req("/app/hello")).await.unwrap();
    assert_eq!(text(response).await, "hello from axum");
    let response = app
        .clone()
        .oneshot(get_req("/public/../admin"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app.oneshot(get_req("/missing")).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn around_axum_as_a_layer() {
    let layer = Router::builder()
        .route(
            Route::new("user")
                .template("/users/{id}")
                .service(named("users")),
        )
        .layer()
        .unwrap();
    // Under axum's `Router::layer` bounds: unmatched requests go to the axum router.
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .layer(layer.clone());
    let response = app.clone().oneshot(get_req("/users/3")).await.unwrap();
    assert_eq!(text(response).await, "users route=user path=/users/3 id=3");
    let response = app.oneshot(get_req("/health")).await.unwrap();
    assert_eq!(text(response).await, "ok");
    // And around a whole axum app with ServiceBuilder.
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(axum::Router::new().route("/health", get(|| async { "ok" })));
    let response = svc.oneshot(get_req("/./health")).await.unwrap();
    assert_eq!(text(response).await, "ok");
}

#[tokio::test]
async fn over_real_http_with_raw_targets() {
    let app = axum::Router::new().fallback_service(gateway());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // Raw request lines: HTTP clients would normalize these before sending.
    let raw = |target: &'static str, extra: &'static str| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        out
    };
    let out = raw("/public/%2e%2e/admin", "").await;
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    let out = raw("/public/%2e%2e/admin/x", "Authorization: t\r\n").await;
    assert!(out.contains("admin route=admin path=/admin/x"), "{out}");
    let out = raw("//admin", "").await;
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    let out = raw("/admin%2f..%2fusers/1", "").await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    let out = raw("/users/%37", "").await;
    assert!(out.contains("users route=user path=/users/7 id=7"), "{out}");
    server.abort();
}
