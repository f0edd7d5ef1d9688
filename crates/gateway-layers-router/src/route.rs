//! Routes as written in code: matchers, actions and the target service.

use std::{fmt, sync::Arc};

use gateway_layers_core::{
    ConfigError,
    ext::{PathParams, RouteName},
};
use http::{HeaderValue, Method, Request, Response};
use tower::util::BoxCloneSyncService;
use tower_service::Service;

use crate::{
    RouteService,
    matcher::{
        HeaderRule, HostPattern, MethodSet, PathPattern, QueryRule, Template, ValueRule,
        anchored_regex, parse_prefix,
    },
    split::{CompiledSplit, Split},
    table::RouteMeta,
};

/// How a route matches the path (after normalization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The whole path, exactly (`/health` does not match `/health/`).
    Exact(String),
    /// A segment-aware prefix: `/api/dev` matches `/api/dev`, `/api/dev/` and
    /// `/api/dev/x`, never `/api/developer`.
    Prefix(String),
    /// A template with captures: `/users/{id}`, `/files/{*rest}` (matchit syntax;
    /// parameters are whole segments).
    Template(String),
    /// A regex matched against the whole path; named groups become captures.
    Regex(String),
}

/// What a header or query parameter must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueMatch {
    /// One of its values equals this (headers: byte for byte; query: after decoding).
    Exact(String),
    /// One of its values matches this regex (anchored: the whole value).
    Regex(String),
    /// It is present, with any value.
    Present,
    /// It is absent.
    Absent,
}

/// What the route does to the `Host` header before calling its service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HostAction {
    /// Forward the client's host (the default).
    #[default]
    Preserve,
    /// Replace it (and the authority of an absolute-form target) with this value.
    Rewrite(String),
}

enum Target<B, RB, E> {
    Service(RouteService<B, RB, E>),
    Split(Split<B, RB, E>),
}

/// One route: matchers, actions and the service (with its own layers) it calls.
///
/// Errors (bad host, template, regex, header name) are reported by
/// [`RouterBuilder::build`](crate::RouterBuilder::build), never here.
pub struct Route<B, RB, E> {
    pub(crate) name: Arc<str>,
    hosts: Vec<String>,
    path: Option<PathMatch>,
    methods: Vec<Method>,
    headers: Vec<(String, ValueMatch)>,
    query: Vec<(String, ValueMatch)>,
    strip_prefix: Option<String>,
    rewrite: Option<String>,
    host: HostAction,
    target: Option<Target<B, RB, E>>,
}

impl<B, RB, E> fmt::Debug for Route<B, RB, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .field("path", &self.path)
            .field("methods", &self.methods)
            .field("headers", &self.headers)
            .field("query", &self.query)
            .field("strip_prefix", &self.strip_prefix)
            .field("rewrite", &self.rewrite)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl<B, RB, E> Route<B, RB, E> {
    /// A route named `name` (found in [`RouteName`] and in logs) that matches every
    /// request until matchers are added.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            hosts: Vec::new(),
            path: None,
            methods: Vec::new(),
            headers: Vec::new(),
            query: Vec::new(),
            strip_prefix: None,
            rewrite: None,
            host: HostAction::Preserve,
            target: None,
        }
    }

    /// Adds an accepted host: `example.com`, `example.com:8443`, `*.example.com`,
    /// `api.*` or `*`. Several hosts are alternatives.
    #[must_use]
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.hosts.push(host.into());
        self
    }

    /// Sets the path matcher.
    #[must_use]
    pub fn path(mut self, path: PathMatch) -> Self {
        self.path = Some(path);
        self
    }

    /// Matches the exact path.
    #[must_use]
    pub fn exact(self, path: impl Into<String>) -> Self {
        self.path(PathMatch::Exact(path.into()))
    }

    /// Matches a segment-aware prefix.
    #[must_use]
    pub fn prefix(self, path: impl Into<String>) -> Self {
        self.path(PathMatch::Prefix(path.into()))
    }

    /// Matches a template such as `/users/{id}`.
    #[must_use]
    pub fn template(self, path: impl Into<String>) -> Self {
        self.path(PathMatch::Template(path.into()))
    }

    /// Matches a regex over the whole path.
    #[must_use]
    pub fn regex(self, path: impl Into<String>) -> Self {
        self.path(PathMatch::Regex(path.into()))
    }

    /// Adds an accepted method (`GET` implies `HEAD`).
    #[must_use]
    pub fn method(mut self, method: Method) -> Self {
        self.methods.push(method);
        self
    }

    /// Adds accepted methods.
    #[must_use]
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods.extend(methods);
        self
    }

    /// Requires header `name` to satisfy `rule`.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, rule: ValueMatch) -> Self {
        self.headers.push((name.into(), rule));
        self
    }

    /// Requires query parameter `name` to satisfy `rule`.
    #[must_use]
    pub fn query(mut self, name: impl Into<String>, rule: ValueMatch) -> Self {
        self.query.push((name.into(), rule));
        self
    }

    /// Removes `prefix` from the forwarded path when it is a segment prefix of it
    /// (`/api` turns `/api/users` into `/users` and `/api` into `/`).
    #[must_use]
    pub fn strip_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.strip_prefix = Some(prefix.into());
        self
    }

    /// Replaces the forwarded path with a template over the route's captures, e.g.
    /// `/v2/users/{id}`.
    #[must_use]
    pub fn rewrite(mut self, template: impl Into<String>) -> Self {
        self.rewrite = Some(template.into());
        self
    }

    /// Sets what happens to the `Host` header.
    #[must_use]
    pub fn host_action(mut self, action: HostAction) -> Self {
        self.host = action;
        self
    }

    /// Sends matching requests to `service`.
    #[must_use]
    pub fn service<S>(mut self, service: S) -> Self
    where
        S: Service<Request<B>, Response = Response<RB>, Error = E> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        self.target = Some(Target::Service(BoxCloneSyncService::new(service)));
        self
    }

    /// Sends matching requests to an already boxed service.
    #[must_use]
    pub fn boxed_service(mut self, service: RouteService<B, RB, E>) -> Self {
        self.target = Some(Target::Service(service));
        self
    }

    /// Splits matching requests between weighted services.
    #[must_use]
    pub fn split(mut self, split: Split<B, RB, E>) -> Self {
        self.target = Some(Target::Split(split));
        self
    }

    pub(crate) fn compile(self) -> Result<(RouteMeta, CompiledRoute<B, RB, E>), ConfigError> {
        let field = |what: &str| format!("router.routes[{}].{what}", self.name);
        let hosts = self
            .hosts
            .iter()
            .map(|h| HostPattern::parse(h))
            .collect::<Result<Vec<_>, _>>()?;
        let path = match &self.path {
            None => PathPattern::Any,
            Some(PathMatch::Exact(p)) => {
                if !p.starts_with('/') {
                    return Err(ConfigError::invalid(
                        field("path"),
                        "a path starts with `/`",
                    ));
                }
                PathPattern::Exact(p.as_str().into())
            }
            Some(PathMatch::Prefix(p)) => PathPattern::Prefix(parse_prefix(p)?),
            Some(PathMatch::Template(t)) => PathPattern::Template(Template::parse(t)?),
            Some(PathMatch::Regex(r)) => PathPattern::Regex(anchored_regex(&field("path"), r)?),
        };
        let rule = |what: &str, m: &ValueMatch| -> Result<ValueRule, ConfigError> {
            Ok(match m {
                ValueMatch::Exact(v) => ValueRule::Exact(v.as_bytes().into()),
                ValueMatch::Regex(r) => ValueRule::Regex(anchored_regex(&field(what), r)?),
                ValueMatch::Present => ValueRule::Present,
                ValueMatch::Absent => ValueRule::Absent,
            })
        };
        let headers = self
            .headers
            .iter()
            .map(|(name, m)| {
                Ok(HeaderRule {
                    name: gateway_layers_core::headers::header_name(name)?,
                    rule: rule("headers", m)?,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let query = self
            .query
            .iter()
            .map(|(name, m)| {
                if name.is_empty() {
                    return Err(ConfigError::invalid(field("query"), "empty parameter name"));
                }
                Ok(QueryRule {
                    name: name.as_str().into(),
                    rule: rule("query", m)?,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        if self.strip_prefix.is_some() && self.rewrite.is_some() {
            return Err(ConfigError::invalid(
                field("rewrite"),
                "use strip_prefix or rewrite, not both",
            ));
        }
        let strip_prefix = self.strip_prefix.as_deref().map(parse_prefix).transpose()?;
        let rewrite = self
            .rewrite
            .as_deref()
            .map(|t| Rewrite::parse(t, &path.capture_names(), &field("rewrite")))
            .transpose()?;
        let host = match &self.host {
            HostAction::Preserve => None,
            HostAction::Rewrite(h) => {
                HostPattern::parse(h)
                    .ok()
                    .filter(|p| matches!(p, HostPattern::Exact { .. }))
                    .ok_or_else(|| ConfigError::invalid(field("host_action"), "not a host name"))?;
                Some(gateway_layers_core::headers::header_value("host", h)?)
            }
        };
        let target = match self.target {
            None => {
                return Err(ConfigError::invalid(
                    field("service"),
                    "the route has no service",
                ));
            }
            Some(Target::Service(s)) => CompiledTarget::Service(s),
            Some(Target::Split(split)) => CompiledTarget::Split(Box::new(split.compile()?)),
        };
        let meta = RouteMeta {
            hosts,
            path,
            methods: MethodSet::new(self.methods),
            headers,
            query,
        };
        let compiled = CompiledRoute {
            name: RouteName(self.name),
            no_params: PathParams::default(),
            strip_prefix,
            rewrite,
            host,
            target,
        };
        Ok((meta, compiled))
    }
}

pub(crate) enum CompiledTarget<B, RB, E> {
    Service(RouteService<B, RB, E>),
    Split(Box<CompiledSplit<B, RB, E>>),
}

pub(crate) struct CompiledRoute<B, RB, E> {
    pub(crate) name: RouteName,
    pub(crate) no_params: PathParams,
    pub(crate) strip_prefix: Option<Box<str>>,
    pub(crate) rewrite: Option<Rewrite>,
    pub(crate) host: Option<HeaderValue>,
    pub(crate) target: CompiledTarget<B, RB, E>,
}

/// A path rewrite template: literal text and `{capture}` references.
#[derive(Debug, Clone)]
pub(crate) struct Rewrite {
    parts: Vec<RewritePart>,
}

#[derive(Debug, Clone)]
enum RewritePart {
    Literal(Box<str>),
    Capture(Box<str>),
}

impl Rewrite {
    fn parse(text: &str, captures: &[String], field: &str) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError::invalid(field.to_owned(), reason);
        if !text.starts_with('/') {
            return Err(bad("a rewrite starts with `/`".into()));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(RewritePart::Literal(rest[..open].into()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| bad("unclosed `{`".into()))?
                + open;
            let name = rest[open + 1..close].trim_start_matches('*');
            if !captures.iter().any(|c| c == name) {
                return Err(bad(format!("`{{{name}}}` is not a capture of the route")));
            }
            parts.push(RewritePart::Capture(name.into()));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(bad("unopened `}`".into()));
        }
        let valid = text
            .bytes()
            .all(|b| crate::normalize::is_path_char(b) || matches!(b, b'%' | b'{' | b'}'));
        if !valid {
            return Err(bad("a rewrite may only hold path characters".into()));
        }
        if !rest.is_empty() {
            parts.push(RewritePart::Literal(rest.into()));
        }
        Ok(Self { parts })
    }

    pub(crate) fn render(&self, params: &PathParams) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                RewritePart::Literal(l) => out.push_str(l),
                RewritePart::Capture(name) => out.push_str(params.get(name).unwrap_or("")),
            }
        }
        out
    }
}
