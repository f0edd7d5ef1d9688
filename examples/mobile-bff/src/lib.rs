//! A mobile backend-for-frontend: one call returns what the app's home screen needs,
//! reduced for small screens and slow networks — selected fields, thumbnail URLs,
//! formatted totals, an unread count instead of the notification list.
//!
//! JWT authentication and the tiered rate limit come from gateway-layers; the user,
//! orders, notifications and recommendations services are called in parallel through
//! [`gateway_layers::compose`]. Run it with `cargo run -p example-mobile-bff`.
#![forbid(unsafe_code)]

use axum::Router;
use example_demo_services::bff::{BffConfig, bff_router};
use gateway_layers::compose::Composition;
use serde_json::{Map, Value, json};

pub use example_demo_services::{DemoUrls, bff::mint_token};

/// The path of the home-screen call.
pub const HOME: &str = "/mobile/home";

/// The mobile BFF's routes and layers.
pub fn app(config: &BffConfig) -> Router {
    bff_router(HOME, config, shape)
}

/// `https://img.example.com/a.png` -> `https://img.example.com/a.png?w=120`.
fn thumbnail(url: &Value, width: u32) -> Value {
    url.as_str()
        .map_or(Value::Null, |u| Value::String(format!("{u}?w={width}")))
}

/// `1999`, `"EUR"` -> `"€19.99"`.
pub fn format_total(cents: u64, currency: &str) -> String {
    let symbol = match currency {
        "EUR" => "€",
        "USD" => "$",
        "GBP" => "£",
        other => return format!("{}.{:02} {other}", cents / 100, cents % 100),
    };
    format!("{symbol}{}.{:02}", cents / 100, cents % 100)
}

/// The reduced payload.
pub fn shape(mut composition: Composition) -> Value {
    let meta = composition.meta();
    let mut out = Map::new();
    if let Some(user) = composition.take("user") {
        out.insert(
            "user".into(),
            json!({"name": user["name"], "avatar": thumbnail(&user["avatar_url"], 64)}),
        );
    }
    if let Some(Value::Array(orders)) = composition.take("orders") {
        let orders: Vec<Value> = orders
            .iter()
            .map(|o| {
                json!({
                    "id": o["id"],
                    "status": o["status"],
                    "total": format_total(o["total_cents"].as_u64().unwrap_or(0), o["currency"].as_str().unwrap_or("")),
                    "thumbnail": thumbnail(&o["items"][0]["image_url"], 120),
                })
            })
            .collect();
        out.insert("orders".into(), Value::Array(orders));
    }
    if let Some(Value::Array(notifications)) = composition.take("notifications") {
        let unread = notifications.iter().filter(|n| n["read"] == false).count();
        out.insert("unread_notifications".into(), unread.into());
    }
    if let Some(Value::Array(recs)) = composition.take("recommendations") {
        let recs: Vec<Value> = recs
            .iter()
            .take(5)
            .map(|r| json!({"name": r["name"], "thumbnail": thumbnail(&r["image_url"], 120)}))
            .collect();
        out.insert("recommendations".into(), Value::Array(recs));
    }
    out.insert("_meta".into(), meta);
    Value::Object(out)
}
