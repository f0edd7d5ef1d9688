#![allow(dead_code, unreachable_pub, clippy::type_complexity)]

use std::convert::Infallible;

use bytes::Bytes;
use gateway_layers_core::{GatewayBody, Rejected};
use gateway_layers_jwt::{AuthError, JwtAuthLayer, KeySet, Provider};
use gateway_layers_test_support::jwt;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// The inner service: 200 with the request headers as JSON.
pub async fn echo(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut headers = serde_json::Map::new();
    for name in request.headers().keys() {
        let values: Vec<Value> = request
            .headers()
            .get_all(name)
            .iter()
            .map(|v| Value::from(v.to_str().unwrap_or("?")))
            .collect();
        headers.insert(name.as_str().to_owned(), Value::Array(values));
    }
    let identity = request
        .extensions()
        .get::<gateway_layers_core::Identity>()
        .map(|i| {
            serde_json::json!({
                "sub": i.subject(),
                "iss": i.issuer(),
                "tier": i.tier().map(|t| t.to_string()),
                "scopes": i.scopes().iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            })
        });
    let body = serde_json::json!({"headers": headers, "identity": identity});
    Ok(Response::new(Full::new(Bytes::from(body.to_string()))))
}

pub struct Outcome {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub reason: Option<AuthError>,
    pub code: Option<&'static str>,
    pub body: Value,
}

pub async fn send<L>(layer: L, request: Request<Full<Bytes>>) -> Outcome
where
    L: tower::Layer<
            tower::util::ServiceFn<
                fn(
                    Request<Full<Bytes>>,
                ) -> std::pin::Pin<
                    Box<
                        dyn std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>>
                            + Send,
                    >,
                >,
            >,
        >,
    L::Service: Service<
            Request<Full<Bytes>>,
            Response = Response<GatewayBody<Full<Bytes>>>,
            Error = Infallible,
        >,
{
    fn boxed(
        request: Request<Full<Bytes>>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>,
    > {
        Box::pin(echo(request))
    }
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(boxed as fn(_) -> _));
    let response = svc.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let reason = response.extensions().get::<AuthError>().copied();
    let code = response.extensions().get::<Rejected>().map(|r| r.code);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Outcome {
        status,
        headers,
        reason,
        code,
        body,
    }
}

pub fn bearer(token: &str) -> Request<Full<Bytes>> {
    Request::get("/resource")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A layer with the test-support JWKS (RS256, ES256, EdDSA) and the HS256 secret.
pub fn static_layer() -> JwtAuthLayer {
    JwtAuthLayer::builder()
        .provider(Provider::new(
            KeySet::from_jwks(&jwt::jwks(), false).unwrap(),
        ))
        .build()
        .unwrap()
}

pub fn hs_layer() -> JwtAuthLayer {
    JwtAuthLayer::builder()
        .provider(Provider::hmac(jwt::HMAC_SECRET, jsonwebtoken::Algorithm::HS256).unwrap())
        .build()
        .unwrap()
}

pub async fn refused(layer: JwtAuthLayer, token: &str) -> Outcome {
    let outcome = send(layer, bearer(token)).await;
    assert_eq!(
        outcome.status,
        StatusCode::UNAUTHORIZED,
        "token {token:.80}"
    );
    let challenge = outcome.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer realm=\"api\""), "{challenge}");
    assert_eq!(outcome.body["status"], 401);
    outcome
}
