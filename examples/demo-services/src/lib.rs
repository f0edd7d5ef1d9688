//! Demo upstream services shared by the examples, started in-process on loopback:
//! users, orders, notifications and recommendations. Each is a plain axum app.
//!
//! Data is fixed and small: users 1-3, orders 100-104, so tests can assert on it.
#![forbid(unsafe_code)]

pub mod bff;

use std::net::SocketAddr;

use axum::{
    Json, Router,
    extract::{Path, Query},
    http::StatusCode,
    routing::get,
};
use serde::Deserialize;
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

/// Base URLs of the four demo services.
#[derive(Debug, Clone)]
pub struct DemoUrls {
    /// Users service.
    pub users: String,
    /// Orders service.
    pub orders: String,
    /// Notifications service.
    pub notifications: String,
    /// Recommendations service.
    pub recommendations: String,
}

impl DemoUrls {
    /// Starts the four services on loopback.
    pub async fn start() -> std::io::Result<Self> {
        Ok(Self {
            users: format!("http://{}", serve(users_app()).await?),
            orders: format!("http://{}", serve(orders_app()).await?),
            notifications: format!("http://{}", serve(notifications_app()).await?),
            recommendations: format!("http://{}", serve(recommendations_app()).await?),
        })
    }

    /// URLs from `USERS_URL`, `ORDERS_URL`, `NOTIFICATIONS_URL` and
    /// `RECOMMENDATIONS_URL`; any service not set is started in-process.
    pub async fn from_env_or_start() -> std::io::Result<Self> {
        let pick = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
        let mut urls = Self::start_missing(
            pick("USERS_URL"),
            pick("ORDERS_URL"),
            pick("NOTIFICATIONS_URL"),
            pick("RECOMMENDATIONS_URL"),
        )
        .await?;
        for url in [
            &mut urls.users,
            &mut urls.orders,
            &mut urls.notifications,
            &mut urls.recommendations,
        ] {
            while url.ends_with('/') {
                url.pop();
            }
        }
        Ok(urls)
    }

    async fn start_missing(
        users: Option<String>,
        orders: Option<String>,
        notifications: Option<String>,
        recommendations: Option<String>,
    ) -> std::io::Result<Self> {
        let start = |app: fn() -> Router| async move {
            serve(app()).await.map(|addr| format!("http://{addr}"))
        };
        Ok(Self {
            users: match users {
                Some(url) => url,
                None => start(users_app).await?,
            },
            orders: match orders {
                Some(url) => url,
                None => start(orders_app).await?,
            },
            notifications: match notifications {
                Some(url) => url,
                None => start(notifications_app).await?,
            },
            recommendations: match recommendations {
                Some(url) => url,
                None => start(recommendations_app).await?,
            },
        })
    }
}

/// A demo user.
pub fn user(id: u32) -> Option<Value> {
    let (name, tier) = match id {
        1 => ("Ada Lovelace", "premium"),
        2 => ("Grace Hopper", "free"),
        3 => ("Linus Torvalds", "enterprise"),
        _ => return None,
    };
    let first = name.split(' ').next().unwrap_or(name).to_lowercase();
    Some(json!({
        "id": id,
        "name": name,
        "email": format!("{first}@example.com"),
        "tier": tier,
        "avatar_url": format!("https://img.example.com/avatars/{id}.png"),
        "address": {"city": "London", "country": "GB"},
        "internal_notes": "not for clients",
    }))
}

/// The users service: `GET /users`, `GET /users/{id}`, and `GET /status/{code}`
/// which answers with that status (to watch retries and breakers work).
pub fn users_app() -> Router {
    Router::new()
        .route(
            "/status/{code}",
            get(|Path(code): Path<u16>| async move {
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
            }),
        )
        .route(
            "/users",
            get(|| async { Json(Value::Array((1..=3).filter_map(user).collect())) }),
        )
        .route(
            "/users/{id}",
            get(|Path(id): Path<u32>| async move { user(id).map(Json).ok_or(StatusCode::NOT_FOUND) }),
        )
}

/// A demo order.
pub fn order(id: u32) -> Option<Value> {
    let user_id = match id {
        100..=102 => 1,
        103 => 2,
        104 => 3,
        _ => return None,
    };
    Some(json!({
        "id": id,
        "user_id": user_id,
        "status": if id.is_multiple_of(2) { "shipped" } else { "processing" },
        "total_cents": 1999 + (id - 100) * 1000,
        "currency": "EUR",
        "items": [
            {"sku": format!("SKU-{id}-A"), "name": "Widget", "quantity": 2,
             "image_url": format!("https://img.example.com/products/{id}-a.jpg"), "internal_id": id * 10},
            {"sku": format!("SKU-{id}-B"), "name": "Gadget", "quantity": 1,
             "image_url": format!("https://img.example.com/products/{id}-b.jpg"), "internal_id": id * 10 + 1},
        ],
    }))
}

#[derive(Debug, Deserialize)]
struct UserQuery {
    user: Option<u32>,
}

/// The orders service: `GET /orders?user=ID`, `GET /orders/{id}`.
pub fn orders_app() -> Router {
    Router::new()
        .route(
            "/orders",
            get(|Query(q): Query<UserQuery>| async move {
                let orders: Vec<Value> = (100..=104)
                    .filter_map(order)
                    .filter(|o| q.user.is_none_or(|u| o["user_id"] == u))
                    .collect();
                Json(Value::Array(orders))
            }),
        )
        .route(
            "/orders/{id}",
            get(|Path(id): Path<u32>| async move { order(id).map(Json).ok_or(StatusCode::NOT_FOUND) }),
        )
}

/// The notifications service: `GET /notifications?user=ID`.
pub fn notifications_app() -> Router {
    Router::new().route(
        "/notifications",
        get(|Query(q): Query<UserQuery>| async move {
            let user = q.user.unwrap_or(0);
            Json(json!([
                {"id": 1, "user_id": user, "text": "Your order has shipped", "read": false},
                {"id": 2, "user_id": user, "text": "Welcome back", "read": true},
            ]))
        }),
    )
}

/// The recommendations service: `GET /recommendations?user=ID`.
pub fn recommendations_app() -> Router {
    Router::new().route(
        "/recommendations",
        get(|Query(q): Query<UserQuery>| async move {
            let user = q.user.unwrap_or(0);
            Json(json!([
                {"sku": "SKU-900", "name": "Sprocket", "score": 0.91, "image_url": "https://img.example.com/products/900.jpg", "for_user": user},
                {"sku": "SKU-901", "name": "Flange", "score": 0.72, "image_url": "https://img.example.com/products/901.jpg", "for_user": user},
            ]))
        }),
    )
}
