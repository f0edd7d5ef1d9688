//! A minimal streaming forwarder used until the route is served by the proxy crate.

use std::{net::SocketAddr, sync::Arc};

use axum::{body::Body, extract::Request, response::Response};
use gateway_layers::core::{ClientIp, ProblemJson, Rejection, headers::remove_hop_by_hop};
use http::{HeaderValue, StatusCode, Uri};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// Forwards requests to one upstream, removing a path prefix.
#[derive(Clone, Debug)]
pub struct Forward {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base: String,
    strip: &'static str,
    client: Client<HttpConnector, Body>,
}

static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

impl Forward {
    /// Forwards to `base` (e.g. `http://127.0.0.1:3001`), removing `strip` from paths.
    pub fn new(base: &str, strip: &'static str) -> Self {
        Self {
            inner: Arc::new(Inner {
                base: base.trim_end_matches('/').to_owned(),
                strip,
                client: Client::builder(TokioExecutor::new()).build_http(),
            }),
        }
    }

    /// An axum handler that forwards.
    pub fn into_handler(
        self,
    ) -> impl Fn(Request) -> std::pin::Pin<Box<dyn Future<Output = Response> + Send>>
    + Clone
    + Send
    + 'static {
        move |request| {
            let this = self.clone();
            Box::pin(async move { this.forward(request).await })
        }
    }

    async fn forward(&self, request: Request) -> Response {
        let (mut parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let stripped = path_and_query
            .strip_prefix(self.inner.strip)
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(path_and_query);
        let Ok(uri) = format!("{}{stripped}", self.inner.base).parse::<Uri>() else {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_target",
                "invalid request target",
            );
        };
        parts.uri = uri;
        remove_hop_by_hop(&mut parts.headers);
        parts.headers.remove(http::header::HOST);
        let client = parts.extensions.get::<ClientIp>().map(|c| c.0).or_else(|| {
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        });
        if let Some(ip) = client {
            let value = match parts
                .headers
                .get(&X_FORWARDED_FOR)
                .and_then(|v| v.to_str().ok())
            {
                Some(prior) => format!("{prior}, {ip}"),
                None => ip.to_string(),
            };
            if let Ok(value) = HeaderValue::from_str(&value) {
                parts.headers.insert(X_FORWARDED_FOR.clone(), value);
            }
        }
        match self
            .inner
            .client
            .request(http::Request::from_parts(parts, body))
            .await
        {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Body::new(body))
            }
            Err(error) => {
                tracing::warn!(%error, "upstream request failed");
                problem(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unavailable",
                    "the upstream could not be reached",
                )
            }
        }
    }
}

fn problem(status: StatusCode, code: &'static str, detail: &'static str) -> Response {
    Rejection::new(status, "proxy", code)
        .with_detail(detail)
        .into_response::<Body>(&ProblemJson)
        .map(Body::new)
}
