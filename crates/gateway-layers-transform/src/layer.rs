//! [`TransformLayer`] and the [`Transform`] service.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use gateway_layers_core::{
    ConfigError, GatewayBody, Rejection, RejectionResponder, RequestView, SharedResponder, metrics,
};
use http::{Method, Request, Response, StatusCode, header::CONTENT_LENGTH};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    codec::{self, Coding},
    config::{CompressedBodies, OnTemplateError, TransformConfig},
    future::{ReadRequest, ResponseCtx, ResponseFuture},
    headers::{HeaderPlan, TemplateFailed},
    json::JsonPlan,
};

/// The compiled configuration, shared by every clone of a layer and its services.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) request_headers: HeaderPlan,
    pub(crate) request_json: Option<JsonPlan>,
    pub(crate) response_headers: HeaderPlan,
    pub(crate) response_json: Option<JsonPlan>,
    pub(crate) max_body: usize,
    pub(crate) on_template_error: OnTemplateError,
    pub(crate) compressed: CompressedBodies,
    /// Only fixed request headers to set: no template to render, no body, no response work.
    pub(crate) headers_only: bool,
}

/// Applies header and JSON body transforms to requests and responses.
///
/// Built from a [`TransformConfig`] (see the [crate docs](crate) for the order of
/// operations, templates, limits and what is left untouched). Refusals (413 for a body
/// over the cap, 400 for malformed JSON or a template that cannot be rendered) are
/// rendered by the rejection responder, RFC 9457 problem+json by default.
///
/// ```
/// use gateway_layers_transform::{Rules, TransformConfig, TransformLayer};
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = TransformConfig::new()
///     .request(Rules::new().set_header("x-gateway", "v1"))
///     .response(Rules::new().remove_header("server"))
///     .build()
///     .unwrap();
/// let service = ServiceBuilder::new().layer(layer).service(service_fn(
///     |request: Request<_>| async move {
///         let seen = request.headers()["x-gateway"].clone();
///         Ok::<_, std::convert::Infallible>(
///             Response::builder().header("server", "secret/1.0").header("x-seen", seen)
///                 .body(Full::new(Bytes::new())).unwrap(),
///         )
///     },
/// ));
/// let response = service
///     .oneshot(Request::new(Full::new(Bytes::new())))
///     .await
///     .unwrap();
/// assert_eq!(response.headers()["x-seen"], "v1");
/// assert!(response.headers().get("server").is_none());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TransformLayer {
    shared: Arc<Shared>,
    responder: SharedResponder,
}

impl TransformLayer {
    /// Validates `config` into a layer.
    pub fn new(config: TransformConfig) -> Result<Self, ConfigError> {
        if config.max_body_bytes == 0 {
            return Err(ConfigError::invalid(
                "max_body_bytes",
                "must be greater than zero",
            ));
        }
        let json = |rules: &crate::config::JsonRules, side| -> Result<_, ConfigError> {
            if rules.is_empty() {
                Ok(None)
            } else {
                JsonPlan::compile(rules, side).map(Some)
            }
        };
        let request_headers = HeaderPlan::compile(&config.request.headers)?;
        let request_json = json(&config.request.json, "request")?;
        let response_headers = HeaderPlan::compile(&config.response.headers)?;
        let response_json = json(&config.response.json, "response")?;
        let headers_only = request_headers.is_static()
            && request_json.is_none()
            && response_headers.is_empty()
            && response_json.is_none();
        Ok(Self {
            shared: Arc::new(Shared {
                request_headers,
                request_json,
                response_headers,
                response_json,
                max_body: config.max_body_bytes,
                on_template_error: config.on_template_error,
                compressed: config.compressed,
                headers_only,
            }),
            responder: SharedResponder::default(),
        })
    }

    /// Renders refusals with `responder` instead of problem+json.
    #[must_use]
    pub fn with_rejection_response(mut self, responder: impl RejectionResponder) -> Self {
        self.responder = SharedResponder::new(responder);
        self
    }
}

impl<S> Layer<S> for TransformLayer {
    type Service = Transform<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Transform {
            inner,
            shared: self.shared.clone(),
            responder: self.responder.clone(),
        }
    }
}

/// The service of [`TransformLayer`].
#[derive(Clone)]
pub struct Transform<S> {
    inner: S,
    shared: Arc<Shared>,
    responder: SharedResponder,
}

impl<S: fmt::Debug> fmt::Debug for Transform<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transform")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Transform<S> {
    /// Wraps `inner` with the transforms of `layer`.
    pub fn new(inner: S, layer: &TransformLayer) -> Self {
        layer.layer(inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

pub(crate) fn reject(status: StatusCode, code: &'static str, detail: String) -> Rejection {
    metrics::counter("gateway.transform.rejected", 1, &[("code", code)]);
    tracing::debug!(
        target: "gateway_layers::transform",
        code,
        status = status.as_u16(),
        %detail,
        "transform.rejected"
    );
    Rejection::new(status, "transform", code).with_detail(detail)
}

pub(crate) fn too_large(max: usize) -> Rejection {
    reject(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the JSON body exceeds the {max} byte limit of the transform"),
    )
}

fn template_failed(failed: TemplateFailed) -> Rejection {
    reject(
        StatusCode::BAD_REQUEST,
        "template_failed",
        format!("template `{}`: {}", failed.template, failed.error),
    )
}

/// The declared length, if any.
pub(crate) fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Transform<S>
where
    S: Service<Request<GatewayBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body<Data = Bytes>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<crate::TransformBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        if shared.headers_only {
            shared.request_headers.apply(request.headers_mut(), &[]);
            return ResponseFuture::inner(self.inner.call(request.map(GatewayBody::inner)), None);
        }
        let policy = shared.on_template_error;
        // Every template renders against the request as this layer received it.
        let rendered = {
            let view = RequestView::new(&request);
            render_all(shared, &view, policy, &self.shared)
        };
        let (request_headers, request_json, response) = match rendered {
            Ok(rendered) => rendered,
            Err(failed) => {
                return ResponseFuture::rejected(self.responder.respond(template_failed(failed)));
            }
        };
        shared
            .request_headers
            .apply(request.headers_mut(), &request_headers);

        if shared.request_json.is_some()
            && codec::is_json(request.headers())
            && let Some(coding) = codec::coding(request.headers(), shared.compressed)
        {
            let max = shared.max_body as u64;
            let known = content_length(request.headers())
                .unwrap_or_else(|| request.body().size_hint().lower());
            // A compressed body can only be judged once decoded.
            if coding == Coding::Identity && known > max {
                return ResponseFuture::rejected(
                    self.responder.respond(too_large(shared.max_body)),
                );
            }
            if !request.body().is_end_stream() {
                let (parts, body) = request.into_parts();
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                return ResponseFuture::read_request(
                    ReadRequest::new(
                        parts,
                        body,
                        inner,
                        self.shared.clone(),
                        self.responder.clone(),
                        request_json,
                        coding,
                    ),
                    response,
                );
            }
        }
        let future = self.inner.call(request.map(GatewayBody::inner));
        ResponseFuture::inner(future, response)
    }
}

type Rendered = (
    Vec<Option<http::HeaderValue>>,
    Vec<Option<serde_json::Value>>,
    Option<ResponseCtx>,
);

fn render_all(
    shared: &Shared,
    view: &RequestView<'_>,
    policy: OnTemplateError,
    arc: &Arc<Shared>,
) -> Result<Rendered, TemplateFailed> {
    let request_headers = shared.request_headers.render(view, policy)?;
    let request_json = match &shared.request_json {
        Some(plan) => plan.render(view, policy)?,
        None => Vec::new(),
    };
    let response = if shared.response_headers.is_empty() && shared.response_json.is_none() {
        None
    } else {
        Some(ResponseCtx {
            shared: arc.clone(),
            headers: shared.response_headers.render(view, policy)?,
            json: match &shared.response_json {
                Some(plan) => plan.render(view, policy)?,
                None => Vec::new(),
            },
            head: view.method == Method::HEAD,
        })
    };
    Ok((request_headers, request_json, response))
}
