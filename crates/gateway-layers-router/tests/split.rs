//! Weighted splits: distribution, stickiness per key, canary overrides.

mod common;

use std::collections::HashMap;

use common::*;
use gateway_layers_core::key::HeaderKey;
use gateway_layers_router::{Router, Split};

fn router(sticky: bool) -> Router<String, String> {
    let mut split = Split::new()
        .backend("stable", 90, echo("stable"))
        .backend("canary", 10, echo("canary"))
        .override_header("x-canary")
        .override_cookie("canary");
    if sticky {
        split = split.sticky(HeaderKey::new("x-user").unwrap());
    }
    Router::builder()
        .route(route("checkout").prefix("/checkout").split(split))
        .build()
        .unwrap()
}

async fn backend(router: &Router<String, String>, headers: &[(&str, &str)]) -> String {
    let seen = send(router, request("GET", None, "/checkout", headers))
        .await
        .unwrap();
    assert_eq!(seen.route, "checkout");
    seen.backend.unwrap()
}

#[tokio::test]
async fn sticky_split_distribution_over_10k_keys() {
    let router = router(true);
    let mut counts: HashMap<String, u32> = HashMap::new();
    for i in 0..10_000 {
        let user = format!("user-{i}");
        *counts
            .entry(backend(&router, &[("x-user", &user)]).await)
            .or_default() += 1;
    }
    let canary = counts["canary"];
    assert!((850..=1_150).contains(&canary), "{counts:?}");
    assert_eq!(counts["stable"] + canary, 10_000);
}

#[tokio::test]
async fn same_key_same_backend() {
    let router = router(true);
    let other = router.clone();
    for i in 0..300 {
        let user = format!("user-{i}");
        let first = backend(&router, &[("x-user", &user)]).await;
        for _ in 0..4 {
            assert_eq!(backend(&other, &[("x-user", &user)]).await, first);
        }
    }
    // A router built again (another gateway instance) agrees.
    let rebuilt = self::router(true);
    for i in 0..300 {
        let user = format!("user-{i}");
        assert_eq!(
            backend(&router, &[("x-user", &user)]).await,
            backend(&rebuilt, &[("x-user", &user)]).await
        );
    }
}

#[tokio::test]
async fn unkeyed_split_follows_weights() {
    let router = router(false);
    let mut canary = 0;
    for _ in 0..10_000 {
        if backend(&router, &[]).await == "canary" {
            canary += 1;
        }
    }
    assert!((850..=1_150).contains(&canary), "{canary}");
}

#[tokio::test]
async fn header_and_cookie_overrides() {
    let router = router(true);
    for i in 0..100 {
        let user = format!("user-{i}");
        assert_eq!(
            backend(&router, &[("x-user", &user), ("x-canary", "canary")]).await,
            "canary"
        );
        assert_eq!(
            backend(&router, &[("x-user", &user), ("x-canary", "stable")]).await,
            "stable"
        );
        assert_eq!(
            backend(
                &router,
                &[("x-user", &user), ("cookie", "a=b; canary=canary")]
            )
            .await,
            "canary"
        );
    }
    // An unknown name is ignored: the key decides.
    let user = [("x-user", "user-1")];
    let keyed = backend(&router, &user).await;
    assert_eq!(
        backend(&router, &[("x-user", "user-1"), ("x-canary", "nope")]).await,
        keyed
    );
}

#[test]
fn invalid_splits_are_refused() {
    let build = |split: Split<String, String, std::convert::Infallible>| {
        Router::builder()
            .route(route("r").split(split))
            .build()
            .map(|_| ())
    };
    assert!(build(Split::new()).is_err());
    assert!(build(Split::new().backend("a", 0, echo("a"))).is_err());
    assert!(
        build(
            Split::new()
                .backend("a", 1, echo("a"))
                .backend("a", 1, echo("b"))
        )
        .is_err()
    );
    assert!(
        build(
            Split::new()
                .backend("a", 1, echo("a"))
                .override_header("bad header")
        )
        .is_err()
    );
    assert!(
        build(
            Split::new()
                .backend("a", 1, echo("a"))
                .override_cookie("a=b")
        )
        .is_err()
    );
    assert!(
        build(
            Split::new()
                .backend("a", 1, echo("a"))
                .backend("b", 0, echo("b"))
        )
        .is_ok()
    );
}
