//! API composition for backends-for-frontends: call several upstreams in parallel (or
//! in sequence where one needs another's answer), each through its own Tower stack, and
//! assemble one JSON document.
//!
//! A part that fails or times out leaves a *partial* result: its value is missing and
//! `_meta` says what happened. A part marked [`required`](Part::required) fails the
//! whole composition instead, with a 504 (timeout) or 502 (anything else) [`Rejection`].
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use gateway_layers_compose::{Compose, Part, part_service};
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::service_fn;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Stand-ins for upstream clients; in a BFF these are proxy or HTTP client stacks
//! // with their own timeout, retry and breaker layers.
//! let users = part_service(service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(r#"{"id":7,"name":"Ada"}"#))))
//! }));
//! let orders = part_service(service_fn(|req: Request<Full<Bytes>>| async move {
//!     let body = format!(r#"[{{"path":"{}"}}]"#, req.uri().path());
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
//! }));
//!
//! let compose = Compose::<()>::builder()
//!     .part(Part::get("user", users, |_| Some("/users/7".into())).required())
//!     // Runs once `user` is known and uses its id.
//!     .part(Part::get("orders", orders, |inputs| {
//!         Some(format!("/orders?user={}", inputs.get("user")?["id"]))
//!     }).after("user"))
//!     .build()
//!     .unwrap();
//!
//! let composition = compose.run(&()).await.unwrap();
//! assert_eq!(composition.value("user").unwrap()["name"], "Ada");
//! assert_eq!(composition.value("orders").unwrap()[0]["path"], "/orders");
//! let json = composition.into_json();
//! assert_eq!(json["_meta"]["partial"], false);
//! # }
//! ```
#![forbid(unsafe_code)]

use std::{collections::HashMap, fmt, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use gateway_layers_core::{BoxError, ConfigError, Rejection};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tower::{ServiceExt, util::BoxCloneSyncService};

/// The request a part sends.
pub type PartRequest = Request<Full<Bytes>>;

/// The response body a part service returns, type-erased.
pub type PartBody = UnsyncBoxBody<Bytes, BoxError>;

/// A type-erased, cloneable part service: build it with [`part_service`].
pub type PartService = BoxCloneSyncService<PartRequest, Response<PartBody>, BoxError>;

/// Default timeout of a part: 2 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Default limit of a part's response body: 1 MiB. A longer body is a part failure.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Erases any Tower HTTP service (a proxy, a client, a stack with timeout / retry /
/// breaker layers) into a [`PartService`].
pub fn part_service<S, B>(service: S) -> PartService
where
    S: tower::Service<PartRequest, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    BoxCloneSyncService::new(
        service
            .map_response(|response: Response<B>| {
                response.map(|body| UnsyncBoxBody::new(body.map_err(Into::into)))
            })
            .map_err(Into::into),
    )
}

type RequestFn<T> = Arc<dyn Fn(&Inputs<'_, T>) -> Option<PartRequest> + Send + Sync>;

/// One upstream call of a composition.
pub struct Part<T> {
    name: Arc<str>,
    service: PartService,
    request: RequestFn<T>,
    required: bool,
    timeout: Duration,
    after: Vec<Arc<str>>,
}

impl<T> Clone for Part<T> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            service: self.service.clone(),
            request: self.request.clone(),
            required: self.required,
            timeout: self.timeout,
            after: self.after.clone(),
        }
    }
}

impl<T> fmt::Debug for Part<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Part")
            .field("name", &self.name)
            .field("required", &self.required)
            .field("timeout", &self.timeout)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl<T> Part<T> {
    /// A part named `name` (the key of its value in the result) calling `service` with
    /// the request `request` builds; `None` skips the part.
    pub fn new(
        name: impl Into<Arc<str>>,
        service: PartService,
        request: impl Fn(&Inputs<'_, T>) -> Option<PartRequest> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            service,
            request: Arc::new(request),
            required: false,
            timeout: DEFAULT_TIMEOUT,
            after: Vec::new(),
        }
    }

    /// A `GET` of the URI `uri` returns (`None`, or a URI that does not parse, skips).
    pub fn get(
        name: impl Into<Arc<str>>,
        service: PartService,
        uri: impl Fn(&Inputs<'_, T>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self::new(name, service, move |inputs| {
            let uri = uri(inputs)?;
            Request::get(uri.as_str()).body(Full::default()).ok()
        })
    }

    /// Fails the whole composition when this part fails (502, or 504 on timeout).
    #[must_use]
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The part's own deadline (default [`DEFAULT_TIMEOUT`]), on top of whatever its
    /// service stack enforces.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs after part `name` succeeded; its value is in [`Inputs::get`]. If `name`
    /// fails, this part is skipped.
    #[must_use]
    pub fn after(mut self, name: impl Into<Arc<str>>) -> Self {
        self.after.push(name.into());
        self
    }
}

/// What a part's request builder sees: the caller's context and the values of the
/// parts it runs after.
#[derive(Debug)]
pub struct Inputs<'a, T> {
    /// The context given to [`Compose::run`] (identity, path parameters, ...).
    pub context: &'a T,
    values: &'a Map<String, Value>,
}

impl<T> Inputs<'_, T> {
    /// The value of a finished part.
    pub fn get(&self, part: &str) -> Option<&Value> {
        self.values.get(part)
    }
}

/// Builds a [`Compose`].
#[derive(Debug)]
pub struct ComposeBuilder<T> {
    parts: Vec<Part<T>>,
    body_limit: usize,
}

impl<T> ComposeBuilder<T> {
    /// Adds a part.
    #[must_use]
    pub fn part(mut self, part: Part<T>) -> Self {
        self.parts.push(part);
        self
    }

    /// The largest response body read from a part (default [`DEFAULT_BODY_LIMIT`]).
    #[must_use]
    pub fn body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// Validates: unique non-empty names, known dependencies, no cycles, non-zero
    /// timeouts and body limit.
    pub fn build(self) -> Result<Compose<T>, ConfigError> {
        if self.parts.is_empty() {
            return Err(ConfigError::invalid("compose.parts", "no parts"));
        }
        if self.body_limit == 0 {
            return Err(ConfigError::invalid("compose.body_limit", "must be > 0"));
        }
        let mut index = HashMap::new();
        for (i, part) in self.parts.iter().enumerate() {
            if part.name.is_empty() || part.name.as_ref() == "_meta" {
                return Err(ConfigError::invalid(
                    "compose.parts.name",
                    format!("invalid part name {:?}", part.name),
                ));
            }
            if index.insert(part.name.clone(), i).is_some() {
                return Err(ConfigError::invalid(
                    "compose.parts.name",
                    format!("duplicate part name {:?}", part.name),
                ));
            }
            if part.timeout.is_zero() {
                return Err(ConfigError::invalid(
                    "compose.parts.timeout",
                    format!("part {:?} has a zero timeout", part.name),
                ));
            }
        }
        let mut deps = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let mut list = Vec::new();
            for dep in &part.after {
                match index.get(dep) {
                    Some(&d) => list.push(d),
                    None => {
                        return Err(ConfigError::invalid(
                            "compose.parts.after",
                            format!("part {:?} runs after unknown part {dep:?}", part.name),
                        ));
                    }
                }
            }
            deps.push(list);
        }
        // Kahn's algorithm: every part must become runnable.
        let mut remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut ready: Vec<usize> = (0..deps.len()).filter(|&i| remaining[i] == 0).collect();
        let mut seen = 0;
        while let Some(i) = ready.pop() {
            seen += 1;
            for (j, list) in deps.iter().enumerate() {
                for &d in list {
                    if d == i {
                        remaining[j] -= 1;
                        if remaining[j] == 0 {
                            ready.push(j);
                        }
                    }
                }
            }
        }
        if seen != deps.len() {
            return Err(ConfigError::invalid(
                "compose.parts.after",
                "the parts' dependencies form a cycle",
            ));
        }
        Ok(Compose {
            inner: Arc::new(Inner {
                parts: self.parts,
                deps,
                body_limit: self.body_limit,
            }),
        })
    }
}

/// A validated composition, cheap to clone and shared between requests.
pub struct Compose<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    parts: Vec<Part<T>>,
    deps: Vec<Vec<usize>>,
    body_limit: usize,
}

impl<T> Clone for Compose<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for Compose<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compose")
            .field("parts", &self.inner.parts)
            .field("body_limit", &self.inner.body_limit)
            .finish()
    }
}

/// How one part ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx response with a JSON body.
    Ok(StatusCode),
    /// A non-2xx response.
    Status(StatusCode),
    /// The part's deadline passed.
    Timeout,
    /// The service failed (connection refused, open breaker error, ...).
    Error(String),
    /// The body was not JSON or exceeded the limit.
    InvalidBody(String),
    /// Not called: its request builder returned `None` or a dependency failed.
    Skipped(String),
}

impl Outcome {
    /// Whether the part produced a value.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }

    fn label(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Status(_) => "bad_status",
            Outcome::Timeout => "timeout",
            Outcome::Error(_) => "error",
            Outcome::InvalidBody(_) => "invalid_body",
            Outcome::Skipped(_) => "skipped",
        }
    }
}

/// What happened to one part.
#[derive(Debug, Clone)]
pub struct PartReport {
    /// The part's name.
    pub name: Arc<str>,
    /// How it ended.
    pub outcome: Outcome,
    /// Whether it was required.
    pub required: bool,
    /// Time from its start to its end (zero when skipped).
    pub elapsed: Duration,
}

/// The assembled result.
#[derive(Debug, Clone)]
pub struct Composition {
    values: Map<String, Value>,
    reports: Vec<PartReport>,
}

impl Composition {
    /// The value of a part that succeeded.
    pub fn value(&self, part: &str) -> Option<&Value> {
        self.values.get(part)
    }

    /// Takes the value of a part out.
    pub fn take(&mut self, part: &str) -> Option<Value> {
        self.values.remove(part)
    }

    /// Per-part reports, in declaration order.
    pub fn reports(&self) -> &[PartReport] {
        &self.reports
    }

    /// Whether any part failed or was skipped.
    pub fn is_partial(&self) -> bool {
        self.reports.iter().any(|r| !r.outcome.is_ok())
    }

    /// The `_meta` document: `{"partial": bool, "parts": {name: {status, ...}}}`.
    pub fn meta(&self) -> Value {
        let mut parts = Map::new();
        for report in &self.reports {
            let mut entry = Map::new();
            entry.insert("status".into(), report.outcome.label().into());
            entry.insert("required".into(), report.required.into());
            entry.insert(
                "elapsed_ms".into(),
                // Microsecond resolution, in milliseconds.
                json!(report.elapsed.as_micros() as f64 / 1000.0),
            );
            match &report.outcome {
                Outcome::Ok(status) | Outcome::Status(status) => {
                    entry.insert("http_status".into(), status.as_u16().into());
                }
                Outcome::Error(reason)
                | Outcome::InvalidBody(reason)
                | Outcome::Skipped(reason) => {
                    entry.insert("reason".into(), reason.as_str().into());
                }
                Outcome::Timeout => {}
            }
            parts.insert(report.name.to_string(), Value::Object(entry));
        }
        json!({"partial": self.is_partial(), "parts": parts})
    }

    /// Every part's value under its name, plus `_meta`.
    pub fn into_json(self) -> Value {
        let meta = self.meta();
        let mut values = self.values;
        values.insert("_meta".into(), meta);
        Value::Object(values)
    }
}

type PartFuture = Pin<Box<dyn Future<Output = (usize, Outcome, Option<Value>, Duration)> + Send>>;

impl<T> Compose<T> {
    /// A builder.
    pub fn builder() -> ComposeBuilder<T> {
        ComposeBuilder {
            parts: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// Runs every part, each as soon as the parts it depends on are done.
    ///
    /// Fails with 504 when a required part timed out and 502 when a required part
    /// failed otherwise (including being skipped).
    pub async fn run(&self, context: &T) -> Result<Composition, Rejection> {
        let inner = &*self.inner;
        let n = inner.parts.len();
        let mut outcomes: Vec<Option<(Outcome, Duration)>> = vec![None; n];
        let mut started = vec![false; n];
        let mut values = Map::new();
        let mut running = FuturesUnordered::<PartFuture>::new();
        loop {
            // Start (or skip) every part whose dependencies are settled.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for i in 0..n {
                    if started[i] || !inner.deps[i].iter().all(|&d| outcomes[d].is_some()) {
                        continue;
                    }
                    started[i] = true;
                    progressed = true;
                    let part = &inner.parts[i];
                    if let Some(&failed) = inner.deps[i]
                        .iter()
                        .find(|&&d| !outcomes[d].as_ref().is_some_and(|(o, _)| o.is_ok()))
                    {
                        let reason = format!("dependency {:?} failed", inner.parts[failed].name);
                        outcomes[i] = Some((Outcome::Skipped(reason), Duration::ZERO));
                        continue;
                    }
                    let inputs = Inputs {
                        context,
                        values: &values,
                    };
                    let Some(request) = (part.request)(&inputs) else {
                        outcomes[i] = Some((
                            Outcome::Skipped("no request for this context".into()),
                            Duration::ZERO,
                        ));
                        continue;
                    };
                    running.push(Box::pin(call(
                        i,
                        part.service.clone(),
                        request,
                        part.timeout,
                        inner.body_limit,
                    )));
                }
            }
            let Some((i, outcome, value, elapsed)) = running.next().await else {
                break;
            };
            if let Some(value) = value {
                values.insert(inner.parts[i].name.to_string(), value);
            }
            outcomes[i] = Some((outcome, elapsed));
        }
        let mut reports = Vec::with_capacity(n);
        for (part, outcome) in inner.parts.iter().zip(outcomes) {
            let (outcome, elapsed) =
                outcome.unwrap_or((Outcome::Skipped("not started".into()), Duration::ZERO));
            if !outcome.is_ok() {
                tracing::debug!(part = %part.name, outcome = outcome.label(), required = part.required, "compose part failed");
            }
            if part.required && !outcome.is_ok() {
                let (status, code) = if outcome == Outcome::Timeout {
                    (StatusCode::GATEWAY_TIMEOUT, "required_part_timeout")
                } else {
                    (StatusCode::BAD_GATEWAY, "required_part_failed")
                };
                return Err(Rejection::new(status, "compose", code).with_detail(format!(
                    "required part {:?} failed: {}",
                    part.name,
                    outcome.label()
                )));
            }
            reports.push(PartReport {
                name: part.name.clone(),
                outcome,
                required: part.required,
                elapsed,
            });
        }
        Ok(Composition { values, reports })
    }
}

async fn call(
    index: usize,
    service: PartService,
    request: PartRequest,
    timeout: Duration,
    body_limit: usize,
) -> (usize, Outcome, Option<Value>, Duration) {
    let start = Instant::now();
    // Written with `match` rather than closures over `BoxError`: closures there trip a
    // higher-ranked `Send` inference bug once the future is boxed.
    let work = async {
        let response = match service.oneshot(request).await {
            Ok(response) => response,
            Err(error) => return Err(Outcome::Error(error.to_string())),
        };
        let status = response.status();
        if !status.is_success() {
            return Err(Outcome::Status(status));
        }
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(error) => return Err(Outcome::Error(error.to_string())),
            };
            if let Ok(data) = frame.into_data() {
                if bytes.len() + data.len() > body_limit {
                    return Err(Outcome::InvalidBody(format!(
                        "body longer than {body_limit} bytes"
                    )));
                }
                bytes.extend_from_slice(&data);
            }
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) => Ok((status, value)),
            Err(error) => Err(Outcome::InvalidBody(format!("not JSON: {error}"))),
        }
    };
    let (outcome, value) = match tokio::time::timeout(timeout, work).await {
        Ok(Ok((status, value))) => (Outcome::Ok(status), Some(value)),
        Ok(Err(outcome)) => (outcome, None),
        Err(_) => (Outcome::Timeout, None),
    };
    (index, outcome, value, start.elapsed())
}

#[cfg(test)]
mod tests;
