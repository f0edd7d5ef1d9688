//! Correlation ids with tower-http's request-id layers.
//!
//! tower-http's [`SetRequestIdLayer`] keeps an inbound `x-request-id` whatever it holds
//! and only generates one when it is missing; [`PropagateRequestIdLayer`] echoes it on
//! the response. This module adds the two missing pieces: [`MakeRequestUuidV7`]
//! (time-ordered UUID v7 ids) and [`AcceptValidRequestIdLayer`], which drops an inbound
//! id that is not a sane token so that a fresh one is generated instead.
//! [`request_id_layers`] returns the three in the right order; put them outside the
//! [`TransformLayer`](crate::TransformLayer) so `{request_id}` templates see the id.
//!
//! ```
//! use gateway_layers_transform::{Rules, TransformConfig, request_id::request_id_layers};
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let transform = TransformConfig::new()
//!     .request(Rules::new().set_header("x-correlation-id", "{request_id}"))
//!     .build()
//!     .unwrap();
//! let service = ServiceBuilder::new()
//!     .layer(request_id_layers())
//!     .layer(transform)
//!     .service(service_fn(|request: Request<_>| async move {
//!         let seen = request.headers()["x-correlation-id"].clone();
//!         Ok::<_, std::convert::Infallible>(
//!             Response::builder().header("x-seen", seen).body(Full::new(Bytes::new())).unwrap(),
//!         )
//!     }));
//!
//! // No inbound id (or an invalid one): a UUID v7 is generated, used and echoed.
//! let response = service.clone()
//!     .oneshot(Request::builder().header("x-request-id", "bad id\t!").body(Full::new(Bytes::new())).unwrap())
//!     .await
//!     .unwrap();
//! let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
//! assert_eq!(id.len(), 36);
//! assert_eq!(&id[14..15], "7");
//! assert_eq!(response.headers()["x-seen"], id.as_str());
//!
//! // A valid inbound id is kept and echoed.
//! let response = service
//!     .oneshot(Request::builder().header("x-request-id", "abc-123").body(Full::new(Bytes::new())).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(response.headers()["x-request-id"], "abc-123");
//! # }
//! ```

use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_layer::Layer;
use tower_service::Service;

/// The header tower-http's `x_request_id` constructors use.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest inbound id accepted.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Generates time-ordered UUID v7 request ids (`0190b7c2-...-7...`) for tower-http's
/// [`SetRequestIdLayer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let mut buf = uuid::Uuid::encode_buffer();
        let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
        HeaderValue::from_str(id).ok().map(RequestId::new)
    }
}

/// Whether an inbound id is acceptable: 1 to [`MAX_REQUEST_ID_LEN`] bytes of ASCII
/// letters, digits and `-`, `_`, `.`, `:`, `/`, `+`, `=`.
pub fn is_valid_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b))
}

/// Removes an inbound request id that is not valid ([`is_valid_request_id`]) or is
/// sent more than once, so tower-http's [`SetRequestIdLayer`] generates a fresh one.
#[derive(Debug, Clone)]
pub struct AcceptValidRequestIdLayer {
    header: HeaderName,
}

impl AcceptValidRequestIdLayer {
    /// For `x-request-id`.
    pub fn x_request_id() -> Self {
        Self::new(X_REQUEST_ID.clone())
    }

    /// For any header.
    pub fn new(header: HeaderName) -> Self {
        Self { header }
    }
}

impl<S> Layer<S> for AcceptValidRequestIdLayer {
    type Service = AcceptValidRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AcceptValidRequestId {
            inner,
            header: self.header.clone(),
        }
    }
}

/// The service of [`AcceptValidRequestIdLayer`].
#[derive(Debug, Clone)]
pub struct AcceptValidRequestId<S> {
    inner: S,
    header: HeaderName,
}

impl<S, B> Service<Request<B>> for AcceptValidRequestId<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let mut values = request.headers().get_all(&self.header).iter();
        let keep = match (values.next(), values.next()) {
            (None, _) => true,
            (Some(value), None) => is_valid_request_id(value),
            (Some(_), Some(_)) => false,
        };
        if !keep {
            tracing::debug!(
                target: "gateway_layers::transform",
                header = %self.header,
                "transform.request_id_refused"
            );
            request.headers_mut().remove(&self.header);
        }
        self.inner.call(request)
    }
}

/// The request-id stack, outermost first: drop an invalid inbound `x-request-id`, set
/// one (UUID v7) when missing, echo it on the response. A tuple of layers is a layer:
/// `ServiceBuilder::new().layer(request_id_layers())`.
pub fn request_id_layers() -> (
    AcceptValidRequestIdLayer,
    SetRequestIdLayer<MakeRequestUuidV7>,
    PropagateRequestIdLayer,
) {
    (
        AcceptValidRequestIdLayer::x_request_id(),
        SetRequestIdLayer::x_request_id(MakeRequestUuidV7),
        PropagateRequestIdLayer::x_request_id(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids() {
        for ok in [
            "abc",
            "0190b7c2-1f3a-7c00-8000-000000000000",
            "a.b:c/d+e=f_g",
        ] {
            assert!(is_valid_request_id(&HeaderValue::from_static(ok)), "{ok}");
        }
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for bad in ["", "a b", "a\tb", "<script>", "é", long.as_str()] {
            let value = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            assert!(!is_valid_request_id(&value), "{bad}");
        }
    }

    #[test]
    fn generates_v7() {
        let id = MakeRequestUuidV7
            .make_request_id(&Request::new(()))
            .unwrap();
        let parsed = uuid::Uuid::parse_str(id.header_value().to_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
    }
}
