//! The [`Router`] service, its builder and [`RouterLayer`].

use std::{
    borrow::Cow,
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use gateway_layers_core::{
    ConfigError, GatewayBody, RejectionResponder, RequestView, SharedResponder,
    ext::{PathParams, RawPath},
    rejection::Rejection,
};
use http::{
    HeaderValue, Method, Request, Response, StatusCode, Uri,
    header::{ALLOW, HOST},
    uri::{Authority, PathAndQuery},
};
use pin_project_lite::pin_project;
use tower::util::{BoxCloneSyncService, Oneshot, ServiceExt};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    Normalization, PathError, Route, RouteService,
    matcher::prefix_matches,
    normalize::normalize_host,
    route::{CompiledRoute, CompiledTarget},
    table::{Lookup, Outcome, Table},
};

struct Inner<B, RB, E> {
    table: Table,
    routes: Vec<CompiledRoute<B, RB, E>>,
    normalization: Normalization,
    responder: SharedResponder,
}

/// Routes requests by host, path, method, headers and query to per-route services.
///
/// See the [crate docs](crate) for the matching rules, priority and normalization.
/// Cloning is cheap (the table is shared); the router is always ready, and calls only
/// the chosen route's service (a clone of it, through `oneshot`).
pub struct Router<B, RB, E = Infallible> {
    inner: Arc<Inner<B, RB, E>>,
    fallback: Option<RouteService<B, RB, E>>,
}

impl<B, RB, E> Clone for Router<B, RB, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<B, RB, E> fmt::Debug for Router<B, RB, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field(
                "routes",
                &self
                    .inner
                    .routes
                    .iter()
                    .map(|r| &r.name.0)
                    .collect::<Vec<_>>(),
            )
            .field("normalization", &self.inner.normalization)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

/// Builds a [`Router`].
#[must_use]
pub struct RouterBuilder<B, RB, E = Infallible> {
    routes: Vec<Route<B, RB, E>>,
    fallback: Option<RouteService<B, RB, E>>,
    normalization: Normalization,
    responder: SharedResponder,
}

impl<B, RB, E> fmt::Debug for RouterBuilder<B, RB, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("routes", &self.routes)
            .field("normalization", &self.normalization)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl<B, RB, E> Default for RouterBuilder<B, RB, E> {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            fallback: None,
            normalization: Normalization::default(),
            responder: SharedResponder::default(),
        }
    }
}

impl<B, RB, E> Router<B, RB, E> {
    /// A builder with no routes, default normalization and problem+json rejections.
    pub fn builder() -> RouterBuilder<B, RB, E> {
        RouterBuilder::default()
    }
}

impl<B, RB, E> RouterBuilder<B, RB, E> {
    /// Adds a route. Declaration order is the last tie-break of the priority.
    pub fn route(mut self, route: Route<B, RB, E>) -> Self {
        self.routes.push(route);
        self
    }

    /// Adds several routes.
    pub fn routes(mut self, routes: impl IntoIterator<Item = Route<B, RB, E>>) -> Self {
        self.routes.extend(routes);
        self
    }

    /// The service for requests no route matches (instead of a 404). It receives the
    /// normalized path, like a route would.
    pub fn fallback<S>(mut self, service: S) -> Self
    where
        S: Service<Request<B>, Response = Response<RB>, Error = E> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        self.fallback = Some(BoxCloneSyncService::new(service));
        self
    }

    /// Sets the path normalization.
    pub fn normalization(mut self, normalization: Normalization) -> Self {
        self.normalization = normalization;
        self
    }

    /// Replaces how 400, 404 and 405 rejections are rendered.
    pub fn with_rejection_response(mut self, responder: impl RejectionResponder) -> Self {
        self.responder = SharedResponder::new(responder);
        self
    }

    /// Validates every route and builds the router.
    pub fn build(self) -> Result<Router<B, RB, E>, ConfigError> {
        let mut metas = Vec::with_capacity(self.routes.len());
        let mut routes = Vec::with_capacity(self.routes.len());
        for route in self.routes {
            let (meta, compiled) = route.compile()?;
            check_normal(&meta.path, &self.normalization, &compiled.name.0)?;
            metas.push(meta);
            routes.push(compiled);
        }
        Ok(Router {
            inner: Arc::new(Inner {
                table: Table::new(metas)?,
                routes,
                normalization: self.normalization,
                responder: self.responder,
            }),
            fallback: self.fallback,
        })
    }

    /// Builds a [`RouterLayer`]: the router in front of an inner service, which gets
    /// every request no route matches (the inner service replaces any fallback).
    pub fn layer(self) -> Result<RouterLayer<B, RB, E>, ConfigError> {
        Ok(RouterLayer {
            router: self.build()?,
        })
    }
}

/// The router as a layer: unmatched requests go to the wrapped service.
///
/// ```
/// use gateway_layers_router::{Route, Router};
/// use http::{Request, Response};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # tokio_test();
/// # fn tokio_test() { tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let api = service_fn(|_req: Request<String>| async {
///     Ok::<_, std::convert::Infallible>(Response::new("api".to_string()))
/// });
/// let app = service_fn(|_req: Request<String>| async {
///     Ok::<_, std::convert::Infallible>(Response::new("app".to_string()))
/// });
/// let layer = Router::builder()
///     .route(Route::new("api").prefix("/api").service(api))
///     .layer()
///     .unwrap();
/// let svc = ServiceBuilder::new().layer(layer).service(app);
/// let response = svc.oneshot(Request::new(String::new())).await.unwrap();
/// assert_eq!(response.into_body().into_inner().unwrap(), "app");
/// # }) }
/// ```
pub struct RouterLayer<B, RB, E = Infallible> {
    router: Router<B, RB, E>,
}

impl<B, RB, E> Clone for RouterLayer<B, RB, E> {
    fn clone(&self) -> Self {
        Self {
            router: self.router.clone(),
        }
    }
}

impl<B, RB, E> fmt::Debug for RouterLayer<B, RB, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterLayer")
            .field("router", &self.router)
            .finish()
    }
}

impl<S, B, RB, E> Layer<S> for RouterLayer<B, RB, E>
where
    S: Service<Request<B>, Response = Response<RB>, Error = E> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    type Service = Router<B, RB, E>;

    fn layer(&self, inner: S) -> Self::Service {
        Router {
            inner: self.router.inner.clone(),
            fallback: Some(BoxCloneSyncService::new(inner)),
        }
    }
}

pin_project! {
    /// The response future of [`Router`].
    pub struct ResponseFuture<B, RB, E> {
        #[pin]
        kind: Kind<B, RB, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B, RB, E> {
        Ready { response: Option<Response<GatewayBody<RB>>> },
        Inner { #[pin] future: Oneshot<RouteService<B, RB, E>, Request<B>> },
    }
}

impl<B, RB, E> fmt::Debug for ResponseFuture<B, RB, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<B, RB, E> ResponseFuture<B, RB, E> {
    fn ready(response: Response<GatewayBody<RB>>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    fn inner(service: RouteService<B, RB, E>, request: Request<B>) -> Self {
        Self {
            kind: Kind::Inner {
                future: service.oneshot(request),
            },
        }
    }
}

impl<B, RB, E> Future for ResponseFuture<B, RB, E> {
    type Output = Result<Response<GatewayBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            KindProj::Inner { future } => match future.poll(cx) {
                Poll::Ready(Ok(response)) => Poll::Ready(Ok(response.map(GatewayBody::inner))),
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// What the pure part of `call` decided.
enum Decision {
    Reject(Rejection),
    Route {
        idx: usize,
        forward: Option<String>,
        params: Option<PathParams>,
        host_fix: Option<HeaderValue>,
    },
    Fallback {
        forward: Option<String>,
        host_fix: Option<HeaderValue>,
    },
}

fn bad_request(error: PathError) -> Rejection {
    Rejection::new(StatusCode::BAD_REQUEST, "router", error.code()).with_detail(error.detail())
}

impl<B, RB, E> Router<B, RB, E> {
    fn decide(&self, request: &Request<B>) -> Decision {
        let inner = &*self.inner;
        let uri = request.uri();
        // The host: the absolute-form target's authority wins over `Host` (RFC 9112
        // 3.2.2); a differing `Host` header is then rewritten to it.
        let mut host_fix = None;
        let host = if let Some(authority) = uri.authority() {
            // `Host` is host[:port]: any userinfo (`user:pass@`) stays out of it.
            let host_port = authority
                .as_str()
                .rsplit_once('@')
                .map_or(authority.as_str(), |(_, hp)| hp);
            let header = request.headers().get(HOST);
            if header.is_none_or(|h| h.as_bytes() != host_port.as_bytes()) {
                host_fix = HeaderValue::from_str(host_port).ok();
            }
            match normalize_host(authority.host()) {
                Ok(h) => Some((h.name, authority.port_u16())),
                Err(e) => return Decision::Reject(bad_request(e)),
            }
        } else {
            match request.headers().get(HOST).map(HeaderValue::to_str) {
                None => None,
                Some(Ok(raw)) => match normalize_host(raw) {
                    Ok(h) => Some((h.name, h.port)),
                    Err(e) => return Decision::Reject(bad_request(e)),
                },
                Some(Err(_)) => return Decision::Reject(bad_request(PathError::InvalidHost)),
            }
        };
        let path = match inner.normalization.path(uri.path()) {
            Ok(path) => path,
            Err(e) => return Decision::Reject(bad_request(e)),
        };
        let lookup = Lookup {
            method: request.method(),
            host: host.as_ref().map(|(name, _)| &**name),
            port: host.as_ref().and_then(|(_, port)| *port),
            path: &path,
            query: uri.query(),
            headers: request.headers(),
        };
        match inner.table.lookup(&lookup) {
            Outcome::Found(idx) => {
                let route = &inner.routes[idx];
                let meta = inner.table.route(idx);
                let params = meta.path.captures(&path).map(PathParams);
                let forwarded: Cow<'_, str> = if let Some(rewrite) = &route.rewrite {
                    Cow::Owned(rewrite.render(params.as_ref().unwrap_or(&route.no_params)))
                } else if let Some(prefix) = route
                    .strip_prefix
                    .as_deref()
                    .filter(|p| prefix_matches(p, &path))
                {
                    match &path[prefix.len()..] {
                        "" => Cow::Borrowed("/"),
                        rest => Cow::Owned(rest.to_owned()),
                    }
                } else {
                    path
                };
                let forward = (*forwarded != *uri.path()).then(|| forwarded.into_owned());
                tracing::debug!(
                    name: "gateway.router.matched",
                    target: "gateway_layers::router",
                    route = &*route.name.0,
                    "route matched"
                );
                Decision::Route {
                    idx,
                    forward,
                    params,
                    host_fix,
                }
            }
            Outcome::MethodNotAllowed(allow) => {
                let list = allow
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut rejection = Rejection::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "router",
                    "method_not_allowed",
                )
                .with_detail(format!("allowed methods: {list}"));
                if let Ok(value) = HeaderValue::from_str(&list) {
                    rejection = rejection.with_header(ALLOW, value);
                }
                Decision::Reject(rejection)
            }
            Outcome::NotFound if self.fallback.is_some() => Decision::Fallback {
                forward: (*path != *uri.path()).then(|| path.into_owned()),
                host_fix,
            },
            Outcome::NotFound => Decision::Reject(
                Rejection::new(StatusCode::NOT_FOUND, "router", "no_route")
                    .with_detail("no route matches the request"),
            ),
        }
    }

    fn reject(&self, rejection: Rejection) -> ResponseFuture<B, RB, E> {
        tracing::debug!(
            name: "gateway.router.rejected",
            target: "gateway_layers::router",
            code = rejection.code(),
            status = rejection.status().as_u16(),
            "request refused by the router"
        );
        gateway_layers_core::metrics::counter(
            "gateway.router.rejected",
            1,
            &[("code", rejection.code())],
        );
        ResponseFuture::ready(self.inner.responder.respond(rejection))
    }
}

/// A path matcher whose literal text normalization would change can never match: refuse
/// it at build time (e.g. `/Admin` with lowercasing, `/a//b` with slash merging).
fn check_normal(
    path: &crate::matcher::PathPattern,
    normalization: &Normalization,
    route: &str,
) -> Result<(), ConfigError> {
    use crate::matcher::{PathPattern, Segment};
    let literals: Vec<String> = match path {
        PathPattern::Exact(p) => vec![p.to_string()],
        PathPattern::Prefix(p) => vec![format!("{p}/")],
        PathPattern::Template(t) => t
            .segments
            .iter()
            .filter_map(|s| match s {
                Segment::Literal(l) => Some(format!("/{l}")),
                _ => None,
            })
            .collect(),
        PathPattern::Regex(_) | PathPattern::Any => Vec::new(),
    };
    for literal in literals {
        match normalization.path(&literal) {
            Ok(normal) if normal == literal => {}
            Ok(normal) => {
                return Err(ConfigError::invalid(
                    format!("router.routes[{route}].path"),
                    format!(
                        "{literal:?} is not normalized (it would be {normal:?}) and could never match"
                    ),
                ));
            }
            Err(e) => {
                return Err(ConfigError::invalid(
                    format!("router.routes[{route}].path"),
                    format!("{literal:?} could never match: {e}"),
                ));
            }
        }
    }
    Ok(())
}

/// Replaces the path of `request`, keeping the query; the new path is normalized, so
/// it is a valid path.
fn set_path<B>(request: &mut Request<B>, path: &str) -> Result<(), Rejection> {
    let pq = match request.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.path_and_query =
        Some(PathAndQuery::try_from(pq).map_err(|_| bad_request(PathError::InvalidEscape))?);
    *request.uri_mut() =
        Uri::from_parts(parts).map_err(|_| bad_request(PathError::InvalidEscape))?;
    Ok(())
}

fn set_host<B>(request: &mut Request<B>, host: HeaderValue) {
    if request.uri().authority().is_some()
        && let Ok(authority) = Authority::try_from(host.as_bytes())
    {
        let mut parts = std::mem::take(request.uri_mut()).into_parts();
        parts.authority = Some(authority);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request.headers_mut().insert(HOST, host);
}

impl<B, RB, E> Service<Request<B>> for Router<B, RB, E>
where
    B: Send + 'static,
    RB: 'static,
    E: 'static,
{
    type Response = Response<GatewayBody<RB>>;
    type Error = E;
    type Future = ResponseFuture<B, RB, E>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let raw = RawPath(Arc::from(request.uri().path()));
        let decision = self.decide(&request);
        request.extensions_mut().insert(raw);
        match decision {
            Decision::Reject(rejection) => self.reject(rejection),
            Decision::Fallback { forward, host_fix } => {
                if let Some(host) = host_fix {
                    request.headers_mut().insert(HOST, host);
                }
                if let Some(path) = forward
                    && let Err(rejection) = set_path(&mut request, &path)
                {
                    return self.reject(rejection);
                }
                match &self.fallback {
                    Some(fallback) => ResponseFuture::inner(fallback.clone(), request),
                    None => {
                        self.reject(Rejection::new(StatusCode::NOT_FOUND, "router", "no_route"))
                    }
                }
            }
            Decision::Route {
                idx,
                forward,
                params,
                host_fix,
            } => {
                let route = &self.inner.routes[idx];
                if let Some(host) = host_fix {
                    request.headers_mut().insert(HOST, host);
                }
                if let Some(path) = forward
                    && let Err(rejection) = set_path(&mut request, &path)
                {
                    return self.reject(rejection);
                }
                if let Some(host) = &route.host {
                    set_host(&mut request, host.clone());
                }
                let extensions = request.extensions_mut();
                extensions.insert(route.name.clone());
                extensions.insert(params.unwrap_or_else(|| route.no_params.clone()));
                let service = match &route.target {
                    CompiledTarget::Service(service) => service.clone(),
                    CompiledTarget::Split(split) => {
                        let i = split.choose(&RequestView::new(&request));
                        request.extensions_mut().insert(split.names[i].clone());
                        split.services[i].clone()
                    }
                };
                ResponseFuture::inner(service, request)
            }
        }
    }
}
