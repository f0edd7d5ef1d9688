//! Turns a [`GatewayConfig`] into services: each service is its upstream's proxy with
//! the configured plugins in front, boxed to one request/response type so the router
//! can hold them side by side.

use std::{collections::HashMap, convert::Infallible, time::Duration};

use axum::body::Body;
use bytes::Bytes;
use gateway_layers::{
    breaker::{BreakerHandle, BreakerLayer},
    core::{BoxError, ClientIpResolver, TrustedProxies},
    jwt::{ApiKeyLayer, JwtAuthLayer},
    proxy::{Proxy, ProxyBuilder},
    ratelimit::RateLimitLayer,
    retry::RetryLayer,
    router::{RouteService, Router},
    transform::TransformLayer,
};
use http::{HeaderName, Method, Request, Response};
use tower::{Layer, Service, ServiceExt, util::BoxCloneSyncService};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
};

use crate::config::{CorsConfig, GatewayConfig, LoadError};

/// One boxed service: what every route holds.
pub type Svc = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// Everything built from a document.
#[derive(Debug)]
pub struct Built {
    /// The router over all routes.
    pub router: Router<Body, Body, Infallible>,
    /// Proxies by upstream name (for target health on the admin endpoint).
    pub proxies: HashMap<String, Proxy>,
    /// Breaker handles by service name.
    pub breakers: HashMap<String, BreakerHandle>,
    /// The resolver every layer uses for client IPs.
    pub resolver: ClientIpResolver,
}

fn boxed<S, B>(service: S) -> Svc
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BoxCloneSyncService::new(service.map_response(|response| response.map(Body::new)))
}

/// `svc` accepting any request body (for layers that change the body type inward).
fn accepting<B>(
    svc: Svc,
) -> impl Service<Request<B>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ Sync
+ 'static
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    svc.map_request(|request: Request<B>| request.map(Body::new))
}

fn cors(config: &CorsConfig, field: &str) -> Result<CorsLayer, String> {
    let mut layer = CorsLayer::new();
    if config.allow_origins.iter().any(|o| o == "*") {
        layer = layer.allow_origin(AllowOrigin::any());
    } else {
        let origins = config
            .allow_origins
            .iter()
            .map(|o| {
                o.parse()
                    .map_err(|_| format!("{field}.allow_origins: invalid origin {o:?}"))
            })
            .collect::<Result<Vec<http::HeaderValue>, _>>()?;
        layer = layer.allow_origin(origins);
    }
    let methods = if config.allow_methods.is_empty() {
        vec![Method::GET, Method::POST]
    } else {
        config
            .allow_methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("{field}.allow_methods: invalid method {m:?}"))
            })
            .collect::<Result<_, _>>()?
    };
    layer = layer.allow_methods(methods);
    let headers = config
        .allow_headers
        .iter()
        .map(|h| {
            HeaderName::from_bytes(h.as_bytes())
                .map_err(|_| format!("{field}.allow_headers: invalid header {h:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    layer = layer.allow_headers(headers);
    if let Some(secs) = config.max_age_secs {
        layer = layer.max_age(Duration::from_secs(secs));
    }
    Ok(layer)
}

/// Builds every upstream, service and the router; `file` names the document in errors.
pub fn build(config: GatewayConfig, file: &str) -> Result<Built, LoadError> {
    let invalid = |message: String| LoadError::invalid(file, message);
    let trusted = TrustedProxies::new(&config.trusted_proxies)
        .map_err(|e| invalid(format!("trusted_proxies: {e}")))?;
    let resolver = ClientIpResolver::new(trusted);

    let mut proxies = HashMap::new();
    for (name, upstream) in config.upstreams {
        let proxy = ProxyBuilder::from_config(upstream)
            .and_then(ProxyBuilder::build)
            .map_err(|e| invalid(format!("upstreams.{name}: {e}")))?;
        proxies.insert(name, proxy);
    }

    let mut services: HashMap<String, RouteService<Body, Body, Infallible>> = HashMap::new();
    let mut breakers = HashMap::new();
    for (name, service) in config.services {
        let at = |what: &str| format!("services.{name}.{what}");
        let proxy = proxies.get(&service.upstream).cloned().ok_or_else(|| {
            invalid(format!(
                "{}: no upstream named {:?}",
                at("upstream"),
                service.upstream
            ))
        })?;
        // Innermost first.
        let mut svc: Svc = boxed(proxy);
        if let Some(breaker) = service.breaker {
            let layer = BreakerLayer::from_config(breaker)
                .map_err(|e| invalid(format!("{}: {e}", at("breaker"))))?;
            breakers.insert(name.clone(), layer.handle());
            svc = boxed(layer.layer(svc));
        }
        if let Some(retry) = &service.retry {
            let layer = RetryLayer::from_config(retry)
                .map_err(|e| invalid(format!("{}: {e}", at("retry"))))?;
            svc = boxed(layer.layer(accepting(svc)));
        }
        if let Some(transform) = service.transform {
            let layer = TransformLayer::new(transform)
                .map_err(|e| invalid(format!("{}: {e}", at("transform"))))?;
            svc = boxed(layer.layer(accepting(svc)));
        }
        if let Some(rate_limit) = &service.rate_limit {
            let layer: RateLimitLayer = rate_limit
                .builder(&resolver)
                .and_then(|b| b.build())
                .map_err(|e| invalid(format!("{}: {e}", at("rate_limit"))))?;
            svc = boxed(layer.layer(svc));
        }
        if let Some(api_key) = service.api_key {
            let layer: ApiKeyLayer = api_key
                .into_builder()
                .and_then(|b| b.build())
                .map_err(|e| invalid(format!("{}: {e}", at("api_key"))))?;
            svc = boxed(layer.layer(svc));
        }
        if let Some(jwt) = service.jwt {
            let layer: JwtAuthLayer = jwt
                .into_builder()
                .and_then(|b| b.build())
                .map_err(|e| invalid(format!("{}: {e}", at("jwt"))))?;
            svc = boxed(layer.layer(svc));
        }
        if let Some(limit) = service.body_limit {
            if limit == 0 {
                return Err(invalid(format!("{}: must be > 0", at("body_limit"))));
            }
            svc = boxed(RequestBodyLimitLayer::new(limit).layer(accepting(svc)));
        }
        if let Some(config) = &service.cors {
            svc = boxed(cors(config, &at("cors")).map_err(invalid)?.layer(svc));
        }
        if service.request_id {
            let header = HeaderName::from_static("x-request-id");
            svc = boxed(
                SetRequestIdLayer::new(header.clone(), MakeRequestUuid)
                    .layer(PropagateRequestIdLayer::new(header).layer(svc)),
            );
        }
        services.insert(name, svc);
    }

    let router = config
        .router
        .builder(&services, &resolver)
        .and_then(|b| b.build())
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Built {
        router,
        proxies,
        breakers,
        resolver,
    })
}
