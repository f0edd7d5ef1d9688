//! Always ready: a route whose service is never ready does not block the others, and
//! only the chosen route's service is called.

mod common;

use std::{
    convert::Infallible,
    future::{Ready, ready},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use common::*;
use gateway_layers_router::Router;
use http::{Request, Response};
use tower::{Service, ServiceExt};

/// Never ready; counts how often it is polled or called.
#[derive(Clone, Default)]
struct Stuck {
    polled: Arc<AtomicUsize>,
    called: Arc<AtomicUsize>,
}

impl Service<Request<String>> for Stuck {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.polled.fetch_add(1, Ordering::SeqCst);
        Poll::Pending
    }

    fn call(&mut self, _req: Request<String>) -> Self::Future {
        self.called.fetch_add(1, Ordering::SeqCst);
        ready(Ok(Response::new("stuck".into())))
    }
}

#[tokio::test]
async fn an_unready_route_does_not_block_the_others() {
    let stuck = Stuck::default();
    let router: Router<String, String> = Router::builder()
        .route(route("stuck").prefix("/stuck").service(stuck.clone()))
        .route(route("ok").prefix("/ok").service(echo("ok")))
        .build()
        .unwrap();
    let mut svc = router.clone();
    // The router itself is always ready.
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    for _ in 0..10 {
        let seen = send(&router, request("GET", None, "/ok/x", &[]))
            .await
            .unwrap();
        assert_eq!(seen.route, "ok");
    }
    assert_eq!(
        stuck.polled.load(Ordering::SeqCst),
        0,
        "other routes are not polled"
    );
    // The stuck route waits on its own readiness only, and is never called unready.
    let pending = tokio::time::timeout(
        Duration::from_millis(50),
        router.clone().oneshot(request("GET", None, "/stuck", &[])),
    )
    .await;
    assert!(pending.is_err());
    assert!(stuck.polled.load(Ordering::SeqCst) >= 1);
    assert_eq!(stuck.called.load(Ordering::SeqCst), 0);
    let seen = send(&router, request("GET", None, "/ok", &[]))
        .await
        .unwrap();
    assert_eq!(seen.route, "ok");
}
