//! [`RetryLayer`] and the [`Retry`] service.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use gateway_layers_core::{
    AsDynError, BoxError, Classify, ConfigError, GatewayBody, RejectionResponder, SharedResponder,
};
use http::{HeaderValue, Request, Response};
use http_body::Body;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    body::ReplayBody,
    budget::RetryBudget,
    classify::RetryClassifier,
    config::{RetryConfig, Settings},
    future::{ResponseFuture, Retrying},
    policy::{Stop, method_allows_retry},
};

/// What every clone of a [`Retry`] service reads.
pub(crate) struct Shared<C> {
    pub(crate) settings: Settings,
    pub(crate) classifier: C,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) responder: SharedResponder,
}

/// Retries failed requests with full-jitter backoff, a shared retry budget and bounded
/// request body replay. See the [crate docs](crate) for the behaviour and an example.
///
/// The classifier `C` decides what a failure is ([`RetryClassifier`] by default: 502,
/// 503, 504, connection errors, resets and timeouts).
///
/// ```
/// use std::{convert::Infallible, time::Duration};
/// use bytes::Bytes;
/// use gateway_layers_core::DefaultClassifier;
/// use gateway_layers_retry::{ReplayBody, RetryBudget, RetryLayer};
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // One budget for two per-route layers in front of the same upstream.
/// let budget = RetryBudget::new(0.2, 10, Duration::from_secs(10))?;
/// let layer = RetryLayer::builder()
///     .backoff(Duration::from_millis(1), Duration::from_millis(5))
///     .build()?
///     .with_budget(budget.clone())
///     // Retry every 5xx, like a circuit breaker's classifier would count them.
///     .with_classifier(DefaultClassifier::new());
///
/// let upstream = service_fn(|_req: Request<ReplayBody<Full<Bytes>>>| async {
///     let response = Response::builder()
///         .status(StatusCode::INTERNAL_SERVER_ERROR)
///         .body(Full::new(Bytes::new()))
///         .unwrap();
///     Ok::<_, Infallible>(response)
/// });
/// let response = layer
///     .layer(upstream)
///     .oneshot(Request::get("/").body(Full::new(Bytes::new()))?)
///     .await?;
/// // Three attempts, all 500: the last response is returned as it is.
/// assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RetryLayer<C = RetryClassifier> {
    settings: Settings,
    classifier: C,
    budget: Option<RetryBudget>,
    responder: SharedResponder,
}

impl<C: fmt::Debug> fmt::Debug for RetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("settings", &self.settings)
            .field("classifier", &self.classifier)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<C> fmt::Debug for Shared<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("settings", &self.settings)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryLayer {
    /// A layer with the default [`RetryConfig`]: 3 attempts, 25 ms / 250 ms backoff,
    /// 502/503/504 and errors retried, idempotent methods (and keyed POST/PATCH) only,
    /// a 20% budget with 10 retries/s reserve over 10 s, 64 KiB replay buffer.
    pub fn new() -> Self {
        // The defaults are valid: covered by a unit test.
        Self::from_config(&RetryConfig::default())
            .unwrap_or_else(|e| unreachable!("default retry config is invalid: {e}"))
    }

    /// The settings to change before [`RetryConfig::build`].
    #[must_use]
    pub fn builder() -> RetryConfig {
        RetryConfig::default()
    }

    /// A layer from validated settings.
    pub fn from_config(config: &RetryConfig) -> Result<Self, ConfigError> {
        let (settings, classifier, budget) = config.validate()?;
        Ok(Self {
            settings,
            classifier,
            budget,
            responder: SharedResponder::default(),
        })
    }
}

impl<C> RetryLayer<C> {
    /// Replaces what counts as a retryable failure (any [`Classify`], e.g. a
    /// [`DefaultClassifier`](gateway_layers_core::DefaultClassifier) shared with a
    /// circuit breaker). The configured `statuses` and `retry_on_header` are then unused.
    #[must_use]
    pub fn with_classifier<C2: Classify>(self, classifier: C2) -> RetryLayer<C2> {
        RetryLayer {
            settings: self.settings,
            classifier,
            budget: self.budget,
            responder: self.responder,
        }
    }

    /// Uses `budget`, e.g. to share one budget between several layers (per-route
    /// layers of one upstream).
    #[must_use]
    pub fn with_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Renders the 504 answered when a per-try timeout or the deadline ends the last
    /// attempt (default: problem+json).
    #[must_use]
    pub fn with_rejection_response(mut self, responder: impl RejectionResponder) -> Self {
        self.responder = SharedResponder::new(responder);
        self
    }

    /// The budget shared by every service this layer builds.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }
}

impl<S, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            shared: Arc::new(Shared {
                settings: self.settings.clone(),
                classifier: self.classifier.clone(),
                budget: self.budget.clone(),
                responder: self.responder.clone(),
            }),
        }
    }
}

/// The retry service built by [`RetryLayer`].
///
/// The inner service receives `Request<ReplayBody<ReqBody>>` and must be `Clone`; its
/// error type must implement [`AsDynError`] so errors can be classified. The request
/// body must be `Unpin`, as hyper's, axum's and `http-body-util`'s bodies are; wrap
/// another one in `Box::pin` (a pinned box is an `Unpin` body).
pub struct Retry<S, C = RetryClassifier> {
    inner: S,
    shared: Arc<Shared<C>>,
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Retry<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, C> Retry<S, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The budget this service draws from.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for Retry<S, C>
where
    S: Service<Request<ReplayBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    S::Error: AsDynError,
    C: Classify,
    ReqBody: Body<Data = Bytes> + Unpin,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<GatewayBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let settings = &shared.settings;
        let timed = settings.deadline.is_some() || settings.per_try_timeout.is_some();
        let now = (timed || shared.budget.is_some()).then(Instant::now);
        if let (Some(budget), Some(now)) = (&shared.budget, now) {
            budget.deposit_at(now);
        }
        let deadline = settings
            .deadline
            .and_then(|d| now.and_then(|n| n.checked_add(d)));
        let timer = match (settings.per_try_timeout, now) {
            (Some(per_try), Some(now)) => {
                let at = now.checked_add(per_try);
                match (at, deadline) {
                    (Some(a), Some(d)) => Some(a.min(d)),
                    (a, d) => a.or(d),
                }
            }
            _ => deadline,
        };

        let (mut parts, body) = request.into_parts();
        if let Some(name) = &settings.attempt_header {
            parts
                .headers
                .insert(name.clone(), HeaderValue::from_static("1"));
        }
        let stop = if settings.max_attempts <= 1 {
            Some(Stop::Attempts)
        } else if !method_allows_retry(
            &parts.method,
            &parts.headers,
            settings.non_idempotent,
            &settings.key_header,
        ) {
            Some(Stop::Method)
        } else {
            None
        };
        if let Some(stop) = stop {
            let request = Request::from_parts(parts, ReplayBody::passthrough(body));
            let future = self.inner.call(request);
            return ResponseFuture::new(future, None, Err(stop), shared.clone(), deadline, timer);
        }

        let body = ReplayBody::new(body, settings.max_replay_bytes);
        let Some(template) = body.handle() else {
            let stop = body.not_replayable();
            let request = Request::from_parts(parts, body);
            let future = self.inner.call(request);
            return ResponseFuture::new(future, None, Err(stop), shared.clone(), deadline, timer);
        };
        let retry_parts = parts.clone();
        let future = self.inner.call(Request::from_parts(parts, body));
        let retrying = Retrying {
            service: self.inner.clone(),
            parts: retry_parts,
            body: template,
        };
        ResponseFuture::new(
            future,
            Some(retrying),
            Ok(()),
            shared.clone(),
            deadline,
            timer,
        )
    }
}
