//! Remote JWKS against a real loopback server: sharing, unknown-kid storms, rotation,
//! failures, OIDC discovery.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::*;
use gateway_layers_jwt::{AuthError, JwksOptions, JwtAuthLayer, Provider, RemoteJwks};
use gateway_layers_test_support::{
    MockUpstream, Reply,
    jwt::{self, TestAlg},
};
use jsonwebtoken::{Algorithm, Header};
use serde_json::json;

fn options() -> JwksOptions {
    JwksOptions {
        fetch_timeout: Duration::from_secs(2),
        unknown_kid_cooldown: Duration::from_millis(300),
        min_backoff: Duration::from_millis(200),
        ..JwksOptions::default()
    }
}

fn layer_for(jwks: RemoteJwks) -> JwtAuthLayer {
    JwtAuthLayer::builder()
        .provider(Provider::remote(jwks))
        .build()
        .unwrap()
}

async fn jwks_server() -> MockUpstream {
    MockUpstream::builder()
        .handler(|_, _| Reply::status(200).json(&jwt::jwks()))
        .start()
        .await
}

#[tokio::test]
async fn fetches_once_and_verifies_every_algorithm() {
    let server = jwks_server().await;
    let jwks = RemoteJwks::shared(&server.url_for("/jwks.json"), options()).unwrap();
    // A second layer on the same URL shares the refresher.
    let again = RemoteJwks::shared(&server.url_for("/jwks.json"), options()).unwrap();
    for alg in [TestAlg::Rs256, TestAlg::Es256, TestAlg::EdDsa] {
        for layer in [layer_for(jwks.clone()), layer_for(again.clone())] {
            let token = jwt::mint(alg, &jwt::claims("u", 300));
            assert_eq!(send(layer, bearer(&token)).await.status, 200, "{alg:?}");
        }
    }
    assert_eq!(server.requests(), 1);
    assert_eq!(jwks.generation(), 1);
    assert_eq!(server.last().unwrap().uri.path(), "/jwks.json");
}

#[tokio::test]
async fn random_kids_cannot_cause_a_fetch_storm() {
    let server = jwks_server().await;
    let long_cooldown = JwksOptions {
        unknown_kid_cooldown: Duration::from_secs(60),
        ..options()
    };
    let jwks = RemoteJwks::shared(&server.url(), long_cooldown).unwrap();
    let layer = layer_for(jwks);
    let ok = jwt::mint(TestAlg::Rs256, &jwt::claims("u", 300));
    assert_eq!(send(layer.clone(), bearer(&ok)).await.status, 200);
    for i in 0..200 {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(format!("random-{i}"));
        let token = jwt::mint_with_header(TestAlg::Rs256, &header, &jwt::claims("u", 300));
        let outcome = send(layer.clone(), bearer(&token)).await;
        assert_eq!(outcome.reason, Some(AuthError::UnknownKid));
    }
    // The initial fetch plus exactly one refetch for the whole cooldown window.
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn key_rotation_new_kid_appears_old_one_removed() {
    let phase = Arc::new(AtomicUsize::new(0));
    let seen = phase.clone();
    let server = MockUpstream::builder()
        .handler(move |_, _| {
            let rsa = TestAlg::Rs256.public_jwk().unwrap();
            let ec = TestAlg::Es256.public_jwk().unwrap();
            let keys = if seen.load(Ordering::SeqCst) == 0 {
                vec![rsa]
            } else {
                vec![ec]
            };
            Reply::status(200).json(&json!({ "keys": keys }))
        })
        .start()
        .await;
    let jwks = RemoteJwks::shared(&server.url_for("/rotating"), options()).unwrap();
    let layer = layer_for(jwks.clone());
    let rsa_token = jwt::mint(TestAlg::Rs256, &jwt::claims("u", 300));
    let ec_token = jwt::mint(TestAlg::Es256, &jwt::claims("u", 300));
    assert_eq!(send(layer.clone(), bearer(&rsa_token)).await.status, 200);
    // Cached now; still accepted.
    assert_eq!(send(layer.clone(), bearer(&rsa_token)).await.status, 200);
    assert_eq!(send(layer.clone(), bearer(&ec_token)).await.status, 401);
    assert_eq!(jwks.generation(), 1);

    phase.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await; // past the cooldown
    // The new kid triggers a refetch and is accepted.
    assert_eq!(send(layer.clone(), bearer(&ec_token)).await.status, 200);
    assert_eq!(jwks.generation(), 2);
    // The removed key no longer verifies, even though its token was cached.
    let outcome = send(layer, bearer(&rsa_token)).await;
    assert_eq!(outcome.status, 401);
    assert!(matches!(
        outcome.reason,
        Some(AuthError::AlgNotAccepted | AuthError::UnknownKid)
    ));
}

#[tokio::test]
async fn failing_endpoint_is_401_without_storm() {
    let server = MockUpstream::statuses([500]).await;
    let long_cooldown = JwksOptions {
        unknown_kid_cooldown: Duration::from_secs(60),
        min_backoff: Duration::from_secs(30),
        ..options()
    };
    let jwks = RemoteJwks::shared(&server.url_for("/broken"), long_cooldown).unwrap();
    let layer = layer_for(jwks);
    let token = jwt::mint(TestAlg::Rs256, &jwt::claims("u", 300));
    for _ in 0..50 {
        let outcome = send(layer.clone(), bearer(&token)).await;
        assert_eq!(outcome.status, 401);
        assert_eq!(outcome.reason, Some(AuthError::KeysUnavailable));
        assert_eq!(outcome.code, Some("keys_unavailable"));
    }
    // The first fetch, then one early retry for the cooldown window; the backoff
    // keeps the refresher itself quiet.
    let fetches = server.requests();
    assert!((1..=2).contains(&fetches), "{fetches}");
}

#[tokio::test]
async fn slow_endpoint_hits_the_fetch_timeout() {
    let server = MockUpstream::builder()
        .handler(|_, _| {
            Reply::status(200)
                .json(&jwt::jwks())
                .delay(Duration::from_secs(5))
        })
        .start()
        .await;
    let quick = JwksOptions {
        fetch_timeout: Duration::from_millis(200),
        unknown_kid_cooldown: Duration::from_secs(60),
        min_backoff: Duration::from_secs(30),
        ..options()
    };
    let jwks = RemoteJwks::shared(&server.url_for("/slow"), quick).unwrap();
    let token = jwt::mint(TestAlg::Rs256, &jwt::claims("u", 300));
    let outcome = send(layer_for(jwks.clone()), bearer(&token)).await;
    assert_eq!(outcome.reason, Some(AuthError::KeysUnavailable));
    assert!(
        jwks.attempts() >= 1,
        "the timed-out fetch counts as an attempt"
    );
    assert!(jwks.current().is_none());
}

#[tokio::test]
async fn oidc_discovery() {
    let server = MockUpstream::builder()
        .handler(|req, _| {
            let host = req.headers["host"].to_str().unwrap().to_owned();
            match req.uri.path() {
                "/realm/.well-known/openid-configuration" => Reply::status(200).json(&json!({
                    "issuer": format!("http://{host}/realm"),
                    "jwks_uri": format!("http://{host}/realm/certs"),
                })),
                "/realm/certs" => Reply::status(200).json(&jwt::jwks()),
                _ => Reply::status(404),
            }
        })
        .start()
        .await;
    let issuer = server.url_for("/realm");
    let layer = JwtAuthLayer::builder()
        .provider(Provider::oidc(&issuer, options()).unwrap())
        .build()
        .unwrap();
    let mut claims = jwt::claims("u", 300);
    claims["iss"] = json!(issuer);
    let token = jwt::mint(TestAlg::Es256, &claims);
    let outcome = send(layer.clone(), bearer(&token)).await;
    assert_eq!(outcome.status, 200);
    assert_eq!(outcome.body["identity"]["iss"], json!(issuer));
    assert_eq!(server.requests(), 2);
    // A token from another issuer selects no provider.
    claims["iss"] = json!("http://127.0.0.1:1/other");
    let token = jwt::mint(TestAlg::Es256, &claims);
    assert_eq!(
        send(layer, bearer(&token)).await.reason,
        Some(AuthError::UnknownIssuer)
    );

    // A discovery document naming another issuer is not trusted.
    let liar = MockUpstream::builder()
        .handler(|_, _| {
            Reply::status(200)
                .json(&json!({"issuer": "https://evil.example", "jwks_uri": "http://127.0.0.1:1/"}))
        })
        .start()
        .await;
    let issuer = liar.url();
    let layer = JwtAuthLayer::builder()
        .provider(Provider::oidc(&issuer, options()).unwrap())
        .build()
        .unwrap();
    claims["iss"] = json!(issuer);
    let token = jwt::mint(TestAlg::Es256, &claims);
    assert_eq!(
        send(layer, bearer(&token)).await.reason,
        Some(AuthError::KeysUnavailable)
    );
}

#[tokio::test]
async fn several_providers_selected_by_issuer() {
    let server = jwks_server().await;
    let layer = JwtAuthLayer::builder()
        .provider(
            Provider::remote(RemoteJwks::shared(&server.url_for("/a"), options()).unwrap())
                .issuer("https://idp-a"),
        )
        .provider(
            Provider::hmac(jwt::HMAC_SECRET, Algorithm::HS256)
                .unwrap()
                .issuer("https://idp-b"),
        )
        .build()
        .unwrap();
    let mut claims = jwt::claims("u", 300);
    claims["iss"] = json!("https://idp-a");
    let rs = jwt::mint(TestAlg::Rs256, &claims);
    let hs_wrong = jwt::mint(TestAlg::Hs256, &claims);
    claims["iss"] = json!("https://idp-b");
    let hs = jwt::mint(TestAlg::Hs256, &claims);
    let rs_wrong = jwt::mint(TestAlg::Rs256, &claims);
    assert_eq!(send(layer.clone(), bearer(&rs)).await.status, 200);
    assert_eq!(send(layer.clone(), bearer(&hs)).await.status, 200);
    assert_eq!(send(layer.clone(), bearer(&hs_wrong)).await.status, 401);
    assert_eq!(send(layer, bearer(&rs_wrong)).await.status, 401);
}

#[test]
fn bad_urls_are_config_errors() {
    assert!(RemoteJwks::shared("file:///etc/passwd", options()).is_err());
    assert!(RemoteJwks::shared("/relative", options()).is_err());
    assert!(RemoteJwks::discover("ftp://x", options()).is_err());
    // The built-in fetcher is plain HTTP: https without a TLS fetcher is refused.
    assert!(RemoteJwks::shared("https://idp.example/jwks", options()).is_err());
    let tls = JwksOptions {
        fetcher: Some(std::sync::Arc::new(|_, _, _| {
            Box::pin(async { Err::<bytes::Bytes, _>("unused".to_owned()) })
                as gateway_layers_jwt::jwks::FetchFuture
        })),
        ..options()
    };
    assert!(RemoteJwks::shared("https://idp.example/jwks", tls).is_ok());
}
