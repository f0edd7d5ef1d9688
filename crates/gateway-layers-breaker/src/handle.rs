//! [`BreakerHandle`]: read and force the circuits' state from outside the request path.

use std::{fmt, sync::Arc, time::Duration};

use gateway_layers_core::Key;

use crate::{
    Counters, State, WindowSnapshot,
    shared::{CircuitCell, Circuits, Shared},
};

/// Reads and forces the state of a breaker's circuits (an admin endpoint, a health
/// check, a test). Cheap to clone; obtained from [`BreakerLayer::handle`](crate::BreakerLayer::handle).
///
/// ```
/// use gateway_layers_breaker::{BreakerLayer, State};
/// use gateway_layers_core::Key;
///
/// let layer = BreakerLayer::builder().per_authority().build().unwrap();
/// let handle = layer.handle();
/// // Take one upstream out of rotation before any traffic reaches it.
/// let circuit = handle.for_key(Key::Text("billing.internal:8080".into()));
/// circuit.force_open();
/// assert_eq!(circuit.state(), State::ForcedOpen);
/// assert_eq!(handle.keys().len(), 1);
/// circuit.reset();
/// assert_eq!(handle.get(&Key::Text("billing.internal:8080".into())).unwrap().state(), State::Closed);
/// ```
#[derive(Clone)]
pub struct BreakerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for BreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BreakerHandle").field(&self.shared).finish()
    }
}

impl BreakerHandle {
    /// The layer's circuit. For per-key breakers: the overflow circuit shared by keys
    /// that found the map full.
    pub fn circuit(&self) -> CircuitHandle {
        CircuitHandle {
            cell: self.shared.single(),
        }
    }

    /// Whether circuits are per key.
    pub fn is_keyed(&self) -> bool {
        matches!(self.shared.circuits, Circuits::Keyed { .. })
    }

    /// The circuit of `key`, if it exists.
    pub fn get(&self, key: &Key) -> Option<CircuitHandle> {
        match &self.shared.circuits {
            Circuits::Single(_) => None,
            Circuits::Keyed { map, .. } => map.get(key).map(|c| CircuitHandle { cell: c.clone() }),
        }
    }

    /// The circuit of `key`, created (closed) if absent, e.g. to force it open before
    /// any traffic. For a single-circuit breaker: the layer's circuit.
    pub fn for_key(&self, key: Key) -> CircuitHandle {
        CircuitHandle {
            cell: self.shared.keyed(key),
        }
    }

    /// The keys of the per-key circuits currently kept.
    pub fn keys(&self) -> Vec<Key> {
        match &self.shared.circuits {
            Circuits::Single(_) => Vec::new(),
            Circuits::Keyed { map, .. } => map.iter().map(|e| e.key().clone()).collect(),
        }
    }

    /// Resets every circuit (see [`CircuitHandle::reset`]).
    pub fn reset_all(&self) {
        match &self.shared.circuits {
            Circuits::Single(cell) => CircuitHandle { cell: cell.clone() }.reset(),
            Circuits::Keyed { map, overflow, .. } => {
                let cells: Vec<_> = map.iter().map(|e| e.value().clone()).collect();
                for cell in cells.into_iter().chain([overflow.clone()]) {
                    CircuitHandle { cell }.reset();
                }
            }
        }
    }
}

/// One circuit, seen through a [`BreakerHandle`].
#[derive(Clone)]
pub struct CircuitHandle {
    cell: Arc<CircuitCell>,
}

impl fmt::Debug for CircuitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.cell, f)
    }
}

impl CircuitHandle {
    /// The circuit's key (`None` for a single-circuit breaker).
    pub fn key(&self) -> Option<&Key> {
        self.cell.key.as_ref()
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.cell.machine.state().0
    }

    /// The current generation: it grows by one on every transition.
    pub fn generation(&self) -> u64 {
        self.cell.machine.state().1
    }

    /// Lifetime counters (exact; never reset).
    pub fn counters(&self) -> Counters {
        self.cell.machine.counters()
    }

    /// What the sliding window holds now.
    pub fn window(&self) -> WindowSnapshot {
        self.cell.machine.window(self.cell.policy.now())
    }

    /// While open: how long until the circuit admits probes.
    pub fn retry_after(&self) -> Option<Duration> {
        let nanos = self.cell.machine.retry_after(self.cell.policy.now());
        (self.state() == State::Open).then(|| Duration::from_nanos(nanos))
    }

    /// Forces the circuit open: every call is refused until [`reset`](Self::reset) or
    /// [`force_closed`](Self::force_closed).
    pub fn force_open(&self) {
        self.force(State::ForcedOpen);
    }

    /// Forces the circuit closed: every call passes and nothing trips it until
    /// [`reset`](Self::reset) or [`force_open`](Self::force_open).
    pub fn force_closed(&self) {
        self.force(State::ForcedClosed);
    }

    /// Back to a fresh closed circuit: empty window, no failure run, base open time.
    /// Results of calls admitted before are ignored. Lifetime counters are kept.
    pub fn reset(&self) {
        self.force(State::Closed);
    }

    fn force(&self, to: State) {
        let t = self.cell.machine.force(to, self.cell.policy.now());
        self.cell.emit(t);
    }
}
