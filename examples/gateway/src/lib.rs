//! The example gateway: an axum app built from gateway-layers, in front of two demo
//! upstreams (users and orders) that it starts itself on loopback.
//!
//! Run it with `cargo run -p example-gateway`; it prints its address and curl commands.
//! Copy this package as the starting point of your own gateway.
//!
//! Request path:
//!
//! ```text
//! client -> ClientIpLayer -> axum Router --/api/users/*--> forward -> users upstream
//!                                        --/api/orders/*-> forward -> orders upstream
//!                                        --/health------> 200
//!                                        --other--------> 404 problem+json
//! ```
#![forbid(unsafe_code)]

mod forward;

use std::net::SocketAddr;

use axum::{Router, routing::any, routing::get};
use gateway_layers::core::{
    ClientIpLayer, ClientIpResolver, ProblemJson, Rejection, TrustedProxies,
};
use http::StatusCode;

pub use forward::Forward;

/// Where the gateway sends traffic.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// Base URL of the users service, e.g. `http://127.0.0.1:3001`.
    pub users: String,
    /// Base URL of the orders service.
    pub orders: String,
}

/// The gateway's routes and layers.
pub fn app(upstreams: &Upstreams) -> Router {
    let users = Forward::new(&upstreams.users, "/api");
    let orders = Forward::new(&upstreams.orders, "/api");
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/api/users", any(users.clone().into_handler()))
        .route("/api/users/{*rest}", any(users.into_handler()))
        .route("/api/orders", any(orders.clone().into_handler()))
        .route("/api/orders/{*rest}", any(orders.into_handler()))
        .fallback(|| async {
            Rejection::new(StatusCode::NOT_FOUND, "router", "no_route")
                .with_detail("no route matches this request")
                .into_response::<axum::body::Body>(&ProblemJson)
        })
        // Resolve the client IP once, for every layer and for X-Forwarded-For. Only a
        // proxy on this host is trusted to report another address.
        .layer(ClientIpLayer::new(ClientIpResolver::new(
            TrustedProxies::loopback(),
        )))
}

/// Starts the two demo upstreams on loopback and returns their URLs.
pub async fn start_demo_upstreams() -> std::io::Result<Upstreams> {
    let users = example_demo_services::serve(example_demo_services::users_app()).await?;
    let orders = example_demo_services::serve(example_demo_services::orders_app()).await?;
    Ok(Upstreams {
        users: format!("http://{users}"),
        orders: format!("http://{orders}"),
    })
}

/// Serves `app` on `listener` with connection info (for client IP resolution).
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}
