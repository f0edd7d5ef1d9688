use std::{
    collections::HashMap,
    fmt::Write,
    hash::{BuildHasher, Hasher},
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
/// name and labels are hashed once (foldhash over whole strings, seeded at random per
/// recorder), the hash's mixed bits pick one of 16 independently locked shards (so
/// concurrent requests rarely wait on each other), and the series is found in that
/// shard's map by the same hash and a full comparison of name and labels (distinct
/// label sets never share a series, even when their hashes collide).
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
    /// Seeds the series hash; random per recorder, so label values (which clients may
    /// influence) are not easily chosen to collide (the series count is bounded
    /// anyway).
    hasher: foldhash::fast::SeedableRandomState,
    count: AtomicUsize,
    dropped: AtomicU64,
}

/// Number of shards (a power of two).
const SHARDS: usize = 16;
const _: () = assert!(SHARDS.is_power_of_two());

/// The shard of a series hash: high bits folded onto low ones, then the top bits after
/// a multiply by an odd constant, so every bit of the hash counts (a fixed bit slice of
/// foldhash's output is not uniform for every seed), and the shard is independent of
/// the bits the shard's map uses for its buckets.
#[inline]
fn shard_index(hash: u64) -> usize {
    let folded = hash ^ (hash >> 29) ^ (hash >> 47);
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SHARDS.trailing_zeros())) as usize
}

/// Equal `&'static str`s are usually the same literal: compare the pointers first.
#[inline]
fn same_static(a: &'static str, b: &'static str) -> bool {
    std::ptr::eq(a, b) || a == b
}

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

    /// The hash of a series: each string written whole, no per-byte loop. foldhash
    /// folds each string's length into its state, which separates the strings
    /// (`("ab", "c")` and `("a", "bc")` hash differently); equal hashes are told apart
    /// by the full comparison anyway.
    #[inline]
    fn series_hash(&self, name: &str, labels: &[(&'static str, &str)]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(name.as_bytes());
        for (k, v) in labels {
            hasher.write(k.as_bytes());
            hasher.write(v.as_bytes());
        }
        hasher.finish()
    }

    fn with_series(
        &self,
        name: &'static str,
        kind: Kind,
        labels: &[(&'static str, &str)],
        update: impl FnOnce(&mut Value),
    ) {
        self.with_hashed_series(self.series_hash(name, labels), name, kind, labels, update);
    }

    fn with_hashed_series(
        &self,
        hash: u64,
        name: &'static str,
        kind: Kind,
        labels: &[(&'static str, &str)],
        update: impl FnOnce(&mut Value),
    ) {
        let matches = |s: &Series| {
            s.value.kind() == kind
                && s.labels.len() == labels.len()
                && same_static(s.name, name)
                && s.labels
                    .iter()
                    .zip(labels)
                    .all(|((k1, v1), (k2, v2))| same_static(k1, k2) && v1 == v2)
        };
        let shard = &self.shards[shard_index(hash)];
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

    /// Sequential label values (the usual worst case for a weak hash) spread over every
    /// shard, for many hash seeds (deterministic: fixed seeds).
    #[test]
    fn series_spread_over_shards() {
        const N: usize = 2_000;
        for seed in 0..32 {
            let r = PrometheusRecorder {
                hasher: foldhash::fast::SeedableRandomState::with_seed(
                    seed,
                    foldhash::SharedSeed::global_fixed(),
                ),
                ..PrometheusRecorder::default()
            };
            for i in 0..N {
                let i = i.to_string();
                r.counter("gateway.x", 1, &[("route", "users"), ("k", &i)]);
            }
            let sizes: Vec<usize> = r
                .shards
                .iter()
                .map(|s| s.lock().unwrap().series.values().map(Vec::len).sum())
                .collect();
            assert_eq!(sizes.iter().sum::<usize>(), N);
            // 125 expected per shard.
            assert!(
                sizes.iter().all(|n| (60..=200).contains(n)),
                "seed {seed}: {sizes:?}"
            );
        }
    }

    #[test]
    fn distinct_label_sets_never_merge() {
        let r = PrometheusRecorder::new();
        let sets: [&[(&'static str, &str)]; 8] = [
            &[],
            &[("a", "bc")],
            &[("ab", "c")],
            &[("a", "b"), ("c", "")],
            &[("a", "")],
            &[("a", "b"), ("c", "d")],
            &[("c", "d"), ("a", "b")],
            &[("a", "b"), ("c", "d"), ("e", "f")],
        ];
        for (i, labels) in sets.iter().enumerate() {
            r.counter("gateway.m", i as u64 + 1, labels);
        }
        // The same name and labels as a histogram is another series.
        r.histogram("gateway.m", 0.1, &[("a", "bc")]);
        let text = r.render();
        for (line, n) in [
            ("gateway_m_total ", 1),
            ("gateway_m_total{a=\"bc\"} ", 2),
            ("gateway_m_total{ab=\"c\"} ", 3),
            ("gateway_m_total{a=\"b\",c=\"\"} ", 4),
            ("gateway_m_total{a=\"\"} ", 5),
            ("gateway_m_total{a=\"b\",c=\"d\"} ", 6),
            ("gateway_m_total{c=\"d\",a=\"b\"} ", 7),
            ("gateway_m_total{a=\"b\",c=\"d\",e=\"f\"} ", 8),
        ] {
            assert!(
                text.contains(&format!("{line}{n}\n")),
                "{line}{n} in\n{text}"
            );
        }
        assert!(text.contains("gateway_m_seconds_count{a=\"bc\"} 1\n"));

        // Even with equal hashes (forced here), series are told apart by their labels.
        let r = PrometheusRecorder::new();
        let add = |labels: &[(&'static str, &str)], n| {
            r.with_hashed_series(7, "gateway.c", Kind::Counter, labels, |v| {
                if let Value::Counter(total) = v {
                    *total += n;
                }
            });
        };
        add(&[("k", "a")], 1);
        add(&[("k", "b")], 10);
        add(&[("k", "a")], 100);
        add(&[("j", "a")], 1000);
        let text = r.render();
        assert!(text.contains("gateway_c_total{k=\"a\"} 101\n"), "{text}");
        assert!(text.contains("gateway_c_total{k=\"b\"} 10\n"), "{text}");
        assert!(text.contains("gateway_c_total{j=\"a\"} 1000\n"), "{text}");
        assert_eq!(r.shards[shard_index(7)].lock().unwrap().series[&7].len(), 3);
    }
}
