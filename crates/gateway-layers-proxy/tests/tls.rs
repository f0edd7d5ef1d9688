//! `https://` targets (feature `tls`): HTTP/1.1 and HTTP/2 over TLS, ALPN, custom roots.
#![cfg(feature = "tls")]

mod common;

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use gateway_layers_proxy::{Proxy, Target};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, RootCertStore,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
};
use tower::ServiceExt;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS server on loopback answering with the negotiated HTTP version.
async fn tls_upstream() -> std::net::SocketAddr {
    let certs = vec![CertificateDer::from_pem_file(format!("{FIXTURES}/localhost.crt")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(format!("{FIXTURES}/localhost.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let body = format!("{:?} {}", req.version(), req.uri().path());
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

fn client_config() -> rustls::ClientConfig {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(format!("{FIXTURES}/ca.crt")).unwrap())
        .unwrap();
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[tokio::test]
async fn https_targets_over_http1_and_http2() {
    let addr = tls_upstream().await;
    let url = format!("https://localhost:{}", addr.port());
    for (target, expected) in [
        (Target::new(url.as_str()), "HTTP/1.1 /secure"),
        (Target::new(url.as_str()).http2(), "HTTP/2.0 /secure"),
    ] {
        let proxy = Proxy::builder()
            .target(target)
            .tls_config(client_config())
            .build()
            .unwrap();
        let response = proxy
            .oneshot(common::request("/secure", "127.0.0.1:1"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, expected);
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_502() {
    let addr = tls_upstream().await;
    // Default roots (webpki): the test CA is unknown.
    let proxy = Proxy::new([format!("https://localhost:{}", addr.port())]).unwrap();
    let response = proxy
        .oneshot(common::request("/", "127.0.0.1:1"))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
}
