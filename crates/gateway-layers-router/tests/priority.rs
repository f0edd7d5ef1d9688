//! The priority table: which route wins, for 47 requests against 30 routes.

mod common;

use common::*;
use gateway_layers_router::{Router, ValueMatch};
use http::Method;

fn router() -> Router<String, String> {
    let s = echo;
    Router::builder()
        .route(route("catch-all").service(s("x")))
        .route(route("api").prefix("/api").service(s("x")))
        .route(route("api-v1").prefix("/api/v1/").service(s("x")))
        .route(route("user").template("/api/v1/users/{id}").service(s("x")))
        .route(route("me").exact("/api/v1/users/me").service(s("x")))
        .route(
            route("reports-year")
                .regex(r"/reports/(?<year>[0-9]{4})")
                .service(s("x")),
        )
        .route(route("reports-any").regex("/reports/.*").service(s("x")))
        .route(
            route("reports-csv")
                .regex("/reports/.*")
                .query("format", ValueMatch::Exact("csv".into()))
                .service(s("x")),
        )
        .route(route("files").template("/files/{*path}").service(s("x")))
        .route(
            route("files-static")
                .template("/files/static/{name}")
                .service(s("x")),
        )
        .route(
            route("h-api")
                .host("api.example.com")
                .prefix("/api")
                .service(s("x")),
        )
        .route(
            route("h-api-port")
                .host("api.example.com:8443")
                .prefix("/api")
                .service(s("x")),
        )
        .route(
            route("h-wild")
                .host("*.example.com")
                .prefix("/api/v1")
                .service(s("x")),
        )
        .route(route("h-eu").host("*.eu.example.com").service(s("x")))
        .route(
            route("h-prefix")
                .host("api.*")
                .exact("/status")
                .service(s("x")),
        )
        .route(
            route("submit-post")
                .exact("/submit")
                .method(Method::POST)
                .service(s("x")),
        )
        .route(
            route("submit-get")
                .exact("/submit")
                .method(Method::GET)
                .service(s("x")),
        )
        .route(
            route("shop-canary")
                .prefix("/shop")
                .header("x-env", ValueMatch::Exact("canary".into()))
                .service(s("x")),
        )
        .route(
            route("shop-canary-beta")
                .prefix("/shop")
                .header("x-env", ValueMatch::Exact("canary".into()))
                .header("x-beta", ValueMatch::Present)
                .service(s("x")),
        )
        .route(route("shop").prefix("/shop").service(s("x")))
        .route(route("shop-dup").prefix("/shop").service(s("x")))
        .route(
            route("search-debug")
                .exact("/search")
                .query("debug", ValueMatch::Regex("1|true".into()))
                .service(s("x")),
        )
        .route(route("search").exact("/search").service(s("x")))
        .route(
            route("private-anon")
                .prefix("/private")
                .header("authorization", ValueMatch::Absent)
                .service(s("x")),
        )
        .route(
            route("private")
                .prefix("/private")
                .header("authorization", ValueMatch::Regex("Bearer .+".into()))
                .service(s("x")),
        )
        .route(route("dev").prefix("/api/dev").service(s("x")))
        .route(
            route("item-del")
                .template("/items/{id}")
                .method(Method::DELETE)
                .service(s("x")),
        )
        .route(
            route("item-get")
                .template("/items/{name}")
                .method(Method::GET)
                .service(s("x")),
        )
        .route(
            route("h-status")
                .host("status.example.com")
                .exact("/status")
                .service(s("x")),
        )
        .route(
            route("item-special")
                .exact("/items/special")
                .method(Method::GET)
                .service(s("x")),
        )
        .build()
        .unwrap()
}

/// Method, Host header, target, other headers, expected route.
type Case = (
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[tokio::test]
async fn priority_table() {
    let router = router();
    #[rustfmt::skip]
    let cases: &[Case] = &[
        // path specificity: exact > template > prefix (longest) > regex > none
        ("GET", None, "/api/v1/users/me", &[], "me"),
        ("GET", None, "/api/v1/users/42", &[], "user"),
        ("GET", None, "/api/v1/users/42/avatar", &[], "api-v1"),
        ("GET", None, "/api/v1", &[], "api-v1"),
        ("GET", None, "/api/v1/", &[], "api-v1"),
        ("GET", None, "/api/v10", &[], "api"),
        ("GET", None, "/api", &[], "api"),
        ("GET", None, "/apix", &[], "catch-all"),
        ("GET", None, "/api/dev/x", &[], "dev"),
        ("GET", None, "/api/developer", &[], "api"),
        // regex: declaration order, unless more matchers
        ("GET", None, "/reports/2024", &[], "reports-year"),
        ("GET", None, "/reports/2024?format=csv", &[], "reports-csv"),
        ("GET", None, "/reports/latest", &[], "reports-any"),
        ("GET", None, "/reports/latest?format=pdf", &[], "reports-any"),
        // templates: literal > parameter > catch-all
        ("GET", None, "/files/static/app.js", &[], "files-static"),
        ("GET", None, "/files/static/js/app.js", &[], "files"),
        ("GET", None, "/files/a", &[], "files"),
        ("GET", None, "/files/", &[], "catch-all"),
        // hosts: exact (with port) > exact > *.suffix (longest) > prefix.* > any
        ("GET", Some("api.example.com"), "/api/v1/users/me", &[], "h-api"),
        ("GET", Some("api.example.com:8443"), "/api/x", &[], "h-api-port"),
        ("GET", Some("api.example.com:9000"), "/api/x", &[], "h-api"),
        ("GET", Some("API.Example.COM."), "/api", &[], "h-api"),
        ("GET", Some("www.example.com"), "/api/v1/x", &[], "h-wild"),
        ("GET", Some("www.example.com"), "/api/x", &[], "api"),
        ("GET", Some("a.eu.example.com"), "/api/v1/x", &[], "h-eu"),
        ("GET", Some("eu.example.com"), "/api/v1/x", &[], "h-wild"),
        ("GET", Some("example.com"), "/api/v1/x", &[], "api-v1"),
        ("GET", Some("api.internal"), "/status", &[], "h-prefix"),
        ("GET", Some("api.example.com"), "/status", &[], "h-prefix"),
        ("GET", Some("status.example.com"), "/status", &[], "h-status"),
        ("GET", Some("status.example.com"), "/statusx", &[], "catch-all"),
        // methods
        ("POST", None, "/submit", &[], "submit-post"),
        ("GET", None, "/submit", &[], "submit-get"),
        ("HEAD", None, "/submit", &[], "submit-get"),
        ("PUT", None, "/submit", &[], "catch-all"),
        ("DELETE", None, "/items/7", &[], "item-del"),
        ("GET", None, "/items/7", &[], "item-get"),
        ("GET", None, "/items/special", &[], "item-special"),
        ("DELETE", None, "/items/special", &[], "item-del"),
        // headers and query: more matchers win; then declaration order
        ("GET", None, "/shop/x", &[("x-env", "canary")], "shop-canary"),
        ("GET", None, "/shop/x", &[("x-env", "canary"), ("x-beta", "1")], "shop-canary-beta"),
        ("GET", None, "/shop/x", &[("x-env", "prod"), ("x-beta", "1")], "shop"),
        ("GET", None, "/search?debug=1", &[], "search-debug"),
        ("GET", None, "/search?debug=true&x=1", &[], "search-debug"),
        ("GET", None, "/search?debug=0", &[], "search"),
        ("GET", None, "/private/a", &[], "private-anon"),
        ("GET", None, "/private/a", &[("authorization", "Bearer t")], "private"),
        ("GET", None, "/private/a", &[("authorization", "Basic eA==")], "catch-all"),
        ("GET", None, "/nothing/here", &[], "catch-all"),
    ];
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for (method, host, target, headers, want) in cases {
        let got = send(&router, request(method, *host, target, headers)).await;
        match got {
            Ok(seen) if seen.route == *want => {}
            other => failures.push(format!(
                "{method} {host:?} {target} {headers:?}: want {want}, got {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn captures_are_in_path_params() {
    let router = router();
    let seen = send(&router, request("GET", None, "/api/v1/users/42", &[]))
        .await
        .unwrap();
    assert_eq!(seen.params, [("id".to_string(), "42".to_string())]);
    let seen = send(&router, request("GET", None, "/items/7", &[]))
        .await
        .unwrap();
    assert_eq!(seen.params, [("name".to_string(), "7".to_string())]);
    let seen = send(&router, request("GET", None, "/reports/2024", &[]))
        .await
        .unwrap();
    assert_eq!(seen.params, [("year".to_string(), "2024".to_string())]);
    let seen = send(&router, request("GET", None, "/files/a/b%20c", &[]))
        .await
        .unwrap();
    assert_eq!(seen.params, [("path".to_string(), "a/b%20c".to_string())]);
}

#[tokio::test]
async fn not_found_and_method_not_allowed() {
    let router: Router<String, String> = Router::builder()
        .route(
            route("submit-post")
                .exact("/submit")
                .method(Method::POST)
                .service(echo("x")),
        )
        .route(
            route("submit-get")
                .exact("/submit")
                .method(Method::GET)
                .service(echo("x")),
        )
        .route(
            route("items")
                .template("/items/{id}")
                .methods([Method::PUT, Method::DELETE])
                .service(echo("x")),
        )
        .build()
        .unwrap();
    let got = send(&router, request("PUT", None, "/submit", &[])).await;
    assert_eq!(got, Err((405, Some("GET, HEAD, POST".into()))));
    let got = send(&router, request("GET", None, "/items/1", &[])).await;
    assert_eq!(got, Err((405, Some("PUT, DELETE".into()))));
    let got = send(&router, request("GET", None, "/nope", &[])).await;
    assert_eq!(got, Err((404, None)));

    use tower::ServiceExt;
    let response = router
        .oneshot(request("GET", None, "/nope", &[]))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let rejected = response
        .extensions()
        .get::<gateway_layers_core::Rejected>()
        .unwrap();
    assert_eq!((rejected.layer, rejected.code), ("router", "no_route"));
}

#[tokio::test]
async fn fallback_service_gets_the_normalized_path() {
    let router: Router<String, String> = Router::builder()
        .route(route("api").prefix("/api").service(echo("x")))
        .fallback(echo("fallback"))
        .build()
        .unwrap();
    let seen = send(&router, request("GET", None, "/a/./b//c", &[]))
        .await
        .unwrap();
    assert_eq!(seen.route, "<fallback>");
    assert_eq!(seen.path, "/a/b/c");
    assert_eq!(seen.raw.as_deref(), Some("/a/./b//c"));
    // A wrong method on a matching route is still a 405, not the fallback.
    let router: Router<String, String> = Router::builder()
        .route(
            route("get")
                .exact("/x")
                .method(Method::GET)
                .service(echo("x")),
        )
        .fallback(echo("fallback"))
        .build()
        .unwrap();
    assert_eq!(
        send(&router, request("POST", None, "/x", &[])).await,
        Err((405, Some("GET, HEAD".into())))
    );
}

#[tokio::test]
async fn absolute_form_target_wins_over_host_header() {
    let router: Router<String, String> = Router::builder()
        .route(route("a").host("a.example.com").service(echo("x")))
        .route(route("b").host("b.example.com").service(echo("x")))
        .build()
        .unwrap();
    let seen = send(
        &router,
        request(
            "GET",
            Some("b.example.com"),
            "http://a.example.com:8080/x",
            &[],
        ),
    )
    .await
    .unwrap();
    assert_eq!(seen.route, "a");
    // The forwarded Host agrees with what was matched.
    assert_eq!(seen.host.as_deref(), Some("a.example.com:8080"));
    // Userinfo in the absolute-form target never reaches the forwarded Host.
    let seen = send(
        &router,
        request(
            "GET",
            Some("b.example.com"),
            "http://user:secret@a.example.com/x",
            &[],
        ),
    )
    .await
    .unwrap();
    assert_eq!(seen.route, "a");
    assert_eq!(seen.host.as_deref(), Some("a.example.com"));
    let got = send(&router, request("GET", Some("bad host"), "/x", &[])).await;
    assert_eq!(got, Err((400, None)));
    let got = send(&router, request("GET", None, "/x", &[])).await;
    assert_eq!(got, Err((404, None)));
}

#[test]
fn configuration_errors_are_reported_not_panicked() {
    let build = |r| {
        Router::<String, String>::builder()
            .route(r)
            .build()
            .map(|_| ())
    };
    assert!(build(route("no-service")).is_err());
    assert!(build(route("bad-host").host("a.*.com").service(echo("x"))).is_err());
    assert!(build(route("bad-tpl").template("/a/{*x}/b").service(echo("x"))).is_err());
    assert!(build(route("bad-regex").regex("(").service(echo("x"))).is_err());
    assert!(
        build(
            route("bad-header")
                .header("bad header", gateway_layers_router::ValueMatch::Present)
                .service(echo("x"))
        )
        .is_err()
    );
    assert!(
        build(
            route("bad-rewrite")
                .template("/a/{id}")
                .rewrite("/b/{nope}")
                .service(echo("x"))
        )
        .is_err()
    );
    assert!(
        build(
            route("both")
                .prefix("/a")
                .strip_prefix("/a")
                .rewrite("/b")
                .service(echo("x"))
        )
        .is_err()
    );
    assert!(build(route("bad-path").exact("a").service(echo("x"))).is_err());
    assert!(
        build(
            route("ok")
                .template("/a/{id}")
                .rewrite("/b/{id}")
                .service(echo("x"))
        )
        .is_ok()
    );
}
