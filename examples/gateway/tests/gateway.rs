//! The declarative example gateway end to end: the shipped document, plugins against
//! real loopback upstreams, observability, and precise errors for bad documents.

use std::{net::SocketAddr, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo};
use example_demo_services::bff::{DEMO_SECRET, mint_token};
use example_gateway::{DEFAULT_CONFIG, DemoTargets, DemoUrls, Gateway, GatewayConfig};
use gateway_layers_test_support::{MockUpstream, body_bytes, body_json};
use http::{Request, StatusCode};
use tower::ServiceExt;

fn request(path: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let mut request = builder.body(Body::empty()).unwrap();
    request.extensions_mut().insert(ConnectInfo(
        "192.0.2.10:40000".parse::<SocketAddr>().unwrap(),
    ));
    request
}

async fn call(app: &Router, request: Request<Body>) -> http::Response<Body> {
    app.clone().oneshot(request).await.unwrap()
}

fn token(sub: &str, tier: &str) -> String {
    mint_token(DEMO_SECRET, sub, tier, Duration::from_secs(300))
}

#[tokio::test]
async fn cors_answers_preflights_inside_the_request_id() {
    let demo = DemoTargets::new(DemoUrls::start().await.unwrap());
    let gateway = Gateway::from_yaml("gateway.yaml", DEFAULT_CONFIG, &demo).unwrap();
    let mut preflight = request("/api/users/1", None);
    *preflight.method_mut() = http::Method::OPTIONS;
    let headers = preflight.headers_mut();
    headers.insert("origin", "https://app.example".parse().unwrap());
    headers.insert("access-control-request-method", "GET".parse().unwrap());
    let response = call(&gateway.app, preflight).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert_eq!(response.headers()["access-control-max-age"], "600");
    assert!(response.headers().contains_key("x-request-id"));
    assert!(body_bytes(response.into_body()).await.is_empty());

    let mut actual = request("/api/users/1", None);
    actual
        .headers_mut()
        .insert("origin", "https://app.example".parse().unwrap());
    let response = call(&gateway.app, actual).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(response.headers().contains_key("x-request-id"));
}

/// A document with one JWT-protected service in front of `upstream`.
fn document(upstream: &str) -> String {
    format!(
        r#"
upstreams:
  backend:
    targets: [{{ url: "{upstream}" }}]
services:
  api:
    upstream: backend
    jwt:
      providers:
        - issuer: "https://auth.demo.gateway-layers.dev"
          keys: {{ secret: "demo-only-secret-change-me-32-bytes!", alg: HS256 }}
      tier_claim: tier
      forward: [{{ claim: sub, header: x-user-id }}]
      strip_authorization: true
    rate_limit:
      key: subject
      default: [{{ quota: 5, window: 1s, burst: 5 }}, {{ quota: 100, window: 1m }}]
      tiers:
        premium: [{{ quota: 1000, window: 1s }}]
    transform:
      request:
        headers: {{ add: {{ x-client-ip: "{{client_ip}}" }} }}
    breaker: {{ consecutive_failures: 3, open_duration: 30s }}
router:
  routes:
    - name: api
      path: {{ prefix: /api }}
      strip_prefix: /api
      service: api
"#
    )
}

#[tokio::test]
async fn shipped_document_serves_the_demo() {
    let demo = DemoTargets::new(DemoUrls::start().await.unwrap());
    let gateway = Gateway::from_yaml("gateway.yaml", DEFAULT_CONFIG, &demo).unwrap();
    let response = call(&gateway.app, request("/api/users/1", None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
    let body = body_json(response.into_body()).await;
    assert_eq!(body["name"], "Ada Lovelace");
    assert!(
        body.get("internal_notes").is_none(),
        "removed by the transform"
    );

    let response = call(&gateway.app, request("/api/orders", None)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = call(
        &gateway.app,
        request("/api/orders", Some(&token("1", "premium"))),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let orders = body_json(response.into_body()).await;
    assert_eq!(orders.as_array().unwrap().len(), 5);
    assert!(!orders.to_string().contains("internal_id"));

    // The flaky route: three 500s open the breaker, then 503 without the upstream.
    for _ in 0..3 {
        let response = call(&gateway.app, request("/api/status/500", None)).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let response = call(&gateway.app, request("/api/status/500", None)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body_json(response.into_body()).await["type"],
        "urn:gateway-layers:problem:circuit_open"
    );

    let response = call(&gateway.app, request("/nowhere", None)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

/// The gateway of [`document`] in front of `upstream`.
fn gateway_for(upstream: &MockUpstream) -> Gateway {
    Gateway::from_yaml(
        "test.yaml",
        &document(&upstream.url()),
        &DemoTargets::none(),
    )
    .unwrap()
}

#[tokio::test]
async fn identity_headers_limits_and_trace_context_reach_the_upstream() {
    let upstream = MockUpstream::echo().await;
    let gateway = gateway_for(&upstream);
    let mut forged = request("/api/things?x=1", Some(&token("user-7", "premium")));
    forged
        .headers_mut()
        .insert("x-user-id", "admin".parse().unwrap());
    forged.headers_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let response = call(&gateway.app, forged).await;
    assert_eq!(response.status(), StatusCode::OK);
    let seen = upstream.last().unwrap();
    assert_eq!(seen.uri, "/things?x=1");
    assert_eq!(seen.header_values("x-user-id"), ["user-7"]);
    assert!(seen.header_values("authorization").is_empty());
    assert_eq!(seen.header_values("x-client-ip"), ["192.0.2.10"]);
    let traceparent = &seen.header_values("traceparent")[0];
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    assert!(!traceparent.contains("00f067aa0ba902b7"));

    // The free (default) tier: 5 pass, then 429 with Retry-After.
    let free = token("user-8", "free");
    for _ in 0..5 {
        let response = call(&gateway.app, request("/api/x", Some(&free))).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mut limited = None;
    for _ in 0..120 {
        let response = call(&gateway.app, request("/api/x", Some(&free))).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("the free tier is limited");
    assert!(limited.headers().contains_key("retry-after"));
    let text = metrics(&gateway).await;
    assert!(text.contains("gateway_ratelimit_rejected_total"), "{text}");
    assert!(text.contains("gateway_ratelimit_allowed_total"), "{text}");
    assert!(text.contains("rejected_by=\"ratelimit\""), "{text}");
}

async fn metrics(gateway: &Gateway) -> String {
    let response = call(
        &gateway.admin,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    String::from_utf8(body_bytes(response.into_body()).await.to_vec()).unwrap()
}

#[tokio::test]
async fn breaker_opens_and_metrics_and_admin_show_it() {
    let upstream = MockUpstream::statuses([500]).await;
    let gateway = gateway_for(&upstream);
    let premium = token("user-9", "premium");
    for _ in 0..3 {
        let response = call(&gateway.app, request("/api/fail", Some(&premium))).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let seen = upstream.requests();
    let response = call(&gateway.app, request("/api/fail", Some(&premium))).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        upstream.requests(),
        seen,
        "an open breaker does not touch the upstream"
    );

    let text = metrics(&gateway).await;
    assert!(text.contains("gateway_requests_total{"), "{text}");
    assert!(text.contains("gateway_breaker_state"), "{text}");
    assert!(text.contains("gateway_breaker_transitions_total"), "{text}");
    assert!(text.contains("gateway_proxy_requests_total{"), "{text}");
    assert!(
        text.contains("gateway_proxy_latency_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("rejected_by=\"breaker\""), "{text}");
    assert!(
        text.contains("gateway_request_duration_seconds_bucket"),
        "{text}"
    );

    let admin = call(
        &gateway.admin,
        Request::get("/admin").body(Body::empty()).unwrap(),
    )
    .await;
    let admin = body_json(admin.into_body()).await;
    assert_eq!(admin["routes"][0]["name"], "api");
    assert_eq!(admin["breakers"]["api"][0]["state"], "Open");
    assert_eq!(admin["upstreams"]["backend"][0]["url"], upstream.url());
}

#[tokio::test]
async fn serves_over_tcp() {
    let demo = DemoTargets::new(DemoUrls::start().await.unwrap());
    let gateway = Gateway::from_yaml("gateway.yaml", DEFAULT_CONFIG, &demo).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(example_gateway::serve(listener, gateway.app));
    let response = gateway_layers_test_support::http_client()
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

#[tokio::test]
async fn serve_service_passes_the_peer_address() {
    let upstream = MockUpstream::echo().await;
    let gateway = gateway_for(&upstream);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(example_gateway::serve_service(listener, gateway.service));
    let client = gateway_layers_test_support::http_client();
    let get = |token: Option<String>| {
        let mut builder = Request::get(format!("http://{addr}/api/things"));
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        builder.body(Default::default()).unwrap()
    };
    let response = client.request(get(None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = client
        .request(get(Some(token("user-7", "premium"))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = upstream.last().unwrap();
    assert_eq!(seen.header_values("x-client-ip"), ["127.0.0.1"]);
    assert_eq!(seen.header_values("x-user-id"), ["user-7"]);
    server.abort();
}

/// Each bad document, and what the error must name.
const BAD: &[(&str, &str, &[&str])] = &[
    ("not yaml", "a: [1, 2", &["bad.yaml"]),
    ("empty", "", &["bad.yaml"]),
    (
        "unknown top-level key",
        "upstreams: {}\nservices: {}\nrouter: {routes: []}\nlisten2: x",
        &["listen2"],
    ),
    ("missing router", "upstreams: {}\nservices: {}", &["router"]),
    (
        "bad listen address",
        "listen: nowhere\nupstreams: {}\nservices: {}\nrouter: {routes: []}",
        &["listen"],
    ),
    (
        "bad trusted proxy",
        "trusted_proxies: [10.0.0.0/99]\nupstreams: {}\nservices: {}\nrouter: {routes: []}",
        &["trusted_proxies", "10.0.0.0/99"],
    ),
    (
        "unknown upstream field",
        "upstreams: {u: {targets: [{url: 'http://127.0.0.1:1'}], colour: red}}\nservices: {}\nrouter: {routes: []}",
        &["upstreams.u", "colour"],
    ),
    (
        "bad strategy",
        "upstreams: {u: {targets: [{url: 'http://127.0.0.1:1'}], strategy: random}}\nservices: {}\nrouter: {routes: []}",
        &["upstreams.u.strategy", "random"],
    ),
    (
        "bad target weight",
        "upstreams: {u: {targets: [{url: 'http://127.0.0.1:1', weight: -1}]}}\nservices: {}\nrouter: {routes: []}",
        &["upstreams.u.targets"],
    ),
    (
        "bad duration",
        "upstreams: {u: {targets: [{url: 'http://127.0.0.1:1'}], timeouts: {connect: soon}}}\nservices: {}\nrouter: {routes: []}",
        &["upstreams.u.timeouts.connect"],
    ),
    (
        "service names unknown upstream",
        "upstreams: {}\nservices: {s: {upstream: nope}}\nrouter: {routes: []}",
        &["services.s.upstream", "nope"],
    ),
    (
        "unknown plugin",
        "upstreams: {u: {targets: [{url: 'http://127.0.0.1:1'}]}}\nservices: {s: {upstream: u, auth: {}}}\nrouter: {routes: []}",
        &["services.s", "auth"],
    ),
    (
        "short HMAC secret",
        "upstreams: {u: {targets: [{url: 'http://127.0.0.1:1'}]}}\nservices: {s: {upstream: u, jwt: {providers: [{keys: {secret: short, alg: HS256}}]}}}\nrouter: {routes: []}",
        &["services.s.jwt"],
    ),
    (
        "rate limit window",
        "upstreams: {u: {targets: [{url: 'http://127.0.0.1:1'}]}}\nservices: {s: {upstream: u, rate_limit: {default: [{quota: 5, window: whenever}]}}}\nrouter: {routes: []}",
        &["services.s.rate_limit.default"],
    ),
    (
        "retry attempts type",
        "upstreams: {u: {targets: [{url: 'http://127.0.0.1:1'}]}}\nservices: {s: {upstream: u, retry: {max_attempts: many}}}\nrouter: {routes: []}",
        &["services.s.retry.max_attempts"],
    ),
    (
        "zero body limit",
        "upstreams: {u: {targets: [{url: 'http://127.0.0.1:1'}]}}\nservices: {s: {upstream: u, body_limit: 0}}\nrouter: {routes: []}",
        &["services.s.body_limit"],
    ),
    (
        "bad CORS origin",
        "upstreams: {u: {targets: [{url: 'http://127.0.0.1:1'}]}}\nservices: {s: {upstream: u, cors: {allow_origins: [\"bad\\norigin\"]}}}\nrouter: {routes: []}",
        &["services.s.cors.allow_origins"],
    ),
    (
        "route names unknown service",
        "upstreams: {}\nservices: {}\nrouter: {routes: [{name: r, path: {prefix: /}, service: ghost}]}",
        &["ghost"],
    ),
    (
        "route with two path kinds",
        "upstreams: {u: {targets: [{url: 'http://127.0.0.1:1'}]}}\nservices: {s: {upstream: u}}\nrouter: {routes: [{name: r, path: {prefix: /a, exact: /b}, service: s}]}",
        &["routes[r].path"],
    ),
    (
        "unknown demo service",
        "upstreams: {u: {targets: [{url: 'demo:payments'}]}}\nservices: {}\nrouter: {routes: []}",
        &["demo:payments"],
    ),
];

#[test]
fn bad_documents_get_precise_errors() {
    assert!(BAD.len() >= 15);
    for (what, text, needles) in BAD {
        let result =
            GatewayConfig::parse("bad.yaml", text, &DemoTargets::none()).and_then(|config| {
                // Building needs a runtime for background tasks (health checks).
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async { Gateway::from_config(config, "bad.yaml").map(|_| ()) })
            });
        let error = match result {
            Ok(()) => panic!("{what}: accepted"),
            Err(error) => error.to_string(),
        };
        assert!(error.starts_with("bad.yaml"), "{what}: {error}");
        for needle in *needles {
            assert!(
                error.contains(needle),
                "{what}: {error:?} does not mention {needle:?}"
            );
        }
    }
}

#[test]
fn shipped_document_parses() {
    let demo = DemoTargets::none();
    // Without demo services the demo targets are refused by name...
    let error = GatewayConfig::parse("gateway.yaml", DEFAULT_CONFIG, &demo).unwrap_err();
    assert!(error.to_string().contains("demo:users"));
    // ...and with them the document is complete.
    let urls = DemoUrls {
        users: "http://127.0.0.1:1".into(),
        orders: "http://127.0.0.1:2".into(),
        notifications: "http://127.0.0.1:3".into(),
        recommendations: "http://127.0.0.1:4".into(),
    };
    let config =
        GatewayConfig::parse("gateway.yaml", DEFAULT_CONFIG, &DemoTargets::new(urls)).unwrap();
    assert_eq!(config.router.routes.len(), 3);
    assert_eq!(config.services.len(), 3);
}
