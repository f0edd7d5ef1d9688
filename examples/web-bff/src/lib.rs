//! A web backend-for-frontend: one call returns the rich dashboard a desktop page
//! renders — the full user profile, orders with their items, all notifications and
//! recommendations with scores — minus internal fields that must never reach a client.
//!
//! JWT authentication and the tiered rate limit come from gateway-layers; the four
//! services are called in parallel through [`gateway_layers::compose`]. Run it with
//! `cargo run -p example-web-bff`.
#![forbid(unsafe_code)]

use axum::Router;
use example_demo_services::bff::{BffConfig, bff_router};
use gateway_layers::compose::Composition;
use serde_json::{Map, Value};

pub use example_demo_services::{DemoUrls, bff::mint_token};

/// The path of the dashboard call.
pub const DASHBOARD: &str = "/web/dashboard";

/// The web BFF's routes and layers.
pub fn app(config: &BffConfig) -> Router {
    bff_router(DASHBOARD, config, shape)
}

/// Removes internal fields: `internal_notes` on the user, `internal_id` on order items.
fn scrub(part: &str, value: &mut Value) {
    match (part, value) {
        ("user", Value::Object(user)) => {
            user.remove("internal_notes");
        }
        ("orders", Value::Array(orders)) => {
            for order in orders {
                if let Some(Value::Array(items)) = order.get_mut("items") {
                    for item in items {
                        if let Value::Object(item) = item {
                            item.remove("internal_id");
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// The rich payload: every part that answered, scrubbed, plus `_meta`.
pub fn shape(mut composition: Composition) -> Value {
    let meta = composition.meta();
    let mut out = Map::new();
    for part in ["user", "orders", "notifications", "recommendations"] {
        if let Some(mut value) = composition.take(part) {
            scrub(part, &mut value);
            out.insert(part.into(), value);
        }
    }
    out.insert("_meta".into(), meta);
    Value::Object(out)
}
