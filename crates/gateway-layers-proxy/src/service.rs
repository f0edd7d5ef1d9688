//! The [`Proxy`] service, its builder and its response future.

use std::{
    convert::Infallible,
    fmt,
    pin::Pin,
    sync::{
        Arc, PoisonError, RwLock, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use gateway_layers_core::{
    BoxError, Classify, ClientIpResolver, ConfigError, DefaultClassifier, GatewayBody,
    KeyExtractor, Rejection, RejectionResponder, RequestView, SharedKeyExtractor, SharedResponder,
    TrustedProxies,
    classify::{ErrorKind, error_kind},
    metrics,
};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Limited, combinators::UnsyncBoxBody};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use pin_project_lite::pin_project;
use tokio::{
    sync::watch,
    time::{Instant, Sleep},
};
use tower_service::Service;

use crate::{
    balance::Strategy,
    body::{InFlight, Inner, ProxyBody},
    config::{
        ActiveHealth, Forwarding, HostHeader, PassiveHealth, Pool, Protocol, ProxyConfig, Target,
        Timeouts,
    },
    conn::{self, PoolSettings, UpstreamBody},
    error::{ProxyError, ProxyErrorKind},
    forward::{self, ForwardSettings},
    health,
    target::{Snapshot, TargetState, TargetStatus, UpstreamTarget},
};

#[cfg(not(feature = "tls"))]
type Connector = HttpConnector;
#[cfg(feature = "tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type HttpClient = Client<Connector, UpstreamBody>;

/// The response of [`Proxy`].
pub type ProxyResponse = Response<GatewayBody<ProxyBody>>;

/// An HTTP reverse proxy to a set of upstream targets, as a Tower service.
///
/// See the [crate docs](crate) for an overview. Cheap to clone: clones share the
/// connection pools, target state and health checks.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

struct Shared {
    epoch: Instant,
    snapshot: RwLock<Arc<Snapshot>>,
    strategy: Strategy,
    hash_key: Option<SharedKeyExtractor>,
    passive: Option<PassiveHealth>,
    /// Targets with an ejection deadline set (maybe expired); 0 lets `pick` skip the clock.
    ejected: AtomicUsize,
    timeouts: Timeouts,
    forward: ForwardSettings,
    http1: HttpClient,
    http2: HttpClient,
    pool: PoolSettings,
    responder: SharedResponder,
    classifier: Arc<dyn Classify>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("strategy", &self.shared.strategy)
            .field("targets", &self.targets())
            .field("timeouts", &self.shared.timeouts)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A builder.
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder::new()
    }

    /// A round-robin proxy to `targets` with default settings.
    pub fn new<T: Into<Target>>(targets: impl IntoIterator<Item = T>) -> Result<Self, ConfigError> {
        ProxyBuilder::new().targets(targets).build()
    }

    /// The targets with their counters and health.
    pub fn targets(&self) -> Vec<TargetStatus> {
        let snapshot = self.shared.snapshot();
        let now = self.shared.now();
        snapshot
            .targets
            .iter()
            .map(|t| TargetStatus {
                url: t.info.url.to_string(),
                requests: t.requests.load(Ordering::Relaxed),
                errors: t.errors.load(Ordering::Relaxed),
                in_flight: t.in_flight.load(Ordering::Relaxed),
                healthy: t.active_healthy.load(Ordering::Relaxed),
                ejected: t.is_ejected(now),
                idle_connections: t.idle.len(),
            })
            .collect()
    }

    /// Replaces the target set at run time. Targets that stay (same URL and protocol)
    /// keep their health state and counters.
    pub fn set_targets<T: Into<Target>>(
        &self,
        targets: impl IntoIterator<Item = T>,
    ) -> Result<(), ConfigError> {
        let targets: Vec<Target> = targets.into_iter().map(Into::into).collect();
        self.shared.set_targets(&targets)
    }
}

impl Shared {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn now(&self) -> u64 {
        (Instant::now() - self.epoch).as_nanos() as u64 + 1
    }

    fn set_targets(&self, targets: &[Target]) -> Result<(), ConfigError> {
        let mut guard = self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let next = Snapshot::build(self.strategy, targets, Some(&guard))?;
        let ejected = next
            .targets
            .iter()
            .filter(|t| t.ejected_until.load(Ordering::Relaxed) != 0)
            .count();
        *guard = Arc::new(next);
        self.ejected.store(ejected, Ordering::Relaxed);
        tracing::info!(name: "proxy.targets.updated", targets = targets.len(), "upstream targets updated");
        Ok(())
    }

    /// Chooses a usable target, avoiding `avoid` when another one is usable.
    fn pick(&self, key: Option<u64>, avoid: Option<&UpstreamTarget>) -> Option<Arc<TargetState>> {
        let snapshot = self.snapshot.read().unwrap_or_else(PoisonError::into_inner);
        let now = if self.ejected.load(Ordering::Relaxed) > 0 {
            self.now()
        } else {
            0
        };
        let targets = &snapshot.targets;
        let load = |i: usize| targets[i].in_flight.load(Ordering::Relaxed);
        let chosen = match avoid {
            Some(avoid) if targets.len() > 1 => snapshot
                .picker
                .pick(
                    key,
                    |i| targets[i].usable(now) && *targets[i].info.url != *avoid.url(),
                    load,
                )
                .or_else(|| snapshot.picker.pick(key, |i| targets[i].usable(now), load)),
            _ => snapshot.picker.pick(key, |i| targets[i].usable(now), load),
        };
        chosen.map(|i| targets[i].clone())
    }

    fn record_success(&self, target: &TargetState) {
        if target.consecutive_failures.load(Ordering::Relaxed) != 0 {
            target.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if target.ejected_until.load(Ordering::Relaxed) != 0
            && target.ejected_until.swap(0, Ordering::Relaxed) != 0
        {
            self.ejected.fetch_sub(1, Ordering::Relaxed);
            target.ejections.store(0, Ordering::Relaxed);
            tracing::info!(name: "proxy.target.restored", upstream = target.label(), "target restored after ejection");
            metrics::gauge(
                "gateway.proxy.target.ejected",
                0,
                &[("target", target.label())],
            );
        }
    }

    fn record_failure(&self, target: &Arc<TargetState>) {
        target.errors.fetch_add(1, Ordering::Relaxed);
        let Some(config) = &self.passive else { return };
        let failures = target.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < config.consecutive_failures {
            return;
        }
        let now = self.now();
        if target.is_ejected(now) {
            return;
        }
        let snapshot = self.snapshot();
        let ejected = snapshot
            .targets
            .iter()
            .filter(|t| !Arc::ptr_eq(t, target) && t.is_ejected(now))
            .count();
        if !health::may_eject(config, snapshot.targets.len(), ejected) {
            tracing::warn!(name: "proxy.target.ejection_refused", upstream = target.label(), ejected, "too many targets ejected already");
            return;
        }
        let n = target.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let duration = health::ejection_time(config, n);
        let until = now.saturating_add(duration.as_nanos() as u64);
        if target.ejected_until.swap(until, Ordering::Relaxed) == 0 {
            self.ejected.fetch_add(1, Ordering::Relaxed);
        }
        target.consecutive_failures.store(0, Ordering::Relaxed);
        tracing::warn!(name: "proxy.target.ejected", upstream = target.label(), failures, ejection = n, duration_ms = duration.as_millis() as u64, "target ejected");
        metrics::gauge(
            "gateway.proxy.target.ejected",
            1,
            &[("target", target.label())],
        );
    }

    fn client(&self, protocol: Protocol) -> &HttpClient {
        match protocol {
            Protocol::Http1 => &self.http1,
            Protocol::Http2 => &self.http2,
        }
    }

    fn reject(&self, error: ProxyError) -> ProxyResponse {
        let status = match error.kind() {
            ProxyErrorKind::Connect => StatusCode::BAD_GATEWAY,
            ProxyErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyErrorKind::NoHealthyTarget => StatusCode::SERVICE_UNAVAILABLE,
        };
        let detail = error.to_string();
        let mut rejection =
            Rejection::new(status, "proxy", error.kind().code()).with_detail(detail);
        if let Some(target) = error.target() {
            rejection = rejection.with_reason(target.clone());
        }
        self.responder.respond(rejection.with_reason(error))
    }
}

impl<B> Service<Request<B>> for Proxy
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = ProxyResponse;
    type Error = Infallible;
    type Future = ResponseFuture;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = &self.shared;
        let (mut parts, body) = request.into_parts();
        let key = shared.hash_key.as_ref().and_then(|extractor| {
            extractor
                .extract(&RequestView::from_parts(&parts))
                .map(|k| k.stable_hash())
        });
        let avoid = parts.extensions.remove::<UpstreamTarget>();
        let Some(target) = shared.pick(key, avoid.as_ref()) else {
            tracing::warn!(name: "proxy.no_healthy_target", "no usable upstream target");
            metrics::counter("gateway.proxy.unavailable", 1, &[]);
            return ResponseFuture::done(
                shared.reject(ProxyError::new(ProxyErrorKind::NoHealthyTarget, None)),
            );
        };
        let upstream = UpstreamTarget(target.info.clone());
        // An upgrade is only passed through when the server side can hand us the
        // connection (hyper/axum put `OnUpgrade` in the extensions).
        let seen = forward::scan(&parts.headers);
        let mut upgrade = forward::upgrade_request(&parts, seen);
        let on_upgrade = match upgrade {
            Some(_) => parts.extensions.remove::<hyper::upgrade::OnUpgrade>(),
            None => None,
        };
        if on_upgrade.is_none() {
            upgrade = None;
        }
        // Plain HTTP/1.1 targets are served by the in-place client; HTTP/2, TLS and
        // upgrades by hyper-util's.
        let direct = target.info.direct && on_upgrade.is_none();
        let appended = match forward::prepare_request(
            &mut parts,
            &target.info,
            &shared.forward,
            upgrade.as_ref(),
            direct,
            seen,
        ) {
            Ok(appended) => appended,
            Err(e) => {
                return ResponseFuture::done(
                    shared.reject(ProxyError::connect(e.into(), upstream)),
                );
            }
        };
        let body = UnsyncBoxBody::new(body.map_err(Into::into));
        let request = Request::from_parts(parts, body);

        target.requests.fetch_add(1, Ordering::Relaxed);
        if metrics::enabled() {
            metrics::counter("gateway.proxy.requests", 1, &[("target", target.label())]);
        }
        // The clock is read only when something needs the start time. The in-place
        // client keeps a response-header timer per connection and starts it when
        // the request is sent; hyper-util's path gets a sleep of its own here.
        let timeouts = shared.timeouts;
        let start = (timeouts.total.is_some() || metrics::enabled()).then(Instant::now);
        let total_deadline = start
            .zip(timeouts.total)
            .map(|(start, total)| start + total);
        let future = if direct {
            Upstream::Direct {
                future: conn::Exchange::new(
                    target.clone(),
                    request,
                    appended,
                    shared.pool,
                    total_deadline,
                ),
            }
        } else {
            let header_deadline = Instant::now() + timeouts.response_headers;
            Upstream::Pooled {
                future: shared.client(target.info.protocol).request(request),
                timeout: tokio::time::sleep_until(
                    total_deadline.map_or(header_deadline, |d| d.min(header_deadline)),
                ),
            }
        };
        ResponseFuture {
            kind: Kind::Upstream {
                future,
                state: Some(Exchange {
                    shared: self.shared.clone(),
                    in_flight: InFlight::new(target),
                    upstream,
                    start,
                    on_upgrade,
                }),
            },
        }
    }
}

/// What the response future needs once the upstream answers.
struct Exchange {
    shared: Arc<Shared>,
    in_flight: InFlight,
    upstream: UpstreamTarget,
    /// Set when a total timeout or metrics need it.
    start: Option<Instant>,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl Exchange {
    fn target(&self) -> &Arc<TargetState> {
        &self.in_flight.0
    }

    fn observe(&self, outcome: &'static str) {
        if let Some(start) = self.start
            && metrics::enabled()
        {
            let labels = [("target", self.target().label()), ("outcome", outcome)];
            metrics::histogram(
                "gateway.proxy.latency",
                start.elapsed().as_secs_f64(),
                &labels,
            );
            if outcome != "success" {
                metrics::counter("gateway.proxy.errors", 1, &labels);
            }
        }
    }

    fn respond(self, mut response: Response<Inner>) -> ProxyResponse {
        let shared = &*self.shared;
        let status = response.status();
        if shared
            .classifier
            .classify_response(status, response.headers())
            .is_failure()
        {
            shared.record_failure(self.target());
            self.observe("status");
        } else {
            shared.record_success(self.target());
            self.observe("success");
        }
        forward::prepare_response(status, response.headers_mut(), shared.forward.via.as_ref());
        if status == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client) = self.on_upgrade
        {
            let upstream = hyper::upgrade::on(&mut response);
            tokio::spawn(bridge(client, upstream, self.upstream.clone()));
        }
        let deadline = shared
            .timeouts
            .total
            .zip(self.start)
            .map(|(total, start)| tokio::time::sleep_until(start + total));
        let (mut parts, body) = response.into_parts();
        parts.extensions.insert(self.upstream);
        let mut body = ProxyBody::new(body, deadline, self.in_flight);
        body.release_if_ended();
        Response::from_parts(parts, GatewayBody::inner(body))
    }

    fn failed(self, error: BoxError) -> ProxyResponse {
        let shared = &*self.shared;
        shared.record_failure(self.target());
        let timed_out = error_kind(&*error) == ErrorKind::Timeout;
        tracing::warn!(name: "proxy.upstream.error", upstream = self.target().label(), error = %DisplayChain(&*error), "upstream request failed");
        let error = if timed_out {
            self.observe("timeout");
            ProxyError::new(ProxyErrorKind::Timeout, Some(self.upstream))
        } else {
            self.observe("connect");
            ProxyError::connect(error, self.upstream)
        };
        shared.reject(error)
    }

    fn timed_out(self) -> ProxyResponse {
        let shared = &*self.shared;
        shared.record_failure(self.target());
        self.observe("timeout");
        tracing::warn!(name: "proxy.upstream.timeout", upstream = self.target().label(), "no response head before the deadline");
        shared.reject(ProxyError::new(
            ProxyErrorKind::Timeout,
            Some(self.upstream),
        ))
    }
}

struct DisplayChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

async fn bridge(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    target: UpstreamTarget,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(name: "proxy.upgrade.failed", upstream = %target.authority(), error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((sent, received)) => {
            tracing::debug!(name: "proxy.upgrade.closed", upstream = %target.authority(), sent, received, "upgraded connection closed");
        }
        Err(e) => {
            tracing::debug!(name: "proxy.upgrade.closed", upstream = %target.authority(), error = %e, "upgraded connection ended with an error");
        }
    }
}

pin_project! {
    /// Response future of [`Proxy`].
    pub struct ResponseFuture {
        #[pin]
        kind: Kind,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        Done { response: Option<ProxyResponse> },
        Upstream {
            #[pin]
            future: Upstream,
            state: Option<Exchange>,
        },
    }
}

pin_project! {
    /// The upstream exchange: the in-place HTTP/1.1 client (which times itself) or
    /// hyper-util's with its response-header timeout.
    #[project = UpstreamProj]
    enum Upstream {
        Direct { future: conn::Exchange },
        Pooled {
            future: hyper_util::client::legacy::ResponseFuture,
            #[pin]
            timeout: Sleep,
        },
    }
}

/// What polling [`Upstream`] gave.
enum Polled {
    Response(Result<Response<Inner>, BoxError>),
    /// hyper-util's exchange ran past its response-header deadline.
    TimedOut,
}

impl Upstream {
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Polled> {
        match self.project() {
            UpstreamProj::Direct { future } => Pin::new(future)
                .poll(cx)
                .map(|r| Polled::Response(r.map(|response| response.map(Inner::Direct)))),
            UpstreamProj::Pooled { future, timeout } => match Pin::new(future).poll(cx) {
                Poll::Ready(r) => Poll::Ready(Polled::Response(
                    r.map(|response| response.map(Inner::Hyper))
                        .map_err(Into::into),
                )),
                Poll::Pending => match timeout.poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Polled::TimedOut),
                    Poll::Pending => Poll::Pending,
                },
            },
        }
    }
}

impl ResponseFuture {
    fn done(response: ProxyResponse) -> Self {
        Self {
            kind: Kind::Done {
                response: Some(response),
            },
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl Future for ResponseFuture {
    type Output = Result<ProxyResponse, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Done { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            KindProj::Upstream { future, state } => {
                let polled = ready!(future.poll(cx));
                let exchange = state.take().expect("polled after completion");
                Poll::Ready(Ok(match polled {
                    Polled::Response(Ok(response)) => exchange.respond(response),
                    Polled::Response(Err(error)) => exchange.failed(error),
                    Polled::TimedOut => exchange.timed_out(),
                }))
            }
        }
    }
}

/// Builds a [`Proxy`]; see [`Proxy::builder`].
#[must_use]
pub struct ProxyBuilder {
    targets: Vec<Target>,
    strategy: Strategy,
    hash_key: Option<SharedKeyExtractor>,
    timeouts: Timeouts,
    active: Option<ActiveHealth>,
    passive: Option<PassiveHealth>,
    forwarding: Forwarding,
    resolver: Option<ClientIpResolver>,
    pool: Pool,
    responder: SharedResponder,
    classifier: Arc<dyn Classify>,
    discovery: Option<watch::Receiver<Vec<Target>>>,
    #[cfg(feature = "tls")]
    tls: Option<rustls::ClientConfig>,
}

impl fmt::Debug for ProxyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyBuilder")
            .field("targets", &self.targets)
            .field("strategy", &self.strategy)
            .field("timeouts", &self.timeouts)
            .field("active", &self.active)
            .field("passive", &self.passive)
            .field("forwarding", &self.forwarding)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl Default for ProxyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyBuilder {
    /// A builder with no targets, round robin, default timeouts, no health checks.
    pub fn new() -> Self {
        Self {
            targets: Vec::new(),
            strategy: Strategy::RoundRobin,
            hash_key: None,
            timeouts: Timeouts::default(),
            active: None,
            passive: None,
            forwarding: Forwarding::default(),
            resolver: None,
            pool: Pool::default(),
            responder: SharedResponder::default(),
            classifier: Arc::new(DefaultClassifier::new()),
            discovery: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// A builder from a [`ProxyConfig`] (e.g. read from a file).
    pub fn from_config(config: ProxyConfig) -> Result<Self, ConfigError> {
        let mut builder = Self::new()
            .targets(config.targets)
            .strategy(config.strategy)
            .timeouts(config.timeouts)
            .forwarding(config.forwarding)
            .pool(config.pool);
        builder.active = config.active_health;
        builder.passive = config.passive_health;
        #[cfg(feature = "serde")]
        if let Some(spec) = &config.hash_key {
            let trusted = TrustedProxies::new(
                builder
                    .forwarding
                    .trusted_proxies
                    .iter()
                    .map(String::as_str),
            )?;
            builder.hash_key = Some(spec.build(&ClientIpResolver::new(trusted))?);
        }
        Ok(builder)
    }

    /// Adds a target (`"http://host:port"` or a [`Target`]).
    pub fn target(mut self, target: impl Into<Target>) -> Self {
        self.targets.push(target.into());
        self
    }

    /// Adds targets.
    pub fn targets<T: Into<Target>>(mut self, targets: impl IntoIterator<Item = T>) -> Self {
        self.targets.extend(targets.into_iter().map(Into::into));
        self
    }

    /// Sets the load-balancing strategy (for [`Strategy::ConsistentHash`] use
    /// [`consistent_hash`](Self::consistent_hash)).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Consistent hashing on a core key (`ClientIpKey` for ip-hash, `HeaderKey`, a
    /// cookie extractor, ...). Requests without a key fall back to round robin.
    pub fn consistent_hash(mut self, key: impl KeyExtractor) -> Self {
        self.strategy = Strategy::ConsistentHash;
        self.hash_key = Some(Arc::new(key));
        self
    }

    /// Sets all timeouts.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// TCP connect timeout (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.connect = timeout;
        self
    }

    /// Time to the response head (default 60 s).
    pub fn response_header_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.response_headers = timeout;
        self
    }

    /// Time for the whole exchange, body included (default none).
    pub fn total_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.total = Some(timeout);
        self
    }

    /// Turns on active health checks.
    pub fn active_health(mut self, config: ActiveHealth) -> Self {
        self.active = Some(config);
        self
    }

    /// Turns on passive ejection.
    pub fn passive_health(mut self, config: PassiveHealth) -> Self {
        self.passive = Some(config);
        self
    }

    /// Sets the forwarding-header settings.
    pub fn forwarding(mut self, forwarding: Forwarding) -> Self {
        self.forwarding = forwarding;
        self
    }

    /// `Host` toward the upstream: preserved (default) or the target's.
    pub fn host_header(mut self, host: HostHeader) -> Self {
        self.forwarding.host = host;
        self
    }

    /// Whether to set `X-Forwarded-For/-Proto/-Host` (default true).
    pub fn x_forwarded(mut self, on: bool) -> Self {
        self.forwarding.x_forwarded = on;
        self
    }

    /// Whether to set the RFC 7239 `Forwarded` header (default false).
    pub fn forwarded(mut self, on: bool) -> Self {
        self.forwarding.forwarded = on;
        self
    }

    /// Adds `Via: 1.1 <pseudonym>` to requests and responses.
    pub fn via(mut self, pseudonym: impl Into<String>) -> Self {
        self.forwarding.via = Some(pseudonym.into());
        self
    }

    /// The client-IP resolver: its trusted proxies decide whose forwarding headers are
    /// kept and extended; it resolves the client when no peer address is known.
    pub fn client_ip_resolver(mut self, resolver: ClientIpResolver) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Connection pool settings.
    pub fn pool(mut self, pool: Pool) -> Self {
        self.pool = pool;
        self
    }

    /// Replaces the 502/503/504 response renderer (default problem+json).
    pub fn with_rejection_response(mut self, responder: impl RejectionResponder) -> Self {
        self.responder = SharedResponder::new(responder);
        self
    }

    /// What counts as a failed response for passive ejection (default: 5xx).
    pub fn classifier(mut self, classifier: impl Classify) -> Self {
        self.classifier = Arc::new(classifier);
        self
    }

    /// Takes the target set from a watch channel, now and whenever it changes (service
    /// discovery). Its current value replaces targets given to the builder.
    pub fn discovery(mut self, targets: watch::Receiver<Vec<Target>>) -> Self {
        self.discovery = Some(targets);
        self
    }

    /// The TLS client configuration for `https://` targets (feature `tls`): custom
    /// roots, client certificates, ... Its ALPN list is set by the proxy (`h2` for
    /// HTTP/2 targets, `http/1.1` otherwise). Default: the webpki roots, aws-lc-rs.
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Validates and builds. Active health checks and discovery need a Tokio runtime.
    pub fn build(mut self) -> Result<Proxy, ConfigError> {
        if let Some(rx) = &self.discovery {
            self.targets = rx.borrow().clone();
        }
        if self.strategy == Strategy::ConsistentHash && self.hash_key.is_none() {
            return Err(ConfigError::invalid(
                "strategy",
                "consistent hashing needs a key (ProxyBuilder::consistent_hash)",
            ));
        }
        let snapshot = Snapshot::build(self.strategy, &self.targets, None)?;
        if self.timeouts.connect.is_zero() || self.timeouts.response_headers.is_zero() {
            return Err(ConfigError::invalid(
                "timeouts",
                "timeouts must be positive",
            ));
        }
        if self.timeouts.total.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::invalid("timeouts.total", "must be positive"));
        }
        if let Some(active) = &self.active {
            if !active.path.starts_with('/') {
                return Err(ConfigError::invalid(
                    "active_health.path",
                    "must start with '/'",
                ));
            }
            if active.interval.is_zero() || active.timeout.is_zero() {
                return Err(ConfigError::invalid(
                    "active_health",
                    "interval and timeout must be positive",
                ));
            }
            if active.healthy_threshold == 0 || active.unhealthy_threshold == 0 {
                return Err(ConfigError::invalid(
                    "active_health",
                    "thresholds must be at least 1",
                ));
            }
            if let Some(bad) = active
                .expected_statuses
                .iter()
                .find(|s| !(100..=599).contains(*s))
            {
                return Err(ConfigError::invalid(
                    "active_health.expected_statuses",
                    format!("{bad} is not an HTTP status"),
                ));
            }
        }
        if let Some(passive) = &self.passive {
            if passive.consecutive_failures == 0 {
                return Err(ConfigError::invalid(
                    "passive_health.consecutive_failures",
                    "must be at least 1",
                ));
            }
            if passive.base_ejection_time.is_zero() {
                return Err(ConfigError::invalid(
                    "passive_health.base_ejection_time",
                    "must be positive",
                ));
            }
            if !(0.0..=1.0).contains(&passive.max_ejected_fraction) {
                return Err(ConfigError::invalid(
                    "passive_health.max_ejected_fraction",
                    "must be within 0..=1",
                ));
            }
        }
        let via = match &self.forwarding.via {
            Some(name) => Some(gateway_layers_core::headers::header_value(
                "via",
                &format!("1.1 {name}"),
            )?),
            None => None,
        };
        let resolver = match self.resolver.take() {
            Some(resolver) => resolver,
            None => ClientIpResolver::new(TrustedProxies::new(
                self.forwarding.trusted_proxies.iter().map(String::as_str),
            )?),
        };
        // The pool's reaper runs when a runtime is there; without one, expired idle
        // connections are closed when the pool is next used.
        let reaper = tokio::runtime::Handle::try_current().ok();
        let runtime = if self.active.is_some() || self.discovery.is_some() {
            Some(tokio::runtime::Handle::try_current().map_err(|_| {
                ConfigError::invalid(
                    "active_health",
                    "active health checks and discovery need a Tokio runtime at build time",
                )
            })?)
        } else {
            None
        };

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(self.timeouts.connect));
        #[cfg(feature = "tls")]
        let (h1_connector, h2_connector) = tls_connectors(connector, self.tls.take())?;
        #[cfg(not(feature = "tls"))]
        let (h1_connector, h2_connector) = (connector.clone(), connector);
        let mut client = Client::builder(TokioExecutor::new());
        client
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(self.pool.idle_timeout)
            .pool_max_idle_per_host(self.pool.max_idle_per_target);
        let http1 = client.build(h1_connector);
        client.http2_only(true);
        let http2 = client.build(h2_connector);

        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            snapshot: RwLock::new(Arc::new(snapshot)),
            strategy: self.strategy,
            hash_key: self.hash_key,
            passive: self.passive,
            ejected: AtomicUsize::new(0),
            timeouts: self.timeouts,
            forward: ForwardSettings {
                host: self.forwarding.host,
                x_forwarded: self.forwarding.x_forwarded,
                forwarded: self.forwarding.forwarded,
                via,
                resolver,
            },
            http1,
            http2,
            pool: PoolSettings {
                idle_timeout: self.pool.idle_timeout,
                max_idle: self.pool.max_idle_per_target,
                connect_timeout: self.timeouts.connect,
                response_headers: self.timeouts.response_headers,
            },
            responder: self.responder,
            classifier: self.classifier,
        });
        if let Some(handle) = reaper {
            handle.spawn(reap_idle(Arc::downgrade(&shared)));
        }
        if let Some(runtime) = runtime {
            if let Some(active) = self.active {
                runtime.spawn(active_checks(Arc::downgrade(&shared), active));
            }
            if let Some(rx) = self.discovery {
                runtime.spawn(discovery(Arc::downgrade(&shared), rx));
            }
        }
        Ok(Proxy { shared })
    }
}

#[cfg(feature = "tls")]
fn tls_connectors(
    mut http: HttpConnector,
    config: Option<rustls::ClientConfig>,
) -> Result<(Connector, Connector), ConfigError> {
    http.enforce_http(false);
    let config = match config {
        Some(config) => config,
        None => {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::invalid("tls", e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth()
        }
    };
    // hyper-rustls sets ALPN itself (`http/1.1` or `h2`) and refuses a preset list.
    let mut h1_config = config;
    h1_config.alpn_protocols.clear();
    let h2_config = h1_config.clone();
    let h1 = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(h1_config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http.clone());
    let h2 = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(h2_config)
        .https_or_http()
        .enable_http2()
        .wrap_connector(http);
    Ok((h1, h2))
}

async fn discovery(shared: Weak<Shared>, mut rx: watch::Receiver<Vec<Target>>) {
    while rx.changed().await.is_ok() {
        let targets = rx.borrow_and_update().clone();
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(e) = shared.set_targets(&targets) {
            tracing::warn!(name: "proxy.targets.rejected", error = %e, "discovered target set refused");
        }
    }
}

/// Closes idle connections that expired or that their upstream closed, every half
/// idle timeout (between 100 ms and 15 s); ends with the proxy.
async fn reap_idle(shared: Weak<Shared>) {
    let Some(strong) = shared.upgrade() else {
        return;
    };
    let idle_timeout = strong.pool.idle_timeout;
    drop(strong);
    let period = (idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(15));
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(strong) = shared.upgrade() else {
            return;
        };
        for target in strong.snapshot().targets.iter() {
            target.idle.reap(idle_timeout);
        }
    }
}

/// The largest health-check response body read (the rest closes the connection).
const HEALTH_BODY_LIMIT: usize = 64 * 1024;

async fn active_checks(shared: Weak<Shared>, config: ActiveHealth) {
    let mut interval = tokio::time::interval(config.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let snapshot = strong.snapshot();
        let checks = snapshot
            .targets
            .iter()
            .map(|target| check_target(&strong, target, &config));
        futures_util::future::join_all(checks).await;
    }
}

async fn check_target(shared: &Shared, target: &TargetState, config: &ActiveHealth) {
    let passed = probe(shared, target, config).await;
    let change = target
        .streak
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .record(passed, config.healthy_threshold, config.unhealthy_threshold);
    if let Some(healthy) = change {
        target.active_healthy.store(healthy, Ordering::Relaxed);
        if healthy {
            tracing::info!(name: "proxy.target.healthy", upstream = target.label(), "active health check passing again");
        } else {
            tracing::warn!(name: "proxy.target.unhealthy", upstream = target.label(), "active health check failing");
        }
        metrics::gauge(
            "gateway.proxy.target.healthy",
            i64::from(healthy),
            &[("target", target.label())],
        );
    }
}

async fn probe(shared: &Shared, target: &TargetState, config: &ActiveHealth) -> bool {
    let Ok(path) = config.path.parse::<http::Uri>() else {
        return false;
    };
    let Ok(uri) = forward::upstream_uri(&target.info, &path) else {
        return false;
    };
    let mut request = Request::new(UnsyncBoxBody::new(
        Empty::<Bytes>::new().map_err(|never| match never {}),
    ));
    *request.uri_mut() = uri;
    *request.version_mut() = match target.info.protocol {
        Protocol::Http1 => http::Version::HTTP_11,
        Protocol::Http2 => http::Version::HTTP_2,
    };
    request
        .headers_mut()
        .insert(http::header::HOST, target.info.host.clone());
    request.headers_mut().insert(
        http::header::USER_AGENT,
        HeaderValue::from_static("gateway-layers-health-check"),
    );
    let client = shared.client(target.info.protocol);
    let exchange = async {
        let response = client.request(request).await.ok()?;
        let status = response.status();
        Limited::new(response.into_body(), HEALTH_BODY_LIMIT)
            .collect()
            .await
            .ok()?;
        Some(status)
    };
    match tokio::time::timeout(config.timeout, exchange).await {
        Ok(Some(status)) => config.passes(status),
        _ => false,
    }
}
