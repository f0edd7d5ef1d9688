//! [`Breaker`], the service, and its [`ResponseFuture`].

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use gateway_layers_core::{
    AsDynError, GatewayBody, Key, ProblemJson, Rejected, Rejection, RequestView, SharedResponder,
    metrics,
};
use http::{
    HeaderValue, Request, Response, StatusCode,
    header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER},
};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::{
    State,
    layer::Fallback,
    machine::{Admission, Outcome, Ticket},
    shared::{CircuitCell, Shared},
};

/// Why a call was refused, found in the extensions of the 503 (or fallback) response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerOpen {
    /// The circuit's state when the call was refused (open, half-open with every probe
    /// taken, or forced open).
    pub state: State,
    /// When the circuit admits calls again, if known.
    pub retry_after: Option<Duration>,
    /// The circuit's key, for per-key circuits.
    pub key: Option<Key>,
}

/// The circuit breaker service. See the [crate docs](crate).
pub struct Breaker<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
    pub(crate) responder: Option<SharedResponder>,
    pub(crate) fallback: Option<Fallback>,
}

impl<S: Clone> Clone for Breaker<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            responder: self.responder.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Breaker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<S> Breaker<S> {
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

    /// The handle to this breaker's circuits.
    pub fn handle(&self) -> crate::BreakerHandle {
        crate::BreakerHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Breaker<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: AsDynError,
{
    type Response = Response<GatewayBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let cell = match self.shared.circuit_for(&RequestView::new(&request)) {
            Ok(cell) => cell,
            Err(rejection) => {
                let response = match &self.responder {
                    Some(responder) => responder.respond(rejection),
                    None => rejection.into_response(&ProblemJson),
                };
                return ResponseFuture::refused(response);
            }
        };
        let policy = &cell.policy;
        let (admission, transition) = cell.machine.admit(|| policy.now());
        if let Some(t) = transition {
            cell.emit(t);
        }
        match admission {
            Admission::Permit(ticket) => {
                let start = if policy.clock_at_start {
                    policy.now()
                } else {
                    0
                };
                let future = self.inner.call(request);
                ResponseFuture {
                    kind: Kind::Called {
                        future,
                        guard: Guard {
                            cell,
                            ticket,
                            start,
                            done: false,
                        },
                    },
                }
            }
            Admission::Reject { retry_after_nanos } => {
                ResponseFuture::refused(self.refuse(&cell, &request, retry_after_nanos))
            }
        }
    }
}

impl<S> Breaker<S> {
    #[cold]
    fn refuse<ReqBody, ResBody>(
        &self,
        cell: &CircuitCell,
        request: &Request<ReqBody>,
        retry_after_nanos: Option<u64>,
    ) -> Response<GatewayBody<ResBody>> {
        let (state, _) = cell.machine.state();
        if metrics::enabled() {
            let key = cell.key.as_ref().map(|k| k.to_string());
            metrics::counter(
                "gateway.breaker.rejected",
                1,
                &[
                    ("breaker", cell.policy.name.as_deref().unwrap_or("")),
                    ("key", key.as_deref().unwrap_or("")),
                    ("state", state.as_str()),
                ],
            );
        }
        let reason = BreakerOpen {
            state,
            retry_after: retry_after_nanos.map(Duration::from_nanos),
            key: cell.key.clone(),
        };
        if let Some(fallback) = &self.fallback {
            let response = fallback(&RequestView::new(request), &reason);
            let (mut parts, body) = response.into_parts();
            parts.extensions.insert(reason);
            return Response::from_parts(parts, GatewayBody::rejection(body));
        }
        let retry_after = retry_after_nanos.map(|nanos| {
            self.shared
                .retry_after_value(nanos.div_ceil(1_000_000_000).max(1))
        });
        let Some(responder) = &self.responder else {
            // The default problem+json, the same as `Rejection::into_response` with
            // `ProblemJson` would render, from a body built once.
            let index = state_index(state);
            let body = self.shared.bodies[index].clone();
            let mut response = Response::new(GatewayBody::rejection(body));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            let headers = response.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            headers.insert(CONTENT_LENGTH, self.shared.lengths[index].clone());
            if let Some(value) = retry_after {
                headers.insert(RETRY_AFTER, value);
            }
            let extensions = response.extensions_mut();
            extensions.insert(reason);
            extensions.insert(Rejected {
                layer: LAYER,
                code: CODE,
                status: StatusCode::SERVICE_UNAVAILABLE,
            });
            return response;
        };
        let mut rejection = rejection(state);
        if let Some(value) = retry_after {
            rejection = rejection.with_header(RETRY_AFTER, value);
        }
        responder.respond(rejection.with_reason(reason))
    }
}

const LAYER: &str = "breaker";
const CODE: &str = "circuit_open";
const DETAILS: [&str; 3] = [
    "the circuit is open; the upstream was not called",
    "the circuit is half-open and every probe is taken; the upstream was not called",
    "the circuit was forced open; the upstream was not called",
];

fn state_index(state: State) -> usize {
    match state {
        State::HalfOpen => 1,
        State::ForcedOpen => 2,
        _ => 0,
    }
}

/// The refusal for a circuit in `state` (without `Retry-After` and reason).
fn rejection(state: State) -> Rejection {
    Rejection::new(StatusCode::SERVICE_UNAVAILABLE, LAYER, CODE)
        .with_title("Service Unavailable")
        .with_detail(DETAILS[state_index(state)])
}

/// The default problem+json bodies, built once per layer.
pub(crate) fn problem_bodies() -> [bytes::Bytes; 3] {
    [State::Open, State::HalfOpen, State::ForcedOpen].map(|s| rejection(s).problem_json())
}

/// Carries a call's permit; gives it back if the call is dropped before completing.
struct Guard {
    cell: Arc<CircuitCell>,
    ticket: Ticket,
    start: u64,
    done: bool,
}

impl Guard {
    #[inline]
    fn finish(&mut self, outcome: Outcome) {
        self.done = true;
        let policy = &self.cell.policy;
        if let Some(t) = self
            .cell
            .machine
            .record(self.ticket, outcome, self.start, || policy.now())
        {
            self.cell.emit(t);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            self.cell.machine.cancel(self.ticket);
        }
    }
}

pin_project! {
    /// The response future of [`Breaker`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Called { #[pin] future: F, guard: Guard },
        Refused { response: Option<Response<GatewayBody<B>>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn refused(response: Response<GatewayBody<B>>) -> Self {
        Self {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: AsDynError,
{
    type Output = Result<Response<GatewayBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, guard } => {
                let result = ready!(future.poll(cx));
                match result {
                    Ok(response) => {
                        let outcome = guard
                            .cell
                            .policy
                            .classifier
                            .response(response.status(), response.headers());
                        guard.finish(outcome);
                        Poll::Ready(Ok(response.map(GatewayBody::inner)))
                    }
                    Err(error) => {
                        let outcome = guard.cell.policy.classifier.error(error.dyn_error());
                        guard.finish(outcome);
                        Poll::Ready(Err(error))
                    }
                }
            }
            KindProj::Refused { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    // Polled after completion: answer again rather than panic.
                    let mut response = Response::new(GatewayBody::default());
                    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    response
                })))
            }
        }
    }
}
