//! A process-wide metrics hook.
//!
//! Layers report counters and histograms named `gateway.<layer>.<what>` through this
//! module. With no recorder installed a report costs one atomic load. Install one
//! with [`set_recorder`]: your own [`MetricsRecorder`], [`PrometheusRecorder`] (keeps
//! the series in memory and renders the Prometheus text format for a `/metrics`
//! endpoint), or `OtelRecorder` (feature `otel`) which forwards to an OpenTelemetry
//! meter.
//!
//! ```
//! use gateway_layers_core::metrics::{self, MetricsRecorder};
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! #[derive(Debug, Default)]
//! struct Count(AtomicU64);
//! impl MetricsRecorder for Count {
//!     fn counter(&self, _name: &'static str, value: u64, _labels: &[(&'static str, &str)]) {
//!         self.0.fetch_add(value, Ordering::Relaxed);
//!     }
//!     fn histogram(&self, _name: &'static str, _value: f64, _labels: &[(&'static str, &str)]) {}
//!     fn gauge(&self, _name: &'static str, _value: i64, _labels: &[(&'static str, &str)]) {}
//! }
//!
//! static COUNT: Count = Count(AtomicU64::new(0));
//! metrics::set_recorder(&COUNT).unwrap();
//! metrics::counter("gateway.ratelimit.rejected", 1, &[("tier", "free")]);
//! assert_eq!(COUNT.0.load(Ordering::Relaxed), 1);
//! ```

use std::sync::OnceLock;

/// Receives the metrics layers report.
pub trait MetricsRecorder: Send + Sync + 'static {
    /// Adds `value` to a monotonic counter.
    fn counter(&self, name: &'static str, value: u64, labels: &[(&'static str, &str)]);
    /// Records one observation (durations in seconds).
    fn histogram(&self, name: &'static str, value: f64, labels: &[(&'static str, &str)]);
    /// Sets a gauge (states, sizes).
    fn gauge(&self, name: &'static str, value: i64, labels: &[(&'static str, &str)]);
}

static RECORDER: OnceLock<&'static dyn MetricsRecorder> = OnceLock::new();

/// The recorder was already installed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a metrics recorder is already installed")]
pub struct AlreadySet;

/// Installs the process-wide recorder (once).
pub fn set_recorder(recorder: &'static dyn MetricsRecorder) -> Result<(), AlreadySet> {
    RECORDER.set(recorder).map_err(|_| AlreadySet)
}

/// Whether a recorder is installed (to skip building labels when not).
#[inline]
pub fn enabled() -> bool {
    RECORDER.get().is_some()
}

/// Reports a counter increment.
#[inline]
pub fn counter(name: &'static str, value: u64, labels: &[(&'static str, &str)]) {
    if let Some(recorder) = RECORDER.get() {
        recorder.counter(name, value, labels);
    }
}

/// Reports a histogram observation.
#[inline]
pub fn histogram(name: &'static str, value: f64, labels: &[(&'static str, &str)]) {
    if let Some(recorder) = RECORDER.get() {
        recorder.histogram(name, value, labels);
    }
}

/// Reports a gauge value.
#[inline]
pub fn gauge(name: &'static str, value: i64, labels: &[(&'static str, &str)]) {
    if let Some(recorder) = RECORDER.get() {
        recorder.gauge(name, value, labels);
    }
}

#[cfg(feature = "otel")]
pub use otel::OtelRecorder;

pub use prometheus::{DEFAULT_BUCKETS, MAX_SERIES, PrometheusRecorder};

mod prometheus;

#[cfg(feature = "otel")]
mod otel {
    use std::{
        collections::HashMap,
        sync::{Arc, RwLock},
    };

    use opentelemetry::{
        KeyValue,
        metrics::{Counter, Gauge, Histogram, Meter},
    };

    use super::MetricsRecorder;

    /// Forwards reports to an OpenTelemetry [`Meter`], creating each instrument once.
    #[derive(Debug)]
    pub struct OtelRecorder {
        meter: Meter,
        counters: RwLock<HashMap<&'static str, Counter<u64>>>,
        histograms: RwLock<HashMap<&'static str, Histogram<f64>>>,
        gauges: RwLock<HashMap<&'static str, Gauge<i64>>>,
    }

    impl OtelRecorder {
        /// A recorder on `meter`.
        pub fn new(meter: Meter) -> Self {
            Self {
                meter,
                counters: RwLock::default(),
                histograms: RwLock::default(),
                gauges: RwLock::default(),
            }
        }

        /// A recorder on the global meter provider's `gateway-layers` meter.
        pub fn global() -> Self {
            Self::new(opentelemetry::global::meter("gateway-layers"))
        }
    }

    fn attributes(labels: &[(&'static str, &str)]) -> Vec<KeyValue> {
        labels
            .iter()
            .map(|(k, v)| KeyValue::new(*k, v.to_string()))
            .collect()
    }

    fn instrument<T: Clone>(
        cache: &RwLock<HashMap<&'static str, T>>,
        name: &'static str,
        make: impl FnOnce() -> T,
    ) -> T {
        if let Some(found) = cache.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return found.clone();
        }
        let mut write = cache.write().unwrap_or_else(|e| e.into_inner());
        write.entry(name).or_insert_with(make).clone()
    }

    impl MetricsRecorder for OtelRecorder {
        fn counter(&self, name: &'static str, value: u64, labels: &[(&'static str, &str)]) {
            instrument(&self.counters, name, || {
                self.meter.u64_counter(name).build()
            })
            .add(value, &attributes(labels));
        }

        fn histogram(&self, name: &'static str, value: f64, labels: &[(&'static str, &str)]) {
            instrument(&self.histograms, name, || {
                self.meter.f64_histogram(name).with_unit("s").build()
            })
            .record(value, &attributes(labels));
        }

        fn gauge(&self, name: &'static str, value: i64, labels: &[(&'static str, &str)]) {
            instrument(&self.gauges, name, || self.meter.i64_gauge(name).build())
                .record(value, &attributes(labels));
        }
    }

    // Keep Arc in scope for users wrapping the recorder.
    #[allow(dead_code)]
    type Shared = Arc<OtelRecorder>;
}
