//! The [`ResponseFuture`] of the [`Retry`](crate::Retry) service: attempts, per-try
//! timeouts, backoff sleeps and the retry decisions.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use gateway_layers_core::{
    AsDynError, BoxError, Classification, Classify, GatewayBody, Rejection, classify::FailureKind,
    metrics,
};
use http::{HeaderValue, Request, Response, StatusCode, request::Parts};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use crate::{
    body::ReplayBody,
    layer::Shared,
    policy::{ServerDelay, Stop, plan_retry, server_delay, unit_random},
};

const TARGET: &str = "gateway_layers::retry";

/// What a retry needs: a service to call again and the request to send again.
pub(crate) struct Retrying<S, B> {
    pub(crate) service: S,
    pub(crate) parts: Parts,
    pub(crate) body: ReplayBody<B>,
}

/// How one attempt ended.
enum Outcome<R, E> {
    Response(R),
    Error(E),
    TimedOut { deadline: bool },
}

pin_project! {
    #[project = StateProj]
    enum State<F, R, E> {
        // An attempt is in flight.
        Attempt { #[pin] future: F },
        // Waiting to retry; the last outcome is returned if the retry cannot be sent.
        Backoff { last: Option<Outcome<R, E>> },
    }
}

pin_project! {
    /// The response future of [`Retry`](crate::Retry).
    pub struct ResponseFuture<S, ReqBody, C>
    where
        S: Service<Request<ReplayBody<ReqBody>>>,
    {
        #[pin]
        state: State<S::Future, S::Response, S::Error>,
        // Boxed: only requests with a timeout or a backoff pay for a timer.
        timer: Option<Pin<Box<Sleep>>>,
        sleeping: bool,
        retry: Option<Retrying<S, ReqBody>>,
        no_retry: Result<(), Stop>,
        shared: Arc<Shared<C>>,
        deadline: Option<Instant>,
        attempts: u32,
    }
}

impl<S, ReqBody, C> fmt::Debug for ResponseFuture<S, ReqBody, C>
where
    S: Service<Request<ReplayBody<ReqBody>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.attempts)
            .field("sleeping", &self.sleeping)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, C> ResponseFuture<S, ReqBody, C>
where
    S: Service<Request<ReplayBody<ReqBody>>>,
{
    #[inline(always)]
    pub(crate) fn new(
        future: S::Future,
        retry: Option<Retrying<S, ReqBody>>,
        no_retry: Result<(), Stop>,
        shared: Arc<Shared<C>>,
        deadline: Option<Instant>,
        timer: Option<Instant>,
    ) -> Self {
        Self {
            state: State::Attempt { future },
            timer: timer.map(|at| Box::pin(sleep_until(at))),
            sleeping: false,
            retry,
            no_retry,
            shared,
            deadline,
            attempts: 1,
        }
    }
}

fn arm(timer: &mut Option<Pin<Box<Sleep>>>, at: Instant) {
    match timer {
        Some(sleep) => sleep.as_mut().reset(at),
        None => *timer = Some(Box::pin(sleep_until(at))),
    }
}

fn failure_label(verdict: Classification) -> &'static str {
    match verdict {
        Classification::Success => "success",
        Classification::Ignore => "ignored",
        Classification::Failure(FailureKind::Status(_)) => "status",
        Classification::Failure(FailureKind::Timeout) => "timeout",
        Classification::Failure(FailureKind::Connection) => "connection",
        Classification::Failure(FailureKind::Error) => "error",
    }
}

#[inline(always)]
fn finish<ResBody, E, C>(
    outcome: Outcome<Response<ResBody>, E>,
    shared: &Shared<C>,
) -> Result<Response<GatewayBody<ResBody>>, E> {
    match outcome {
        Outcome::Response(response) => Ok(response.map(GatewayBody::inner)),
        Outcome::Error(error) => Err(error),
        Outcome::TimedOut { deadline } => {
            let (code, detail) = if deadline {
                ("deadline_exceeded", "the retry deadline passed")
            } else {
                ("upstream_timeout", "the upstream did not answer in time")
            };
            Ok(shared.responder.respond(
                Rejection::new(StatusCode::GATEWAY_TIMEOUT, "retry", code).with_detail(detail),
            ))
        }
    }
}

fn decide<S, B, C, ResBody, E>(
    no_retry: Result<(), Stop>,
    retry: Option<&Retrying<S, B>>,
    outcome: &Outcome<Response<ResBody>, E>,
    attempts: u32,
    shared: &Shared<C>,
    deadline: Option<Instant>,
) -> Result<Duration, Stop> {
    no_retry?;
    let retry = retry.ok_or(Stop::Method)?;
    if let Outcome::TimedOut { deadline: true } = outcome {
        return Err(Stop::Deadline);
    }
    let settings = &shared.settings;
    if attempts >= settings.max_attempts {
        return Err(Stop::Attempts);
    }
    if !retry.body.is_replayable() {
        return Err(retry.body.not_replayable());
    }
    let server = match outcome {
        Outcome::Response(response) => server_delay(response.headers(), SystemTime::now()),
        _ => ServerDelay::None,
    };
    let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let delay = plan_retry(
        attempts,
        settings.max_attempts,
        &settings.backoff,
        server,
        settings.retry_after_cap,
        remaining,
        unit_random(),
    )?;
    if let Some(budget) = &shared.budget
        && !budget.withdraw()
    {
        return Err(Stop::Budget);
    }
    Ok(delay)
}

impl<S, ReqBody, C, ResBody> Future for ResponseFuture<S, ReqBody, C>
where
    S: Service<Request<ReplayBody<ReqBody>>, Response = Response<ResBody>>,
    S::Error: AsDynError,
    C: Classify,
    ReqBody: Body<Data = Bytes> + Unpin,
    ReqBody::Error: Into<BoxError>,
{
    type Output = Result<Response<GatewayBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let last = match this.state.as_mut().project() {
                StateProj::Attempt { future } => {
                    let outcome = match future.poll(cx) {
                        Poll::Ready(Ok(response)) => Outcome::Response(response),
                        Poll::Ready(Err(error)) => Outcome::Error(error),
                        Poll::Pending => {
                            let fired = this
                                .timer
                                .as_mut()
                                .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
                            if !fired {
                                return Poll::Pending;
                            }
                            let deadline = this.deadline.is_some_and(|d| Instant::now() >= d);
                            Outcome::TimedOut { deadline }
                        }
                    };
                    let classifier = &this.shared.classifier;
                    let verdict = match &outcome {
                        Outcome::Response(r) => {
                            classifier.classify_response(r.status(), r.headers())
                        }
                        Outcome::Error(e) => classifier.classify_error(e.dyn_error()),
                        Outcome::TimedOut { .. } => Classification::Failure(FailureKind::Timeout),
                    };
                    let attempt = *this.attempts;
                    if !verdict.is_failure() {
                        metrics::counter("gateway.retry.attempts", 1, &[("outcome", "success")]);
                        if attempt > 1 {
                            tracing::debug!(target: TARGET, attempt, "retry.succeeded");
                        }
                        return Poll::Ready(finish(outcome, this.shared));
                    }
                    let kind = failure_label(verdict);
                    metrics::counter(
                        "gateway.retry.attempts",
                        1,
                        &[("outcome", "failure"), ("kind", kind)],
                    );
                    let delay = match decide(
                        *this.no_retry,
                        this.retry.as_ref(),
                        &outcome,
                        attempt,
                        this.shared,
                        *this.deadline,
                    ) {
                        Ok(delay) => delay,
                        Err(stop) => {
                            stopped(stop, attempt, kind);
                            return Poll::Ready(finish(outcome, this.shared));
                        }
                    };
                    metrics::counter("gateway.retry.retries", 1, &[("kind", kind)]);
                    metrics::histogram(
                        "gateway.retry.backoff",
                        delay.as_secs_f64(),
                        &[("kind", kind)],
                    );
                    tracing::debug!(
                        target: TARGET,
                        attempt,
                        failure = kind,
                        delay_ms = delay.as_millis() as u64,
                        "retry.scheduled"
                    );
                    *this.sleeping = !delay.is_zero();
                    if *this.sleeping {
                        arm(this.timer, Instant::now() + delay);
                    }
                    this.state.set(State::Backoff {
                        last: Some(outcome),
                    });
                    continue;
                }
                StateProj::Backoff { last } => {
                    if *this.sleeping {
                        if let Some(timer) = this.timer.as_mut() {
                            ready!(timer.as_mut().poll(cx));
                        }
                        *this.sleeping = false;
                    }
                    last
                }
            };

            let next = this.retry.as_mut().map(|retry| {
                // The inner service must be ready at once (an open breaker or a full
                // pool means: do not retry).
                match retry.service.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    _ => return Err(Stop::NotReady),
                }
                let Some(body) = retry.body.replay() else {
                    return Err(retry.body.not_replayable());
                };
                let mut parts = retry.parts.clone();
                if let Some(name) = &this.shared.settings.attempt_header {
                    parts
                        .headers
                        .insert(name.clone(), HeaderValue::from(*this.attempts + 1));
                }
                Ok(retry.service.call(Request::from_parts(parts, body)))
            });
            match next {
                Some(Ok(future)) => {
                    *this.attempts += 1;
                    this.state.set(State::Attempt { future });
                    let settings = &this.shared.settings;
                    let per_try = settings
                        .per_try_timeout
                        .and_then(|t| Instant::now().checked_add(t));
                    let at = match (per_try, *this.deadline) {
                        (Some(a), Some(d)) => Some(a.min(d)),
                        (a, d) => a.or(d),
                    };
                    match at {
                        Some(at) => arm(this.timer, at),
                        None => *this.timer = None,
                    }
                }
                Some(Err(stop)) => {
                    stopped(stop, *this.attempts, "none");
                    return Poll::Ready(finish_last(last.take(), this.shared));
                }
                None => return Poll::Ready(finish_last(last.take(), this.shared)),
            }
        }
    }
}

fn stopped(stop: Stop, attempt: u32, failure: &'static str) {
    metrics::counter("gateway.retry.stopped", 1, &[("reason", stop.as_str())]);
    tracing::debug!(
        target: TARGET,
        attempt,
        failure,
        reason = stop.as_str(),
        "retry.stopped"
    );
}

fn finish_last<ResBody, E, C>(
    last: Option<Outcome<Response<ResBody>, E>>,
    shared: &Shared<C>,
) -> Result<Response<GatewayBody<ResBody>>, E> {
    // A backoff always holds the last outcome; `None` (polled after completion) is
    // answered as a timeout rather than a panic.
    finish(
        last.unwrap_or(Outcome::TimedOut { deadline: false }),
        shared,
    )
}
