//! Demo upstream services, started in-process on loopback.

use std::net::SocketAddr;

use axum::{Json, Router, extract::Path, http::StatusCode, routing::get};
use serde_json::{Value, json};

/// Serves `app` on `127.0.0.1:0` in the background and returns its address.
pub async fn serve(app: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "demo upstream stopped");
        }
    });
    Ok(addr)
}

/// The users service: `GET /users`, `GET /users/{id}`.
pub fn users_app() -> Router {
    Router::new()
        .route(
            "/users",
            get(|| async { Json(json!([user(1), user(2), user(3)])) }),
        )
        .route(
            "/users/{id}",
            get(|Path(id): Path<u32>| async move {
                if (1..=3).contains(&id) {
                    Ok(Json(user(id)))
                } else {
                    Err(StatusCode::NOT_FOUND)
                }
            }),
        )
}

fn user(id: u32) -> Value {
    let names = ["", "Ada", "Grace", "Linus"];
    json!({
        "id": id,
        "name": names[id as usize],
        "email": format!("{}@example.com", names[id as usize].to_lowercase()),
        "tier": if id == 1 { "premium" } else { "free" },
    })
}

/// The orders service: `GET /orders`, `GET /orders/{id}`.
pub fn orders_app() -> Router {
    Router::new()
        .route(
            "/orders",
            get(|| async { Json(json!([order(100, 1), order(101, 2)])) }),
        )
        .route(
            "/orders/{id}",
            get(|Path(id): Path<u32>| async move {
                match id {
                    100 => Ok(Json(order(100, 1))),
                    101 => Ok(Json(order(101, 2))),
                    _ => Err(StatusCode::NOT_FOUND),
                }
            }),
        )
}

fn order(id: u32, user: u32) -> Value {
    json!({"id": id, "user_id": user, "total_cents": 4200 + id, "currency": "EUR"})
}
