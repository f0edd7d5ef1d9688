use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use gateway_layers_test_support::{MockUpstream, Reply, http_client};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;
use tokio::time::Instant;
use tower::service_fn;

use super::*;

/// A part service that sleeps `delay` then answers `body` with `status`.
fn fake(delay: Duration, status: u16, body: &'static str) -> PartService {
    part_service(service_fn(move |_req: PartRequest| async move {
        tokio::time::sleep(delay).await;
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok::<_, Infallible>(response)
    }))
}

/// A part service sending requests to a real upstream over loopback.
fn client_to(base: String) -> PartService {
    let client = http_client();
    part_service(service_fn(move |request: PartRequest| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            parts.uri = format!("{base}{}", parts.uri).parse()?;
            Ok::<_, BoxError>(client.request(Request::from_parts(parts, body)).await?)
        }
    }))
}

#[tokio::test(start_paused = true)]
async fn independent_parts_run_in_parallel_dependents_in_sequence() {
    let second = Duration::from_secs(1);
    let compose = Compose::<()>::builder()
        .part(Part::get("a", fake(second, 200, "1"), |_| {
            Some("/a".into())
        }))
        .part(Part::get("b", fake(second, 200, "2"), |_| {
            Some("/b".into())
        }))
        .part(
            Part::get("c", fake(second, 200, "3"), |inputs| {
                Some(format!("/c/{}", inputs.get("a")?))
            })
            .after("a")
            .timeout(Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    let start = Instant::now();
    let result = compose.run(&()).await.unwrap();
    // Paused clock: a and b overlap (1 s), c follows a (1 s more) -> exactly 2 s.
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(result.value("a"), Some(&json!(1)));
    assert_eq!(result.value("b"), Some(&json!(2)));
    assert_eq!(result.value("c"), Some(&json!(3)));
    assert!(!result.is_partial());
}

#[tokio::test(start_paused = true)]
async fn optional_timeout_gives_partial_result_with_meta() {
    let compose = Compose::<()>::builder()
        .part(Part::get(
            "fast",
            fake(Duration::ZERO, 200, r#"{"x":1}"#),
            |_| Some("/".into()),
        ))
        .part(
            Part::get("slow", fake(Duration::from_secs(10), 200, "{}"), |_| {
                Some("/".into())
            })
            .timeout(Duration::from_millis(300)),
        )
        .part(Part::get("bad", fake(Duration::ZERO, 503, "{}"), |_| {
            Some("/".into())
        }))
        .part(Part::get(
            "html",
            fake(Duration::ZERO, 200, "<html>"),
            |_| Some("/".into()),
        ))
        .part(Part::get("none", fake(Duration::ZERO, 200, "{}"), |_| None))
        .part(Part::get("dep", fake(Duration::ZERO, 200, "{}"), |_| Some("/".into())).after("bad"))
        .build()
        .unwrap();
    let result = compose.run(&()).await.unwrap();
    assert!(result.is_partial());
    let json = result.into_json();
    assert_eq!(json["fast"]["x"], 1);
    assert!(json.get("slow").is_none());
    let meta = &json["_meta"];
    assert_eq!(meta["partial"], true);
    assert_eq!(meta["parts"]["fast"]["status"], "ok");
    assert_eq!(meta["parts"]["fast"]["http_status"], 200);
    assert_eq!(meta["parts"]["slow"]["status"], "timeout");
    assert_eq!(meta["parts"]["slow"]["elapsed_ms"], 300.0);
    assert_eq!(meta["parts"]["bad"]["status"], "bad_status");
    assert_eq!(meta["parts"]["bad"]["http_status"], 503);
    assert_eq!(meta["parts"]["html"]["status"], "invalid_body");
    assert_eq!(meta["parts"]["none"]["status"], "skipped");
    assert_eq!(meta["parts"]["dep"]["status"], "skipped");
    assert_eq!(meta["parts"]["dep"]["reason"], "dependency \"bad\" failed");
}

#[tokio::test(start_paused = true)]
async fn required_part_failures_are_502_and_504() {
    let timeout = Compose::<()>::builder()
        .part(
            Part::get("user", fake(Duration::from_secs(5), 200, "{}"), |_| {
                Some("/".into())
            })
            .required()
            .timeout(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let rejection = timeout.run(&()).await.unwrap_err();
    assert_eq!(rejection.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(rejection.code(), "required_part_timeout");

    let failed = Compose::<()>::builder()
        .part(
            Part::get("user", fake(Duration::ZERO, 500, "{}"), |_| {
                Some("/".into())
            })
            .required(),
        )
        .part(Part::get("other", fake(Duration::ZERO, 200, "{}"), |_| {
            Some("/".into())
        }))
        .build()
        .unwrap();
    let rejection = failed.run(&()).await.unwrap_err();
    assert_eq!(rejection.status(), StatusCode::BAD_GATEWAY);
    assert!(rejection.detail().unwrap().contains("\"user\""));
}

#[tokio::test(start_paused = true)]
async fn body_limit_is_enforced() {
    let compose = Compose::<()>::builder()
        .part(Part::get(
            "big",
            fake(Duration::ZERO, 200, "[1,2,3,4,5,6,7,8,9,10]"),
            |_| Some("/".into()),
        ))
        .body_limit(8)
        .build()
        .unwrap();
    let result = compose.run(&()).await.unwrap();
    assert!(matches!(
        result.reports()[0].outcome,
        Outcome::InvalidBody(_)
    ));
}

#[tokio::test]
async fn real_upstreams_with_context_dependency_and_dead_part() {
    let users = MockUpstream::builder()
        .handler(|req, _| {
            let id = req.uri.path().trim_start_matches("/users/").to_owned();
            Reply::status(200).json(&json!({"id": id, "name": "Ada"}))
        })
        .start()
        .await;
    let orders = MockUpstream::echo().await;
    let mut recommendations = MockUpstream::echo().await;
    recommendations.stop().await;

    struct Ctx {
        user_id: String,
    }
    let compose = Compose::<Ctx>::builder()
        .part(
            Part::get("user", client_to(users.url()), |i: &Inputs<'_, Ctx>| {
                Some(format!("/users/{}", i.context.user_id))
            })
            .required(),
        )
        .part(
            Part::get("orders", client_to(orders.url()), |i: &Inputs<'_, Ctx>| {
                Some(format!("/orders?user={}", i.get("user")?["id"].as_str()?))
            })
            .after("user"),
        )
        .part(Part::get(
            "recommendations",
            client_to(recommendations.url()),
            |_| Some("/recommendations".into()),
        ))
        .build()
        .unwrap();
    let result = compose
        .run(&Ctx {
            user_id: "42".into(),
        })
        .await
        .unwrap();
    assert_eq!(result.value("user").unwrap()["id"], "42");
    // The orders upstream saw the id learned from the users upstream.
    assert_eq!(result.value("orders").unwrap()["uri"], "/orders?user=42");
    assert_eq!(orders.requests(), 1);
    let json = result.into_json();
    assert_eq!(json["_meta"]["parts"]["recommendations"]["status"], "error");
    assert_eq!(json["_meta"]["partial"], true);
}

#[test]
fn invalid_compositions_are_config_errors() {
    let svc = || fake(Duration::ZERO, 200, "{}");
    let get = |name: &'static str| Part::<()>::get(name, svc(), |_| Some("/".into()));
    assert!(Compose::<()>::builder().build().is_err());
    assert!(
        Compose::builder()
            .part(get("a"))
            .part(get("a"))
            .build()
            .is_err()
    );
    assert!(Compose::builder().part(get("_meta")).build().is_err());
    assert!(
        Compose::builder()
            .part(get("a").after("b"))
            .build()
            .is_err()
    );
    assert!(
        Compose::builder()
            .part(get("a").after("b"))
            .part(get("b").after("a"))
            .build()
            .is_err()
    );
    assert!(
        Compose::builder()
            .part(get("a").after("a"))
            .build()
            .is_err()
    );
    assert!(
        Compose::builder()
            .part(get("a").timeout(Duration::ZERO))
            .build()
            .is_err()
    );
    assert!(
        Compose::builder()
            .part(get("a"))
            .body_limit(0)
            .build()
            .is_err()
    );
    assert!(
        Compose::builder()
            .part(get("a"))
            .part(get("b").after("a"))
            .build()
            .is_ok()
    );
}
