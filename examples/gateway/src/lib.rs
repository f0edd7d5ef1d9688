//! A declarative gateway: one YAML file declares upstreams (targets, balancing, health
//! checks), services (an upstream plus plugins: request id, CORS, body limit, JWT, API
//! key, tiered rate limits, transforms, retry, circuit breaker) and routes (hosts,
//! paths, headers, methods, strip prefix, weighted splits). Copy this package as the
//! starting point of your own gateway.
//!
//! `cargo run -p example-gateway` uses the embedded [`DEFAULT_CONFIG`] with demo
//! upstreams started in-process; `--config FILE` uses another file.
//!
//! Request path:
//!
//! ```text
//! client -> TraceContext -> ClientIp -> metrics -> Router --route--> service stack -> Proxy -> upstream
//!                                                          (request id, CORS, body limit,
//!                                                           JWT, API key, rate limit,
//!                                                           transform, retry, breaker)
//! ```
//!
//! The admin listener serves `/metrics` (Prometheus text) and `/admin` (routes,
//! breaker states, target health as JSON).
#![forbid(unsafe_code)]

mod build;
mod config;
mod request_metrics;
pub mod stack;

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, OnceLock},
};

use axum::{Json, Router, body::Body, extract::ConnectInfo, routing::get, serve::IncomingStream};
use gateway_layers::{
    breaker::BreakerHandle,
    core::{
        ClientIpLayer,
        metrics::{self, PrometheusRecorder},
        trace::TraceContextLayer,
    },
    proxy::Proxy,
};
use serde_json::{Value, json};
use tower::ServiceBuilder;

pub use build::{Built, Svc, build};
pub use config::{DEFAULT_CONFIG, GatewayConfig, LoadError, ServiceConfig};
pub use example_demo_services::DemoUrls;
pub use request_metrics::RequestMetricsLayer;

/// The demo services `demo:NAME` targets refer to.
#[derive(Debug, Clone, Default)]
pub struct DemoTargets {
    urls: Option<DemoUrls>,
}

impl DemoTargets {
    /// No demo services: a `demo:` target is an error.
    pub fn none() -> Self {
        Self::default()
    }

    /// These demo services.
    pub fn new(urls: DemoUrls) -> Self {
        Self { urls: Some(urls) }
    }

    /// The URL of demo service `name`.
    pub fn url(&self, name: &str) -> Option<String> {
        let urls = self.urls.as_ref()?;
        Some(match name {
            "users" => urls.users.clone(),
            "orders" => urls.orders.clone(),
            "notifications" => urls.notifications.clone(),
            "recommendations" => urls.recommendations.clone(),
            _ => return None,
        })
    }
}

/// The built gateway: the public app and the admin app.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// The public service with every layer ([`serve_service`] serves it).
    pub service: Svc,
    /// The same service as an axum router (to test it through `oneshot`, or to merge
    /// it into a larger app).
    pub app: Router,
    /// `/metrics` and `/admin`.
    pub admin: Router,
    /// Where the document asked to listen.
    pub listen: SocketAddr,
    /// Where the document asked the admin endpoint to listen.
    pub admin_listen: SocketAddr,
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn recorder() -> &'static PrometheusRecorder {
    static RECORDER: OnceLock<&'static PrometheusRecorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder: &'static PrometheusRecorder = Box::leak(Box::new(PrometheusRecorder::new()));
        // Another recorder may be installed by the embedding program; then ours only
        // sees what is reported to it directly.
        let _ = metrics::set_recorder(recorder);
        recorder
    })
}

impl Gateway {
    /// Parses and builds `text`; `file` names it in errors.
    pub fn from_yaml(file: &str, text: &str, demo: &DemoTargets) -> Result<Self, LoadError> {
        let config = GatewayConfig::parse(file, text, demo)?;
        Self::from_config(config, file)
    }

    /// Builds a parsed document.
    pub fn from_config(config: GatewayConfig, file: &str) -> Result<Self, LoadError> {
        let listen = config.listen;
        let admin_listen = config.admin;
        let routes: Vec<Value> = config
            .router
            .routes
            .iter()
            .map(|r| {
                json!({
                    "name": r.name, "hosts": r.hosts, "methods": r.methods,
                    "path": r.path.as_ref().map(|p| json!({
                        "exact": p.exact, "prefix": p.prefix, "template": p.template, "regex": p.regex,
                    })),
                    "service": r.service,
                    "split": r.split.as_ref().map(|s| s.backends.iter().map(|b| json!({"service": b.service, "weight": b.weight})).collect::<Vec<_>>()),
                })
            })
            .collect();
        let built = build(config, file)?;
        let _ = recorder();
        // One typed stack, boxed once (`Router::layer` would box, and clone per
        // request, each layer separately).
        let service = Svc::new(
            ServiceBuilder::new()
                .layer(TraceContextLayer::new())
                .layer(ClientIpLayer::new(built.resolver))
                .layer(RequestMetricsLayer)
                .map_response(|response: http::Response<_>| response.map(Body::new))
                .service(built.router),
        );
        let app = Router::new().fallback_service(service.clone());
        let admin = admin_router(Arc::new(AdminState {
            routes,
            proxies: built.proxies,
            breakers: built.breakers,
        }));
        Ok(Self {
            service,
            app,
            admin,
            listen,
            admin_listen,
        })
    }
}

struct AdminState {
    routes: Vec<Value>,
    proxies: HashMap<String, Proxy>,
    breakers: HashMap<String, BreakerHandle>,
}

fn admin_router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    recorder().render(),
                )
            }),
        )
        .route(
            "/admin",
            get(move || {
                let state = state.clone();
                async move {
                    let upstreams: serde_json::Map<String, Value> = state
                        .proxies
                        .iter()
                        .map(|(name, proxy)| {
                            let targets: Vec<Value> = proxy
                                .targets()
                                .iter()
                                .map(|t| json!({
                                    "url": t.url, "healthy": t.healthy, "ejected": t.ejected,
                                    "requests": t.requests, "errors": t.errors, "in_flight": t.in_flight,
                                    "idle_connections": t.idle_connections,
                                }))
                                .collect();
                            (name.clone(), Value::Array(targets))
                        })
                        .collect();
                    let breakers: serde_json::Map<String, Value> = state
                        .breakers
                        .iter()
                        .map(|(name, handle)| {
                            let circuits: Vec<Value> = if handle.is_keyed() {
                                handle
                                    .keys()
                                    .into_iter()
                                    .filter_map(|k| handle.get(&k).map(|c| (k, c)))
                                    .map(|(k, c)| json!({"key": k.to_string(), "state": format!("{:?}", c.state())}))
                                    .collect()
                            } else {
                                vec![json!({"key": null, "state": format!("{:?}", handle.circuit().state())})]
                            };
                            (name.clone(), Value::Array(circuits))
                        })
                        .collect();
                    Json(json!({"routes": state.routes, "upstreams": upstreams, "breakers": breakers}))
                }
            }),
        )
}

/// Serves `app` on `listener` with connection info (for client IP resolution).
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// Serves the gateway's public `service` on `listener`, with each connection's peer
/// address as `ConnectInfo` (for client IP resolution). Unlike [`serve`] with
/// `Gateway::app`, no axum routing runs per request: the service is called directly.
pub async fn serve_service(listener: tokio::net::TcpListener, service: Svc) -> std::io::Result<()> {
    let make = tower::service_fn(move |stream: IncomingStream<'_, tokio::net::TcpListener>| {
        std::future::ready(Ok::<_, Infallible>(WithConnectInfo {
            inner: service.clone(),
            peer: *stream.remote_addr(),
        }))
    });
    axum::serve(listener, make).await
}

/// `inner` with the connection's peer address put in each request's extensions.
#[derive(Clone)]
struct WithConnectInfo {
    inner: Svc,
    peer: SocketAddr,
}

impl tower::Service<http::Request<Body>> for WithConnectInfo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = <Svc as tower::Service<http::Request<Body>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        self.inner.call(request)
    }
}

/// The body type the gateway's services use.
pub type GatewayBody = Body;
