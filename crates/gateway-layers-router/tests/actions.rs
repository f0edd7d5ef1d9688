//! Route actions: strip prefix at segment boundaries, path rewrite, host rewrite.

mod common;

use common::*;
use gateway_layers_router::{HostAction, Router};

fn router() -> Router<String, String> {
    Router::builder()
        .route(
            route("api")
                .prefix("/api")
                .strip_prefix("/api")
                .service(echo("x")),
        )
        .route(
            route("dev")
                .prefix("/api/dev/")
                .strip_prefix("/api/dev/")
                .service(echo("x")),
        )
        .route(
            route("user")
                .template("/users/{id}/{*rest}")
                .rewrite("/v2/u/{id}/{rest}")
                .service(echo("x")),
        )
        .route(
            route("moved")
                .host("old.example.com")
                .host_action(HostAction::Rewrite("new.internal:9000".into()))
                .service(echo("x")),
        )
        .route(route("other").service(echo("x")))
        .build()
        .unwrap()
}

#[tokio::test]
async fn strip_prefix_at_segment_boundaries() {
    let router = router();
    #[rustfmt::skip]
    let cases = [
        ("/api/users", "api", "/users"),
        ("/api/users/", "api", "/users/"),
        ("/api", "api", "/"),
        ("/api/", "api", "/"),
        ("/apiusers", "other", "/apiusers"),
        ("/api/dev", "dev", "/"),
        ("/api/dev/x/y", "dev", "/x/y"),
        ("/api/developer", "api", "/developer"),
        ("/api/./dev/../x", "api", "/x"),
        ("/api//users", "api", "/users"),
    ];
    for (target, route, path) in cases {
        let seen = send(&router, request("GET", None, target, &[]))
            .await
            .unwrap();
        assert_eq!(
            (seen.route.as_str(), seen.path.as_str()),
            (route, path),
            "{target}"
        );
        assert_eq!(seen.raw.as_deref(), Some(target));
    }
    let seen = send(&router, request("GET", None, "/api/x?q=1&r=%2F", &[]))
        .await
        .unwrap();
    assert_eq!(
        (seen.path.as_str(), seen.query.as_deref()),
        ("/x", Some("q=1&r=%2F"))
    );
}

#[tokio::test]
async fn rewrite_from_captures() {
    let seen = send(
        &router(),
        request("GET", None, "/users/7/files/a.txt?x=1", &[]),
    )
    .await
    .unwrap();
    assert_eq!(seen.route, "user");
    assert_eq!(seen.path, "/v2/u/7/files/a.txt");
    assert_eq!(seen.query.as_deref(), Some("x=1"));
}

#[tokio::test]
async fn host_rewrite_and_preserve() {
    let router = router();
    let seen = send(&router, request("GET", Some("old.example.com"), "/a", &[]))
        .await
        .unwrap();
    assert_eq!(seen.route, "moved");
    assert_eq!(seen.host.as_deref(), Some("new.internal:9000"));
    let seen = send(
        &router,
        request("GET", Some("Other.Example.com"), "/a", &[]),
    )
    .await
    .unwrap();
    assert_eq!(seen.route, "other");
    assert_eq!(seen.host.as_deref(), Some("Other.Example.com"));
}
