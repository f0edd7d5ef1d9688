//! Refusals as HTTP responses.
//!
//! Every layer turns a refusal into a response, never into a service error. A layer
//! builds a [`Rejection`] (status, a machine-readable `code`, title, detail, protocol
//! headers such as `WWW-Authenticate` or `Retry-After`, and its typed reason) and
//! renders it with a [`RejectionResponder`]. The default, [`ProblemJson`], writes an
//! RFC 9457 `application/problem+json` body:
//!
//! ```json
//! {"type":"urn:gateway-layers:problem:rate_limited","title":"Too Many Requests",
//!  "status":429,"detail":"...","code":"rate_limited"}
//! ```
//!
//! A responder is replaceable; closures `Fn(&Rejection) -> Response<Bytes>` are
//! responders. Whatever it returns, the rejection's protocol headers are added when the
//! responder did not set them, and a [`Rejected`] summary plus the layer's typed reason
//! are inserted into the response's extensions, so outer layers and logs can see why.
//!
//! ```
//! use bytes::Bytes;
//! use gateway_layers_core::{Rejection, RejectionResponder};
//! use http::{Response, StatusCode};
//!
//! let plain_text = |rejection: &Rejection| {
//!     Response::builder()
//!         .status(rejection.status())
//!         .body(Bytes::from(format!("denied: {}", rejection.code())))
//!         .unwrap()
//! };
//! let response = Rejection::new(StatusCode::FORBIDDEN, "jwt", "insufficient_scope")
//!     .into_response::<http_body_util::Empty<Bytes>>(&plain_text);
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! let rejected = response.extensions().get::<gateway_layers_core::Rejected>().unwrap();
//! assert_eq!(rejected.code, "insufficient_scope");
//! ```

use std::{borrow::Cow, fmt, sync::Arc};

use bytes::Bytes;
use http::{
    Extensions, HeaderMap, HeaderName, HeaderValue, Response, StatusCode,
    header::{CONTENT_LENGTH, CONTENT_TYPE},
};

use crate::body::GatewayBody;

/// A request refused by a layer.
///
/// Boxed inside, so `Result<_, Rejection>` stays one pointer wide on the hot path.
#[derive(Clone)]
pub struct Rejection(Box<Inner>);

#[derive(Clone)]
struct Inner {
    status: StatusCode,
    layer: &'static str,
    code: &'static str,
    title: Option<Cow<'static, str>>,
    detail: Option<Cow<'static, str>>,
    headers: HeaderMap,
    extensions: Extensions,
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("status", &self.0.status)
            .field("layer", &self.0.layer)
            .field("code", &self.0.code)
            .field("title", &self.0.title)
            .field("detail", &self.0.detail)
            .field("headers", &self.0.headers)
            .finish_non_exhaustive()
    }
}

/// The summary of a rejection, found in the extensions of every rejection response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// The layer that refused, e.g. `"jwt"` or `"ratelimit"`.
    pub layer: &'static str,
    /// The machine-readable reason, e.g. `"invalid_token"`.
    pub code: &'static str,
    /// The status the rejection carried.
    pub status: StatusCode,
}

impl Rejection {
    /// A rejection with a status, the refusing layer's name and a machine-readable code.
    pub fn new(status: StatusCode, layer: &'static str, code: &'static str) -> Self {
        Self(Box::new(Inner {
            status,
            layer,
            code,
            title: None,
            detail: None,
            headers: HeaderMap::new(),
            extensions: Extensions::new(),
        }))
    }

    /// Sets the human-readable summary (defaults to the status' reason phrase).
    #[must_use]
    pub fn with_title(mut self, title: impl Into<Cow<'static, str>>) -> Self {
        self.0.title = Some(title.into());
        self
    }

    /// Sets the explanation specific to this occurrence.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    /// Adds a protocol header (`WWW-Authenticate`, `Retry-After`, `Allow`, ...), sent
    /// whatever responder renders the body.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.append(name, value);
        self
    }

    /// Attaches the layer's typed reason; it ends up in the response's extensions.
    #[must_use]
    pub fn with_reason<T: Clone + Send + Sync + 'static>(mut self, reason: T) -> Self {
        self.0.extensions.insert(reason);
        self
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The refusing layer's name.
    pub fn layer(&self) -> &'static str {
        self.0.layer
    }

    /// The machine-readable reason.
    pub fn code(&self) -> &'static str {
        self.0.code
    }

    /// The summary: the configured title or the status' reason phrase.
    pub fn title(&self) -> &str {
        match &self.0.title {
            Some(title) => title,
            None => self.0.status.canonical_reason().unwrap_or("Error"),
        }
    }

    /// The occurrence-specific explanation, if any.
    pub fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    /// The protocol headers to send.
    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }

    /// The typed reason attached with [`with_reason`](Self::with_reason), if of type `T`.
    pub fn reason<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.extensions.get::<T>()
    }

    /// The summary inserted into response extensions.
    pub fn summary(&self) -> Rejected {
        Rejected {
            layer: self.0.layer,
            code: self.0.code,
            status: self.0.status,
        }
    }

    /// Renders the rejection with `responder` into a response with any body type `B`.
    pub fn into_response<B>(self, responder: &dyn RejectionResponder) -> Response<GatewayBody<B>> {
        let response = responder.respond(&self);
        let (mut parts, body) = response.into_parts();
        for name in self.0.headers.keys() {
            if !parts.headers.contains_key(name) {
                for value in self.0.headers.get_all(name) {
                    parts.headers.append(name.clone(), value.clone());
                }
            }
        }
        let summary = self.summary();
        parts.extensions.extend(self.0.extensions);
        parts.extensions.insert(summary);
        Response::from_parts(parts, GatewayBody::rejection(body))
    }

    /// Renders the body as RFC 9457 problem details JSON.
    pub fn problem_json(&self) -> Bytes {
        let mut map = serde_json::Map::with_capacity(5);
        map.insert(
            "type".into(),
            format!("urn:gateway-layers:problem:{}", self.0.code).into(),
        );
        map.insert("title".into(), self.title().into());
        map.insert("status".into(), self.0.status.as_u16().into());
        if let Some(detail) = &self.0.detail {
            map.insert("detail".into(), detail.as_ref().into());
        }
        map.insert("code".into(), self.0.code.into());
        Bytes::from(serde_json::Value::Object(map).to_string())
    }
}

/// Turns a [`Rejection`] into the response sent to the client.
///
/// Implemented for [`ProblemJson`] (the default) and for closures
/// `Fn(&Rejection) -> Response<Bytes>`. The rejection's protocol headers and extensions
/// are added afterwards by [`Rejection::into_response`], so a responder cannot drop a
/// `Retry-After` or `WWW-Authenticate` by accident.
pub trait RejectionResponder: Send + Sync + 'static {
    /// Builds the response for `rejection`.
    fn respond(&self, rejection: &Rejection) -> Response<Bytes>;
}

impl<F> RejectionResponder for F
where
    F: Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
{
    fn respond(&self, rejection: &Rejection) -> Response<Bytes> {
        self(rejection)
    }
}

/// The default responder: RFC 9457 `application/problem+json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemJson;

impl RejectionResponder for ProblemJson {
    fn respond(&self, rejection: &Rejection) -> Response<Bytes> {
        let body = rejection.problem_json();
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = rejection.status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        *response.body_mut() = body;
        response
    }
}

/// A responder shared by all clones of a layer.
#[derive(Clone)]
pub struct SharedResponder(Arc<dyn RejectionResponder>);

impl SharedResponder {
    /// Wraps a responder.
    pub fn new(responder: impl RejectionResponder) -> Self {
        Self(Arc::new(responder))
    }

    /// Renders `rejection` into a response.
    pub fn respond<B>(&self, rejection: Rejection) -> Response<GatewayBody<B>> {
        rejection.into_response(&*self.0)
    }
}

impl Default for SharedResponder {
    fn default() -> Self {
        Self::new(ProblemJson)
    }
}

impl fmt::Debug for SharedResponder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedResponder(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
    use http_body_util::{BodyExt, Empty};

    #[derive(Debug, Clone, PartialEq)]
    struct Reason(u32);

    #[tokio::test]
    async fn problem_json_body_and_headers() {
        let response = Rejection::new(StatusCode::UNAUTHORIZED, "jwt", "invalid_token")
            .with_detail("token \"expired\"")
            .with_header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            .with_reason(Reason(7))
            .into_response::<Empty<Bytes>>(&ProblemJson);
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
        assert_eq!(
            response.extensions().get::<Rejected>().unwrap(),
            &Rejected {
                layer: "jwt",
                code: "invalid_token",
                status: StatusCode::UNAUTHORIZED
            }
        );
        assert_eq!(response.extensions().get::<Reason>(), Some(&Reason(7)));
        let length: usize = response.headers()[CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), length);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["status"], 401);
        assert_eq!(json["title"], "Unauthorized");
        assert_eq!(json["detail"], "token \"expired\"");
        assert_eq!(json["code"], "invalid_token");
        assert_eq!(json["type"], "urn:gateway-layers:problem:invalid_token");
    }

    #[test]
    fn closure_responder_keeps_protocol_headers() {
        let responder = |r: &Rejection| {
            let mut response = Response::new(Bytes::from_static(b"nope"));
            *response.status_mut() = r.status();
            response
        };
        let response = Rejection::new(StatusCode::TOO_MANY_REQUESTS, "ratelimit", "limited")
            .with_header(RETRY_AFTER, HeaderValue::from_static("3"))
            .into_response::<Empty<Bytes>>(&responder);
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[RETRY_AFTER], "3");
    }

    #[test]
    fn responder_header_wins_over_rejection_header() {
        let responder = |r: &Rejection| {
            Response::builder()
                .status(r.status())
                .header(RETRY_AFTER, "10")
                .body(Bytes::new())
                .unwrap()
        };
        let response = Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "breaker", "open")
            .with_header(RETRY_AFTER, HeaderValue::from_static("3"))
            .into_response::<Empty<Bytes>>(&responder);
        let values: Vec<_> = response.headers().get_all(RETRY_AFTER).iter().collect();
        assert_eq!(values, ["10"]);
    }

    #[test]
    fn title_defaults_to_reason_phrase() {
        let r = Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, "transform", "too_large");
        assert_eq!(r.title(), "Payload Too Large");
        assert_eq!(r.with_title("Body too big").title(), "Body too big");
    }
}
