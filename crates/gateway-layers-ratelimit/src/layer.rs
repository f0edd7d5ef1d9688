//! The layer, its builder, the service and its response future.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    net::IpAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use gateway_layers_core::{
    ClientIpResolver, ConfigError, GatewayBody, Identity, Key, KeyPolicy, RejectionResponder,
    RequestView, SharedResponder, Tier, client_ip::peer_addr, key::ClientIpKey, metrics,
};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    HeaderStyle, Policy, TierSource,
    decision::{Jitter, Next, Outcome, Render},
    policy::Compiled,
    store::LocalStore,
};

/// The default bound of the local key store.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// The size of one general local store entry: the key, the policy number and up to
/// three windows' state inline (more windows add a heap slice of 8 bytes per window).
/// IPv4 keys under policies of one to four windows use compact entries instead:
/// 8 bytes plus 8 per window (16, 24, 32 or 40 bytes).
pub const LOCAL_ENTRY_BYTES: usize = crate::store::ENTRY_BYTES;

/// Where the local backend reads the time ([`RateLimitBuilder::clock`]).
///
/// Both are monotonic and count in nanoseconds; they differ in cost and in what
/// drives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Clock {
    /// The default: [quanta](https://docs.rs/quanta)'s clock, the one governor
    /// uses. It reads the CPU's time-stamp counter where the CPU has an invariant one,
    /// scaled by a calibration against the OS monotonic clock made once per process
    /// (at the first layer built; it runs until the estimate settles, at most
    /// 200 ms), and the OS monotonic clock elsewhere. About 26 instructions per
    /// decision against about 85 for `tokio::time::Instant`.
    #[default]
    Fast,
    /// `tokio::time::Instant`, which follows `tokio::time::pause` and `advance`: for
    /// tests that drive the limiter with a paused clock.
    Tokio,
}

/// A function giving the cost of a request (default 1).
pub type CostFn = Arc<dyn Fn(&RequestView<'_>) -> u32 + Send + Sync>;

/// State shared by every clone of a layer and its services.
pub(crate) struct Shared {
    pub(crate) key: KeyPolicy,
    /// Set when `key` is the plain client IP ([`ClientIpKey`] refusing a missing IP
    /// with 400): the hot path then resolves the IP without the trait object.
    pub(crate) client_ip: Option<ClientIpResolver>,
    /// `client_ip` trusts no proxy: the peer address is the client.
    pub(crate) trust_none: bool,
    /// No headers and no exposed decision: an admitted request needs no rendering.
    pub(crate) quiet: bool,
    pub(crate) policies: Box<[Compiled]>,
    pub(crate) by_tier: HashMap<String, u32>,
    pub(crate) tier_source: TierSource,
    pub(crate) cost: Option<CostFn>,
    pub(crate) style: HeaderStyle,
    pub(crate) jitter: Option<Jitter>,
    pub(crate) shadow: bool,
    pub(crate) count_rejected: bool,
    pub(crate) expose: bool,
    pub(crate) local: LocalStore,
    #[cfg(feature = "redis")]
    pub(crate) redis: Option<crate::redis::RedisState>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("key", &self.key)
            .field("policies", &self.policies.len())
            .field("tier_source", &self.tier_source)
            .field("style", &self.style)
            .field("shadow", &self.shadow)
            .field("count_rejected", &self.count_rejected)
            .finish_non_exhaustive()
    }
}

impl Shared {
    #[inline]
    fn policy_for(&self, view: &RequestView<'_>, key: &Key) -> &Compiled {
        if self.by_tier.is_empty() {
            return &self.policies[0];
        }
        let index = match &self.tier_source {
            TierSource::Identity => view
                .extensions
                .get::<Identity>()
                .and_then(Identity::tier)
                .and_then(|t| self.by_tier.get(t.as_str())),
            TierSource::Static(map) => {
                // Borrow the key's text when it has one; only other keys are formatted.
                let tier = match key {
                    Key::Text(text) => map.get(&**text),
                    Key::Static(text) => map.get(*text),
                    Key::Header(value) => match value.to_str() {
                        Ok(text) => map.get(text),
                        Err(_) => map.get(key.to_string().as_str()),
                    },
                    _ => map.get(key.to_string().as_str()),
                };
                tier.and_then(|t| self.by_tier.get(t.as_str()))
            }
            TierSource::Function(f) => f(view).and_then(|t| self.by_tier.get(t.as_str())),
            TierSource::TrustedHeader(name) => view
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|t| self.by_tier.get(t.trim())),
        };
        &self.policies[index.copied().unwrap_or(0) as usize]
    }

    pub(crate) fn render(&self) -> Render<'_> {
        Render {
            style: self.style,
            shadow: self.shadow,
            expose: self.expose,
            jitter: self.jitter.as_ref(),
        }
    }

    /// Decides with the local store (the Redis backend's fallback).
    #[cfg(feature = "redis")]
    pub(crate) fn local_outcome(
        &self,
        key: &Key,
        policy: &Compiled,
        cost: u64,
        source: crate::DecisionSource,
    ) -> Outcome {
        Self::local_verdict(
            self.local.check_with(
                key,
                policy.index,
                &policy.local,
                cost,
                self.count_rejected,
                !self.quiet,
                self.local.now(),
            ),
            source,
        )
    }

    /// The outcome of a local store's answer.
    #[inline]
    fn local_verdict(
        checked: Result<crate::gcra::Verdict, crate::store::StoreFull>,
        source: crate::DecisionSource,
    ) -> Outcome {
        match checked {
            Ok(verdict) => Outcome::Verdict {
                verdict,
                tick: Duration::from_nanos(1),
                source,
            },
            Err(full) => Outcome::Full(full),
        }
    }

    /// Turns an outcome into what to do, with logs and metrics.
    pub(crate) fn finish(&self, outcome: Outcome, policy: &Compiled) -> Next {
        let next = self.render().next(outcome, policy);
        let tier = policy.tier.as_str();
        match &next {
            Next::Pass(a) => {
                if let Some(d) = a.as_ref().and_then(|a| a.decision).filter(|d| d.shadowed) {
                    tracing::info!(
                        name: "ratelimit.shadow_rejected",
                        tier,
                        source = d.source.as_str(),
                        retry_after_ms = d.retry_after.map(|r| r.as_millis() as u64),
                        "rate limit exceeded (shadow mode, let through)"
                    );
                    metrics::counter("gateway.ratelimit.shadow_rejected", 1, &[("tier", tier)]);
                } else if metrics::enabled() {
                    metrics::counter("gateway.ratelimit.allowed", 1, &[("tier", tier)]);
                }
            }
            Next::Reject(r) => {
                tracing::debug!(
                    name: "ratelimit.rejected",
                    tier,
                    status = r.status().as_u16(),
                    code = r.code(),
                    "request refused by rate limit"
                );
                metrics::counter(
                    "gateway.ratelimit.rejected",
                    1,
                    &[("tier", tier), ("code", r.code())],
                );
            }
        }
        next
    }
}

/// Builds a [`RateLimitLayer`]; see the [crate docs](crate).
#[must_use]
pub struct RateLimitBuilder {
    key: Option<KeyPolicy>,
    /// The resolver when `key` is known to be the plain client IP.
    client_ip: Option<ClientIpResolver>,
    default: (Tier, Policy),
    tiers: Vec<(Tier, Policy)>,
    tier_source: TierSource,
    cost: Option<CostFn>,
    style: HeaderStyle,
    jitter: Option<Duration>,
    shadow: bool,
    count_rejected: bool,
    expose: bool,
    max_keys: usize,
    clock: Clock,
    responder: SharedResponder,
    #[cfg(feature = "redis")]
    redis: Option<crate::RedisBackend>,
}

impl fmt::Debug for RateLimitBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field("key", &self.key)
            .field("default", &self.default)
            .field("tiers", &self.tiers)
            .field("tier_source", &self.tier_source)
            .field("style", &self.style)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

impl Default for RateLimitBuilder {
    fn default() -> Self {
        Self {
            key: None,
            client_ip: None,
            default: (Tier::new("default"), Policy::unlimited()),
            tiers: Vec::new(),
            tier_source: TierSource::Identity,
            cost: None,
            style: HeaderStyle::Draft,
            jitter: None,
            shadow: false,
            count_rejected: false,
            expose: false,
            max_keys: DEFAULT_MAX_KEYS,
            clock: Clock::Fast,
            responder: SharedResponder::default(),
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

impl RateLimitBuilder {
    /// How requests are keyed (default: the client IP, trusting no proxy).
    pub fn key(mut self, key: KeyPolicy) -> Self {
        self.key = Some(key);
        self.client_ip = None;
        self
    }

    /// Keys on the client IP resolved by `resolver`, refusing a request without one
    /// with 400: the same as `key(KeyPolicy::new(ClientIpKey::new(resolver)))`, but
    /// resolved without a trait object on the hot path.
    pub(crate) fn client_ip_key(mut self, resolver: ClientIpResolver) -> Self {
        self.key = Some(KeyPolicy::new(ClientIpKey::new(resolver.clone())));
        self.client_ip = Some(resolver);
        self
    }

    /// The policy of requests without a known tier (default: unlimited), labelled
    /// `default` in metrics, logs and Redis keys.
    pub fn default_policy(mut self, policy: impl Into<Policy>) -> Self {
        self.default.1 = policy.into();
        self
    }

    /// The policy of `tier`.
    pub fn tier(mut self, tier: impl Into<Tier>, policy: impl Into<Policy>) -> Self {
        self.tiers.push((tier.into(), policy.into()));
        self
    }

    /// Where the tier comes from (default: the verified [`Identity`]).
    pub fn tier_source(mut self, source: TierSource) -> Self {
        self.tier_source = source;
        self
    }

    /// The cost of a request (default 1). A cost of 0 is always admitted and charges nothing.
    pub fn cost(mut self, cost: impl Fn(&RequestView<'_>) -> u32 + Send + Sync + 'static) -> Self {
        self.cost = Some(Arc::new(cost));
        self
    }

    /// Which rate-limit headers to send (default [`HeaderStyle::Draft`]).
    pub fn headers(mut self, style: HeaderStyle) -> Self {
        self.style = style;
        self
    }

    /// Adds a random delay of up to `max` to `Retry-After`, so refused clients do not
    /// all come back at the same second.
    pub fn retry_after_jitter(mut self, max: Duration) -> Self {
        self.jitter = (!max.is_zero()).then_some(max);
        self
    }

    /// Shadow mode: decide, log and count, but let refused requests through.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// Whether refused requests are charged too (default `false`: only admitted
    /// requests consume quota). When `true`, a client that keeps sending while limited
    /// stays limited, up to one window past its last request.
    pub fn count_rejected(mut self, count: bool) -> Self {
        self.count_rejected = count;
        self
    }

    /// Puts a [`RateLimitDecision`](crate::RateLimitDecision) into the extensions of
    /// admitted responses too (rejections always carry one).
    pub fn expose_decision(mut self, expose: bool) -> Self {
        self.expose = expose;
        self
    }

    /// The most keys the local store holds (default [`DEFAULT_MAX_KEYS`]).
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max;
        self
    }

    /// Where the local backend (and the Redis backend's local fallback) reads the
    /// time (default [`Clock::Fast`]); [`Clock::Tokio`] for tests with a paused tokio
    /// clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the response sent on refusal (default: problem+json).
    pub fn with_rejection_response(mut self, responder: impl RejectionResponder) -> Self {
        self.responder = SharedResponder::new(responder);
        self
    }

    /// Decides in Redis instead of in process (feature `redis`).
    #[cfg(feature = "redis")]
    pub fn redis(mut self, backend: crate::RedisBackend) -> Self {
        self.redis = Some(backend);
        self
    }

    /// Validates and builds the layer.
    pub fn build(self) -> Result<RateLimitLayer, ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::invalid("max_keys", "must be at least 1"));
        }
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis {
            redis.validate()?;
        }
        #[cfg(feature = "redis")]
        let remote = self.redis.is_some();
        #[cfg(not(feature = "redis"))]
        let remote = false;
        let mut policies = vec![Compiled::new(
            0,
            self.default.0.clone(),
            &self.default.1,
            remote,
        )?];
        let mut by_tier = HashMap::new();
        for (tier, policy) in &self.tiers {
            if by_tier.contains_key(tier.as_str()) {
                return Err(ConfigError::invalid(
                    format!("tiers.{tier}"),
                    "tier configured twice",
                ));
            }
            let index = u32::try_from(policies.len())
                .map_err(|_| ConfigError::invalid("tiers", "too many tiers"))?;
            policies.push(Compiled::new(index, tier.clone(), policy, remote)?);
            by_tier.insert(tier.as_str().to_owned(), index);
        }
        let (key, client_ip) = match self.key {
            Some(key) => (key, self.client_ip),
            None => (
                KeyPolicy::new(ClientIpKey::default()),
                Some(ClientIpResolver::default()),
            ),
        };
        let shared = Shared {
            key,
            trust_none: client_ip.as_ref().is_some_and(|r| r.trusted().is_empty()),
            client_ip,
            quiet: self.style == HeaderStyle::None && !self.expose,
            policies: policies.into(),
            by_tier,
            tier_source: self.tier_source,
            cost: self.cost,
            style: self.style,
            jitter: self.jitter.map(Jitter::new),
            shadow: self.shadow,
            count_rejected: self.count_rejected,
            expose: self.expose,
            local: LocalStore::new(self.max_keys, self.clock),
            #[cfg(feature = "redis")]
            redis: self.redis.map(crate::redis::RedisState::new),
        };
        Ok(RateLimitLayer {
            shared: Arc::new(shared),
            responder: self.responder,
        })
    }
}

/// Applies tiered rate limits to requests; see the [crate docs](crate).
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use gateway_layers_core::{KeyPolicy, key::ConstantKey};
/// use gateway_layers_ratelimit::{Limit, RateLimitLayer};
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // One global bucket of 1 request per minute.
/// let layer = RateLimitLayer::builder()
///     .key(KeyPolicy::new(ConstantKey("global")))
///     .default_policy(Limit::per_minute(1))
///     .build()
///     .unwrap();
/// let svc = layer.layer(service_fn(|_: Request<()>| async {
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
/// }));
/// assert_eq!(svc.clone().oneshot(Request::new(())).await.unwrap().status(), StatusCode::OK);
/// let refused = svc.oneshot(Request::new(())).await.unwrap();
/// assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(refused.headers()["retry-after"], "60");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
    responder: SharedResponder,
}

impl RateLimitLayer {
    /// Starts a builder.
    pub fn builder() -> RateLimitBuilder {
        RateLimitBuilder::default()
    }

    /// Replaces the response sent on refusal (default: problem+json).
    #[must_use]
    pub fn with_rejection_response(mut self, responder: impl RejectionResponder) -> Self {
        self.responder = SharedResponder::new(responder);
        self
    }

    /// Keys held by the local store now (locks each shard in turn: for diagnostics,
    /// not the hot path).
    pub fn local_keys(&self) -> usize {
        self.shared.local.len()
    }

    /// Bytes held by the local store's tables at their current capacity (entries and
    /// control bytes, [`LOCAL_ENTRY_BYTES`] + 1 per slot), not counting heap data owned
    /// by keys (text keys share their `Arc<str>` with the request's identity).
    pub fn local_table_bytes(&self) -> usize {
        self.shared.local.table_bytes()
    }

    /// Drops every fully recovered key from the local store now. Never needed for
    /// correctness (decisions sweep as they go); useful before measuring memory.
    pub fn sweep(&self) {
        self.shared.local.sweep_all(self.shared.local.now());
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            shared: self.shared.clone(),
            responder: self.responder.clone(),
        }
    }
}

/// The rate-limiting service; see [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
    responder: SharedResponder,
}

impl<S> RateLimit<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> RateLimit<S> {
    /// The answer to a request without a key (kept out of `call`'s hot path).
    #[cold]
    #[inline(never)]
    fn missing_key<F, ReqBody>(
        &self,
        rejection: gateway_layers_core::Rejection,
    ) -> ResponseFuture<F, S, ReqBody> {
        tracing::debug!(name: "ratelimit.missing_key", status = rejection.status().as_u16(), "no rate-limit key");
        ResponseFuture::rejected(rejection, &self.responder)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<GatewayBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let view = RequestView::new(&request);
        let resolved = match &shared.client_ip {
            Some(resolver) => resolve_client_ip(resolver, shared.trust_none, &view),
            None => None,
        };
        // Without a fast path, or when it found no IP, the key policy decides (and
        // builds the rejection).
        let key = match resolved {
            Some(ip) => Key::Ip(ip),
            None => match shared.key.resolve(&view) {
                Ok(key) => key,
                Err(rejection) => return self.missing_key(rejection),
            },
        };
        let policy = shared.policy_for(&view, &key);
        if policy.local.is_empty() {
            return ResponseFuture::pass(self.inner.call(request));
        }
        let cost = shared.cost.as_ref().map_or(1, |f| u64::from(f(&view)));
        #[cfg(feature = "redis")]
        if shared.redis.is_some() {
            let decision = crate::redis::decide(self.shared.clone(), key, policy.index, cost);
            let inner = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, inner);
            return ResponseFuture {
                kind: Kind::Deciding {
                    decision,
                    pending: Some(Box::new((inner, request))),
                    shared: self.shared.clone(),
                    responder: self.responder.clone(),
                    policy: policy.index,
                },
            };
        }
        let checked = shared.local.check_with(
            &key,
            policy.index,
            &policy.local,
            cost,
            shared.count_rejected,
            !shared.quiet,
            shared.local.now(),
        );
        if shared.quiet
            && let Ok(verdict) = &checked
            && verdict.allowed
        {
            // Admitted with nothing to render: what `finish` would do, without
            // building the outcome and its rendering.
            if metrics::enabled() {
                metrics::counter(
                    "gateway.ratelimit.allowed",
                    1,
                    &[("tier", policy.tier.as_str())],
                );
            }
            return ResponseFuture::pass(self.inner.call(request));
        }
        let outcome = Shared::local_verdict(checked, crate::DecisionSource::Local);
        match shared.finish(outcome, policy) {
            Next::Pass(annotations) => ResponseFuture::inner(self.inner.call(request), annotations),
            Next::Reject(rejection) => ResponseFuture::rejected(rejection, &self.responder),
        }
    }
}

/// [`ClientIpResolver::resolve`], with one extension lookup instead of two when the
/// request carries a single extension.
///
/// `resolve` looks for a resolved [`ClientIp`](gateway_layers_core::ClientIp) first and
/// then for the peer address. When the only extension is the peer address, no
/// `ClientIp` can be there, so the peer address is looked up alone (the usual case of
/// a limiter on the connection's service, where axum's `ConnectInfo` is all there is).
/// Any other request takes `resolve` itself, so the answer is always the same.
/// With no trusted proxy (`trust_none`, the resolver's `trusted()` being empty) the
/// peer is the client and `resolve_uncached` would only canonicalize it.
#[inline]
fn resolve_client_ip(
    resolver: &ClientIpResolver,
    trust_none: bool,
    view: &RequestView<'_>,
) -> Option<IpAddr> {
    if view.extensions.len() == 1
        && let Some(peer) = peer_addr(view.extensions)
    {
        if trust_none {
            return Some(peer.ip().to_canonical());
        }
        return resolver.resolve_uncached(view.headers, peer.ip());
    }
    resolver.resolve(view)
}

/// A decision being made by a remote backend.
pub(crate) type DecisionFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

pin_project! {
    /// The response future of [`RateLimit`].
    pub struct ResponseFuture<F, S, ReqBody> {
        #[pin]
        kind: Kind<F, S, ReqBody>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, S, ReqBody> {
        // Admitted with nothing to add to the response: only the body is wrapped (no
        // annotations to look at or drop).
        Pass {
            #[pin]
            future: F,
        },
        Inner {
            #[pin]
            future: F,
            annotations: Option<Box<crate::decision::Annotations>>,
        },
        Rejected {
            rejection: Option<(gateway_layers_core::Rejection, SharedResponder)>,
        },
        Deciding {
            decision: DecisionFuture,
            pending: Option<Box<(S, Request<ReqBody>)>>,
            shared: Arc<Shared>,
            responder: SharedResponder,
            policy: u32,
        },
    }
}

impl<F, S, ReqBody> fmt::Debug for ResponseFuture<F, S, ReqBody> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<F, S, ReqBody> ResponseFuture<F, S, ReqBody> {
    #[inline]
    fn inner(future: F, annotations: Option<Box<crate::decision::Annotations>>) -> Self {
        match annotations {
            None => Self::pass(future),
            annotations => Self {
                kind: Kind::Inner {
                    future,
                    annotations,
                },
            },
        }
    }

    #[inline]
    fn pass(future: F) -> Self {
        Self {
            kind: Kind::Pass { future },
        }
    }

    fn rejected(rejection: gateway_layers_core::Rejection, responder: &SharedResponder) -> Self {
        Self {
            kind: Kind::Rejected {
                rejection: Some((rejection, responder.clone())),
            },
        }
    }
}

impl<F, S, ReqBody, ResBody, E> Future for ResponseFuture<F, S, ReqBody>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    S: Service<Request<ReqBody>, Future = F, Response = Response<ResBody>, Error = E>,
{
    type Output = Result<Response<GatewayBody<ResBody>>, E>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.kind.as_mut().project() {
                KindProj::Pass { future } => {
                    return match future.poll(cx) {
                        Poll::Ready(Ok(response)) => {
                            Poll::Ready(Ok(response.map(GatewayBody::inner)))
                        }
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Pending => Poll::Pending,
                    };
                }
                KindProj::Inner {
                    future,
                    annotations,
                } => {
                    return match future.poll(cx) {
                        Poll::Ready(Ok(mut response)) => {
                            if let Some(a) = annotations.take() {
                                a.apply(&mut response);
                            }
                            Poll::Ready(Ok(response.map(GatewayBody::inner)))
                        }
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Pending => Poll::Pending,
                    };
                }
                KindProj::Rejected { rejection } => {
                    let (rejection, responder) = rejection.take().expect("polled after completion");
                    return Poll::Ready(Ok(responder.respond(rejection)));
                }
                KindProj::Deciding {
                    decision,
                    pending,
                    shared,
                    responder,
                    policy,
                } => {
                    let outcome = ready!(decision.as_mut().poll(cx));
                    let compiled = &shared.policies[*policy as usize];
                    match shared.finish(outcome, compiled) {
                        Next::Pass(annotations) => {
                            let (mut inner, request) =
                                *pending.take().expect("polled after completion");
                            let future = inner.call(request);
                            match annotations {
                                None => Kind::Pass { future },
                                annotations => Kind::Inner {
                                    future,
                                    annotations,
                                },
                            }
                        }
                        Next::Reject(rejection) => Kind::Rejected {
                            rejection: Some((rejection, responder.clone())),
                        },
                    }
                }
            };
            this.kind.set(next);
        }
    }
}
