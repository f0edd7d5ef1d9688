//! JSON path transforms (`gateway_layers_transform`): arbitrary paths in every field
//! operation, applied to arbitrary response bodies. Building either succeeds or
//! returns a config error; applying never panics; the body is either passed through
//! unchanged (not JSON, marked `Untransformed`) or is valid JSON whose
//! `Content-Length` matches.
#![no_main]

use std::convert::Infallible;
use std::sync::LazyLock;

use bytes::Bytes;
use gateway_layers_transform::{CastType, Rules, TransformConfig, ValueSpec};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt, service_fn};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Layout: op selector, then paths separated by U+0001, then the body after U+0002.
    let (spec, body) = text
        .split_once('\u{2}')
        .unwrap_or((text, r#"{"a":[{"b":1,"c":"2"}],"d":{"e":null}}"#));
    let mut chars = spec.chars();
    let selector = chars.next().map_or(0, |c| c as u32);
    let paths: Vec<&str> = chars.as_str().split('\u{1}').take(6).collect();
    let mut rules = Rules::new();
    for (i, path) in paths.iter().enumerate() {
        let op = (selector >> (i * 3)) & 7;
        rules = match op {
            0 => rules.remove_field(*path),
            1 => rules.rename_field(*path, paths.get(i + 1).copied().unwrap_or("x")),
            2 => rules.replace_field(*path, ValueSpec::Literal(serde_json::json!({"r": [1, 2]}))),
            3 => rules.add_field(*path, ValueSpec::Literal(serde_json::json!("added"))),
            4 => rules.append_field(*path, ValueSpec::Literal(serde_json::json!(7))),
            5 => rules.cast_field(
                *path,
                [
                    CastType::String,
                    CastType::Number,
                    CastType::Integer,
                    CastType::Boolean,
                ][i % 4],
            ),
            6 => rules.add_field(*path, ValueSpec::template("{query.q}")),
            _ => rules.allow_fields(paths.iter().copied()),
        };
    }
    let Ok(layer) = TransformConfig::new()
        .response(rules)
        .max_body_bytes(64 * 1024)
        .build()
    else {
        return;
    };
    let original = Bytes::copy_from_slice(body.as_bytes());
    let upstream_body = original.clone();
    let service = layer.layer(service_fn(
        move |_req: Request<gateway_layers_core::GatewayBody<Full<Bytes>>>| {
            let body = upstream_body.clone();
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .unwrap(),
                )
            }
        },
    ));
    let request = Request::get("/x?q=%22quoted%22")
        .body(Full::new(Bytes::new()))
        .unwrap();
    RUNTIME.block_on(async move {
        let response = service.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        if serde_json::from_slice::<serde_json::Value>(&original).is_err() {
            assert_eq!(
                bytes, original,
                "malformed JSON was not passed through unchanged"
            );
            return;
        }
        // A configured path may nest deeper than serde_json's default limit (128):
        // valid JSON, just deep, so that error alone is accepted.
        if let Err(error) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            assert!(
                error.to_string().starts_with("recursion limit exceeded"),
                "transform produced invalid JSON: {error}"
            );
        }
        if let Some(length) = parts.headers.get("content-length") {
            assert_eq!(length.to_str().unwrap(), bytes.len().to_string());
        }
    });
});
