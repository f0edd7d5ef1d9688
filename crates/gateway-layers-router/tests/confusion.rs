//! Path confusion: the route chosen and the path its service receives always agree,
//! and the protected `/admin` route is never reached through another route.

mod common;

use common::*;
use gateway_layers_router::{EncodedSlash, Normalization, Router};

fn router(normalization: Normalization) -> Router<String, String> {
    Router::builder()
        .route(route("admin").prefix("/admin").service(echo("admin")))
        .route(route("public").prefix("/public").service(echo("public")))
        .route(
            route("svc")
                .prefix("/svc")
                .strip_prefix("/svc")
                .service(echo("svc")),
        )
        .route(route("static").service(echo("static")))
        .normalization(normalization)
        .build()
        .unwrap()
}

/// Segment-aware: is `path` the protected area?
fn under_admin(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Route(&'static str, &'static str),
    BadRequest,
}
use Want::{BadRequest, Route};

#[tokio::test]
async fn path_confusion_table() {
    let default = Normalization::default();
    let keep = Normalization {
        encoded_slash: EncodedSlash::Keep,
        ..default
    };
    let decode = Normalization {
        encoded_slash: EncodedSlash::Decode,
        ..default
    };
    let no_merge = Normalization {
        merge_slashes: false,
        ..default
    };
    let strict = Normalization {
        reject_semicolon: true,
        lowercase: true,
        ..default
    };
    #[rustfmt::skip]
    let cases: &[(&str, Normalization, Want)] = &[
        ("/public/../admin", default, Route("admin", "/admin")),
        ("/public/./../admin/x", default, Route("admin", "/admin/x")),
        ("/admin/../public", default, Route("public", "/public")),
        ("/svc/../admin", default, Route("admin", "/admin")),
        ("/svc/admin", default, Route("svc", "/admin")),
        ("/%2e%2e/admin", default, Route("admin", "/admin")),
        ("/public/%2e%2e/admin", default, Route("admin", "/admin")),
        ("/public/.%2E/admin", default, Route("admin", "/admin")),
        ("/%61dmin", default, Route("admin", "/admin")),
        ("/./admin", default, Route("admin", "/admin")),
        ("/admin/", default, Route("admin", "/admin/")),
        ("/administrator", default, Route("static", "/administrator")),
        // encoded slashes and backslashes
        ("/admin%2fx", default, BadRequest),
        ("/public/..%2fadmin", default, BadRequest),
        ("/%2E%2E%2Fadmin", default, BadRequest),
        ("/public%5c..%5cadmin", default, BadRequest),
        ("/admin%2fx", keep, Route("static", "/admin%2Fx")),
        ("/public/..%2fadmin", keep, Route("public", "/public/..%2Fadmin")),
        ("/admin%2fx", decode, Route("admin", "/admin/x")),
        ("/public/..%2fadmin", decode, Route("admin", "/admin")),
        ("/public%5c..%5cadmin", decode, Route("admin", "/admin")),
        // slashes
        ("//admin", default, Route("admin", "/admin")),
        ("/public//..//admin", default, Route("admin", "/admin")),
        ("//admin", no_merge, Route("static", "//admin")),
        // semicolons and case
        ("/admin;x", default, Route("static", "/admin;x")),
        ("/public/..;/admin", default, Route("public", "/public/..;/admin")),
        ("/admin;x", strict, BadRequest),
        ("/public/..;/admin", strict, BadRequest),
        ("/ADMIN", default, Route("static", "/ADMIN")),
        ("/ADMIN", strict, Route("admin", "/admin")),
        ("/Public/../ADMIN/X", strict, Route("admin", "/admin/x")),
        // NUL and invalid escapes
        ("/admin%00", default, BadRequest),
        ("/%00/../admin", default, BadRequest),
        ("/admin%", default, BadRequest),
        ("/admin%zz", default, BadRequest),
        ("/public/%2", default, BadRequest),
        // double encoding: decoded once, never twice
        ("/%252e%252e/admin", default, Route("static", "/%252e%252e/admin")),
        ("/public/%252e%252e/admin", default, Route("public", "/public/%252e%252e/admin")),
        ("/admin%252fx", default, Route("static", "/admin%252fx")),
        ("/%25%32%65%25%32%65/admin", default, Route("static", "/%252e%252e/admin")),
    ];
    let mut failures = Vec::new();
    for (target, normalization, want) in cases {
        let r = router(*normalization);
        let got = send(&r, request("GET", None, target, &[])).await;
        let got_want = match &got {
            Ok(seen) => Route(
                Box::leak(seen.route.clone().into_boxed_str()),
                Box::leak(seen.path.clone().into_boxed_str()),
            ),
            Err((400, _)) => BadRequest,
            Err(other) => panic!("{target}: unexpected {other:?}"),
        };
        if got_want != *want {
            failures.push(format!(
                "{target} ({normalization:?}): want {want:?}, got {got:?}"
            ));
        }
        if let Ok(seen) = &got {
            // The invariant: the protected area is only ever reached through its route,
            // and the route that answered is the one its forwarded path selects.
            let stripped_svc = seen.route == "svc";
            if !stripped_svc {
                assert_eq!(
                    under_admin(&seen.path),
                    seen.route == "admin",
                    "{target}: {seen:?}"
                );
            }
            // The forwarded path is already normal: an upstream that normalizes the same
            // way sees the same path the router matched.
            let again = normalization.path(&seen.path).unwrap();
            if !stripped_svc {
                assert_eq!(again, seen.path, "{target}");
            }
            assert_eq!(seen.raw.as_deref(), Some(*target), "raw path kept");
            // Re-sending the forwarded path picks the same route.
            if !stripped_svc {
                let again = send(&r, request("GET", None, &seen.path, &[]))
                    .await
                    .unwrap();
                assert_eq!(again.route, seen.route, "{target}");
                assert_eq!(again.path, seen.path, "{target}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn bad_request_is_problem_json_with_a_code() {
    use tower::ServiceExt;
    let response = router(Normalization::default())
        .oneshot(request("GET", None, "/admin%2fx", &[]))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let rejected = response
        .extensions()
        .get::<gateway_layers_core::Rejected>()
        .unwrap();
    assert_eq!(rejected.code, "encoded_slash");
}

#[tokio::test]
async fn query_is_kept_verbatim() {
    let seen = send(
        &router(Normalization::default()),
        request("GET", None, "/public/../admin/x?a=%2e%2e&b=/../c", &[]),
    )
    .await
    .unwrap();
    assert_eq!(
        (seen.route.as_str(), seen.path.as_str()),
        ("admin", "/admin/x")
    );
    assert_eq!(seen.query.as_deref(), Some("a=%2e%2e&b=/../c"));
}
