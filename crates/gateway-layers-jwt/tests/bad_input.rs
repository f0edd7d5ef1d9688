//! The bad-input list of the issue: every case is a 401 (none panics).

mod common;

use base64::{Engine, engine::general_purpose::STANDARD};
use common::*;
use gateway_layers_jwt::{AuthError, JwtAuthLayer, JwtKey, KeySet, Provider, TokenSources};
use gateway_layers_test_support::{
    MockUpstream,
    jwt::{self, TestAlg},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn hs_sign(secret: &[u8], header: &Value, claims: &Value) -> String {
    let message = format!(
        "{}.{}",
        jwt::b64(header.to_string().as_bytes()),
        jwt::b64(claims.to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, message.as_bytes());
    format!("{message}.{}", jwt::b64(tag.as_ref()))
}

fn rs_with_header(header: Value, claims: &Value) -> String {
    // Signs an arbitrary header JSON with the real RSA key.
    let message = format!(
        "{}.{}",
        jwt::b64(header.to_string().as_bytes()),
        jwt::b64(claims.to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &TestAlg::Rs256.encoding_key(),
        Algorithm::RS256,
    )
    .unwrap();
    format!("{message}.{sig}")
}

#[tokio::test]
async fn alg_none_in_any_casing() {
    let claims = jwt::claims("u", 300);
    for alg in ["none", "None", "NONE", "nOnE"] {
        for sig in [&b""[..], b"x"] {
            let token = jwt::raw_token(&json!({"alg": alg, "typ": "JWT"}), &claims, sig);
            let outcome = refused(static_layer(), &token).await;
            assert_eq!(outcome.reason, Some(AuthError::AlgNone), "{alg}");
            let outcome = refused(hs_layer(), &token).await;
            assert_eq!(outcome.reason, Some(AuthError::AlgNone), "{alg}");
        }
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key() {
    let claims = jwt::claims("u", 300);
    let pem = jwt::RSA_PUBLIC_PEM.as_bytes();
    let der_b64: String = jwt::RSA_PUBLIC_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(der_b64).unwrap();
    let jwk = TestAlg::Rs256.public_jwk().unwrap();
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().unwrap())
        .unwrap();
    let layers = || {
        [
            static_layer(),
            JwtAuthLayer::builder()
                .provider(Provider::pem(jwt::RSA_PUBLIC_PEM, Algorithm::RS256).unwrap())
                .build()
                .unwrap(),
        ]
    };
    for secret in [pem, &der[..], &n[..]] {
        for header in [
            json!({"alg": "HS256", "kid": "rsa-1"}),
            json!({"alg": "HS256"}),
        ] {
            let token = hs_sign(secret, &header, &claims);
            for layer in layers() {
                let outcome = refused(layer, &token).await;
                assert_eq!(outcome.reason, Some(AuthError::AlgNotAccepted));
            }
        }
    }
}

#[tokio::test]
async fn null_and_zero_signatures() {
    let claims = jwt::claims("u", 300);
    for (alg, kid) in [("RS256", "rsa-1"), ("ES256", "ec-1"), ("EdDSA", "ed-1")] {
        let header = json!({"alg": alg, "kid": kid});
        let token = jwt::raw_token(&header, &claims, b"");
        assert_eq!(
            refused(static_layer(), &token).await.reason,
            Some(AuthError::BadSignature)
        );
        let token = jwt::raw_token(&header, &claims, &[0u8; 64]);
        assert_eq!(
            refused(static_layer(), &token).await.reason,
            Some(AuthError::BadSignature)
        );
        let token = jwt::raw_token(&header, &claims, &[0u8; 256]);
        assert_eq!(
            refused(static_layer(), &token).await.reason,
            Some(AuthError::BadSignature)
        );
    }
    let token = jwt::raw_token(&json!({"alg": "HS256"}), &claims, b"");
    assert_eq!(
        refused(hs_layer(), &token).await.reason,
        Some(AuthError::BadSignature)
    );
    let token = jwt::raw_token(&json!({"alg": "HS256"}), &claims, &[0u8; 32]);
    assert_eq!(
        refused(hs_layer(), &token).await.reason,
        Some(AuthError::BadSignature)
    );
}

#[tokio::test]
async fn empty_hmac_secret() {
    assert!(JwtKey::hmac(b"", Algorithm::HS256).is_err());
    assert!(Provider::hmac(b"", Algorithm::HS256).is_err());
    assert!(Provider::hmac(b"short", Algorithm::HS256).is_err());
    let token = hs_sign(b"", &json!({"alg": "HS256"}), &jwt::claims("u", 300));
    assert_eq!(
        refused(hs_layer(), &token).await.reason,
        Some(AuthError::BadSignature)
    );
}

#[tokio::test]
async fn embedded_jwk_jku_x5u_are_never_followed() {
    let listener = MockUpstream::builder()
        .handler(|_, _| gateway_layers_test_support::Reply::status(200).json(&jwt::jwks()))
        .start()
        .await;
    let url = listener.url_for("/jwks.json");
    let claims = jwt::claims("attacker", 300);
    // Signed with the EC test key, which the HS-only layer does not trust; the header
    // offers the key inline and by URL.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("attacker".into());
    header.jku = Some(url.clone());
    header.x5u = Some(url.clone());
    header.jwk = Some(serde_json::from_value(TestAlg::Es256.public_jwk().unwrap()).unwrap());
    let token = jwt::mint_with_header(TestAlg::Es256, &header, &claims);
    let outcome = refused(hs_layer(), &token).await;
    assert_eq!(outcome.reason, Some(AuthError::AlgNotAccepted));
    // The static RS-only provider: kid unknown, no fallback to the embedded key.
    let rs_only = JwtAuthLayer::builder()
        .provider(Provider::pem(jwt::RSA_PUBLIC_PEM, Algorithm::RS256).unwrap())
        .build()
        .unwrap();
    refused(rs_only, &token).await;
    // Same with an x5c chain and without kid.
    let mut header = header.clone();
    header.kid = None;
    header.x5c = Some(vec!["MIIBfake".into()]);
    let token = jwt::mint_with_header(TestAlg::Es256, &header, &claims);
    refused(hs_layer(), &token).await;
    assert_eq!(listener.connections(), 0);
    assert_eq!(listener.requests(), 0);
}

#[tokio::test]
async fn hostile_and_unknown_kids() {
    let claims = jwt::claims("u", 300);
    let big = JwtAuthLayer::builder()
        .provider(Provider::new(
            KeySet::from_jwks(&jwt::jwks(), false).unwrap(),
        ))
        .sources(TokenSources::bearer().max_bytes(64 * 1024))
        .build()
        .unwrap();
    for kid in [
        "../../../../etc/passwd",
        "' OR '1'='1'; --",
        "rsa-1\u{0}",
        "RSA-1",
        "rsa-1 ",
        "unknown",
    ] {
        let token = rs_with_header(json!({"alg": "RS256", "kid": kid}), &claims);
        let outcome = refused(big.clone(), &token).await;
        assert!(
            matches!(
                outcome.reason,
                Some(AuthError::UnknownKid | AuthError::InvalidKid)
            ),
            "{kid}: {:?}",
            outcome.reason
        );
    }
    let long = "k".repeat(10 * 1024);
    let token = rs_with_header(json!({"alg": "RS256", "kid": long}), &claims);
    assert_eq!(
        refused(big, &token).await.reason,
        Some(AuthError::InvalidKid)
    );
    assert_eq!(
        refused(static_layer(), &token).await.reason,
        Some(AuthError::TooLarge)
    );
    // A kid naming another key (of another algorithm) does not fall back.
    let token = rs_with_header(json!({"alg": "RS256", "kid": "ec-1"}), &claims);
    assert_eq!(
        refused(static_layer(), &token).await.reason,
        Some(AuthError::AlgNotAccepted)
    );
}

#[tokio::test]
async fn es256_zero_and_psychic_signatures() {
    let claims = jwt::claims("u", 300);
    let header = json!({"alg": "ES256", "kid": "ec-1"});
    let zero = jwt::raw_token(&header, &claims, &[0u8; 64]);
    assert_eq!(
        refused(static_layer(), &zero).await.reason,
        Some(AuthError::BadSignature)
    );
    // DER SEQUENCE { INTEGER 0, INTEGER 0 } (CVE-2022-21449).
    let psychic = jwt::raw_token(
        &header,
        &claims,
        &[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00],
    );
    assert_eq!(
        refused(static_layer(), &psychic).await.reason,
        Some(AuthError::BadSignature)
    );
    let ok = jwt::mint(TestAlg::Es256, &claims);
    assert_eq!(send(static_layer(), bearer(&ok)).await.status, 200);
}

async fn claims_refused(claims: Value, layer: JwtAuthLayer, expected: AuthError) {
    let token = jwt::mint(TestAlg::Rs256, &claims);
    assert_eq!(
        refused(layer, &token).await.reason,
        Some(expected),
        "{claims}"
    );
}

#[tokio::test]
async fn claim_failures() {
    let now = jwt::now();
    claims_refused(
        json!({"sub": "u", "exp": (now + 300).to_string()}),
        static_layer(),
        AuthError::InvalidClaimType,
    )
    .await;
    claims_refused(
        json!({"sub": "u", "exp": now + 300, "nbf": now.to_string()}),
        static_layer(),
        AuthError::InvalidClaimType,
    )
    .await;
    claims_refused(
        json!({"sub": "u", "exp": now - 3600}),
        static_layer(),
        AuthError::Expired,
    )
    .await;
    claims_refused(
        json!({"sub": "u", "exp": now + 7200, "nbf": now + 3600}),
        static_layer(),
        AuthError::NotYetValid,
    )
    .await;
    claims_refused(json!({"sub": "u"}), static_layer(), AuthError::MissingExp).await;
    claims_refused(
        json!({"sub": "u", "exp": now + 300, "aud": "orders"}),
        static_layer(),
        AuthError::UnexpectedAudience,
    )
    .await;
    claims_refused(
        json!({"sub": 42, "exp": now + 300}),
        static_layer(),
        AuthError::InvalidClaimType,
    )
    .await;

    let strict = || {
        JwtAuthLayer::builder()
            .provider(
                Provider::new(KeySet::from_jwks(&jwt::jwks(), false).unwrap())
                    .issuer("https://issuer.test")
                    .audience("orders")
                    .token_type("at+jwt"),
            )
            .build()
            .unwrap()
    };
    let good =
        json!({"sub": "u", "exp": now + 300, "iss": "https://issuer.test", "aud": ["x", "orders"]});
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    header.typ = Some("at+jwt".into());
    let token = jwt::mint_with_header(TestAlg::Rs256, &header, &good);
    assert_eq!(send(strict(), bearer(&token)).await.status, 200);

    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("billing");
    let token = jwt::mint_with_header(TestAlg::Rs256, &header, &wrong_aud);
    assert_eq!(
        refused(strict(), &token).await.reason,
        Some(AuthError::WrongAudience)
    );
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.test");
    let token = jwt::mint_with_header(TestAlg::Rs256, &header, &wrong_iss);
    assert_eq!(
        refused(strict(), &token).await.reason,
        Some(AuthError::UnknownIssuer)
    );
    // typ JWT where at+jwt is required.
    let token = jwt::mint(TestAlg::Rs256, &good);
    assert_eq!(
        refused(strict(), &token).await.reason,
        Some(AuthError::WrongType)
    );
}

#[tokio::test]
async fn unknown_crit_is_refused() {
    let claims = jwt::claims("u", 300);
    let token = rs_with_header(
        json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"], "exp": 1}),
        &claims,
    );
    assert_eq!(
        refused(static_layer(), &token).await.reason,
        Some(AuthError::UnsupportedCrit)
    );
    let token = rs_with_header(json!({"alg": "RS256", "kid": "rsa-1", "crit": []}), &claims);
    assert_eq!(
        refused(static_layer(), &token).await.reason,
        Some(AuthError::UnsupportedCrit)
    );
    // Understood when configured.
    let token = rs_with_header(
        json!({"alg": "RS256", "kid": "rsa-1", "crit": ["tenant"], "tenant": "a"}),
        &claims,
    );
    let layer = JwtAuthLayer::builder()
        .provider(Provider::new(
            KeySet::from_jwks(&jwt::jwks(), false).unwrap(),
        ))
        .understood_crit(["tenant"])
        .build()
        .unwrap();
    assert_eq!(send(layer, bearer(&token)).await.status, 200);
}

#[tokio::test]
async fn corrupted_segments() {
    let token = jwt::mint(TestAlg::Rs256, &jwt::claims("u", 300));
    assert_eq!(send(static_layer(), bearer(&token)).await.status, 200);
    let parts: Vec<&str> = token.split('.').collect();
    let padded = format!("{}==.{}.{}", parts[0], parts[1], parts[2]);
    let padded_sig = format!("{}.{}.{}=", parts[0], parts[1], parts[2]);
    let spaced = format!(
        "{}.{} {}.{}",
        parts[0],
        &parts[1][..5],
        &parts[1][5..],
        parts[2]
    );
    let tabbed = format!("{}.{}\t.{}", parts[0], parts[1], parts[2]);
    let two = format!("{}.{}", parts[0], parts[1]);
    let four = format!("{token}.{}", parts[2]);
    let std_b64 = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        parts[2].replace('-', "+").replace('_', "/")
    );
    for bad in [padded, padded_sig, spaced, tabbed, two, four, std_b64] {
        let outcome = refused(static_layer(), &bad).await;
        assert!(
            matches!(
                outcome.reason,
                Some(AuthError::Malformed | AuthError::BadSignature)
            ),
            "{bad:.60}: {:?}",
            outcome.reason
        );
    }
}

#[tokio::test]
async fn one_mib_header_is_refused_unparsed() {
    let huge = format!("{}.{}.{}", "a".repeat(1 << 20), "b", "c");
    let outcome = refused(static_layer(), &huge).await;
    assert_eq!(outcome.reason, Some(AuthError::TooLarge));
    let header = json!({"alg": "RS256", "kid": "rsa-1", "pad": "x".repeat(1 << 20)});
    let token = jwt::raw_token(&header, &jwt::claims("u", 60), b"sig");
    assert_eq!(
        refused(static_layer(), &token).await.reason,
        Some(AuthError::TooLarge)
    );
}

#[tokio::test]
async fn two_tokens_are_refused() {
    let token = jwt::mint(TestAlg::Rs256, &jwt::claims("u", 300));
    let request = http::Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Default::default())
        .unwrap();
    let outcome = send(static_layer(), request).await;
    assert_eq!(outcome.status, 401);
    assert_eq!(outcome.reason, Some(AuthError::MultipleTokens));
    let layer = JwtAuthLayer::builder()
        .provider(Provider::new(
            KeySet::from_jwks(&jwt::jwks(), false).unwrap(),
        ))
        .sources(TokenSources::bearer().cookie("session"))
        .build()
        .unwrap();
    let request = http::Request::get("/")
        .header("authorization", format!("bearer {token}"))
        .header("cookie", format!("session={token}"))
        .body(Default::default())
        .unwrap();
    assert_eq!(
        send(layer, request).await.reason,
        Some(AuthError::MultipleTokens)
    );
}

#[tokio::test]
async fn wrong_key_signature_is_refused() {
    // A token for another HMAC secret of the right length.
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &jwt::claims("u", 300),
        &EncodingKey::from_secret(&[9u8; 32]),
    )
    .unwrap();
    assert_eq!(
        refused(hs_layer(), &token).await.reason,
        Some(AuthError::BadSignature)
    );
}
