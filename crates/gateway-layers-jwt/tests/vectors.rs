//! Known answers: RFC 7515 Appendix A.1-A.3 and RFC 7520 §4.1 / §4.4, with a fixed
//! clock.

mod common;

use common::*;
use gateway_layers_jwt::{AuthError, JwtAuthLayer, JwtKey, KeySet, Provider, verify_jws};
use serde_json::json;

/// RFC 7515 A.1-A.3 all sign this payload (with CRLF line breaks); `exp` 1300819380.
const A_PAYLOAD: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
const A_EXP: u64 = 1_300_819_380;

const A1_HEADER: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9";
const A1_SIG: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const A1_K: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";

const A2_HEADER: &str = "eyJhbGciOiJSUzI1NiJ9";
const A2_SIG: &str = concat!(
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7",
    "AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4",
    "BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K",
    "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv",
    "hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB",
    "p0igcN_IoypGlUPQGe77Rw"
);
const A2_N: &str = concat!(
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddx",
    "HmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMs",
    "D1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSH",
    "SXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdV",
    "MTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8",
    "NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"
);

const A3_HEADER: &str = "eyJhbGciOiJFUzI1NiJ9";
const A3_SIG: &str =
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

/// RFC 7520 §4: "It’s a dangerous business, Frodo, ..." (not a claims set).
const FRODO: &str = "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4";
const B41_HEADER: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9";
const B41_SIG: &str = "MRjdkly7_-oTPTS3AXP41iQIGKa80A0ZmTuV5MEaHoxnW2e5CZ5NlKtainoFmKZopdHM1O2U4mwzJdQx996ivp83xuglII7PNDi84wnB-BDkoBwA78185hX-Es4JIwmDLJK3lfWRa-XtL0RnltuYv746iYTh_qHRD68BNt1uSNCrUCTJDt5aAE6x8wW1Kt9eRo4QPocSadnHXFxnt8Is9UzpERV0ePPQdLuW3IS_de3xyIrDaLGdjluPxUAhb6L2aXic1U12podGU0KLUQSE_oI-ZnmKJ3F4uOZDnd6QZWJushZ41Axf_fcIe8u9ipH84ogoree7vjbU5y18kDquDg";
const B41_N: &str = "n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw";
const B44_HEADER: &str =
    "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9";
const B44_SIG: &str = "s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0";
const B44_K: &str = "hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg";

fn layer(key: JwtKey, now: u64) -> JwtAuthLayer {
    JwtAuthLayer::builder()
        .provider(Provider::new(KeySet::new().with(key)))
        .clock(move || now)
        .build()
        .unwrap()
}

fn a1_key() -> JwtKey {
    JwtKey::from_jwk(
        &json!({"kty": "oct", "k": A1_K}),
        Some(jsonwebtoken::Algorithm::HS256),
    )
    .unwrap()
}

fn a2_key() -> JwtKey {
    JwtKey::from_jwk(&json!({"kty": "RSA", "n": A2_N, "e": "AQAB"}), None).unwrap()
}

fn a3_key() -> JwtKey {
    JwtKey::from_jwk(
        &json!({"kty": "EC", "crv": "P-256", "x": A3_X, "y": A3_Y}),
        None,
    )
    .unwrap()
}

#[tokio::test]
async fn rfc7515_appendix_a_vectors_verify_before_exp() {
    let cases = [
        (a1_key(), format!("{A1_HEADER}.{A_PAYLOAD}.{A1_SIG}")),
        (a2_key(), format!("{A2_HEADER}.{A_PAYLOAD}.{A2_SIG}")),
        (a3_key(), format!("{A3_HEADER}.{A_PAYLOAD}.{A3_SIG}")),
    ];
    for (key, token) in cases {
        let payload = verify_jws(&token, &key).unwrap();
        assert!(payload.starts_with(b"{\"iss\":\"joe\",\r\n"));
        let outcome = send(layer(key.clone(), A_EXP - 60), bearer(&token)).await;
        assert_eq!(outcome.status, 200, "{token:.40}");
        let outcome = send(layer(key.clone(), A_EXP + 3600), bearer(&token)).await;
        assert_eq!(outcome.reason, Some(AuthError::Expired));
        // One flipped signature byte.
        let mut bad = token.clone().into_bytes();
        let last = bad.len() - 3;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(verify_jws(&bad, &key).unwrap_err(), AuthError::BadSignature);
    }
}

#[tokio::test]
async fn rfc7520_section4_vectors() {
    let rsa = JwtKey::from_jwk(
        &json!({"kty": "RSA", "kid": "bilbo.baggins@hobbiton.example", "use": "sig", "n": B41_N, "e": "AQAB"}),
        None,
    )
    .unwrap();
    let token = format!("{B41_HEADER}.{FRODO}.{B41_SIG}");
    let payload = verify_jws(&token, &rsa).unwrap();
    assert!(
        String::from_utf8(payload)
            .unwrap()
            .starts_with("It’s a dangerous business, Frodo")
    );
    // Through the layer: the signature is right, but the payload is not a claims set.
    let outcome = send(layer(rsa, 1_400_000_000), bearer(&token)).await;
    assert_eq!(outcome.reason, Some(AuthError::Malformed));

    let hmac = JwtKey::from_jwk(
        &json!({"kty": "oct", "kid": "018c0ae5-4d9b-471b-bfd6-eef314bc7037", "use": "sig", "alg": "HS256", "k": B44_K}),
        None,
    )
    .unwrap();
    let token = format!("{B44_HEADER}.{FRODO}.{B44_SIG}");
    assert!(verify_jws(&token, &hmac).is_ok());
    let wrong = format!("{B44_HEADER}.{FRODO}.{B41_SIG}");
    assert_eq!(
        verify_jws(&wrong, &hmac).unwrap_err(),
        AuthError::BadSignature
    );
}
