//! The example gateway.
//!
//! ```text
//! cargo run -p example-gateway
//! ```
//!
//! Starts two demo upstreams on loopback, then the gateway on `127.0.0.1:8080` (or
//! `GATEWAY_ADDR`; a free port if 8080 is taken), and prints curl commands to try.

use std::net::SocketAddr;

use example_gateway::{app, serve, start_demo_upstreams};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    let upstreams = start_demo_upstreams().await?;
    let wanted: SocketAddr = std::env::var("GATEWAY_ADDR")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let listener = match tokio::net::TcpListener::bind(wanted).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%error, %wanted, "address taken, using a free port");
            tokio::net::TcpListener::bind((wanted.ip(), 0)).await?
        }
    };
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let banner = format!(
        "gateway listening on {base}\n\
         demo upstreams: users {} orders {}\n\n\
         try:\n  \
         curl -i {base}/health\n  \
         curl -i {base}/api/users/1\n  \
         curl -i {base}/api/orders\n  \
         curl -i {base}/nowhere\n",
        upstreams.users, upstreams.orders
    );
    // The banner is the program's output, not a log line.
    #[allow(clippy::print_stdout)]
    {
        println!("{banner}");
    }
    serve(listener, app(&upstreams)).await
}
