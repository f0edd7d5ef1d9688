//! Transitions as metrics (core hook) and tracing events. Its own test binary: the
//! metrics recorder and the subscriber are process-wide.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use gateway_layers_breaker::BreakerLayer;
use gateway_layers_core::metrics::{self, MetricsRecorder};
use http::{Request, Response};
use http_body_util::Full;
use tower::{ServiceExt, service_fn};

#[derive(Debug, Default)]
struct Recorder {
    entries: Mutex<Vec<String>>,
    rejected: AtomicU64,
}

impl MetricsRecorder for Recorder {
    fn counter(&self, name: &'static str, value: u64, labels: &[(&'static str, &str)]) {
        if name == "gateway.breaker.rejected" {
            self.rejected.fetch_add(value, Ordering::SeqCst);
        }
        self.entries
            .lock()
            .unwrap()
            .push(format!("{name} {value} {labels:?}"));
    }
    fn histogram(&self, _name: &'static str, _value: f64, _labels: &[(&'static str, &str)]) {}
    fn gauge(&self, name: &'static str, value: i64, labels: &[(&'static str, &str)]) {
        self.entries
            .lock()
            .unwrap()
            .push(format!("{name} {value} {labels:?}"));
    }
}

/// Collects the `event` field and the `to` field of every event.
#[derive(Default)]
struct Events(Arc<Mutex<Vec<String>>>);

struct Visitor(Vec<String>);

impl tracing::field::Visit for Visitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if matches!(field.name(), "event" | "to" | "reason" | "breaker") {
            self.0.push(format!("{}={value}", field.name()));
        }
    }
    fn record_debug(&mut self, _field: &tracing::field::Field, _value: &dyn std::fmt::Debug) {}
}

impl tracing::Subscriber for Events {
    fn enabled(&self, _metadata: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() != "gateway_layers::breaker" {
            return;
        }
        let mut visitor = Visitor(Vec::new());
        event.record(&mut visitor);
        self.0.lock().unwrap().push(visitor.0.join(" "));
    }
    fn enter(&self, _span: &tracing::span::Id) {}
    fn exit(&self, _span: &tracing::span::Id) {}
}

#[test]
fn transitions_reach_metrics_and_tracing() {
    let recorder: &'static Recorder = Box::leak(Box::default());
    metrics::set_recorder(recorder).unwrap();
    let events = Events::default();
    let seen = events.0.clone();
    tracing::subscriber::with_default(events, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let layer = BreakerLayer::builder()
                .name("payments")
                .consecutive_failures(1)
                .build()
                .unwrap();
            let handle = layer.handle();
            let svc = tower::ServiceBuilder::new()
                .layer(layer)
                .service(service_fn(|_req: Request<Full<Bytes>>| async {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(500)
                            .body(Full::<Bytes>::default())
                            .unwrap(),
                    )
                }));
            let call = || svc.clone().oneshot(Request::new(Full::default()));
            assert_eq!(call().await.unwrap().status(), 500);
            assert_eq!(call().await.unwrap().status(), 503);
            assert_eq!(call().await.unwrap().status(), 503);
            handle.circuit().reset();
        });
    });
    assert_eq!(recorder.rejected.load(Ordering::SeqCst), 2);
    let entries = recorder.entries.lock().unwrap().clone();
    assert!(
        entries
            .iter()
            .any(|e| e.starts_with("gateway.breaker.transitions 1")
                && e.contains("(\"to\", \"open\")")
                && e.contains("(\"reason\", \"consecutive_failures\")")
                && e.contains("(\"breaker\", \"payments\")")),
        "{entries:#?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.starts_with("gateway.breaker.state 1 ")),
        "{entries:#?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.starts_with("gateway.breaker.state 0 ")),
        "{entries:#?}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "event=breaker.transition breaker=payments to=open reason=consecutive_failures",
            "event=breaker.transition breaker=payments to=closed reason=reset",
        ]
    );
}
