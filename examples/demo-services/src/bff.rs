//! Plumbing shared by the two BFF examples: the demo JWT issuer, the tiered rate limit,
//! and upstream clients usable as composition parts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gateway_layers::{
    compose::{PartService, part_service},
    core::{BoxError, ClientIpResolver, KeyPolicy, OnMissingKey, TrustedProxies, key::SubjectKey},
    jwt::{JwtAuthLayer, Provider},
    ratelimit::{Limit, Policy, RateLimitLayer},
};
use http::Uri;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

/// The demo token issuer.
pub const DEMO_ISSUER: &str = "https://auth.demo.gateway-layers.dev";

/// The demo HMAC secret. **A demo value**: real deployments read a secret from their
/// environment or use an asymmetric key / JWKS.
pub const DEMO_SECRET: &[u8] = b"demo-only-secret-change-me-32-bytes!";

/// The JWT secret: `JWT_SECRET` from the environment, else [`DEMO_SECRET`].
pub fn jwt_secret() -> Vec<u8> {
    std::env::var("JWT_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .map(String::into_bytes)
        .unwrap_or_else(|| DEMO_SECRET.to_vec())
}

/// HS256 authentication against `secret`; the `tier` claim becomes the identity's tier.
///
/// # Panics
///
/// If `secret` is shorter than 32 bytes (a configuration error reported at start).
pub fn auth_layer(secret: &[u8]) -> JwtAuthLayer {
    JwtAuthLayer::builder()
        .provider(
            Provider::hmac(secret, Algorithm::HS256)
                .expect("JWT secret of at least 32 bytes")
                .issuer(DEMO_ISSUER),
        )
        .tier_claim("tier")
        .realm("bff")
        .build()
        .expect("valid JWT configuration")
}

/// The tier table shared by the BFFs, keyed by subject (client IP when anonymous):
///
/// | tier | limits |
/// |---|---|
/// | free (default) | 5/s (burst 5) and 100/min |
/// | premium | 50/s and 2,000/min |
/// | enterprise | 200/s |
///
/// # Panics
///
/// Never for this fixed table.
pub fn rate_limit_layer() -> RateLimitLayer {
    let free = Policy::new()
        .limit(Limit::per_second(5).with_burst(5))
        .limit(Limit::per_minute(100));
    RateLimitLayer::builder()
        .key(
            KeyPolicy::new(SubjectKey).on_missing(OnMissingKey::ClientIp(ClientIpResolver::new(
                TrustedProxies::loopback(),
            ))),
        )
        .default_policy(free.clone())
        .tier("free", free)
        .tier(
            "premium",
            Policy::new()
                .limit(Limit::per_second(50))
                .limit(Limit::per_minute(2_000)),
        )
        .tier("enterprise", Policy::new().limit(Limit::per_second(200)))
        .build()
        .expect("valid rate-limit configuration")
}

/// Mints a demo token for user `sub` in `tier`, valid for `ttl`.
///
/// # Panics
///
/// If signing fails (not with an HMAC secret).
pub fn mint_token(secret: &[u8], sub: &str, tier: &str, ttl: Duration) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = json!({
        "iss": DEMO_ISSUER, "sub": sub, "tier": tier,
        "iat": now, "exp": now + ttl.as_secs(),
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("sign demo token")
}

/// A composition part calling the upstream at `base` (its request's path and query are
/// appended to `base`) through its own stack: a circuit breaker (5 consecutive failures
/// open it for 5 s), retries of idempotent requests on 502/503/504 and connection errors
/// (3 attempts, full-jitter backoff from 20 ms, a shared budget), and a pooled HTTP/1.1
/// client with a 1 s connect timeout. The composition adds each part's deadline.
///
/// # Panics
///
/// Never for these fixed settings.
pub fn upstream(base: &str) -> PartService {
    use gateway_layers::{breaker::BreakerLayer, retry::RetryLayer};
    use http_body_util::{BodyExt, combinators::UnsyncBoxBody};

    type OutBody = UnsyncBoxBody<Bytes, BoxError>;
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    connector.set_nodelay(true);
    let client: Client<HttpConnector, OutBody> =
        Client::builder(TokioExecutor::new()).build(connector);
    let base = base.trim_end_matches('/').to_owned();
    let send = tower::service_fn(
        move |request: http::Request<gateway_layers::retry::ReplayBody<Full<Bytes>>>| {
            let client = client.clone();
            let base = base.clone();
            async move {
                let (mut parts, body) = request.into_parts();
                let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
                parts.uri = format!("{base}{target}").parse::<Uri>()?;
                let request = http::Request::from_parts(parts, body.boxed_unsync());
                let response = client.request(request).await?;
                Ok::<_, BoxError>(response)
            }
        },
    );
    let breaker = BreakerLayer::from_config(gateway_layers::breaker::BreakerConfig {
        consecutive_failures: Some(5),
        open_duration: Duration::from_secs(5),
        ..Default::default()
    })
    .expect("valid breaker settings");
    let retry = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .expect("valid retry settings");
    part_service(
        tower::ServiceBuilder::new()
            .layer(breaker)
            .layer(retry)
            .service(send),
    )
}

/// The caller a composition runs for.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The verified subject (the demo user id).
    pub user_id: String,
}

/// The composition both BFFs run: the user (required, 1 s), and in parallel their
/// orders (1 s), notifications (500 ms) and recommendations (300 ms, best effort).
///
/// # Panics
///
/// Never for this fixed set of parts.
pub fn home_composition(urls: &crate::DemoUrls) -> gateway_layers::compose::Compose<Caller> {
    use gateway_layers::compose::{Compose, Part};
    fn id(caller: &Caller) -> &str {
        &caller.user_id
    }
    Compose::builder()
        .part(
            Part::get("user", upstream(&urls.users), |i| {
                Some(format!("/users/{}", id(i.context)))
            })
            .required()
            .timeout(Duration::from_secs(1)),
        )
        .part(
            Part::get("orders", upstream(&urls.orders), |i| {
                Some(format!("/orders?user={}", id(i.context)))
            })
            .timeout(Duration::from_secs(1)),
        )
        .part(
            Part::get("notifications", upstream(&urls.notifications), |i| {
                Some(format!("/notifications?user={}", id(i.context)))
            })
            .timeout(Duration::from_millis(500)),
        )
        .part(
            Part::get("recommendations", upstream(&urls.recommendations), |i| {
                Some(format!("/recommendations?user={}", id(i.context)))
            })
            .timeout(Duration::from_millis(300)),
        )
        .build()
        .expect("valid composition")
}

/// Where a BFF sends traffic and which secret verifies tokens.
#[derive(Debug, Clone)]
pub struct BffConfig {
    /// The four upstreams.
    pub urls: crate::DemoUrls,
    /// The HS256 secret tokens are signed with.
    pub secret: Vec<u8>,
}

/// The BFF shell: `GET {path}` runs [`home_composition`] for the verified caller and
/// answers `shape(composition)` as JSON; behind JWT auth and the tiered rate limit;
/// `/health` is open. Required-part failures answer 502/504 problem+json.
pub fn bff_router(
    path: &str,
    config: &BffConfig,
    shape: fn(gateway_layers::compose::Composition) -> serde_json::Value,
) -> axum::Router {
    use axum::{Extension, Json, body::Body, response::IntoResponse, routing::get};
    use gateway_layers::core::{ClientIpLayer, Identity, ProblemJson, Rejection};

    let compose = home_composition(&config.urls);
    let handler = move |identity: Option<Extension<Identity>>| {
        let compose = compose.clone();
        async move {
            let Some(user_id) = identity.as_ref().and_then(|i| i.subject()) else {
                let rejection = Rejection::new(http::StatusCode::UNAUTHORIZED, "bff", "no_subject")
                    .with_detail("the token has no subject");
                return rejection.into_response::<Body>(&ProblemJson).map(Body::new);
            };
            let caller = Caller {
                user_id: user_id.to_owned(),
            };
            match compose.run(&caller).await {
                Ok(composition) => Json(shape(composition)).into_response(),
                Err(rejection) => rejection.into_response::<Body>(&ProblemJson).map(Body::new),
            }
        }
    };
    axum::Router::new()
        .route(path, get(handler))
        // Inner to outer: the limit reads the identity the JWT layer sets.
        .layer(rate_limit_layer())
        .layer(auth_layer(&config.secret))
        .route("/health", get(|| async { "ok" }))
        .layer(ClientIpLayer::new(ClientIpResolver::new(
            TrustedProxies::loopback(),
        )))
}

/// Starts the upstreams (or reads their URLs from the environment), serves `app` on
/// `BFF_ADDR` (default `127.0.0.1:{default_port}`, a free port if taken) and prints
/// the address, demo tokens and curl commands.
///
/// # Errors
///
/// When no listener can be bound.
pub async fn run(
    name: &str,
    default_port: u16,
    path: &str,
    app: fn(&BffConfig) -> axum::Router,
) -> std::io::Result<()> {
    let config = BffConfig {
        urls: crate::DemoUrls::from_env_or_start().await?,
        secret: jwt_secret(),
    };
    let wanted: std::net::SocketAddr = std::env::var("BFF_ADDR")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], default_port)));
    let listener = match tokio::net::TcpListener::bind(wanted).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%error, %wanted, "address taken, using a free port");
            tokio::net::TcpListener::bind((wanted.ip(), 0)).await?
        }
    };
    let base = format!("http://{}", listener.local_addr()?);
    let day = Duration::from_secs(86_400);
    let premium = mint_token(&config.secret, "1", "premium", day);
    let free = mint_token(&config.secret, "2", "free", day);
    let banner = format!(
        "{name} listening on {base}\n\n\
         demo tokens (valid 24 h):\n  premium user 1: {premium}\n  free user 2:    {free}\n\n\
         try:\n  \
         curl -s {base}{path} -H 'authorization: Bearer {premium}'\n  \
         curl -i {base}{path}            # 401 without a token\n  \
         for i in $(seq 8); do curl -s -o /dev/null -w '%{{http_code}} ' {base}{path} -H 'authorization: Bearer {free}'; done; echo   # free tier: 429 after 5\n"
    );
    #[allow(clippy::print_stdout)]
    {
        println!("{banner}");
    }
    axum::serve(
        listener,
        app(&config).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
}
