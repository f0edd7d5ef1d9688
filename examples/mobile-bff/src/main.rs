//! The mobile BFF example.
//!
//! ```text
//! cargo run -p example-mobile-bff
//! ```
//!
//! With no configuration it starts the demo users / orders / notifications /
//! recommendations services on loopback; set `USERS_URL`, `ORDERS_URL`,
//! `NOTIFICATIONS_URL`, `RECOMMENDATIONS_URL` to use real ones, `JWT_SECRET` for your
//! HS256 secret and `BFF_ADDR` for the listen address (default `127.0.0.1:8081`).

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    example_demo_services::bff::run(
        "mobile BFF",
        8081,
        example_mobile_bff::HOME,
        example_mobile_bff::app,
    )
    .await
}
