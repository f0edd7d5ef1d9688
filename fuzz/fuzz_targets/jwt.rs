//! JWT parsing and validation through `JwtAuthLayer`: arbitrary bytes as the bearer
//! token, and arbitrary header/claims JSON signed with the right key. Never panics; a
//! request reaches the inner service only with a token whose HS256 signature verifies
//! under the configured secret, whose header says `HS256`, and whose claims carry a
//! numeric `exp` in the future.
#![no_main]

use std::convert::Infallible;
use std::sync::LazyLock;

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use gateway_layers_jwt::{Algorithm, JwtAuthLayer, Provider};
use http::{Request, Response, StatusCode};
use jsonwebtoken::{DecodingKey, EncodingKey};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt, service_fn};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
});

static LAYER: LazyLock<JwtAuthLayer> = LazyLock::new(|| {
    JwtAuthLayer::builder()
        .provider(Provider::hmac(SECRET, Algorithm::HS256).unwrap())
        .build()
        .unwrap()
});

/// Independent oracle: does `token` carry a valid HS256 signature under `SECRET`?
fn signature_ok(token: &str) -> bool {
    let Some((message, signature)) = token.rsplit_once('.') else {
        return false;
    };
    jsonwebtoken::crypto::verify(
        signature,
        message.as_bytes(),
        &DecodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .unwrap_or(false)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends `token` as a bearer token; `Some(true)` if the inner service was reached.
fn passes(token: &[u8]) -> Option<bool> {
    let mut value = b"Bearer ".to_vec();
    value.extend_from_slice(token);
    let value = http::HeaderValue::from_bytes(&value).ok()?;
    let request = Request::get("/orders")
        .header(http::header::AUTHORIZATION, value)
        .body(())
        .unwrap();
    let service = LAYER.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::from("inner")))
    }));
    let response = RUNTIME.block_on(service.oneshot(request)).unwrap();
    let status = response.status();
    let reached = response.into_body().into_inner().is_some();
    if reached {
        assert_eq!(status, StatusCode::OK);
    } else {
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST,
            "unexpected refusal status {status}"
        );
    }
    Some(reached)
}

/// Lenient on padding and trailing bits: the oracle checks meaning, not encoding.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn check_accepted(token: &str) {
    let token = token.trim_matches(|c: char| c == ' ' || c == '\t');
    assert!(
        signature_ok(token),
        "accepted a token without a valid signature: {token:?}"
    );
    let mut parts = token.split('.');
    let header = LENIENT
        .decode(parts.next().unwrap())
        .expect("accepted a header that is not base64url");
    let claims = LENIENT
        .decode(parts.next().unwrap())
        .expect("accepted claims that are not base64url");
    // Lossy: serde_json does not validate UTF-8 inside fields it skips, so a signed
    // header with invalid UTF-8 in an unknown field is accepted (harmless: the key
    // holder signed it).
    let header: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(&header))
        .expect("accepted a non-JSON header");
    assert_eq!(header["alg"], "HS256", "accepted header {header}");
    let claims: serde_json::Value =
        serde_json::from_str(&String::from_utf8_lossy(&claims)).expect("accepted non-JSON claims");
    let exp = claims["exp"]
        .as_f64()
        .expect("accepted a token without numeric exp");
    assert!(
        exp + 60.0 >= now() as f64,
        "accepted an expired token: {claims}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // Raw, hostile token bytes.
        if passes(rest) == Some(true) {
            check_accepted(std::str::from_utf8(rest).unwrap());
        }
        return;
    }
    // Correctly signed token with arbitrary header and claims bytes: exercises the
    // JOSE header and claim checks behind the signature.
    let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let (header, claims) = rest.split_at(split);
    let claims = claims.get(1..).unwrap_or_default();
    let mut claims = claims.to_vec();
    if mode & 2 != 0 {
        // Substitute a fresh expiry so the claim checks past `exp` are reached too.
        let text = String::from_utf8_lossy(&claims).replace("$EXP", &(now() + 300).to_string());
        claims = text.into_bytes();
    }
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(&claims)
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .unwrap();
    let token = format!("{message}.{signature}");
    if passes(token.as_bytes()) == Some(true) {
        check_accepted(&token);
    }
});
