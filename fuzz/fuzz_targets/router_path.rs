//! Router path normalization and matching: normalizing is idempotent, a normalized
//! path has no `.`/`..` segment (even percent-decoded), and requests routed through a
//! `Router` never panic and reach a service only with a normalized path.
#![no_main]

use std::convert::Infallible;
use std::sync::LazyLock;

use gateway_layers_router::{EncodedSlash, Normalization, Route, Router};
use http::{Method, Request, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use tower::{ServiceExt, service_fn};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
});

type Echo = Router<String, String, Infallible>;

static ROUTER: LazyLock<Echo> = LazyLock::new(|| {
    let echo = service_fn(|req: Request<String>| async move {
        Ok::<_, Infallible>(Response::new(req.uri().path().to_owned()))
    });
    Router::builder()
        .route(Route::new("admin").exact("/admin").service(echo.clone()))
        .route(
            Route::new("api")
                .prefix("/api")
                .strip_prefix("/api")
                .service(echo.clone()),
        )
        .route(
            Route::new("user")
                .template("/users/{id}")
                .method(Method::GET)
                .service(echo.clone()),
        )
        .route(
            Route::new("files")
                .template("/files/{*rest}")
                .service(echo.clone()),
        )
        .route(Route::new("re").regex("^/re/(?P<n>[0-9]+)$").service(echo))
        .build()
        .unwrap()
});

fn configs() -> [Normalization; 4] {
    let mut out = [Normalization::default(); 4];
    out[1].encoded_slash = EncodedSlash::Keep;
    out[1].merge_slashes = false;
    out[2].encoded_slash = EncodedSlash::Decode;
    out[2].lowercase = true;
    out[3].reject_semicolon = true;
    out
}

fn check_normal(config: &Normalization, normal: &str) {
    for segment in normal.split('/') {
        let decoded = percent_decode_str(segment).decode_utf8_lossy();
        assert!(
            segment != ".." && segment != "." && decoded != ".." && decoded != ".",
            "dot segment left in {normal:?}"
        );
    }
    let again = config.path(normal).expect("a normalized path was refused");
    assert_eq!(again, normal, "normalization is not idempotent");
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    for config in configs() {
        if let Ok(normal) = config.path(path) {
            check_normal(&config, &normal);
        }
    }
    // Route it, if it is something a client could send.
    let Ok(uri) = http::Uri::builder().path_and_query(path).build() else {
        return;
    };
    let Ok(request) = Request::get(uri)
        .header("host", "api.example.com")
        .body(String::new())
    else {
        return;
    };
    let response = RUNTIME.block_on(ROUTER.clone().oneshot(request)).unwrap();
    let status = response.status();
    match response.into_body().into_inner() {
        Some(seen) => {
            assert_eq!(status, StatusCode::OK);
            // The upstream sees a normal path (a stripped prefix may leave "" -> "/").
            if !seen.is_empty() {
                check_normal(&Normalization::default(), &seen);
            }
        }
        None => assert!(
            matches!(status.as_u16(), 400 | 404 | 405),
            "unexpected status {status}"
        ),
    }
});
