use std::{
    collections::HashMap,
    fmt::Write,
    hash::{Hash, Hasher},
    sync::{
        Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use super::MetricsRecorder;

/// Upper bounds (seconds) of the histogram buckets.
pub const DEFAULT_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The most distinct series kept (name + labels); reports for new series past it are
/// dropped and counted in `gateway_metrics_dropped_series_total`.
pub const MAX_SERIES: usize = 10_000;

/// Keeps every series in memory and renders the Prometheus text exposition format.
///
/// Names are converted from `gateway.ratelimit.rejected` to
/// `gateway_ratelimit_rejected_total` (counters), `..._seconds` (histograms) and
/// `gateway_breaker_state` (gauges). Recording a known series allocates nothing: the
/// name and labels are hashed (FNV-1a) to one of 16 independently locked shards, so
/// concurrent requests rarely wait on each other.
///
/// ```
/// use gateway_layers_core::metrics::{MetricsRecorder, PrometheusRecorder};
///
/// let recorder = PrometheusRecorder::new();
/// recorder.counter("gateway.requests", 2, &[("route", "users")]);
/// recorder.histogram("gateway.upstream.duration", 0.004, &[("target", "a")]);
/// let text = recorder.render();
/// assert!(text.contains("gateway_requests_total{route=\"users\"} 2\n"));
/// assert!(text.contains("gateway_upstream_duration_seconds_bucket{target=\"a\",le=\"0.005\"} 1\n"));
/// ```
#[derive(Debug, Default)]
pub struct PrometheusRecorder {
    shards: [Mutex<Shard>; SHARDS],
    count: AtomicUsize,
    dropped: AtomicU64,
}

const SHARDS: usize = 16;

#[derive(Debug, Default)]
struct Shard {
    series: HashMap<u64, Vec<Series>, std::hash::BuildHasherDefault<Identity>>,
}

/// The map key is already a hash.
#[derive(Debug, Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// FNV-1a: fast on the short names and labels of metrics; keys are not
/// attacker-chosen beyond label values, and the series count is bounded.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[derive(Debug)]
struct Series {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
    value: Value,
}

#[derive(Debug)]
enum Value {
    Counter(u64),
    Gauge(i64),
    Histogram {
        buckets: [u64; DEFAULT_BUCKETS.len()],
        sum: f64,
        count: u64,
    },
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Value {
    fn kind(&self) -> Kind {
        match self {
            Value::Counter(_) => Kind::Counter,
            Value::Gauge(_) => Kind::Gauge,
            Value::Histogram { .. } => Kind::Histogram,
        }
    }

    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Counter => Value::Counter(0),
            Kind::Gauge => Value::Gauge(0),
            Kind::Histogram => Value::Histogram {
                buckets: [0; DEFAULT_BUCKETS.len()],
                sum: 0.0,
                count: 0,
            },
        }
    }
}

impl PrometheusRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_series(
        &self,
        name: &'static str,
        kind: Kind,
        labels: &[(&'static str, &str)],
        update: impl FnOnce(&mut Value),
    ) {
        let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
        name.hash(&mut hasher);
        for (k, v) in labels {
            k.hash(&mut hasher);
            v.hash(&mut hasher);
        }
        let hash = hasher.finish();
        let matches = |s: &Series| {
            s.name == name
                && s.value.kind() == kind
                && s.labels.len() == labels.len()
                && s.labels
                    .iter()
                    .zip(labels)
                    .all(|((k1, v1), (k2, v2))| k1 == k2 && v1 == v2)
        };
        let shard = &self.shards[(hash as usize) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(series) = shard
            .series
            .get_mut(&hash)
            .and_then(|bucket| bucket.iter_mut().find(|s| matches(s)))
        {
            update(&mut series.value);
            return;
        }
        if self.count.fetch_add(1, Ordering::Relaxed) >= MAX_SERIES {
            self.count.fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut value = Value::new(kind);
        update(&mut value);
        shard.series.entry(hash).or_default().push(Series {
            name,
            labels: labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            value,
        });
    }

    /// Renders every series in the Prometheus text format (version 0.0.4), sorted by
    /// name.
    pub fn render(&self) -> String {
        let shards: Vec<_> = self
            .shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let mut all: Vec<&Series> = shards
            .iter()
            .flat_map(|shard| shard.series.values().flatten())
            .collect();
        all.sort_by(|a, b| a.name.cmp(b.name).then_with(|| a.labels.cmp(&b.labels)));
        let mut out = String::new();
        let mut last_family = String::new();
        for series in all {
            let base = series.name.replace(['.', '-'], "_");
            let family = match series.value {
                Value::Counter(_) if !base.ends_with("_total") => format!("{base}_total"),
                Value::Histogram { .. } if !base.ends_with("_seconds") => format!("{base}_seconds"),
                _ => base,
            };
            if family != last_family {
                let kind = match series.value {
                    Value::Counter(_) => "counter",
                    Value::Gauge(_) => "gauge",
                    Value::Histogram { .. } => "histogram",
                };
                let _ = writeln!(out, "# TYPE {family} {kind}");
                last_family.clone_from(&family);
            }
            match &series.value {
                Value::Counter(v) => {
                    let _ = writeln!(out, "{family}{} {v}", labels(&series.labels, None));
                }
                Value::Gauge(v) => {
                    let _ = writeln!(out, "{family}{} {v}", labels(&series.labels, None));
                }
                Value::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    let mut cumulative = 0;
                    for (bound, n) in DEFAULT_BUCKETS.iter().zip(buckets) {
                        cumulative += n;
                        let le = format!("{bound}");
                        let _ = writeln!(
                            out,
                            "{family}_bucket{} {cumulative}",
                            labels(&series.labels, Some(&le))
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{family}_bucket{} {count}",
                        labels(&series.labels, Some("+Inf"))
                    );
                    let _ = writeln!(out, "{family}_sum{} {sum}", labels(&series.labels, None));
                    let _ = writeln!(
                        out,
                        "{family}_count{} {count}",
                        labels(&series.labels, None)
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# TYPE gateway_metrics_dropped_series_total counter\ngateway_metrics_dropped_series_total {}",
            self.dropped.load(Ordering::Relaxed)
        );
        out
    }
}

fn labels(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    let mut first = true;
    let mut push = |k: &str, v: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&k.replace(['.', '-'], "_"));
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    };
    for (k, v) in labels {
        push(k, v);
    }
    if let Some(le) = le {
        push("le", le);
    }
    out.push('}');
    out
}

impl MetricsRecorder for PrometheusRecorder {
    fn counter(&self, name: &'static str, value: u64, labels: &[(&'static str, &str)]) {
        self.with_series(name, Kind::Counter, labels, |v| {
            if let Value::Counter(total) = v {
                *total = total.saturating_add(value);
            }
        });
    }

    fn histogram(&self, name: &'static str, value: f64, labels: &[(&'static str, &str)]) {
        if !value.is_finite() {
            return;
        }
        self.with_series(name, Kind::Histogram, labels, |v| {
            if let Value::Histogram {
                buckets,
                sum,
                count,
            } = v
            {
                if let Some(i) = DEFAULT_BUCKETS.iter().position(|bound| value <= *bound) {
                    buckets[i] += 1;
                }
                *sum += value;
                *count += 1;
            }
        });
    }

    fn gauge(&self, name: &'static str, value: i64, labels: &[(&'static str, &str)]) {
        self.with_series(name, Kind::Gauge, labels, |v| {
            if let Value::Gauge(current) = v {
                *current = value;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_and_escapes() {
        let r = PrometheusRecorder::new();
        r.counter("gateway.requests", 1, &[("route", "a")]);
        r.counter("gateway.requests", 2, &[("route", "a")]);
        r.counter("gateway.requests", 1, &[("route", "b\"\n\\")]);
        r.gauge("gateway.breaker.state", 2, &[("key", "up-1")]);
        r.gauge("gateway.breaker.state", 0, &[("key", "up-1")]);
        r.histogram("gateway.upstream.duration", 0.2, &[]);
        r.histogram("gateway.upstream.duration", 20.0, &[]);
        r.histogram("gateway.upstream.duration", f64::NAN, &[]);
        let text = r.render();
        assert!(text.contains("# TYPE gateway_requests_total counter\n"));
        assert!(text.contains("gateway_requests_total{route=\"a\"} 3\n"));
        assert!(text.contains("gateway_requests_total{route=\"b\\\"\\n\\\\\"} 1\n"));
        assert!(text.contains(
            "# TYPE gateway_breaker_state gauge\ngateway_breaker_state{key=\"up-1\"} 0\n"
        ));
        assert!(text.contains("gateway_upstream_duration_seconds_bucket{le=\"0.1\"} 0\n"));
        assert!(text.contains("gateway_upstream_duration_seconds_bucket{le=\"0.25\"} 1\n"));
        assert!(text.contains("gateway_upstream_duration_seconds_bucket{le=\"10\"} 1\n"));
        assert!(text.contains("gateway_upstream_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("gateway_upstream_duration_seconds_count 2\n"));
        assert_eq!(text.matches("# TYPE gateway_requests_total").count(), 1);
    }

    #[test]
    fn series_count_is_bounded() {
        let r = PrometheusRecorder::new();
        for i in 0..(MAX_SERIES + 5) {
            r.counter("gateway.x", 1, &[("k", &i.to_string())]);
        }
        let text = r.render();
        assert!(text.contains("gateway_metrics_dropped_series_total 5\n"));
        assert_eq!(text.matches("gateway_x_total{").count(), MAX_SERIES);
    }
}
