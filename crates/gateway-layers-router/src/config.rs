//! Routes from a configuration file (feature `serde`). Services are named in the file
//! and supplied by the caller, each already wrapped in its own layers.
//!
//! ```
//! use std::collections::HashMap;
//! use gateway_layers_router::{RouteService, config::RouterConfig};
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceExt, service_fn, util::BoxCloneSyncService};
//!
//! let yaml = r#"
//! normalization: { merge_slashes: true, encoded_slash: reject }
//! routes:
//!   - name: orders
//!     hosts: ["api.example.com"]
//!     path: { prefix: /orders }
//!     methods: [GET, POST]
//!     headers: [{ name: x-tenant, present: true }]
//!     service: orders
//!   - name: checkout
//!     path: { exact: /checkout }
//!     split:
//!       key: !header x-user
//!       override_header: x-canary
//!       backends:
//!         - { service: checkout-v1, weight: 95, name: stable }
//!         - { service: checkout-v2, weight: 5, name: canary }
//! "#;
//! let config: RouterConfig = serde_norway::from_str(yaml).unwrap();
//! let named = |name: &'static str| -> RouteService<String, String, std::convert::Infallible> {
//!     BoxCloneSyncService::new(service_fn(move |_req: Request<String>| async move {
//!         Ok(Response::new(name.to_string()))
//!     }))
//! };
//! let services = HashMap::from([
//!     ("orders".to_string(), named("orders")),
//!     ("checkout-v1".to_string(), named("v1")),
//!     ("checkout-v2".to_string(), named("v2")),
//! ]);
//! let router = config.build(&services).unwrap();
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let request = Request::get("/checkout").header("x-canary", "canary").body(String::new()).unwrap();
//! let response = router.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.into_body().into_inner().unwrap(), "v2");
//! # });
//! ```

use std::collections::HashMap;

use gateway_layers_core::{ClientIpResolver, ConfigError, key::KeySpec};
use http::Method;

use crate::{
    HostAction, Normalization, PathMatch, Route, RouteService, Router, RouterBuilder, Split,
    ValueMatch,
};

/// A router as written in a configuration file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Path normalization.
    #[serde(default)]
    pub normalization: Normalization,
    /// The routes, in declaration order.
    pub routes: Vec<RouteConfig>,
    /// The service for requests no route matches (default: 404).
    #[serde(default)]
    pub fallback: Option<String>,
}

/// One route as written in a configuration file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The route's name ([`RouteName`](gateway_layers_core::ext::RouteName)).
    pub name: String,
    /// Accepted hosts (any when empty).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The path matcher (any path when absent).
    #[serde(default)]
    pub path: Option<PathConfig>,
    /// Accepted methods (any when empty).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header requirements.
    #[serde(default)]
    pub headers: Vec<ValueMatchConfig>,
    /// Query parameter requirements.
    #[serde(default)]
    pub query: Vec<ValueMatchConfig>,
    /// A prefix removed from the forwarded path.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// A path rewrite template over the route's captures.
    #[serde(default)]
    pub rewrite: Option<String>,
    /// A host that replaces the client's.
    #[serde(default)]
    pub host_rewrite: Option<String>,
    /// The named service (exactly one of `service` and `split`).
    #[serde(default)]
    pub service: Option<String>,
    /// A weighted split.
    #[serde(default)]
    pub split: Option<SplitConfig>,
}

/// A path matcher: exactly one of `exact`, `prefix`, `template`, `regex`
/// (see [`PathMatch`]).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathConfig {
    /// [`PathMatch::Exact`].
    #[serde(default)]
    pub exact: Option<String>,
    /// [`PathMatch::Prefix`].
    #[serde(default)]
    pub prefix: Option<String>,
    /// [`PathMatch::Template`].
    #[serde(default)]
    pub template: Option<String>,
    /// [`PathMatch::Regex`].
    #[serde(default)]
    pub regex: Option<String>,
}

impl PathConfig {
    fn to_match(&self, field: String) -> Result<PathMatch, ConfigError> {
        match (&self.exact, &self.prefix, &self.template, &self.regex) {
            (Some(p), None, None, None) => Ok(PathMatch::Exact(p.clone())),
            (None, Some(p), None, None) => Ok(PathMatch::Prefix(p.clone())),
            (None, None, Some(p), None) => Ok(PathMatch::Template(p.clone())),
            (None, None, None, Some(p)) => Ok(PathMatch::Regex(p.clone())),
            _ => Err(ConfigError::invalid(
                field,
                "exactly one of `exact`, `prefix`, `template`, `regex`",
            )),
        }
    }
}

/// A header or query requirement: `name` plus exactly one of `exact`, `regex`,
/// `present` (`true`: present, `false`: absent).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueMatchConfig {
    /// The header or parameter name.
    pub name: String,
    /// An exact value.
    #[serde(default)]
    pub exact: Option<String>,
    /// An anchored regex.
    #[serde(default)]
    pub regex: Option<String>,
    /// Presence (`true`) or absence (`false`).
    #[serde(default)]
    pub present: Option<bool>,
}

/// A weighted split as written in a configuration file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// The backends.
    pub backends: Vec<BackendConfig>,
    /// The sticky key (none: not sticky).
    #[serde(default)]
    pub key: Option<KeySpec>,
    /// The canary override header.
    #[serde(default)]
    pub override_header: Option<String>,
    /// The canary override cookie.
    #[serde(default)]
    pub override_cookie: Option<String>,
}

/// One backend of a split.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// The named service.
    pub service: String,
    /// The relative weight.
    pub weight: u32,
    /// The backend's name for overrides and [`SplitBackend`](crate::SplitBackend)
    /// (default: the service name).
    #[serde(default)]
    pub name: Option<String>,
}

impl ValueMatchConfig {
    fn rule(&self, field: &str) -> Result<ValueMatch, ConfigError> {
        match (&self.exact, &self.regex, self.present) {
            (Some(v), None, None) => Ok(ValueMatch::Exact(v.clone())),
            (None, Some(r), None) => Ok(ValueMatch::Regex(r.clone())),
            (None, None, Some(true)) => Ok(ValueMatch::Present),
            (None, None, Some(false)) => Ok(ValueMatch::Absent),
            _ => Err(ConfigError::invalid(
                format!("{field}.{}", self.name),
                "exactly one of `exact`, `regex`, `present`",
            )),
        }
    }
}

impl RouterConfig {
    /// Builds the router with `services` and the default client-IP resolver (for
    /// `client_ip` split keys).
    pub fn build<B: 'static, RB: 'static, E: 'static>(
        &self,
        services: &HashMap<String, RouteService<B, RB, E>>,
    ) -> Result<Router<B, RB, E>, ConfigError> {
        self.builder(services, &ClientIpResolver::default())?
            .build()
    }

    /// A builder with the configured routes, to which code can add more routes, a
    /// rejection responder, or turn into a layer.
    pub fn builder<B: 'static, RB: 'static, E: 'static>(
        &self,
        services: &HashMap<String, RouteService<B, RB, E>>,
        resolver: &ClientIpResolver,
    ) -> Result<RouterBuilder<B, RB, E>, ConfigError> {
        let lookup = |field: String, name: &str| {
            services.get(name).cloned().ok_or_else(|| {
                ConfigError::invalid(field, format!("no service named {name:?} was supplied"))
            })
        };
        let mut builder = Router::builder().normalization(self.normalization);
        if let Some(name) = &self.fallback {
            builder = builder.fallback(lookup("router.fallback".into(), name)?);
        }
        for rc in &self.routes {
            let field = |what: &str| format!("router.routes[{}].{what}", rc.name);
            let mut route = Route::new(rc.name.as_str());
            for host in &rc.hosts {
                route = route.host(host.as_str());
            }
            if let Some(path) = &rc.path {
                route = route.path(path.to_match(field("path"))?);
            }
            for method in &rc.methods {
                let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .map_err(|_| ConfigError::invalid(field("methods"), "not a method"))?;
                route = route.method(method);
            }
            for h in &rc.headers {
                route = route.header(h.name.as_str(), h.rule(&field("headers"))?);
            }
            for q in &rc.query {
                route = route.query(q.name.as_str(), q.rule(&field("query"))?);
            }
            if let Some(p) = &rc.strip_prefix {
                route = route.strip_prefix(p.as_str());
            }
            if let Some(r) = &rc.rewrite {
                route = route.rewrite(r.as_str());
            }
            if let Some(h) = &rc.host_rewrite {
                route = route.host_action(HostAction::Rewrite(h.clone()));
            }
            route = match (&rc.service, &rc.split) {
                (Some(name), None) => route.boxed_service(lookup(field("service"), name)?),
                (None, Some(split)) => {
                    let mut s = Split::new();
                    for b in &split.backends {
                        let service = lookup(field("split"), &b.service)?;
                        let name = b.name.as_deref().unwrap_or(&b.service);
                        s = s.backend(name, b.weight, service);
                    }
                    if let Some(key) = &split.key {
                        s = s.sticky_shared(key.build(resolver)?);
                    }
                    if let Some(h) = &split.override_header {
                        s = s.override_header(h.as_str());
                    }
                    if let Some(c) = &split.override_cookie {
                        s = s.override_cookie(c.as_str());
                    }
                    route.split(s)
                }
                _ => {
                    return Err(ConfigError::invalid(
                        field("service"),
                        "exactly one of `service` and `split`",
                    ));
                }
            };
            builder = builder.route(route);
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{service_fn, util::BoxCloneSyncService};

    fn services() -> HashMap<String, RouteService<String, String, Infallible>> {
        let svc = BoxCloneSyncService::new(service_fn(|_r: http::Request<String>| async {
            Ok(http::Response::new(String::new()))
        }));
        HashMap::from([("a".to_string(), svc)])
    }

    fn build(yaml: &str) -> Result<(), ConfigError> {
        let config: RouterConfig = serde_norway::from_str(yaml).unwrap();
        config.build(&services()).map(|_| ())
    }

    #[test]
    fn valid_and_invalid_configs() {
        assert!(build("routes: [{ name: r, path: { template: '/u/{id}' }, rewrite: '/v/{id}', service: a }]").is_ok());
        assert!(
            build(
                "fallback: a\nroutes: [{ name: r, hosts: ['*.x.com'], methods: [get], service: a }]"
            )
            .is_ok()
        );
        assert!(build("routes: [{ name: r, service: missing }]").is_err());
        assert!(build("fallback: missing\nroutes: []").is_err());
        assert!(build("routes: [{ name: r }]").is_err());
        assert!(
            build("routes: [{ name: r, path: { exact: /a, prefix: /b }, service: a }]").is_err()
        );
        assert!(
            build(
                "routes: [{ name: r, headers: [{ name: x, exact: a, present: true }], service: a }]"
            )
            .is_err()
        );
        assert!(build("routes: [{ name: r, methods: ['bad method'], service: a }]").is_err());
        assert!(build("routes: [{ name: r, service: a, split: { backends: [{ service: a, weight: 1 }] } }]").is_err());
        assert!(build("routes: [{ name: r, split: { backends: [{ service: a, weight: 1 }], key: !header x-user } }]").is_ok());
        assert!(serde_norway::from_str::<RouterConfig>("routes: []\nunknown: 1").is_err());
        let n: RouterConfig = serde_norway::from_str(
            "normalization: { encoded_slash: decode, lowercase: true }\nroutes: []",
        )
        .unwrap();
        assert_eq!(n.normalization.encoded_slash, crate::EncodedSlash::Decode);
        assert!(n.normalization.merge_slashes);
    }
}
