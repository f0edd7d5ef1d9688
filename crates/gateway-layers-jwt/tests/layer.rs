//! Layer behaviour: outputs, authorization, modes, cache, axum, API keys, config.

mod common;

use std::sync::Arc;

use axum::{Router, routing::get};
use bytes::Bytes;
use common::*;
use gateway_layers_core::{Identity, Tier};
use gateway_layers_jwt::{
    ApiKey, ApiKeyLayer, AuthError, CacheConfig, JwtAuthLayer, JwtClaims, KeySet, Provider,
    Requirement, Rule, TokenSources,
};
use gateway_layers_test_support::jwt::{self, TestAlg};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn provider() -> Provider {
    Provider::new(KeySet::from_jwks(&jwt::jwks(), false).unwrap())
}

fn token(claims: serde_json::Value) -> String {
    jwt::mint(TestAlg::Rs256, &claims)
}

fn claims_with(extra: serde_json::Value) -> serde_json::Value {
    let mut claims = jwt::claims("user-1", 300);
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

#[tokio::test]
async fn forwards_claims_after_stripping_forged_copies() {
    let layer = JwtAuthLayer::builder()
        .provider(provider())
        .forward_claim("sub", "X-User-Id")
        .forward_claim("roles", "x-user-roles")
        .forward_claim("/org/id", "x-org")
        .strip_authorization(true)
        .tier_claim("tier")
        .build()
        .unwrap();
    let t = token(claims_with(
        json!({"roles": ["a", "b"], "org": {"id": 7}, "tier": "premium", "scope": "x y"}),
    ));
    let request = Request::get("/")
        .header("authorization", format!("Bearer {t}"))
        .header("x-user-id", "admin")
        .header("X-USER-ID", "root")
        .header("x-user-roles", "superuser")
        .header("x-org", "1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let outcome = send(layer, request).await;
    assert_eq!(outcome.status, 200);
    let headers = &outcome.body["headers"];
    assert_eq!(headers["x-user-id"], json!(["user-1"]));
    assert_eq!(headers["x-user-roles"], json!(["a,b"]));
    assert_eq!(headers["x-org"], json!(["7"]));
    assert!(headers.get("authorization").is_none());
    let identity = &outcome.body["identity"];
    assert_eq!(identity["sub"], "user-1");
    assert_eq!(identity["tier"], "premium");
    assert_eq!(identity["scopes"], json!(["x", "y"]));
}

#[tokio::test]
async fn anonymous_mode_and_preflight() {
    let layer = JwtAuthLayer::builder()
        .provider(provider())
        .forward_claim("sub", "x-user-id")
        .anonymous(true)
        .build()
        .unwrap();
    let request = Request::get("/")
        .header("x-user-id", "forged")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let outcome = send(layer.clone(), request).await;
    assert_eq!(outcome.status, 200);
    assert!(outcome.body["identity"].is_null());
    assert!(outcome.body["headers"].get("x-user-id").is_none());
    // A bad token is still refused.
    refused(layer, "not.a.token").await;

    let strict = JwtAuthLayer::builder()
        .provider(provider())
        .allow_preflight(true)
        .build()
        .unwrap();
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/x")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(strict.clone(), preflight).await.status, 200);
    let bare_options = Request::builder()
        .method(Method::OPTIONS)
        .uri("/x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(strict, bare_options).await.status, 401);
}

#[tokio::test]
async fn scopes_roles_rules_and_predicate() {
    let layer = JwtAuthLayer::builder()
        .provider(provider())
        .require(Requirement::any_scope(["api"]))
        .rule(Rule::path("/admin").require(Requirement::all_roles(["admin", "ops"])))
        .rule(
            Rule::path("/orders")
                .method(Method::POST)
                .require(Requirement::all_scopes(["orders:write"])),
        )
        .predicate(|claims| claims.get("banned") != Some(&json!(true)))
        .build()
        .unwrap();
    let reader = token(claims_with(json!({"scope": "api orders:read"})));
    let writer = token(claims_with(json!({"scp": ["api", "orders:write"]})));
    let admin = token(claims_with(
        json!({"scope": "api", "roles": ["ops", "admin"]}),
    ));
    let banned = token(claims_with(json!({"scope": "api", "banned": true})));
    let none = token(claims_with(json!({})));
    let req = |method: Method, path: &str, t: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {t}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(
        send(layer.clone(), req(Method::GET, "/orders", &reader))
            .await
            .status,
        200
    );
    let outcome = send(layer.clone(), req(Method::POST, "/orders", &reader)).await;
    assert_eq!(outcome.status, StatusCode::FORBIDDEN);
    assert_eq!(outcome.reason, Some(AuthError::InsufficientScope));
    let challenge = outcome.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"orders:write\""), "{challenge}");
    assert_eq!(outcome.body["code"], "insufficient_scope");
    assert_eq!(
        send(layer.clone(), req(Method::POST, "/orders", &writer))
            .await
            .status,
        200
    );
    assert_eq!(
        send(layer.clone(), req(Method::GET, "/admin/x", &reader))
            .await
            .status,
        403
    );
    assert_eq!(
        send(layer.clone(), req(Method::GET, "/admin/x", &admin))
            .await
            .status,
        200
    );
    assert_eq!(
        send(layer.clone(), req(Method::GET, "/x", &none))
            .await
            .status,
        403
    );
    let outcome = send(layer, req(Method::GET, "/x", &banned)).await;
    assert_eq!(outcome.status, 403);
    assert_eq!(outcome.reason, Some(AuthError::Forbidden));
}

#[tokio::test]
async fn invalid_token_challenge_and_custom_responder() {
    let outcome = refused(static_layer(), "a.b.c").await;
    let challenge = outcome.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("error_description="), "{challenge}");
    assert_eq!(outcome.headers["content-type"], "application/problem+json");

    let layer = JwtAuthLayer::builder()
        .provider(provider())
        .realm("orders")
        .with_rejection_response(|r: &gateway_layers_core::Rejection| {
            http::Response::builder()
                .status(r.status())
                .body(Bytes::from(format!("{{\"denied\":\"{}\"}}", r.code())))
                .unwrap()
        })
        .build()
        .unwrap();
    let outcome = send(layer, Request::new(Full::new(Bytes::new()))).await;
    assert_eq!(outcome.status, 401);
    assert_eq!(outcome.body["denied"], "missing_credentials");
    assert_eq!(
        outcome.headers["www-authenticate"],
        "Bearer realm=\"orders\""
    );
}

#[tokio::test]
async fn cache_serves_repeated_tokens_of_every_algorithm() {
    let layer = JwtAuthLayer::builder()
        .provider(provider())
        .build()
        .unwrap();
    let hs_layer = JwtAuthLayer::builder()
        .provider(Provider::hmac(jwt::HMAC_SECRET, Algorithm::HS256).unwrap())
        .build()
        .unwrap();
    async fn claims_of(layer: JwtAuthLayer, t: &str) -> Arc<gateway_layers_jwt::ClaimsMap> {
        let svc = ServiceBuilder::new().layer(layer).service(service_fn(
            |req: Request<Full<Bytes>>| async move {
                let claims = req.extensions().get::<JwtClaims>().unwrap().clone();
                Ok::<_, std::convert::Infallible>(http::Response::new(claims))
            },
        ));
        let res = svc.oneshot(bearer(t)).await.unwrap();
        res.into_body().into_inner().unwrap().0
    }
    let t = token(jwt::claims("u", 300));
    let a = claims_of(layer.clone(), &t).await;
    let b = claims_of(layer.clone(), &t).await;
    assert!(Arc::ptr_eq(&a, &b), "second request served from the cache");
    let h = jwt::mint(TestAlg::Hs256, &jwt::claims("u", 300));
    let a = claims_of(hs_layer.clone(), &h).await;
    let b = claims_of(hs_layer.clone(), &h).await;
    // A hit is cheaper than HMAC + parsing, so HMAC tokens are cached too.
    assert!(Arc::ptr_eq(&a, &b), "HMAC tokens are cached");
    // A token differing in one byte of its signature is verified on its own (and
    // refused), never served the cached result.
    let mut forged = h.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(
        send(hs_layer.clone(), bearer(&forged)).await.reason,
        Some(AuthError::BadSignature)
    );
    let c = claims_of(hs_layer, &h).await;
    assert!(
        Arc::ptr_eq(&a, &c),
        "the cached entry is untouched by the miss"
    );
    let uncached = JwtAuthLayer::builder()
        .provider(provider())
        .cache(CacheConfig::disabled())
        .build()
        .unwrap();
    let a = claims_of(uncached.clone(), &t).await;
    let b = claims_of(uncached, &t).await;
    assert!(!Arc::ptr_eq(&a, &b));
}

#[tokio::test]
async fn cached_token_still_expires() {
    let now = Arc::new(std::sync::atomic::AtomicU64::new(jwt::now()));
    let clock = now.clone();
    let layer = JwtAuthLayer::builder()
        .provider(provider())
        .clock(move || clock.load(std::sync::atomic::Ordering::SeqCst))
        .build()
        .unwrap();
    let t = token(jwt::claims("u", 60));
    assert_eq!(send(layer.clone(), bearer(&t)).await.status, 200);
    assert_eq!(send(layer.clone(), bearer(&t)).await.status, 200);
    now.fetch_add(3600, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        send(layer, bearer(&t)).await.reason,
        Some(AuthError::Expired)
    );
}

#[tokio::test]
async fn cached_hmac_token_expires_and_every_hit_is_authorized() {
    let now = Arc::new(std::sync::atomic::AtomicU64::new(jwt::now()));
    let clock = now.clone();
    let layer = JwtAuthLayer::builder()
        .provider(Provider::hmac(jwt::HMAC_SECRET, Algorithm::HS256).unwrap())
        .rule(Rule::path("/admin").require(Requirement::any_scope(["admin"])))
        .forward_claim("sub", "x-user-id")
        .clock(move || clock.load(std::sync::atomic::Ordering::SeqCst))
        .build()
        .unwrap();
    let mut claims = jwt::claims("user-7", 60);
    claims["scope"] = json!("read");
    let t = jwt::mint(TestAlg::Hs256, &claims);
    let admin = || {
        Request::get("/admin")
            .header("authorization", format!("Bearer {t}"))
            .header("x-user-id", "forged")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    for _ in 0..3 {
        // Verified once, then served from the cache: the route rule runs every time.
        assert_eq!(send(layer.clone(), bearer(&t)).await.status, 200);
        assert_eq!(
            send(layer.clone(), admin()).await.reason,
            Some(AuthError::InsufficientScope)
        );
    }
    // Forwarded claims come from the cached entry, and a client copy is removed.
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|req: Request<Full<Bytes>>| async move {
            let ids: Vec<String> = req
                .headers()
                .get_all("x-user-id")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            Ok::<_, std::convert::Infallible>(http::Response::new(ids))
        }));
    let mut forged = bearer(&t);
    forged
        .headers_mut()
        .insert("x-user-id", "forged".parse().unwrap());
    let ids = svc
        .oneshot(forged)
        .await
        .unwrap()
        .into_body()
        .into_inner()
        .unwrap();
    assert_eq!(ids, ["user-7"]);
    // The entry ends at `exp` (no leeway) and the token is then checked afresh:
    // inside the 30 s leeway it verifies again, past it it is refused.
    now.fetch_add(70, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(send(layer.clone(), bearer(&t)).await.status, 200);
    now.fetch_add(3600, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        send(layer, bearer(&t)).await.reason,
        Some(AuthError::Expired)
    );
}

#[derive(Debug, Deserialize)]
struct MyClaims {
    sub: String,
    org: u32,
}

#[tokio::test]
async fn typed_claims_and_axum_extractor() {
    let layer = JwtAuthLayer::builder()
        .provider(provider())
        .build_typed::<MyClaims>()
        .unwrap();
    let app =
        Router::new()
            .route(
                "/me",
                get(|claims: JwtClaims<MyClaims>| async move {
                    format!("{}@{}", claims.sub, claims.org)
                }),
            )
            .route("/open", get(|| async { "open" }))
            .layer(layer.clone());
    let t = token(claims_with(json!({"org": 9})));
    let res = app
        .clone()
        .oneshot(
            Request::get("/me")
                .header("authorization", format!("Bearer {t}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"user-1@9");
    // `org` of the wrong type for MyClaims: refused, not a 500.
    let bad = token(claims_with(json!({"org": "nine"})));
    let res = app
        .clone()
        .oneshot(
            Request::get("/me")
                .header("authorization", format!("Bearer {bad}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // route_layer: only routed paths are protected.
    let app = Router::new()
        .route(
            "/me",
            get(|id: axum::Extension<Identity>| async move { id.subject().unwrap().to_owned() }),
        )
        .route_layer(
            JwtAuthLayer::builder()
                .provider(provider())
                .build()
                .unwrap(),
        );
    let res = app
        .oneshot(
            Request::get("/me")
                .header("authorization", format!("BEARER {t}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // The extractor without the layer: 401.
    let app = Router::new().route(
        "/me",
        get(|c: JwtClaims<MyClaims>| async move { c.sub.clone() }),
    );
    let res = app
        .oneshot(Request::get("/me").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn cookie_custom_header_and_query_sources() {
    let t = token(jwt::claims("u", 300));
    let layer = JwtAuthLayer::builder()
        .provider(provider())
        .sources(
            TokenSources::none()
                .header("x-auth", "Token ")
                .unwrap()
                .cookie("session")
                .query("access_token"),
        )
        .build()
        .unwrap();
    let by_header = Request::get("/")
        .header("x-auth", format!("Token {t}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(layer.clone(), by_header).await.status, 200);
    let by_cookie = Request::get("/")
        .header("cookie", format!("theme=dark; session={t}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(layer.clone(), by_cookie).await.status, 200);
    let by_query = Request::get(format!("/?access_token={t}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(layer.clone(), by_query).await.status, 200);
    // Bearer is off in this configuration.
    assert_eq!(send(layer, bearer(&t)).await.status, 401);
    // Query off by default.
    let by_query = Request::get(format!("/?access_token={t}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(static_layer(), by_query).await.status, 401);
}

#[test]
fn config_errors() {
    assert!(JwtAuthLayer::builder().build().is_err());
    assert!(
        JwtAuthLayer::builder()
            .provider(provider())
            .provider(provider())
            .build()
            .is_err(),
        "two catch-all providers"
    );
    assert!(
        JwtAuthLayer::builder()
            .provider(provider().issuer("a"))
            .provider(provider().issuer("a"))
            .build()
            .is_err()
    );
    assert!(
        JwtAuthLayer::builder()
            .provider(provider())
            .realm("a\"b")
            .build()
            .is_err()
    );
    assert!(
        JwtAuthLayer::builder()
            .provider(provider())
            .forward_claim("sub", "bad header")
            .build()
            .is_err()
    );
    assert!(
        JwtAuthLayer::builder()
            .provider(Provider::new(KeySet::new()))
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn api_keys() {
    let layer = ApiKeyLayer::builder()
        .key(ApiKey::new("mobile", "key-mobile-0123456789").tier(Tier::PREMIUM))
        .key(
            ApiKey::from_sha256_hex(
                "partner",
                // sha256("partner-key")
                &{
                    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"partner-key");
                    d.as_ref()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                },
            )
            .unwrap()
            .tier("enterprise")
            .subject("acme"),
        )
        .query("api_key")
        .build()
        .unwrap();
    let with = |name: &str, value: &str| {
        Request::get("/")
            .header(name, value)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let outcome = send(layer.clone(), with("x-api-key", "key-mobile-0123456789")).await;
    assert_eq!(outcome.status, 200);
    assert_eq!(outcome.body["identity"]["tier"], "premium");
    assert_eq!(outcome.body["identity"]["sub"], "mobile");
    let outcome = send(
        layer.clone(),
        Request::get("/?api_key=partner-key")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(outcome.body["identity"]["tier"], "enterprise");
    assert_eq!(outcome.body["identity"]["sub"], "acme");
    let outcome = send(layer.clone(), with("x-api-key", "key-mobile-0123456788")).await;
    assert_eq!(outcome.status, 401);
    assert_eq!(outcome.reason, Some(AuthError::InvalidApiKey));
    assert!(
        outcome.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("ApiKey realm=")
    );
    let outcome = send(layer.clone(), Request::new(Full::new(Bytes::new()))).await;
    assert_eq!(outcome.reason, Some(AuthError::Missing));
    let both = Request::get("/?api_key=partner-key")
        .header("x-api-key", "key-mobile-0123456789")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        send(layer, both).await.reason,
        Some(AuthError::MultipleTokens)
    );
    // Query is opt-in.
    let header_only = ApiKeyLayer::builder()
        .key(ApiKey::new("mobile", "key-mobile-0123456789"))
        .build()
        .unwrap();
    let outcome = send(
        header_only,
        Request::get("/?api_key=key-mobile-0123456789")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(outcome.status, 401);
}

#[cfg(feature = "serde")]
#[tokio::test]
async fn serde_configuration() {
    let config: gateway_layers_jwt::JwtConfig = serde_json::from_value(json!({
        "providers": [{"keys": {"jwks": jwt::jwks()}, "audiences": ["orders"]}],
        "sources": {"cookies": ["session"], "max_token_bytes": 4096},
        "rules": [{"method": "post", "path_prefix": "/orders", "require": [
            {"kind": "scopes", "mode": "all_of", "values": ["orders:write"]}
        ]}],
        "forward": [{"claim": "sub", "header": "x-user-id"}],
        "cache": {"max_entries": 100, "max_bytes": 100000}
    }))
    .unwrap();
    let layer = config.into_builder().unwrap().build().unwrap();
    let t = token(claims_with(json!({"aud": "orders"})));
    let outcome = send(layer.clone(), bearer(&t)).await;
    assert_eq!(outcome.status, 200);
    assert_eq!(outcome.body["headers"]["x-user-id"], json!(["user-1"]));
    let post = Request::post("/orders")
        .header("authorization", format!("Bearer {t}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(layer, post).await.status, 403);

    let short: Result<gateway_layers_jwt::JwtConfig, _> = serde_json::from_value(json!({
        "providers": [{"keys": {"secret": "too-short", "alg": "HS256"}}]
    }));
    assert!(short.unwrap().into_builder().is_err());

    let keys: gateway_layers_jwt::ApiKeyConfig = serde_json::from_value(json!({
        "keys": [{"id": "a", "key": "key-a-0123456789", "tier": "standard"}]
    }))
    .unwrap();
    let layer = keys.into_builder().unwrap().build().unwrap();
    let req = Request::get("/")
        .header("x-api-key", "key-a-0123456789")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let outcome = send(layer, req).await;
    assert_eq!(outcome.body["identity"]["tier"], "standard");
}
