//! The transform layer end to end: operations, templates, limits, codings, passthrough.

use std::{
    convert::Infallible,
    io::{Read, Write},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use gateway_layers_core::{Identity, Rejected, ext::PathParams};
use gateway_layers_test_support::{body_bytes, body_json, fnv1a};
use gateway_layers_transform::{
    CastType, CompressedBodies, OnTemplateError, Rules, TransformConfig, TransformLayer,
    Untransformed, ValueSpec,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt, service_fn};

/// What the inner service saw.
#[derive(Debug, Clone, Default)]
struct Seen {
    headers: HeaderMap,
    body: Bytes,
}

/// An inner service that records the request and answers with `reply`.
fn recorder<B>(
    seen: Arc<Mutex<Option<Seen>>>,
    reply: impl Fn() -> Response<Full<Bytes>> + Clone + Send + 'static,
) -> impl Service<Request<B>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
{
    service_fn(move |request: Request<B>| {
        let seen = seen.clone();
        let reply = reply.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            *seen.lock().unwrap() = Some(Seen {
                headers: parts.headers,
                body,
            });
            Ok(reply())
        }
    })
}

fn empty_ok() -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::new()))
}

fn json_reply(body: &'static str) -> impl Fn() -> Response<Full<Bytes>> + Clone {
    move || {
        Response::builder()
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    }
}

fn layer(config: TransformConfig) -> TransformLayer {
    config.build().unwrap()
}

fn json_request(uri: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let body = body.into();
    Request::post(uri)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Full::new(body))
        .unwrap()
}

fn all(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn declared_len(headers: &HeaderMap) -> usize {
    headers["content-length"].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn request_headers_every_operation_and_templates() {
    let seen = Arc::new(Mutex::new(None));
    let svc = layer(
        TransformConfig::new().request(
            Rules::new()
                .remove_header("x-internal")
                .rename_header("x-legacy", "x-modern")
                .replace_header("x-tenant", "t-{header.x-client-id}")
                .add_header("x-page", "{query.page}")
                .add_header("x-order", "{path.id}")
                .set_header("x-user-id", "{claim.sub}")
                .append_header("via", "gateway {method}"),
        ),
    )
    .layer(recorder(seen.clone(), empty_ok));
    let mut request = Request::get("/orders/7?page=3")
        .header("x-internal", "secret")
        .header("x-legacy", "l")
        .header("x-tenant", "old")
        .header("x-client-id", "c9")
        .header("x-user-id", "forged")
        .header("via", "1.1 cdn")
        .body(Full::new(Bytes::new()))
        .unwrap();
    request
        .extensions_mut()
        .insert(Identity::new().with_claims(json!({"sub": "u42"})));
    request
        .extensions_mut()
        .insert(PathParams(Arc::new([("id".into(), "7".into())])));
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = seen.lock().unwrap().take().unwrap();
    let h = &seen.headers;
    assert!(!h.contains_key("x-internal"));
    assert!(!h.contains_key("x-legacy"));
    assert_eq!(all(h, "x-modern"), ["l"]);
    assert_eq!(all(h, "x-tenant"), ["t-c9"]);
    assert_eq!(all(h, "x-page"), ["3"]);
    assert_eq!(all(h, "x-order"), ["7"]);
    assert_eq!(all(h, "x-user-id"), ["u42"]);
    assert_eq!(all(h, "via"), ["1.1 cdn", "gateway GET"]);
}

#[tokio::test]
async fn response_headers_every_operation() {
    let svc = layer(
        TransformConfig::new().response(
            Rules::new()
                .remove_header("server")
                .rename_header("x-upstream-id", "x-request-ref")
                .replace_header("cache-control", "no-store")
                .add_header("x-frame-options", "DENY")
                .add_header("x-kept", "not-this")
                .append_header("vary", "{header.x-vary}"),
        ),
    )
    .layer(service_fn(|_req: Request<_>| async {
        Ok::<_, Infallible>(
            Response::builder()
                .header("server", "upstream/1")
                .header("x-upstream-id", "abc")
                .header("cache-control", "public")
                .header("x-kept", "kept")
                .header("vary", "accept")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    }));
    let request = Request::get("/")
        .header("x-vary", "x-tenant")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    let h = response.headers();
    assert!(!h.contains_key("server"));
    assert!(!h.contains_key("x-upstream-id"));
    assert_eq!(all(h, "x-request-ref"), ["abc"]);
    assert_eq!(all(h, "cache-control"), ["no-store"]);
    assert_eq!(all(h, "x-frame-options"), ["DENY"]);
    assert_eq!(all(h, "x-kept"), ["kept"]);
    assert_eq!(all(h, "vary"), ["accept", "x-tenant"]);
}

#[tokio::test]
async fn header_injection_is_refused_or_dropped() {
    let rules = Rules::new()
        .set_header("x-page", "{query.page}")
        .set_header("x-name", "{claim.name}")
        .set_header("x-copy", "{header.x-in}");
    let evil_requests = || {
        let mut with_claim = Request::get("/?page=1")
            .header("x-in", "ok")
            .body(Full::new(Bytes::new()))
            .unwrap();
        with_claim
            .extensions_mut()
            .insert(Identity::new().with_claims(json!({"name": "a\r\nx-admin: true"})));
        let mut crlf_query = Request::get("/?page=1%0d%0aX-Admin:%20true")
            .header("x-in", "ok")
            .body(Full::new(Bytes::new()))
            .unwrap();
        crlf_query
            .extensions_mut()
            .insert(Identity::new().with_claims(json!({"name": "n"})));
        let mut nul_query = Request::get("/?page=%00")
            .header("x-in", "ok")
            .body(Full::new(Bytes::new()))
            .unwrap();
        nul_query
            .extensions_mut()
            .insert(Identity::new().with_claims(json!({"name": "n"})));
        let mut lf_only = Request::get("/?page=a%0ab")
            .header("x-in", "ok")
            .body(Full::new(Bytes::new()))
            .unwrap();
        lf_only
            .extensions_mut()
            .insert(Identity::new().with_claims(json!({"name": "n"})));
        [with_claim, crlf_query, nul_query, lf_only]
    };

    // Reject (the default): 400 problem+json, the inner service is never called.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let svc = layer(TransformConfig::new().request(rules.clone())).layer(service_fn(
        move |_req: Request<_>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(empty_ok()) }
        },
    ));
    for request in evil_requests() {
        let response = svc.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(
            response.extensions().get::<Rejected>().unwrap().code,
            "template_failed"
        );
        let problem = body_json(response.into_body()).await;
        assert_eq!(problem["status"], 400);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Drop: the request goes on without the refused header; the others are set.
    let seen = Arc::new(Mutex::new(None));
    let svc = layer(
        TransformConfig::new()
            .request(rules)
            .on_template_error(OnTemplateError::Drop),
    )
    .layer(recorder(seen.clone(), empty_ok));
    let [with_claim, crlf_query, nul_query, _] = evil_requests();
    svc.clone().oneshot(with_claim).await.unwrap();
    let h = seen.lock().unwrap().take().unwrap().headers;
    assert!(!h.contains_key("x-name"));
    assert!(!h.contains_key("x-admin"));
    assert_eq!(all(&h, "x-page"), ["1"]);
    assert_eq!(all(&h, "x-copy"), ["ok"]);
    for request in [crlf_query, nul_query] {
        let response = svc.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let h = seen.lock().unwrap().take().unwrap().headers;
        assert!(!h.contains_key("x-page"));
        assert!(!h.contains_key("x-admin"));
        assert_eq!(all(&h, "x-name"), ["n"]);
    }
}

#[tokio::test]
async fn request_json_every_operation() {
    let seen = Arc::new(Mutex::new(None));
    let svc = layer(
        TransformConfig::new().request(
            Rules::new()
                .remove_field("password")
                .remove_field("items[*].internal_id")
                .rename_field("userName", "user_name")
                .replace_field("/profile/plan", "basic")
                .add_field("meta.user", ValueSpec::template("{claim.sub}"))
                .add_field(
                    "meta.page",
                    ValueSpec::template("{query.page}").cast(CastType::Integer),
                )
                .add_field("meta.order", ValueSpec::template("{path.id}"))
                .append_field("tags", "via-gateway")
                .cast_field("profile.age", CastType::Integer),
        ),
    )
    .layer(recorder(seen.clone(), empty_ok));
    let mut request = json_request(
        "/orders/9?page=2",
        r#"{"userName":"ann","password":"p","profile":{"plan":"pro","age":"41"},
            "items":[{"id":1,"internal_id":"a"},{"id":2,"internal_id":"b"}],"tags":["x"]}"#,
    );
    request
        .extensions_mut()
        .insert(Identity::new().with_claims(json!({"sub": "u1"})));
    request
        .extensions_mut()
        .insert(PathParams(Arc::new([("id".into(), "9".into())])));
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = seen.lock().unwrap().take().unwrap();
    assert_eq!(declared_len(&seen.headers), seen.body.len());
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body,
        json!({
            "user_name": "ann",
            "profile": {"plan": "basic", "age": 41},
            "items": [{"id": 1}, {"id": 2}],
            "tags": ["x", "via-gateway"],
            "meta": {"user": "u1", "page": 2, "order": "9"}
        })
    );
}

#[tokio::test]
async fn response_json_every_operation_and_allow_list() {
    let svc = layer(
        TransformConfig::new().response(
            Rules::new()
                .remove_field("items[*].internal_id")
                .rename_field("items[*].sku", "code")
                .replace_field("status", "ok")
                .add_field("source", "gateway")
                .append_field("links", json!({"rel": "self"}))
                .cast_field("total", CastType::Number)
                .allow_fields(["items", "status", "source", "links", "total"]),
        ),
    )
    .layer(service_fn(|_req: Request<_>| async {
        Ok::<_, Infallible>(json_reply(
            r#"{"items":[{"sku":"a","internal_id":1}],"status":"s","total":"3.5","debug":{"trace":1},"links":[]}"#,
        )())
    }));
    let response = svc
        .oneshot(Request::get("/").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let len = declared_len(response.headers());
    let body = body_bytes(response.into_body()).await;
    assert_eq!(len, body.len());
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"items": [{"code": "a"}], "status": "ok", "source": "gateway", "links": [{"rel": "self"}], "total": 3.5})
    );
}

#[tokio::test]
async fn json_types_only_and_non_json_streams_untouched() {
    let rules = Rules::new().remove_field("secret");
    for (content_type, touched) in [
        ("application/json", true),
        ("application/vnd.api+json; charset=utf-8", true),
        ("application/problem+json", true),
        ("text/plain", false),
        ("application/x-ndjson", false),
    ] {
        let svc = layer(TransformConfig::new().response(rules.clone())).layer(service_fn(
            move |_req: Request<_>| async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", content_type)
                        .body(Full::new(Bytes::from_static(br#"{"secret":1,  "a":2}"#)))
                        .unwrap(),
                )
            },
        ));
        let response = svc
            .oneshot(Request::get("/").body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let body = body_bytes(response.into_body()).await;
        if touched {
            assert_eq!(body, r#"{"a":2}"#, "{content_type}");
        } else {
            assert_eq!(body, r#"{"secret":1,  "a":2}"#, "{content_type}");
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn gzip_round_trip_both_ways() {
    let seen = Arc::new(Mutex::new(None));
    let compressed_reply = gzip(br#"{"keep":1,"internal":2}"#);
    let svc = layer(
        TransformConfig::new()
            .request(Rules::new().remove_field("password"))
            .response(Rules::new().remove_field("internal")),
    )
    .layer(recorder(seen.clone(), move || {
        Response::builder()
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .header("content-length", compressed_reply.len())
            .body(Full::new(Bytes::from(compressed_reply.clone())))
            .unwrap()
    }));
    let mut request = json_request("/", gzip(br#"{"user":"a","password":"p"}"#));
    request
        .headers_mut()
        .insert("content-encoding", "gzip".parse().unwrap());
    let response = svc.oneshot(request).await.unwrap();
    let seen = seen.lock().unwrap().take().unwrap();
    assert_eq!(seen.headers["content-encoding"], "gzip");
    assert_eq!(declared_len(&seen.headers), seen.body.len());
    assert_eq!(gunzip(&seen.body), br#"{"user":"a"}"#);

    assert_eq!(response.headers()["content-encoding"], "gzip");
    let len = declared_len(response.headers());
    let body = body_bytes(response.into_body()).await;
    assert_eq!(len, body.len());
    assert_eq!(gunzip(&body), br#"{"keep":1}"#);
}

#[tokio::test]
async fn compressed_passthrough_and_unknown_codings_are_untouched() {
    let gz = gzip(br#"{"internal":2}"#);
    for (coding, policy) in [
        ("gzip", CompressedBodies::Passthrough),
        ("br", CompressedBodies::Transform),
    ] {
        let reply = gz.clone();
        let svc = layer(
            TransformConfig::new()
                .response(Rules::new().remove_field("internal"))
                .compressed(policy),
        )
        .layer(service_fn(move |_req: Request<_>| {
            let reply = reply.clone();
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .header("content-encoding", coding)
                        .body(Full::new(Bytes::from(reply)))
                        .unwrap(),
                )
            }
        }));
        let response = svc
            .oneshot(Request::get("/").body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(
            response.extensions().get::<Untransformed>(),
            Some(&Untransformed::Encoding)
        );
        assert_eq!(body_bytes(response.into_body()).await, gz);
    }
}

#[tokio::test]
async fn malformed_json_request_is_400() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let svc = layer(TransformConfig::new().request(Rules::new().remove_field("a"))).layer(
        service_fn(move |_req: Request<_>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(empty_ok()) }
        }),
    );
    let response = svc.oneshot(json_request("/", r#"{"a": 1,"#)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        response.extensions().get::<Rejected>().unwrap().code,
        "malformed_json"
    );
    let problem = body_json(response.into_body()).await;
    assert_eq!(problem["code"], "malformed_json");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn malformed_json_response_passes_unchanged() {
    let svc =
        layer(TransformConfig::new().response(Rules::new().remove_field("a"))).layer(service_fn(
            |_req: Request<_>| async { Ok::<_, Infallible>(json_reply(r#"{"a": 1, oops"#)()) },
        ));
    let response = svc
        .oneshot(Request::get("/").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.extensions().get::<Untransformed>(),
        Some(&Untransformed::MalformedJson)
    );
    assert_eq!(declared_len(response.headers()), 13);
    assert_eq!(body_bytes(response.into_body()).await, r#"{"a": 1, oops"#);
}

/// A body of `total` bytes made on the fly in `chunk`-byte pieces, counting how many of
/// its chunks are alive at once (memory stays flat when that stays small).
struct Generated {
    total: usize,
    remaining: usize,
    chunk: usize,
    live: Arc<AtomicUsize>,
    max_live: Arc<AtomicUsize>,
    exact: bool,
    fill: u8,
}

struct Tracked {
    data: Vec<u8>,
    live: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Generated {
    fn new(total: usize, chunk: usize, exact: bool, fill: u8) -> (Self, Arc<AtomicUsize>) {
        let max_live = Arc::new(AtomicUsize::new(0));
        (
            Self {
                total,
                remaining: total,
                chunk,
                live: Arc::new(AtomicUsize::new(0)),
                max_live: max_live.clone(),
                exact,
                fill,
            },
            max_live,
        )
    }

    /// The same bytes, as a slice (for hashing the expected body).
    fn expected(total: usize, chunk: usize, fill: u8) -> u64 {
        let _ = chunk;
        let data: Vec<u8> = (0..total)
            .map(|i| fill.wrapping_add((i % 251) as u8))
            .collect();
        fnv1a(&data)
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.chunk.min(self.remaining);
        // Position of this chunk in the whole body.
        let start = self.total - self.remaining;
        let fill = self.fill;
        let data: Vec<u8> = (0..n)
            .map(|j| fill.wrapping_add(((start + j) % 251) as u8))
            .collect();
        self.remaining -= n;
        let live = self.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_live.fetch_max(live, Ordering::SeqCst);
        let tracked = Tracked {
            data,
            live: self.live.clone(),
        };
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_owner(tracked)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.remaining as u64)
        } else {
            SizeHint::default()
        }
    }
}

/// Reads a body frame by frame, dropping each chunk at once; returns (length, hash).
async fn drain<B: Body<Data = Bytes>>(body: B) -> (usize, u64)
where
    B::Error: std::fmt::Debug,
{
    let mut body = std::pin::pin!(body);
    let mut len = 0;
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            len += data.len();
            for b in data.iter() {
                hash ^= u64::from(*b);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    (len, hash)
}

const BIG: usize = 32 * 1024 * 1024;
const CHUNK: usize = 16 * 1024;

#[tokio::test]
async fn large_non_json_response_streams_with_flat_memory() {
    let (generated, max_live) = Generated::new(BIG, CHUNK, false, 3);
    let generated = Arc::new(Mutex::new(Some(generated)));
    let svc = layer(
        TransformConfig::new().response(Rules::new().remove_field("x").set_header("x-t", "1")),
    )
    .layer(service_fn(move |_req: Request<_>| {
        let body = generated.lock().unwrap().take().unwrap();
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "application/octet-stream")
                    .body(body)
                    .unwrap(),
            )
        }
    }));
    let response = svc
        .oneshot(Request::get("/").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()["x-t"], "1");
    let (len, hash) = drain(response.into_body()).await;
    assert_eq!(len, BIG);
    assert_eq!(hash, Generated::expected(BIG, CHUNK, 3));
    // Never more than one chunk alive at once: nothing was buffered.
    assert!(max_live.load(Ordering::SeqCst) <= 2, "{max_live:?}");
}

#[tokio::test]
async fn large_non_json_request_streams_with_flat_memory() {
    let (generated, max_live) = Generated::new(BIG, CHUNK, true, 5);
    let result = Arc::new(Mutex::new(None));
    let out = result.clone();
    let svc = layer(TransformConfig::new().request(Rules::new().remove_field("x"))).layer(
        service_fn(move |request: Request<_>| {
            let out = out.clone();
            async move {
                *out.lock().unwrap() = Some(drain(request.into_body()).await);
                Ok::<_, Infallible>(empty_ok())
            }
        }),
    );
    let request = Request::post("/")
        .header("content-type", "application/octet-stream")
        .body(generated)
        .unwrap();
    assert_eq!(svc.oneshot(request).await.unwrap().status(), 200);
    let (len, hash) = result.lock().unwrap().take().unwrap();
    assert_eq!(len, BIG);
    assert_eq!(hash, Generated::expected(BIG, CHUNK, 5));
    assert!(max_live.load(Ordering::SeqCst) <= 2, "{max_live:?}");
}

#[tokio::test]
async fn over_cap_json_request_is_413() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let svc = layer(
        TransformConfig::new()
            .request(Rules::new().remove_field("a"))
            .max_body_bytes(1024),
    )
    .layer(service_fn(move |_req: Request<_>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(empty_ok()) }
    }));
    // Declared too large: refused before reading.
    let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(2000));
    let response = svc.clone().oneshot(json_request("/", big)).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    // Streamed without a length: refused once the cap is crossed.
    let (generated, _) = Generated::new(1 << 20, 512, false, 0);
    let request = Request::post("/")
        .header("content-type", "application/json")
        .body(generated)
        .unwrap();
    let svc2 = layer(
        TransformConfig::new()
            .request(Rules::new().remove_field("a"))
            .max_body_bytes(1024),
    )
    .layer(service_fn(|_req: Request<_>| async {
        Ok::<_, Infallible>(empty_ok())
    }));
    let response = svc2.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.extensions().get::<Rejected>().unwrap().code,
        "body_too_large"
    );
    // A gzip bomb: small on the wire, over the cap decoded.
    let mut bomb = json_request(
        "/",
        gzip(format!(r#"{{"a":"{}"}}"#, " ".repeat(100_000)).as_bytes()),
    );
    bomb.headers_mut()
        .insert("content-encoding", "gzip".parse().unwrap());
    let response = svc.oneshot(bomb).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn over_cap_json_response_passes_through_intact() {
    const TOTAL: usize = 3 * 1024 * 1024 + 17;
    for exact in [false, true] {
        let (generated, _) = Generated::new(TOTAL, 7 * 1024, exact, 11);
        let generated = Arc::new(Mutex::new(Some(generated)));
        let svc = layer(TransformConfig::new().response(Rules::new().remove_field("a"))).layer(
            service_fn(move |_req: Request<_>| {
                let body = generated.lock().unwrap().take().unwrap();
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(body)
                            .unwrap(),
                    )
                }
            }),
        );
        let response = svc
            .oneshot(Request::get("/").body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(
            response.extensions().get::<Untransformed>(),
            Some(&Untransformed::TooLarge)
        );
        let (len, hash) = drain(response.into_body()).await;
        assert_eq!(len, TOTAL, "exact size hint: {exact}");
        assert_eq!(hash, Generated::expected(TOTAL, 0, 11));
    }
}

#[tokio::test]
async fn head_and_no_content_responses_are_not_read() {
    let svc = layer(TransformConfig::new().response(Rules::new().add_field("a", 1))).layer(
        service_fn(|req: Request<_>| async move {
            let status = if req.uri().path() == "/empty" {
                204
            } else {
                200
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .header("content-length", "7")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
        }),
    );
    let head = Request::head("/").body(Full::new(Bytes::new())).unwrap();
    let response = svc.clone().oneshot(head).await.unwrap();
    assert_eq!(response.headers()["content-length"], "7");
    assert!(body_bytes(response.into_body()).await.is_empty());
    let empty = Request::get("/empty")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = svc.oneshot(empty).await.unwrap();
    assert_eq!(response.status(), 204);
}

#[tokio::test]
async fn custom_rejection_responder() {
    let svc = layer(TransformConfig::new().request(Rules::new().remove_field("a")))
        .with_rejection_response(|r: &gateway_layers_core::Rejection| {
            Response::builder()
                .status(r.status())
                .body(Bytes::from(format!("no: {}", r.code())))
                .unwrap()
        })
        .layer(service_fn(|_req: Request<_>| async {
            Ok::<_, Infallible>(empty_ok())
        }));
    let response = svc.oneshot(json_request("/", "nope")).await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.body().is_rejection());
    assert_eq!(body_bytes(response.into_body()).await, "no: malformed_json");
}

#[test]
fn invalid_config_is_refused() {
    assert!(TransformConfig::new().max_body_bytes(0).build().is_err());
    assert!(
        TransformConfig::new()
            .request(Rules::new().add_header("x", "{claim.}"))
            .build()
            .is_err()
    );
    assert!(
        TransformConfig::new()
            .response(Rules::new().remove_field("a[b"))
            .build()
            .is_err()
    );
}

/// Records (level, message, reason) of the transform's events.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(tracing::Level, String, String)>>>);

struct Fields {
    message: String,
    reason: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "reason" {
            self.reason = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() != "gateway_layers::transform" {
            return;
        }
        let mut fields = Fields {
            message: String::new(),
            reason: String::new(),
        };
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields.message, fields.reason));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(flavor = "current_thread")]
async fn passthrough_responses_emit_a_warning_event() {
    let events = Events::default();
    let _guard = tracing::subscriber::set_default(events.clone());
    let svc = layer(
        TransformConfig::new()
            .response(Rules::new().remove_field("a"))
            .max_body_bytes(16),
    )
    .layer(service_fn(|req: Request<_>| async move {
        let body = if req.uri().path() == "/big" {
            r#"{"a":"more than sixteen bytes"}"#
        } else {
            r#"{"a": oops"#
        };
        Ok::<_, Infallible>(
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap(),
        )
    }));
    for (path, reason, body) in [
        ("/big", "too_large", r#"{"a":"more than sixteen bytes"}"#),
        ("/bad", "malformed_json", r#"{"a": oops"#),
    ] {
        let response = svc
            .clone()
            .oneshot(Request::get(path).body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(body_bytes(response.into_body()).await, body);
        let recorded = events.0.lock().unwrap().pop().expect("an event");
        assert_eq!(recorded.0, tracing::Level::WARN);
        assert_eq!(recorded.1, "transform.response_passthrough");
        assert_eq!(recorded.2, reason);
    }
}
