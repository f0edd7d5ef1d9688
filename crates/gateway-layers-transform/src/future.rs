//! [`ResponseFuture`]: reads a request body to transform, calls the inner service,
//! reads a response body to transform.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use gateway_layers_core::{GatewayBody, SharedResponder, metrics};
use http::{
    HeaderMap, HeaderValue, Request, Response, StatusCode,
    header::{CONTENT_LENGTH, TRANSFER_ENCODING},
    request, response,
};
use http_body::Body;
use pin_project_lite::pin_project;
use serde_json::Value;
use tower_service::Service;

use crate::{
    TransformBody, Untransformed,
    codec::{self, Coding, DecodeError},
    layer::{Shared, content_length, reject, too_large},
};

/// What the response side needs, rendered when the request arrived.
#[derive(Debug)]
pub(crate) struct ResponseCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) headers: Vec<Option<HeaderValue>>,
    pub(crate) json: Vec<Option<Value>>,
    pub(crate) head: bool,
}

/// Chunks read so far.
#[derive(Debug, Default)]
struct Collect {
    chunks: Vec<Bytes>,
    len: usize,
    trailers: Option<HeaderMap>,
}

enum Collected<E> {
    Complete,
    TooLarge,
    Failed(E),
}

impl Collect {
    fn poll<B: Body<Data = Bytes>>(
        &mut self,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
        cap: usize,
    ) -> Poll<Collected<B::Error>> {
        loop {
            match ready!(body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(Collected::Complete),
                Some(Err(e)) => return Poll::Ready(Collected::Failed(e)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.len += data.len();
                        if !data.is_empty() {
                            self.chunks.push(data);
                        }
                        if self.len > cap {
                            return Poll::Ready(Collected::TooLarge);
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.trailers = Some(trailers);
                        }
                    }
                },
            }
        }
    }

    /// The whole body as one buffer (no copy for a single chunk).
    fn concat(&self) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut out = BytesMut::with_capacity(self.len);
                for chunk in many {
                    out.extend_from_slice(chunk);
                }
                out.freeze()
            }
        }
    }
}

/// Why a JSON body could not be transformed.
enum Failure {
    TooLarge,
    Undecodable,
    Malformed(serde_json::Error),
}

/// Decodes, parses, transforms and re-encodes a whole body.
fn transform_body(
    raw: &Bytes,
    coding: Coding,
    cap: usize,
    apply: impl FnOnce(&mut Value),
) -> Result<Bytes, Failure> {
    let decoded;
    let text: &[u8] = match coding {
        Coding::Identity => raw,
        coding => {
            decoded = codec::decode(coding, raw, cap).map_err(|e| match e {
                DecodeError::TooLarge => Failure::TooLarge,
                DecodeError::Corrupt => Failure::Undecodable,
            })?;
            &decoded
        }
    };
    let mut doc: Value = serde_json::from_slice(text).map_err(Failure::Malformed)?;
    apply(&mut doc);
    let mut out = Vec::with_capacity(text.len() + text.len() / 8 + 16);
    serde_json::to_writer(&mut out, &doc).map_err(Failure::Malformed)?;
    Ok(Bytes::from(codec::encode(coding, out)))
}

fn set_length(headers: &mut HeaderMap, len: usize) {
    headers.remove(TRANSFER_ENCODING);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
}

/// A request whose JSON body is being read.
pub(crate) struct ReadRequest<S, B> {
    parts: request::Parts,
    body: Pin<Box<B>>,
    collect: Collect,
    inner: S,
    shared: Arc<Shared>,
    responder: SharedResponder,
    rendered: Vec<Option<Value>>,
    coding: Coding,
}

impl<S, B> ReadRequest<S, B> {
    pub(crate) fn new(
        parts: request::Parts,
        body: B,
        inner: S,
        shared: Arc<Shared>,
        responder: SharedResponder,
        rendered: Vec<Option<Value>>,
        coding: Coding,
    ) -> Box<Self> {
        Box::new(Self {
            parts,
            body: Box::pin(body),
            collect: Collect::default(),
            inner,
            shared,
            responder,
            rendered,
            coding,
        })
    }

    /// The inner service, the responder, and the request to send or the refusal.
    fn finish<E>(
        self,
        outcome: Collected<E>,
    ) -> (
        S,
        SharedResponder,
        Result<Request<GatewayBody<B>>, gateway_layers_core::Rejection>,
    ) {
        let Self {
            mut parts,
            collect,
            inner,
            shared,
            responder,
            rendered,
            coding,
            ..
        } = self;
        let max = shared.max_body;
        let body = match outcome {
            Collected::TooLarge => Err(too_large(max)),
            Collected::Failed(_) => Err(reject(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                "the request body could not be read".to_owned(),
            )),
            Collected::Complete => {
                let raw = collect.concat();
                if raw.is_empty() {
                    Ok(raw)
                } else {
                    let plan = shared
                        .request_json
                        .as_ref()
                        .expect("a request body is read only with request JSON rules");
                    transform_body(&raw, coding, max, |doc| plan.apply(doc, &rendered))
                        .inspect(|_| {
                            metrics::counter(
                                "gateway.transform.transformed",
                                1,
                                &[("side", "request")],
                            );
                        })
                        .map_err(|failure| match failure {
                            Failure::TooLarge => too_large(max),
                            Failure::Undecodable => reject(
                                StatusCode::BAD_REQUEST,
                                "undecodable_body",
                                format!("the body is not valid {coding:?} data"),
                            ),
                            Failure::Malformed(e) => reject(
                                StatusCode::BAD_REQUEST,
                                "malformed_json",
                                format!("the request body is not valid JSON: {e}"),
                            ),
                        })
                }
            }
        };
        let request = body.map(|body| {
            if collect.trailers.is_some() {
                // The inner service's `GatewayBody` holds a rebuilt body as bytes only,
                // so request trailers cannot follow it: say so rather than lose them
                // silently.
                tracing::warn!(
                    target: "gateway_layers::transform",
                    "transform.request_trailers_dropped"
                );
            }
            set_length(&mut parts.headers, body.len());
            Request::from_parts(parts, GatewayBody::rejection(body))
        });
        (inner, responder, request)
    }
}

/// A response whose JSON body is being read.
pub(crate) struct ReadResponse<B: Body> {
    parts: response::Parts,
    body: Pin<Box<B>>,
    collect: Collect,
    ctx: ResponseCtx,
    coding: Coding,
}

fn passthrough(reason: Untransformed, detail: &dyn fmt::Display) {
    metrics::counter(
        "gateway.transform.passthrough",
        1,
        &[("reason", reason.as_str())],
    );
    if reason == Untransformed::Encoding {
        // A coding left alone by configuration (or br/zstd) is expected, not a problem.
        tracing::debug!(
            target: "gateway_layers::transform",
            reason = reason.as_str(),
            %detail,
            "transform.response_passthrough"
        );
    } else {
        tracing::warn!(
            target: "gateway_layers::transform",
            reason = reason.as_str(),
            %detail,
            "transform.response_passthrough"
        );
    }
}

impl<B: Body<Data = Bytes>> ReadResponse<B> {
    fn finish(self, outcome: Collected<B::Error>) -> Response<TransformBody<B>> {
        let Self {
            mut parts,
            body,
            collect,
            ctx,
            coding,
        } = self;
        let max = ctx.shared.max_body;
        let (reason, detail): (Untransformed, Box<dyn fmt::Display>) = match outcome {
            Collected::TooLarge => {
                let detail = format!("body over the {max} byte limit");
                passthrough(Untransformed::TooLarge, &detail);
                parts.extensions.insert(Untransformed::TooLarge);
                let replay = TransformBody::replay(collect.chunks, None, Some(body), None);
                return Response::from_parts(parts, replay);
            }
            Collected::Failed(e) => {
                passthrough(
                    Untransformed::BodyError,
                    &"the body failed while being read",
                );
                parts.extensions.insert(Untransformed::BodyError);
                let replay = TransformBody::replay(collect.chunks, Some(e), None, None);
                return Response::from_parts(parts, replay);
            }
            Collected::Complete => {
                let raw = collect.concat();
                if raw.is_empty() {
                    return Response::from_parts(
                        parts,
                        TransformBody::replay(Vec::new(), None, None, collect.trailers),
                    );
                }
                let plan = ctx
                    .shared
                    .response_json
                    .as_ref()
                    .expect("a response body is read only with response JSON rules");
                match transform_body(&raw, coding, max, |doc| plan.apply(doc, &ctx.json)) {
                    Ok(out) => {
                        metrics::counter(
                            "gateway.transform.transformed",
                            1,
                            &[("side", "response")],
                        );
                        set_length(&mut parts.headers, out.len());
                        return Response::from_parts(
                            parts,
                            TransformBody::replay(vec![out], None, None, collect.trailers),
                        );
                    }
                    Err(Failure::TooLarge) => (
                        Untransformed::TooLarge,
                        Box::new(format!("decoded body over the {max} byte limit")),
                    ),
                    Err(Failure::Undecodable) => (
                        Untransformed::Undecodable,
                        Box::new(format!("not valid {coding:?} data")),
                    ),
                    Err(Failure::Malformed(e)) => (Untransformed::MalformedJson, Box::new(e)),
                }
            }
        };
        passthrough(reason, &detail);
        parts.extensions.insert(reason);
        Response::from_parts(
            parts,
            TransformBody::replay(collect.chunks, None, None, collect.trailers),
        )
    }
}

pin_project! {
    /// The future of [`Transform`](crate::Transform).
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<GatewayBody<ReqBody>>>,
        ResBody: Body,
    {
        #[pin]
        state: State<S, ReqBody, ResBody>,
        response: Option<ResponseCtx>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, ResBody>
    where
        S: Service<Request<GatewayBody<ReqBody>>>,
        ResBody: Body,
    {
        Rejected { response: Option<Box<Response<TransformBody<ResBody>>>> },
        ReadRequest { read: Option<Box<ReadRequest<S, ReqBody>>> },
        Inner { #[pin] future: S::Future },
        ReadResponse { read: Option<Box<ReadResponse<ResBody>>> },
    }
}

impl<S, ReqBody, ResBody> fmt::Debug for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<GatewayBody<ReqBody>>>,
    ResBody: Body,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Rejected { .. } => "rejected",
            State::ReadRequest { .. } => "reading request body",
            State::Inner { .. } => "waiting for the inner service",
            State::ReadResponse { .. } => "reading response body",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<GatewayBody<ReqBody>>>,
    ResBody: Body,
{
    pub(crate) fn rejected(response: Response<GatewayBody<ResBody>>) -> Self {
        Self {
            state: State::Rejected {
                response: Some(Box::new(response.map(TransformBody::inner))),
            },
            response: None,
        }
    }

    pub(crate) fn read_request(
        read: Box<ReadRequest<S, ReqBody>>,
        response: Option<ResponseCtx>,
    ) -> Self {
        Self {
            state: State::ReadRequest { read: Some(read) },
            response,
        }
    }

    pub(crate) fn inner(future: S::Future, response: Option<ResponseCtx>) -> Self {
        Self {
            state: State::Inner { future },
            response,
        }
    }
}

/// Whether a response of this status may carry a body.
fn has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

enum Next<B: Body> {
    Done(Response<TransformBody<B>>),
    Read(Box<ReadResponse<B>>),
}

fn on_response<B: Body<Data = Bytes>>(response: Response<B>, ctx: Option<ResponseCtx>) -> Next<B> {
    let Some(ctx) = ctx else {
        return Next::Done(response.map(|b| TransformBody::inner(GatewayBody::inner(b))));
    };
    let (mut parts, body) = response.into_parts();
    ctx.shared
        .response_headers
        .apply(&mut parts.headers, &ctx.headers);
    let body_rules = ctx.shared.response_json.is_some()
        && !ctx.head
        && has_body(parts.status)
        && !body.is_end_stream()
        && codec::is_json(&parts.headers);
    if body_rules {
        match codec::coding(&parts.headers, ctx.shared.compressed) {
            None => {
                passthrough(Untransformed::Encoding, &"content coding left untouched");
                parts.extensions.insert(Untransformed::Encoding);
            }
            Some(coding) => {
                let max = ctx.shared.max_body as u64;
                let known =
                    content_length(&parts.headers).unwrap_or_else(|| body.size_hint().lower());
                if known > max {
                    passthrough(Untransformed::TooLarge, &"declared length over the limit");
                    parts.extensions.insert(Untransformed::TooLarge);
                } else {
                    return Next::Read(Box::new(ReadResponse {
                        parts,
                        body: Box::pin(body),
                        collect: Collect::default(),
                        ctx,
                        coding,
                    }));
                }
            }
        }
    }
    Next::Done(Response::from_parts(
        parts,
        TransformBody::inner(GatewayBody::inner(body)),
    ))
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<GatewayBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body<Data = Bytes>,
    ResBody: Body<Data = Bytes>,
{
    type Output = Result<Response<TransformBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Rejected { response } => {
                    return Poll::Ready(Ok(*response.take().expect("polled after completion")));
                }
                StateProj::ReadRequest { read } => {
                    let r = read.as_mut().expect("polled after completion");
                    let outcome = ready!(r.collect.poll(r.body.as_mut(), cx, r.shared.max_body));
                    let r = read.take().expect("polled after completion");
                    let (mut inner, responder, request) = r.finish(outcome);
                    match request {
                        Ok(request) => {
                            let future = inner.call(request);
                            this.state.set(State::Inner { future });
                        }
                        Err(rejection) => {
                            let response = responder.respond(rejection).map(TransformBody::inner);
                            this.state.set(State::Rejected {
                                response: Some(Box::new(response)),
                            });
                        }
                    }
                }
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    match on_response(response, this.response.take()) {
                        Next::Done(response) => return Poll::Ready(Ok(response)),
                        Next::Read(read) => {
                            this.state.set(State::ReadResponse { read: Some(read) })
                        }
                    }
                }
                StateProj::ReadResponse { read } => {
                    let r = read.as_mut().expect("polled after completion");
                    let max = r.ctx.shared.max_body;
                    let outcome = ready!(r.collect.poll(r.body.as_mut(), cx, max));
                    let r = read.take().expect("polled after completion");
                    return Poll::Ready(Ok(r.finish(outcome)));
                }
            }
        }
    }
}
