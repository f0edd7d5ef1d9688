//! Test helpers for gateway-layers (not published).
//!
//! - [`MockUpstream`]: a real HTTP/1.1 + HTTP/2 (h2c) server on `127.0.0.1:0` with
//!   scripted behaviour (status sequences, delays, echo of the request, streamed
//!   bodies, aborted connections), request and connection counters, and stop/restart
//!   on the same port.
//! - [`jwt`]: fixed test keys (HS256, RS256, ES256, EdDSA), their JWKS, and minting.
//! - [`RedisServer`]: a private `redis-server` on a free loopback port, stopped on drop.
//!   A missing binary is a panic naming how to install it, never a silent skip.
//!
//! Everything listens on loopback only.
#![forbid(unsafe_code)]

pub mod jwt;
mod redis;
mod upstream;

pub use redis::RedisServer;
pub use upstream::{
    KEPT_BODY_BYTES, MockUpstream, MockUpstreamBuilder, RecordedRequest, Reply, fnv1a,
};

/// A plain hyper-util client (HTTP/1.1, pooled) for talking to test servers.
pub type TestClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

/// A new [`TestClient`].
pub fn http_client() -> TestClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// Reads a whole body into bytes (test convenience).
pub async fn body_bytes<B>(body: B) -> bytes::Bytes
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    body.collect().await.expect("body").to_bytes()
}

/// Reads a whole body as JSON (test convenience).
pub async fn body_json<B>(body: B) -> serde_json::Value
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = body_bytes(body).await;
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })
}
