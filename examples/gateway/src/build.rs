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
use tower::{Layer, Service, ServiceBuilder, ServiceExt, util::BoxCloneSyncService};

use crate::stack::{HeapFuture, OverBoxed, Replay, Same, Untransformed, plugin};
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
        let proxy: Proxy = proxies.get(&service.upstream).cloned().ok_or_else(|| {
            invalid(format!(
                "{}: no upstream named {:?}",
                at("upstream"),
                service.upstream
            ))
        })?;
        // Innermost first; one concrete type (see `stack`), boxed once.
        let breaker = service
            .breaker
            .map(BreakerLayer::from_config)
            .transpose()
            .map_err(|e| invalid(format!("{}: {e}", at("breaker"))))?;
        if let Some(layer) = &breaker {
            breakers.insert(name.clone(), layer.handle());
        }
        let retry = service
            .retry
            .as_ref()
            .map(RetryLayer::from_config)
            .transpose()
            .map_err(|e| invalid(format!("{}: {e}", at("retry"))))?;
        let transform = service
            .transform
            .map(TransformLayer::new)
            .transpose()
            .map_err(|e| invalid(format!("{}: {e}", at("transform"))))?;
        let rate_limit: Option<RateLimitLayer> = service
            .rate_limit
            .as_ref()
            .map(|config| config.builder(&resolver).and_then(|b| b.build()))
            .transpose()
            .map_err(|e| invalid(format!("{}: {e}", at("rate_limit"))))?;
        let api_key: Option<ApiKeyLayer> = service
            .api_key
            .map(|config| config.into_builder().and_then(|b| b.build()))
            .transpose()
            .map_err(|e| invalid(format!("{}: {e}", at("api_key"))))?;
        let jwt: Option<JwtAuthLayer> = service
            .jwt
            .map(|config| config.into_builder().and_then(|b| b.build()))
            .transpose()
            .map_err(|e| invalid(format!("{}: {e}", at("jwt"))))?;
        if service.body_limit == Some(0) {
            return Err(invalid(format!("{}: must be > 0", at("body_limit"))));
        }
        // Without a configured limit the layer still runs, unlimited: tower-http's
        // `Limited` body has no public constructor for a pass-through arm.
        let body_limit = RequestBodyLimitLayer::new(service.body_limit.unwrap_or(usize::MAX));

        // Boxing the futures of the two largest inner stages keeps every future above
        // them small (see `HeapFuture`).
        let stack = HeapFuture::new(plugin::<Same, _, _>(breaker, proxy));
        let stack = HeapFuture::new(plugin::<Replay, _, _>(retry, stack));
        let stack = plugin::<Untransformed, _, _>(transform, stack);
        let stack = plugin::<Same, _, _>(rate_limit, stack);
        let stack = plugin::<Same, _, _>(api_key, stack);
        let stack = plugin::<Same, _, _>(jwt, stack);
        let stack = body_limit.layer(stack);
        let cors = service
            .cors
            .as_ref()
            .map(|config| cors(config, &at("cors")))
            .transpose()
            .map_err(invalid)?;
        let stack = plugin::<Same, _, _>(cors.map(OverBoxed), stack);
        let request_id = service.request_id.then(|| {
            let header = HeaderName::from_static("x-request-id");
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(header.clone(), MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(header))
                .into_inner()
        });
        let stack = plugin::<Same, _, _>(request_id, stack);
        services.insert(name, boxed(stack));
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
