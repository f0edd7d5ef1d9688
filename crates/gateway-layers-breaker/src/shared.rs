//! State shared by every clone of a layer: the circuits, the classifier, the events.

use std::{
    error::Error,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use dashmap::DashMap;
use gateway_layers_core::{
    Classification, Classify, DefaultClassifier, Key, KeyPolicy, RequestView, metrics,
};
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use crate::machine::{Circuit, MachineConfig, Outcome, State, Transition};

/// A state change, as given to the [`on_transition`](crate::BreakerBuilder::on_transition)
/// callback.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransitionEvent {
    /// The breaker's name, if configured.
    pub name: Option<Arc<str>>,
    /// The circuit's key, for per-key circuits.
    pub key: Option<Key>,
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// Why.
    pub reason: crate::Reason,
    /// The new generation.
    pub generation: u64,
    /// For transitions to open: how long the circuit stays open.
    pub open_for: Option<Duration>,
}

pub(crate) type Callback = Arc<dyn Fn(&TransitionEvent) + Send + Sync>;

/// The classifier: the default one inline (no virtual call), or a user's.
#[derive(Clone)]
pub(crate) enum Classifier {
    Default(DefaultClassifier),
    Custom(Arc<dyn Classify>),
}

impl Classifier {
    #[inline]
    pub(crate) fn response(&self, status: StatusCode, headers: &HeaderMap) -> Outcome {
        let c = match self {
            Classifier::Default(d) => d.classify_response(status, headers),
            Classifier::Custom(c) => c.classify_response(status, headers),
        };
        outcome(c)
    }

    pub(crate) fn error(&self, error: &(dyn Error + 'static)) -> Outcome {
        let c = match self {
            Classifier::Default(d) => d.classify_error(error),
            Classifier::Custom(c) => c.classify_error(error),
        };
        outcome(c)
    }
}

#[inline]
fn outcome(c: Classification) -> Outcome {
    match c {
        Classification::Success => Outcome::Success,
        Classification::Failure(_) => Outcome::Failure,
        Classification::Ignore => Outcome::Ignore,
    }
}

/// Everything a circuit needs besides its machine: read when results come in.
pub(crate) struct Policy {
    pub(crate) classifier: Classifier,
    pub(crate) epoch: Instant,
    pub(crate) on_transition: Option<Callback>,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) machine: MachineConfig,
    pub(crate) clock_at_start: bool,
    seed: AtomicU64,
}

impl Policy {
    pub(crate) fn new(
        classifier: Classifier,
        machine: MachineConfig,
        on_transition: Option<Callback>,
        name: Option<Arc<str>>,
    ) -> Self {
        let epoch = Instant::now();
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x5eed);
            h.finish()
        };
        Self {
            classifier,
            epoch,
            on_transition,
            name,
            clock_at_start: machine.slow_call_nanos.is_some(),
            machine,
            seed: AtomicU64::new(seed),
        }
    }

    /// Nanoseconds since the layer was built (paused-clock aware).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(
            Instant::now()
                .saturating_duration_since(self.epoch)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX)
    }

    fn next_seed(&self) -> u64 {
        self.seed
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
    }
}

/// One circuit with its key and policy.
pub(crate) struct CircuitCell {
    pub(crate) machine: Circuit,
    pub(crate) key: Option<Key>,
    pub(crate) policy: Arc<Policy>,
}

impl fmt::Debug for CircuitCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Circuit")
            .field("key", &self.key)
            .field("state", &self.machine.state())
            .finish_non_exhaustive()
    }
}

impl CircuitCell {
    pub(crate) fn new(policy: Arc<Policy>, key: Option<Key>) -> Arc<Self> {
        Arc::new(Self {
            machine: Circuit::new(policy.machine.clone(), policy.next_seed()),
            key,
            policy,
        })
    }

    /// Reports a transition: tracing event, metrics, user callback.
    #[cold]
    pub(crate) fn emit(&self, t: Transition) {
        let name = self.policy.name.as_deref().unwrap_or("");
        let key = self.key.as_ref().map(|k| k.to_string());
        let key = key.as_deref().unwrap_or("");
        let open_for_ms = t.open_for_nanos.map(|n| n / 1_000_000);
        if t.to == State::Open {
            tracing::warn!(
                target: "gateway_layers::breaker",
                event = "breaker.transition",
                breaker = name,
                key,
                from = t.from.as_str(),
                to = t.to.as_str(),
                reason = t.reason.as_str(),
                generation = t.generation,
                open_for_ms,
                "circuit opened"
            );
        } else {
            tracing::info!(
                target: "gateway_layers::breaker",
                event = "breaker.transition",
                breaker = name,
                key,
                from = t.from.as_str(),
                to = t.to.as_str(),
                reason = t.reason.as_str(),
                generation = t.generation,
                "circuit state changed"
            );
        }
        if metrics::enabled() {
            let labels = [
                ("breaker", name),
                ("key", key),
                ("from", t.from.as_str()),
                ("to", t.to.as_str()),
                ("reason", t.reason.as_str()),
            ];
            metrics::counter("gateway.breaker.transitions", 1, &labels);
            metrics::gauge(
                "gateway.breaker.state",
                t.to.as_gauge(),
                &[("breaker", name), ("key", key)],
            );
        }
        if let Some(callback) = &self.policy.on_transition {
            callback(&TransitionEvent {
                name: self.policy.name.clone(),
                key: self.key.clone(),
                from: t.from,
                to: t.to,
                reason: t.reason,
                generation: t.generation,
                open_for: t.open_for_nanos.map(Duration::from_nanos),
            });
        }
    }
}

/// One circuit for the layer, or one per key.
pub(crate) enum Circuits {
    Single(Arc<CircuitCell>),
    Keyed {
        policy: KeyPolicy,
        map: DashMap<Key, Arc<CircuitCell>>,
        max: usize,
        overflow: Arc<CircuitCell>,
    },
}

pub(crate) struct Shared {
    pub(crate) policy: Arc<Policy>,
    pub(crate) circuits: Circuits,
    /// The default problem+json bodies, by refused state (open, half-open, forced).
    pub(crate) bodies: [bytes::Bytes; 3],
    /// Their `Content-Length` values.
    pub(crate) lengths: [http::HeaderValue; 3],
    /// `Retry-After` values 0..=600 seconds, built once.
    pub(crate) retry_after: Box<[http::HeaderValue]>,
}

impl Shared {
    pub(crate) fn new(policy: Arc<Policy>, circuits: Circuits) -> Self {
        let bodies = crate::service::problem_bodies();
        Self {
            policy,
            circuits,
            lengths: bodies.each_ref().map(|b| http::HeaderValue::from(b.len())),
            bodies,
            retry_after: (0..=600u32).map(http::HeaderValue::from).collect(),
        }
    }

    /// The `Retry-After` value for `secs` seconds.
    pub(crate) fn retry_after_value(&self, secs: u64) -> http::HeaderValue {
        match self.retry_after.get(secs as usize) {
            Some(value) => value.clone(),
            None => http::HeaderValue::from(secs),
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Breaker");
        d.field("name", &self.policy.name);
        match &self.circuits {
            Circuits::Single(c) => d.field("state", &c.machine.state().0),
            Circuits::Keyed { map, max, .. } => {
                d.field("circuits", &map.len()).field("max_circuits", max)
            }
        };
        d.finish_non_exhaustive()
    }
}

impl Shared {
    /// The circuit of `request`, or the rejection for a request without a key.
    #[inline]
    pub(crate) fn circuit_for(
        &self,
        request: &RequestView<'_>,
    ) -> Result<Arc<CircuitCell>, gateway_layers_core::Rejection> {
        match &self.circuits {
            Circuits::Single(cell) => Ok(cell.clone()),
            Circuits::Keyed { policy, .. } => {
                let key = policy.resolve(request)?;
                Ok(self.keyed(key))
            }
        }
    }

    /// The circuit of `key`, created if absent (bounded).
    pub(crate) fn keyed(&self, key: Key) -> Arc<CircuitCell> {
        let Circuits::Keyed {
            map, max, overflow, ..
        } = &self.circuits
        else {
            return self.single();
        };
        if let Some(cell) = map.get(&key) {
            return cell.clone();
        }
        if map.len() >= *max && !evict_one(map) {
            return overflow.clone();
        }
        let cell_key = key.clone();
        map.entry(key)
            .or_insert_with(|| CircuitCell::new(self.policy.clone(), Some(cell_key)))
            .clone()
    }

    pub(crate) fn single(&self) -> Arc<CircuitCell> {
        match &self.circuits {
            Circuits::Single(cell) => cell.clone(),
            Circuits::Keyed { overflow, .. } => overflow.clone(),
        }
    }
}

/// Evicts one idle closed circuit (no call in flight, nothing in its window worth
/// keeping beyond a closed state). Returns whether one was evicted.
fn evict_one(map: &DashMap<Key, Arc<CircuitCell>>) -> bool {
    let candidate = map.iter().find_map(|entry| {
        let cell = entry.value();
        (Arc::strong_count(cell) == 1 && cell.machine.state().0 == State::Closed)
            .then(|| entry.key().clone())
    });
    match candidate {
        Some(key) => map
            .remove_if(&key, |_, cell| {
                Arc::strong_count(cell) == 1 && cell.machine.state().0 == State::Closed
            })
            .is_some(),
        None => false,
    }
}
