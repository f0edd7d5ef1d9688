//! Through a real loopback upstream (MockUpstream), under axum, with request ids.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{Router, body::Body as AxumBody, routing::post};
use bytes::Bytes;
use gateway_layers_core::{BoxError, Identity, ext::PathParams};
use gateway_layers_test_support::{
    MockUpstream, Reply, TestClient, body_bytes, body_json, http_client,
};
use gateway_layers_transform::{Rules, TransformConfig, ValueSpec, request_id::request_id_layers};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, ServiceExt};

/// Forwards every request to `base` with the test client (the body is read first).
#[derive(Clone)]
struct Forward {
    client: TestClient,
    base: String,
}

impl<B> Service<Request<B>> for Forward
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let client = self.client.clone();
        let base = self.base.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let body = body.collect().await.map_err(Into::into)?.to_bytes();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            parts.uri = format!("{base}{path}").parse()?;
            Ok(client
                .request(Request::from_parts(parts, Full::new(body)))
                .await?)
        })
    }
}

fn forward(upstream: &MockUpstream) -> Forward {
    Forward {
        client: http_client(),
        base: upstream.url(),
    }
}

#[tokio::test]
async fn content_length_is_right_at_a_real_upstream() {
    let upstream = MockUpstream::echo().await;
    let svc = ServiceBuilder::new()
        .layer(
            TransformConfig::new()
                .request(
                    Rules::new()
                        .remove_field("password")
                        .add_field("user", ValueSpec::template("{claim.sub}"))
                        .set_header("x-user-id", "{claim.sub}"),
                )
                .response(Rules::new().remove_field("peer").remove_header("x-none"))
                .build()
                .unwrap(),
        )
        .service(forward(&upstream));
    let body = r#"{"name":"a much longer name than the result","password":"hunter2"}"#;
    let mut request = Request::post("/orders")
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .header("x-user-id", "forged")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    request
        .extensions_mut()
        .insert(Identity::new().with_claims(json!({"sub": "u7"})));
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let declared: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = body_bytes(response.into_body()).await;
    assert_eq!(declared, bytes.len());
    let echo: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(echo.get("peer").is_none(), "removed from the response");

    let seen = upstream.last().unwrap();
    let sent = br#"{"name":"a much longer name than the result","user":"u7"}"#;
    assert_eq!(seen.body, &sent[..]);
    assert_eq!(seen.body_len, sent.len() as u64);
    assert_eq!(
        seen.header_values("content-length"),
        [sent.len().to_string()]
    );
    assert_eq!(seen.header_values("x-user-id"), ["u7"]);
    assert_eq!(echo["body_len"], sent.len());
}

#[tokio::test]
async fn upstream_json_response_is_transformed_with_a_new_length() {
    let upstream = MockUpstream::builder()
        .handler(|_req, _| {
            Reply::status(200).json(&json!({
                "items": [{"id": 1, "internal_id": "a"}, {"id": 2, "internal_id": "b"}],
                "debug": {"host": "db-7"}
            }))
        })
        .start()
        .await;
    let svc = ServiceBuilder::new()
        .layer(
            TransformConfig::new()
                .response(
                    Rules::new()
                        .remove_field("items[*].internal_id")
                        .remove_field("debug")
                        .add_field("served_by", "gateway"),
                )
                .build()
                .unwrap(),
        )
        .service(forward(&upstream));
    let response = svc
        .oneshot(Request::get("/x").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let declared: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = body_bytes(response.into_body()).await;
    assert_eq!(declared, body.len());
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"items": [{"id": 1}, {"id": 2}], "served_by": "gateway"})
    );
}

#[tokio::test]
async fn axum_router_layer_and_route_layer() {
    let transform = TransformConfig::new()
        .request(
            Rules::new()
                .remove_field("secret")
                .set_header("x-order", "{path.id}"),
        )
        .response(Rules::new().add_field("wrapped", true))
        .build()
        .unwrap();
    async fn handler(request: Request<AxumBody>) -> Response<AxumBody> {
        let order = request
            .headers()
            .get("x-order")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = body_bytes(request.into_body()).await;
        let mut doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        doc["order"] = json!(order);
        Response::builder()
            .header("content-type", "application/json")
            .body(AxumBody::from(doc.to_string()))
            .unwrap()
    }
    // The router in front of this one would set PathParams; here a map_request does.
    let set_params = |mut request: Request<AxumBody>| async move {
        request
            .extensions_mut()
            .insert(PathParams(Arc::new([("id".into(), "42".into())])));
        Ok::<_, Infallible>(request)
    };
    for app in [
        Router::new()
            .route("/orders/{id}", post(handler))
            .layer(transform.clone())
            .layer(axum::middleware::map_request(set_params)),
        Router::new()
            .route("/orders/{id}", post(handler))
            .route_layer(transform.clone())
            .layer(axum::middleware::map_request(set_params)),
    ] {
        let request = Request::post("/orders/42")
            .header("content-type", "application/json")
            .body(AxumBody::from(r#"{"secret":"s","keep":1}"#))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = body_json(response.into_body()).await;
        assert_eq!(body, json!({"keep": 1, "order": "42", "wrapped": true}));
    }
}

#[tokio::test]
async fn request_ids_with_tower_http_are_set_used_and_echoed() {
    let upstream = MockUpstream::echo().await;
    let svc = ServiceBuilder::new()
        .layer(request_id_layers())
        .layer(
            TransformConfig::new()
                .request(Rules::new().set_header("x-correlation-id", "{request_id}"))
                .response(Rules::new().add_field("request_id", ValueSpec::template("{request_id}")))
                .build()
                .unwrap(),
        )
        .service(forward(&upstream));

    // None inbound: a UUID v7 is generated, forwarded and echoed.
    let response = svc
        .clone()
        .oneshot(Request::get("/").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(uuid.get_version_num(), 7);
    let echo = body_json(response.into_body()).await;
    assert_eq!(echo["request_id"], id.as_str());
    let seen = upstream.last().unwrap();
    assert_eq!(seen.header_values("x-request-id"), [id.as_str()]);
    assert_eq!(seen.header_values("x-correlation-id"), [id.as_str()]);

    // A valid inbound id is kept.
    let response = svc
        .clone()
        .oneshot(
            Request::get("/")
                .header("x-request-id", "client-1234")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-1234");
    assert_eq!(
        upstream.last().unwrap().header_values("x-request-id"),
        ["client-1234"]
    );

    // An invalid one is replaced.
    let response = svc
        .oneshot(
            Request::get("/")
                .header("x-request-id", "<script>alert(1)</script>")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}
