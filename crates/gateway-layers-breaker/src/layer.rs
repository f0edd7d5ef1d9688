//! [`BreakerLayer`] and its builder.

use std::{fmt, sync::Arc};

use bytes::Bytes;
use dashmap::DashMap;
use gateway_layers_core::{
    Classify, ClientIpResolver, ConfigError, DefaultClassifier, KeyExtractor, KeyPolicy,
    RejectionResponder, RequestView, SharedResponder,
};
use http::Response;
use tower_layer::Layer;

use crate::{
    AuthorityKey, BreakerConfig, BreakerHandle, BreakerOpen, CircuitKey, NamedKey, TransitionEvent,
    service::Breaker,
    shared::{Callback, CircuitCell, Circuits, Classifier, Policy, Shared},
};

/// A fallback answering calls refused by an open circuit instead of the 503.
pub(crate) type Fallback =
    Arc<dyn Fn(&RequestView<'_>, &BreakerOpen) -> Response<Bytes> + Send + Sync>;

/// Applies a circuit breaker to a service. See the [crate docs](crate).
///
/// Clones share the circuits: build the layer once and apply it wherever the same
/// upstream is called.
#[derive(Clone)]
pub struct BreakerLayer {
    pub(crate) shared: Arc<Shared>,
    /// `None`: the default problem+json, rendered from a pre-built body.
    pub(crate) responder: Option<SharedResponder>,
    pub(crate) fallback: Option<Fallback>,
}

impl fmt::Debug for BreakerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("shared", &self.shared)
            .field("fallback", &self.fallback.is_some())
            .finish_non_exhaustive()
    }
}

impl BreakerLayer {
    /// A builder with the default settings ([`BreakerConfig::default`]).
    pub fn builder() -> BreakerBuilder {
        BreakerBuilder::default()
    }

    /// A layer from configuration (e.g. deserialized from a file), with the default
    /// classifier.
    pub fn from_config(config: BreakerConfig) -> Result<Self, ConfigError> {
        BreakerBuilder::default().config(config).build()
    }

    /// The handle to read and force the circuits' state.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Renders the 503 with `responder` instead of problem+json (a closure
    /// `Fn(&Rejection) -> Response<Bytes>` works). `Retry-After` is still added.
    #[must_use]
    pub fn with_rejection_response(mut self, responder: impl RejectionResponder) -> Self {
        self.responder = Some(SharedResponder::new(responder));
        self
    }

    /// Answers refused calls with `fallback` instead of the 503 rejection (e.g. a
    /// cached or degraded response). [`BreakerOpen`] is put in its extensions.
    #[must_use]
    pub fn with_fallback<F>(mut self, fallback: F) -> Self
    where
        F: Fn(&RequestView<'_>, &BreakerOpen) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.fallback = Some(Arc::new(fallback));
        self
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = Breaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker {
            inner,
            shared: self.shared.clone(),
            responder: self.responder.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

/// Builds a [`BreakerLayer`]; every setting is validated by [`build`](Self::build).
#[must_use]
pub struct BreakerBuilder {
    config: BreakerConfig,
    classifier: Classifier,
    key: Option<KeyPolicy>,
    on_transition: Option<Callback>,
    responder: Option<SharedResponder>,
    fallback: Option<Fallback>,
    resolver: ClientIpResolver,
}

impl Default for BreakerBuilder {
    fn default() -> Self {
        Self {
            config: BreakerConfig::default(),
            classifier: Classifier::Default(DefaultClassifier::new()),
            key: None,
            on_transition: None,
            responder: None,
            fallback: None,
            resolver: ClientIpResolver::default(),
        }
    }
}

impl fmt::Debug for BreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("config", &self.config)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl BreakerBuilder {
    /// Replaces every setting with `config`.
    pub fn config(mut self, config: BreakerConfig) -> Self {
        self.config = config;
        self
    }

    /// The sliding window (default: the last 100 calls).
    pub fn window(mut self, window: crate::SlidingWindow) -> Self {
        self.config.window = window;
        self
    }

    /// Calls the window must hold before a rate can trip (default 20).
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// Failure rate in percent that opens the circuit (default 50); `None` disables.
    pub fn failure_rate(mut self, percent: impl Into<Option<f64>>) -> Self {
        self.config.failure_rate_threshold = percent.into();
        self
    }

    /// Calls lasting at least `duration` are slow; `percent` slow calls in the window
    /// open the circuit.
    pub fn slow_calls(mut self, duration: std::time::Duration, percent: f64) -> Self {
        self.config.slow_call_duration = Some(duration);
        self.config.slow_call_rate_threshold = Some(percent);
        self
    }

    /// Opens after `n` failures in a row (default: off).
    pub fn consecutive_failures(mut self, n: impl Into<Option<u32>>) -> Self {
        self.config.consecutive_failures = n.into();
        self
    }

    /// A fixed open time (default 30 s).
    pub fn open_duration(mut self, duration: std::time::Duration) -> Self {
        self.config.open_duration = duration;
        self.config.open_backoff_multiplier = 1.0;
        if self.config.max_open_duration < duration {
            self.config.max_open_duration = duration;
        }
        self
    }

    /// An open time starting at `base`, multiplied by `multiplier` on each trip that
    /// follows without a close, capped at `max`.
    pub fn exponential_open(
        mut self,
        base: std::time::Duration,
        multiplier: f64,
        max: std::time::Duration,
    ) -> Self {
        self.config.open_duration = base;
        self.config.open_backoff_multiplier = multiplier;
        self.config.max_open_duration = max;
        self
    }

    /// Takes up to this fraction of each open time off at random (default 0).
    pub fn open_jitter(mut self, fraction: f64) -> Self {
        self.config.open_jitter = fraction;
        self
    }

    /// Half-open: admit `probes` calls; `successes` of them close the circuit.
    pub fn half_open(mut self, probes: u32, successes: u32) -> Self {
        self.config.half_open_probes = probes;
        self.config.half_open_successes = successes;
        self
    }

    /// Reopen a circuit half-open for longer than this (default 60 s; `None`: never).
    pub fn half_open_max_wait(mut self, wait: impl Into<Option<std::time::Duration>>) -> Self {
        self.config.half_open_max_wait = wait.into();
        self
    }

    /// What counts as a failure (default: [`DefaultClassifier`], 5xx and errors).
    pub fn classifier(mut self, classifier: impl Classify) -> Self {
        self.classifier = Classifier::Custom(Arc::new(classifier));
        self
    }

    /// One circuit per key of `policy` (a core [`KeyPolicy`]).
    pub fn per_key(mut self, policy: KeyPolicy) -> Self {
        self.key = Some(policy);
        self
    }

    /// One circuit per key of `extractor`; requests without a key are refused with 400.
    pub fn per_key_extractor(self, extractor: impl KeyExtractor) -> Self {
        self.per_key(KeyPolicy::new(extractor))
    }

    /// One circuit per upstream authority ([`AuthorityKey`]): the usual choice in front
    /// of a proxy.
    pub fn per_authority(self) -> Self {
        self.per_key(KeyPolicy::new(AuthorityKey))
    }

    /// Per-key circuits: keep at most `max` (default 1024).
    pub fn max_circuits(mut self, max: usize) -> Self {
        self.config.max_circuits = max;
        self
    }

    /// Client IP resolution for a `client_ip` key given in configuration.
    pub fn client_ip_resolver(mut self, resolver: ClientIpResolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// A name for events and metrics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// Called on every state change, after the tracing event.
    pub fn on_transition<F>(mut self, callback: F) -> Self
    where
        F: Fn(&TransitionEvent) + Send + Sync + 'static,
    {
        self.on_transition = Some(Arc::new(callback));
        self
    }

    /// Renders the 503 with `responder` (see [`BreakerLayer::with_rejection_response`]).
    pub fn with_rejection_response(mut self, responder: impl RejectionResponder) -> Self {
        self.responder = Some(SharedResponder::new(responder));
        self
    }

    /// Answers refused calls with `fallback` (see [`BreakerLayer::with_fallback`]).
    pub fn with_fallback<F>(mut self, fallback: F) -> Self
    where
        F: Fn(&RequestView<'_>, &BreakerOpen) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.fallback = Some(Arc::new(fallback));
        self
    }

    /// Validates the settings and builds the layer (and its shared state).
    pub fn build(self) -> Result<BreakerLayer, ConfigError> {
        let machine = self.config.machine()?;
        let key = match (self.key, &self.config.key) {
            (Some(policy), _) => Some(policy),
            (None, Some(CircuitKey::Named(NamedKey::Authority))) => {
                Some(KeyPolicy::new(AuthorityKey))
            }
            (None, Some(CircuitKey::Spec(spec))) => {
                Some(KeyPolicy::from_shared(spec.build(&self.resolver)?))
            }
            (None, None) => None,
        };
        let policy = Arc::new(Policy::new(
            self.classifier,
            machine,
            self.on_transition,
            self.config.name.map(Into::into),
        ));
        let circuits = match key {
            None => Circuits::Single(CircuitCell::new(policy.clone(), None)),
            Some(key) => Circuits::Keyed {
                policy: key,
                map: DashMap::new(),
                max: self.config.max_circuits,
                overflow: CircuitCell::new(
                    policy.clone(),
                    Some(gateway_layers_core::Key::Static("overflow")),
                ),
            },
        };
        Ok(BreakerLayer {
            shared: Arc::new(Shared::new(policy, circuits)),
            responder: self.responder,
            fallback: self.fallback,
        })
    }
}
