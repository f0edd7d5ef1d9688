//! The test cases, through the service.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use gateway_layers_breaker::{
    BreakerLayer, BreakerOpen, Reason, SlidingWindow, State, TransitionEvent,
};
use gateway_layers_core::{BoxError, GatewayBody, Key, Rejected};
use gateway_layers_test_support::{MockUpstream, body_json, http_client};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::sync::Semaphore;
use tower::{Service, ServiceExt, service_fn};

type Req = Request<Full<Bytes>>;
type Res = Response<Full<Bytes>>;

fn request() -> Req {
    Request::new(Full::default())
}

fn with_status(status: u16) -> Req {
    Request::builder()
        .header("x-status", status.to_string())
        .body(Full::default())
        .unwrap()
}

fn response(status: u16) -> Res {
    Response::builder()
        .status(status)
        .body(Full::default())
        .unwrap()
}

/// An upstream answering the status in `x-status` (default 200), counting calls.
#[derive(Clone, Default)]
struct Counting {
    calls: Arc<AtomicUsize>,
}

impl Counting {
    fn service(
        &self,
    ) -> impl Service<Req, Response = Res, Error = Infallible, Future: Send> + Clone + Send + 'static
    {
        let calls = self.calls.clone();
        service_fn(move |req: Req| {
            calls.fetch_add(1, Ordering::SeqCst);
            let status = req
                .headers()
                .get("x-status")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(200);
            async move { Ok::<_, Infallible>(response(status)) }
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// An upstream that counts calls, then waits for the gate before answering.
#[derive(Clone)]
struct Gated {
    calls: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

impl Gated {
    fn new() -> Self {
        Self {
            calls: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }

    fn service(
        &self,
    ) -> impl Service<Req, Response = Res, Error = Infallible, Future: Send> + Clone + Send + 'static
    {
        let calls = self.calls.clone();
        let gate = self.gate.clone();
        service_fn(move |req: Req| {
            calls.fetch_add(1, Ordering::SeqCst);
            let gate = gate.clone();
            let status = req
                .headers()
                .get("x-status")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(200);
            async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, Infallible>(response(status))
            }
        })
    }

    fn open(&self, n: usize) {
        self.gate.add_permits(n);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn status_of<S>(svc: &S, req: Req) -> StatusCode
where
    S: Service<Req, Response = Response<GatewayBody<Full<Bytes>>>, Error = Infallible> + Clone,
{
    svc.clone().oneshot(req).await.unwrap().status()
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn trips_after_exactly_the_configured_consecutive_failures() {
    let upstream = Counting::default();
    let layer = BreakerLayer::builder()
        .failure_rate(None)
        .consecutive_failures(5)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(upstream.service());
    for i in 0..4 {
        assert_eq!(status_of(&svc, with_status(500)).await, 500, "call {i}");
        assert_eq!(handle.circuit().state(), State::Closed);
    }
    // A success breaks the run.
    assert_eq!(status_of(&svc, request()).await, 200);
    for _ in 0..4 {
        status_of(&svc, with_status(503)).await;
    }
    assert_eq!(handle.circuit().state(), State::Closed);
    assert_eq!(status_of(&svc, with_status(503)).await, 503);
    assert_eq!(handle.circuit().state(), State::Open);
    assert_eq!(upstream.calls(), 10);
}

#[tokio::test(start_paused = true)]
async fn trips_after_exactly_the_configured_failure_rate() {
    let upstream = Counting::default();
    let layer = BreakerLayer::builder()
        .window(SlidingWindow::Count(10))
        .minimum_calls(10)
        .failure_rate(50.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(upstream.service());
    // Nine failures: the window has not reached its minimum.
    for _ in 0..9 {
        status_of(&svc, with_status(500)).await;
    }
    assert_eq!(handle.circuit().state(), State::Closed);
    assert_eq!(handle.circuit().window().failures, 9);
    // The tenth call, a success, cannot trip; the next failure (9 of 10) does.
    status_of(&svc, request()).await;
    assert_eq!(handle.circuit().state(), State::Closed);
    status_of(&svc, with_status(500)).await;
    assert_eq!(handle.circuit().state(), State::Open);
}

#[tokio::test]
async fn rejects_while_open_without_calling_the_upstream() {
    let upstream = MockUpstream::statuses([500]).await;
    let layer = BreakerLayer::builder()
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(30))
        .build()
        .unwrap();
    let handle = layer.handle();
    let client = http_client().map_err(BoxError::from);
    let svc = tower::ServiceBuilder::new().layer(layer).service(client);
    let url = upstream.url_for("/orders");
    for _ in 0..3 {
        let req = Request::get(&url).body(Full::default()).unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 500);
    }
    assert_eq!(upstream.requests(), 3);
    for _ in 0..20 {
        let req = Request::get(&url).body(Full::default()).unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let retry_after: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&retry_after), "{retry_after}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let rejected = *res.extensions().get::<Rejected>().unwrap();
        assert_eq!((rejected.layer, rejected.code), ("breaker", "circuit_open"));
        let open = res.extensions().get::<BreakerOpen>().unwrap();
        assert_eq!(open.state, State::Open);
        let json = body_json(res.into_body()).await;
        assert_eq!(json["status"], 503);
        assert_eq!(json["code"], "circuit_open");
    }
    assert_eq!(
        upstream.requests(),
        3,
        "the upstream was not touched while open"
    );
    assert_eq!(handle.circuit().counters().rejected, 20);
}

#[tokio::test(start_paused = true)]
async fn after_the_open_time_exactly_n_of_50_concurrent_requests_reach_the_upstream() {
    let upstream = Gated::new();
    let layer = BreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(10))
        .half_open(3, 3)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(upstream.service());
    upstream.open(1);
    assert_eq!(status_of(&svc, with_status(500)).await, 500);
    assert_eq!(handle.circuit().state(), State::Open);
    assert_eq!(upstream.calls(), 1);

    tokio::time::advance(Duration::from_secs(10)).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(request()).await.unwrap().status() })
        })
        .collect();
    settle().await;
    assert_eq!(handle.circuit().state(), State::HalfOpen);
    assert_eq!(
        upstream.calls(),
        1 + 3,
        "exactly 3 probes reached the upstream"
    );
    upstream.open(3);
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3);
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 47);
    assert_eq!(handle.circuit().state(), State::Closed);
    assert_eq!(upstream.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_releases_its_permit() {
    let upstream = Gated::new();
    let layer = BreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(5))
        .half_open(1, 1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(upstream.service());
    upstream.open(1);
    status_of(&svc, with_status(500)).await;
    tokio::time::advance(Duration::from_secs(5)).await;

    // The probe is admitted and hangs; a second request is refused.
    let probe = tokio::spawn({
        let svc = svc.clone();
        async move { svc.oneshot(request()).await }
    });
    settle().await;
    assert_eq!(upstream.calls(), 2);
    assert_eq!(status_of(&svc, request()).await, 503);

    // The client goes away: its permit comes back, and the next request probes.
    probe.abort();
    assert!(probe.await.unwrap_err().is_cancelled());
    assert_eq!(handle.circuit().counters().cancelled, 1);
    assert_eq!(handle.circuit().state(), State::HalfOpen);
    upstream.open(1);
    assert_eq!(status_of(&svc, request()).await, 200);
    assert_eq!(upstream.calls(), 3);
    assert_eq!(handle.circuit().state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn calls_overhanging_a_transition_do_not_flip_the_new_state() {
    let layer = BreakerLayer::builder()
        .failure_rate(None)
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(5))
        .half_open(1, 1)
        .build()
        .unwrap();
    let handle = layer.handle();
    // Two services behind clones of one layer share its circuit.
    let slow_upstream = Gated::new();
    let slow = tower::Layer::layer(&layer.clone(), slow_upstream.service());
    let fast_upstream = Counting::default();
    let fast = tower::Layer::layer(&layer, fast_upstream.service());

    // Ten slow calls start while closed (generation 0); they will fail, late.
    let overhanging: Vec<_> = (0..10)
        .map(|_| {
            let slow = slow.clone();
            tokio::spawn(async move { slow.oneshot(with_status(500)).await.unwrap().status() })
        })
        .collect();
    settle().await;
    assert_eq!(slow_upstream.calls(), 10);

    // Meanwhile the circuit trips, waits, probes and closes again.
    status_of(&fast, with_status(500)).await;
    status_of(&fast, with_status(500)).await;
    assert_eq!(handle.circuit().state(), State::Open);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(status_of(&fast, request()).await, 200);
    assert_eq!(handle.circuit().state(), State::Closed);
    let generation = handle.circuit().generation();
    assert_eq!(generation, 3);

    // The ten old calls now fail: two current failures would trip the circuit.
    slow_upstream.open(10);
    for task in overhanging {
        assert_eq!(task.await.unwrap(), 500);
    }
    assert_eq!(
        handle.circuit().state(),
        State::Closed,
        "late failures moved nothing"
    );
    assert_eq!(handle.circuit().generation(), generation);
    assert_eq!(handle.circuit().counters().outdated, 10);
    assert_eq!(handle.circuit().window().calls, 0);
    // A current failure still counts.
    status_of(&fast, with_status(500)).await;
    assert_eq!(handle.circuit().window().failures, 1);
}

#[tokio::test(start_paused = true)]
async fn client_errors_do_not_count() {
    let upstream = Counting::default();
    let layer = BreakerLayer::builder()
        .window(SlidingWindow::Count(10))
        .minimum_calls(5)
        .consecutive_failures(3)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(upstream.service());
    for status in [400, 401, 403, 404, 409, 422, 429].repeat(10) {
        assert_eq!(status_of(&svc, with_status(status)).await, status);
    }
    assert_eq!(handle.circuit().state(), State::Closed);
    let window = handle.circuit().window();
    assert_eq!((window.calls, window.failures), (10, 0));
    assert_eq!(handle.circuit().counters().successful, 70);
    assert_eq!(handle.circuit().counters().failed, 0);
}

#[tokio::test]
async fn errors_count_as_failures() {
    let layer = BreakerLayer::builder()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(|_req: Req| async {
            Err::<Res, BoxError>(Box::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            )))
        }));
    for _ in 0..2 {
        assert!(svc.clone().oneshot(request()).await.is_err());
    }
    assert_eq!(handle.circuit().state(), State::Open);
    let res = svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(res.status(), 503);
}

#[tokio::test]
async fn per_key_circuits_are_isolated() {
    let failing = MockUpstream::statuses([502]).await;
    let healthy = MockUpstream::echo().await;
    let layer = BreakerLayer::builder()
        .per_authority()
        .consecutive_failures(3)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(http_client().map_err(BoxError::from));
    let get = |url: String| Request::get(url).body(Full::default()).unwrap();
    for _ in 0..5 {
        let res = svc
            .clone()
            .oneshot(get(failing.url_for("/a")))
            .await
            .unwrap();
        assert!(res.status() == 502 || res.status() == 503);
        let res = svc
            .clone()
            .oneshot(get(healthy.url_for("/b")))
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "B never affected by A");
    }
    assert_eq!(failing.requests(), 3);
    assert_eq!(healthy.requests(), 5);
    let key_a = Key::Text(failing.addr().to_string().into());
    let key_b = Key::Text(healthy.addr().to_string().into());
    assert_eq!(handle.get(&key_a).unwrap().state(), State::Open);
    assert_eq!(handle.get(&key_b).unwrap().state(), State::Closed);
    assert_eq!(handle.keys().len(), 2);
    let res = svc
        .clone()
        .oneshot(get(failing.url_for("/a")))
        .await
        .unwrap();
    assert_eq!(
        res.extensions().get::<BreakerOpen>().unwrap().key,
        Some(key_a)
    );
}

#[tokio::test(start_paused = true)]
async fn per_key_map_is_bounded() {
    let upstream = Counting::default();
    let layer = BreakerLayer::builder()
        .per_key_extractor(gateway_layers_core::key::HeaderKey::new("x-tenant").unwrap())
        .consecutive_failures(1)
        .max_circuits(4)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(upstream.service());
    let tenant = |t: usize, status: u16| {
        Request::builder()
            .header("x-tenant", format!("t{t}"))
            .header("x-status", status.to_string())
            .body(Full::default())
            .unwrap()
    };
    // Four tenants trip their circuits: open circuits are never evicted.
    for t in 0..4 {
        assert_eq!(status_of(&svc, tenant(t, 500)).await, 500);
    }
    assert_eq!(handle.keys().len(), 4);
    // A fifth tenant finds the map full of open circuits: it uses the overflow circuit.
    assert_eq!(status_of(&svc, tenant(4, 200)).await, 200);
    assert_eq!(handle.keys().len(), 4);
    assert_eq!(handle.circuit().counters().successful, 1);
    // Once one is reset (closed and idle) it can be evicted for a new key.
    handle.reset_all();
    assert_eq!(status_of(&svc, tenant(5, 200)).await, 200);
    assert_eq!(handle.keys().len(), 4);
    assert!(handle.get(&Key::Header("t5".parse().unwrap())).is_some());
    // A request without the key is refused with 400.
    let res = svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_tasks_times_ten_thousand_calls_give_exact_counters() {
    let upstream = Counting::default();
    let layer = BreakerLayer::builder()
        .window(SlidingWindow::Count(100))
        .failure_rate(100.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(upstream.service());
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                for i in 0..10_000 {
                    // One failure in ten: no 100-call run of failures can form.
                    let req = if i % 10 == 0 {
                        with_status(500)
                    } else {
                        request()
                    };
                    let res = svc.ready().await.unwrap().call(req).await.unwrap();
                    assert_ne!(res.status(), 503);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let counters = handle.circuit().counters();
    assert_eq!(counters.successful, 90_000);
    assert_eq!(counters.failed, 10_000);
    assert_eq!(counters.rejected, 0);
    assert_eq!(counters.cancelled, 0);
    assert_eq!(upstream.calls(), 100_000);
    let window = handle.circuit().window();
    assert_eq!(window.calls, 100);
    assert!(window.failures <= 100);
    assert_eq!(handle.circuit().state(), State::Closed);
}

#[tokio::test]
async fn works_under_axum_router_layer_and_route_layer() {
    use axum::{Router, routing::get};

    let layer = BreakerLayer::builder()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let app = Router::new()
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route("/ok", get(|| async { "ok" }))
        .layer(layer.clone());
    let call = |app: &Router, path: &str| {
        app.clone()
            .oneshot(Request::get(path).body(axum::body::Body::empty()).unwrap())
    };
    assert_eq!(call(&app, "/ok").await.unwrap().status(), 200);
    assert_eq!(call(&app, "/fail").await.unwrap().status(), 500);
    assert_eq!(call(&app, "/fail").await.unwrap().status(), 500);
    assert_eq!(handle.circuit().state(), State::Open);
    let res = call(&app, "/ok").await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));

    // route_layer, keyed per route: /fail trips alone.
    let per_route = BreakerLayer::builder()
        .per_key_extractor(gateway_layers_core::key::RouteKey)
        .consecutive_failures(2)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/fail", get(|| async { StatusCode::BAD_GATEWAY }))
        .route("/ok", get(|| async { "ok" }))
        .route_layer(per_route);
    for _ in 0..3 {
        call(&app, "/fail").await.unwrap();
    }
    assert_eq!(call(&app, "/fail").await.unwrap().status(), 503);
    assert_eq!(call(&app, "/ok").await.unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn handle_forces_and_reads_state() {
    let upstream = Counting::default();
    let layer = BreakerLayer::builder().build().unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(upstream.service());
    let circuit = handle.circuit();
    circuit.force_open();
    assert_eq!(circuit.state(), State::ForcedOpen);
    let res = svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(!res.headers().contains_key("retry-after"));
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(
        status_of(&svc, request()).await,
        503,
        "forced open stays open"
    );
    circuit.force_closed();
    for _ in 0..200 {
        status_of(&svc, with_status(500)).await;
    }
    assert_eq!(circuit.state(), State::ForcedClosed);
    circuit.reset();
    assert_eq!(circuit.state(), State::Closed);
    assert_eq!(circuit.counters().failed, 200);
    assert_eq!(circuit.counters().rejected, 2);
    assert_eq!(upstream.calls(), 200);
}

#[tokio::test(start_paused = true)]
async fn events_callback_and_retry_after_follow_the_open_time() {
    let events: Arc<Mutex<Vec<(State, State, Reason)>>> = Arc::default();
    let seen = events.clone();
    let upstream = Counting::default();
    let layer = BreakerLayer::builder()
        .name("orders")
        .consecutive_failures(1)
        .exponential_open(Duration::from_secs(10), 2.0, Duration::from_secs(30))
        .half_open(1, 1)
        .on_transition(move |e: &TransitionEvent| {
            assert_eq!(e.name.as_deref(), Some("orders"));
            seen.lock().unwrap().push((e.from, e.to, e.reason));
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(upstream.service());
    status_of(&svc, with_status(500)).await;
    let res = svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(res.headers()["retry-after"], "10");
    tokio::time::advance(Duration::from_millis(2_500)).await;
    let res = svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(res.headers()["retry-after"], "8", "rounded up");
    tokio::time::advance(Duration::from_millis(7_500)).await;
    // The probe fails: reopened for twice as long.
    status_of(&svc, with_status(500)).await;
    assert_eq!(
        handle.circuit().retry_after(),
        Some(Duration::from_secs(20))
    );
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(status_of(&svc, request()).await, 200);
    assert_eq!(handle.circuit().state(), State::Closed);
    assert_eq!(
        *events.lock().unwrap(),
        [
            (State::Closed, State::Open, Reason::ConsecutiveFailures),
            (State::Open, State::HalfOpen, Reason::OpenTimeElapsed),
            (State::HalfOpen, State::Open, Reason::ProbeFailed),
            (State::Open, State::HalfOpen, Reason::OpenTimeElapsed),
            (State::HalfOpen, State::Closed, Reason::ProbesSucceeded),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn slow_calls_and_time_window() {
    let upstream = Gated::new();
    let layer = BreakerLayer::builder()
        .window(SlidingWindow::time(Duration::from_secs(10)))
        .minimum_calls(3)
        .failure_rate(None)
        .slow_calls(Duration::from_secs(2), 100.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(upstream.service());
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(request()).await.unwrap().status() })
        })
        .collect();
    settle().await;
    tokio::time::advance(Duration::from_secs(3)).await;
    upstream.open(3);
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(handle.circuit().state(), State::Open);
    assert_eq!(handle.circuit().counters().slow, 3);
}

#[tokio::test(start_paused = true)]
async fn half_open_max_wait_reopens_a_stuck_circuit() {
    let upstream = Gated::new();
    let layer = BreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(5))
        .half_open(1, 1)
        .half_open_max_wait(Duration::from_secs(30))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(upstream.service());
    upstream.open(1);
    status_of(&svc, with_status(500)).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let _hung = tokio::spawn({
        let svc = svc.clone();
        async move { svc.oneshot(request()).await }
    });
    settle().await;
    assert_eq!(handle.circuit().state(), State::HalfOpen);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(status_of(&svc, request()).await, 503);
    assert_eq!(handle.circuit().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn fallback_and_custom_rejection() {
    let upstream = Counting::default();
    let layer = BreakerLayer::builder()
        .consecutive_failures(1)
        .build()
        .unwrap()
        .with_fallback(|req, open| {
            assert_eq!(open.state, State::Open);
            Response::builder()
                .header("x-fallback", req.uri.path())
                .body(Bytes::from_static(b"cached"))
                .unwrap()
        });
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(upstream.service());
    status_of(&svc, with_status(500)).await;
    let req = Request::get("/menu").body(Full::default()).unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-fallback"], "/menu");
    assert!(res.extensions().get::<BreakerOpen>().is_some());
    assert_eq!(
        gateway_layers_test_support::body_bytes(res.into_body()).await,
        "cached"
    );

    let layer = BreakerLayer::builder()
        .consecutive_failures(1)
        .build()
        .unwrap()
        .with_rejection_response(|r: &gateway_layers_core::Rejection| {
            Response::builder()
                .status(r.status())
                .body(Bytes::from_static(b"down"))
                .unwrap()
        });
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(upstream.service());
    status_of(&svc, with_status(500)).await;
    let res = svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        gateway_layers_test_support::body_bytes(res.into_body()).await,
        "down"
    );
}

#[tokio::test(start_paused = true)]
async fn default_refusal_matches_the_core_problem_json_rendering() {
    let upstream = Counting::default();
    let build = || {
        BreakerLayer::builder()
            .consecutive_failures(1)
            .open_duration(Duration::from_secs(7))
            .build()
            .unwrap()
    };
    let fast = tower::ServiceBuilder::new()
        .layer(build())
        .service(upstream.service());
    let core = tower::ServiceBuilder::new()
        .layer(build().with_rejection_response(gateway_layers_core::ProblemJson))
        .service(upstream.service());
    status_of(&fast, with_status(500)).await;
    status_of(&core, with_status(500)).await;
    let a = fast.clone().oneshot(request()).await.unwrap();
    let b = core.clone().oneshot(request()).await.unwrap();
    assert_eq!(a.status(), b.status());
    assert_eq!(a.headers(), b.headers());
    assert_eq!(a.headers()["retry-after"], "7");
    assert_eq!(
        a.extensions().get::<Rejected>(),
        b.extensions().get::<Rejected>()
    );
    assert_eq!(
        a.extensions().get::<BreakerOpen>(),
        b.extensions().get::<BreakerOpen>()
    );
    let a = gateway_layers_test_support::body_bytes(a.into_body()).await;
    let b = gateway_layers_test_support::body_bytes(b.into_body()).await;
    assert_eq!(a, b);
}

#[cfg(feature = "serde")]
#[tokio::test]
async fn layer_from_a_configuration_file() {
    let config: gateway_layers_breaker::BreakerConfig = serde_json::from_value(serde_json::json!({
        "window": { "count": 10 },
        "minimum_calls": 4,
        "failure_rate_threshold": 50.0,
        "open_duration": "1m",
        "key": "authority",
        "name": "upstreams",
    }))
    .unwrap();
    let layer = BreakerLayer::from_config(config).unwrap();
    let handle = layer.handle();
    assert!(handle.is_keyed());
    let upstream = Counting::default();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(upstream.service());
    let to = |host: &str, status: u16| {
        Request::builder()
            .uri(format!("http://{host}/x"))
            .header("x-status", status.to_string())
            .body(Full::default())
            .unwrap()
    };
    for _ in 0..4 {
        status_of(&svc, to("a.internal", 500)).await;
    }
    assert_eq!(status_of(&svc, to("a.internal", 200)).await, 503);
    assert_eq!(status_of(&svc, to("b.internal", 200)).await, 200);
    let bad = serde_json::from_value::<gateway_layers_breaker::BreakerConfig>(
        serde_json::json!({ "half_open_probes": 1, "half_open_successes": 2 }),
    )
    .unwrap();
    assert!(BreakerLayer::from_config(bad).is_err());
}
