//! What a decision produced: response headers, the rejection, the record in extensions.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use bytes::BytesMut;
use gateway_layers_core::Rejection;
use http::{HeaderName, HeaderValue, StatusCode, header::RETRY_AFTER};

use crate::{HeaderStyle, gcra::Verdict, policy::Compiled, store::StoreFull};

/// The `RateLimit` field.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// The `RateLimit-Policy` field.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `X-RateLimit-Limit`.
pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset` (seconds from now).
pub static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Which backend made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecisionSource {
    /// The in-process store.
    Local,
    /// The Redis script.
    Redis,
    /// Redis failed and the local store decided instead.
    LocalFallback,
    /// Redis failed and the request was let through unchecked.
    FailOpen,
    /// Redis failed and the request was refused with 503.
    FailClosed,
    /// The local key store was full of keys still recovering (503).
    StoreFull,
}

impl DecisionSource {
    /// A stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Redis => "redis",
            Self::LocalFallback => "local_fallback",
            Self::FailOpen => "fail_open",
            Self::FailClosed => "fail_closed",
            Self::StoreFull => "store_full",
        }
    }
}

/// The record of one decision, in the extensions of every rejection and, with
/// [`expose_decision`](crate::RateLimitBuilder::expose_decision), of admitted responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitDecision {
    /// Whether the limits admitted the request (in shadow mode a refused request is
    /// let through with `allowed == false`).
    pub allowed: bool,
    /// Whether the request was let through only because of shadow mode.
    pub shadowed: bool,
    /// The backend that decided.
    pub source: DecisionSource,
    /// When a request of the same cost would be admitted (`None`: never, or unknown).
    pub retry_after: Option<Duration>,
    /// Unit-cost requests left in the limit closest to exhaustion.
    pub remaining: Option<u64>,
    /// Until that limit has fully recovered.
    pub reset: Option<Duration>,
}

/// What the backends hand back before rendering.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    /// A GCRA verdict; `tick` is the verdict's time unit.
    Verdict {
        verdict: Verdict,
        tick: Duration,
        source: DecisionSource,
    },
    Full(StoreFull),
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    FailOpen,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    FailClosed,
}

/// Headers and record added to an admitted response (boxed, and only when there is
/// something to add, to keep the response future small).
#[derive(Debug, Default)]
pub(crate) struct Annotations {
    /// `RateLimit-Policy`, `RateLimit`.
    pub(crate) draft: Option<[HeaderValue; 2]>,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset`.
    pub(crate) legacy: Option<[HeaderValue; 3]>,
    pub(crate) decision: Option<RateLimitDecision>,
}

impl Annotations {
    pub(crate) fn apply<B>(self, response: &mut http::Response<B>) {
        let headers = response.headers_mut();
        if let Some([policy, limit]) = self.draft {
            headers.insert(RATELIMIT_POLICY.clone(), policy);
            headers.insert(RATELIMIT.clone(), limit);
        }
        if let Some([limit, remaining, reset]) = self.legacy {
            headers.insert(X_RATELIMIT_LIMIT.clone(), limit);
            headers.insert(X_RATELIMIT_REMAINING.clone(), remaining);
            headers.insert(X_RATELIMIT_RESET.clone(), reset);
        }
        if let Some(decision) = self.decision {
            response.extensions_mut().insert(decision);
        }
    }

    fn is_empty(&self) -> bool {
        self.draft.is_none() && self.legacy.is_none() && self.decision.is_none()
    }

    pub(crate) fn boxed(self) -> Option<Box<Self>> {
        (!self.is_empty()).then(|| Box::new(self))
    }
}

/// What to do with the request.
#[derive(Debug)]
pub(crate) enum Next {
    Pass(Option<Box<Annotations>>),
    Reject(Rejection),
}

/// A tiny xorshift generator for Retry-After jitter, seeded per layer.
#[derive(Debug)]
pub(crate) struct Jitter {
    max: Duration,
    state: AtomicU64,
}

impl Jitter {
    pub(crate) fn new(max: Duration) -> Self {
        use std::hash::BuildHasher;
        let seed = std::hash::RandomState::new().hash_one(0x5eed_u64) | 1;
        Self {
            max,
            state: AtomicU64::new(seed),
        }
    }

    fn sample(&self) -> Duration {
        let mut x = self.state.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.store(x, Ordering::Relaxed);
        let nanos = u64::try_from(self.max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(if nanos == 0 {
            0
        } else {
            x % nanos.saturating_add(1)
        })
    }
}

/// Renders outcomes; borrowed from the layer's shared state.
#[derive(Debug)]
pub(crate) struct Render<'a> {
    pub(crate) style: HeaderStyle,
    pub(crate) shadow: bool,
    pub(crate) expose: bool,
    pub(crate) jitter: Option<&'a Jitter>,
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

fn ticks(n: u64, tick: Duration) -> Duration {
    Duration::from_nanos(n.saturating_mul(u64::try_from(tick.as_nanos()).unwrap_or(1)))
}

impl Render<'_> {
    pub(crate) fn next(&self, outcome: Outcome, policy: &Compiled) -> Next {
        match outcome {
            Outcome::Verdict {
                verdict,
                tick,
                source,
            } => self.verdict(verdict, tick, source, policy),
            Outcome::FailOpen => Next::Pass(
                Annotations {
                    decision: self.expose.then_some(RateLimitDecision {
                        allowed: true,
                        shadowed: false,
                        source: DecisionSource::FailOpen,
                        retry_after: None,
                        remaining: None,
                        reset: None,
                    }),
                    ..Annotations::default()
                }
                .boxed(),
            ),
            Outcome::FailClosed => self.unavailable(
                DecisionSource::FailClosed,
                "ratelimit_unavailable",
                "the rate-limit backend is unavailable",
                None,
            ),
            Outcome::Full(full) => self.unavailable(
                DecisionSource::StoreFull,
                "ratelimit_store_full",
                "too many clients are being rate limited right now",
                Some(full.retry_after),
            ),
        }
    }

    fn unavailable(
        &self,
        source: DecisionSource,
        code: &'static str,
        detail: &'static str,
        retry_after: Option<Duration>,
    ) -> Next {
        let decision = RateLimitDecision {
            allowed: false,
            shadowed: self.shadow,
            source,
            retry_after,
            remaining: None,
            reset: None,
        };
        if self.shadow {
            return Next::Pass(
                Annotations {
                    decision: self.expose.then_some(decision),
                    ..Annotations::default()
                }
                .boxed(),
            );
        }
        let mut rejection = Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "ratelimit", code)
            .with_detail(detail)
            .with_reason(decision);
        if let Some(retry) = retry_after {
            rejection =
                rejection.with_header(RETRY_AFTER, HeaderValue::from(ceil_secs(retry).max(1)));
        }
        Next::Reject(rejection)
    }

    fn verdict(
        &self,
        v: Verdict,
        tick: Duration,
        source: DecisionSource,
        policy: &Compiled,
    ) -> Next {
        if v.allowed && !self.expose && self.style == HeaderStyle::None {
            // The common quiet case: nothing to add.
            return Next::Pass(None);
        }
        let retry_after = v.retry_after.map(|r| ticks(r, tick));
        let decision = RateLimitDecision {
            allowed: v.allowed,
            shadowed: !v.allowed && self.shadow,
            source,
            retry_after,
            remaining: v.tightest.map(|t| t.remaining),
            reset: v.tightest.map(|t| ticks(t.reset, tick)),
        };
        let mut annotations = self.headers(&v, tick, policy);
        if v.allowed || self.shadow {
            annotations.decision = (self.expose || decision.shadowed).then_some(decision);
            return Next::Pass(annotations.boxed());
        }
        let detail = match retry_after {
            Some(_) => "rate limit exceeded",
            None => "the request costs more than the limit's burst allows",
        };
        let mut rejection =
            Rejection::new(StatusCode::TOO_MANY_REQUESTS, "ratelimit", "rate_limited")
                .with_title("Too Many Requests")
                .with_detail(detail)
                .with_reason(decision);
        if let Some(retry) = retry_after {
            let retry = match self.jitter {
                Some(j) => retry.saturating_add(j.sample()),
                None => retry,
            };
            rejection = rejection.with_header(RETRY_AFTER, HeaderValue::from(ceil_secs(retry)));
        }
        if let Some([policy, limit]) = annotations.draft {
            rejection = rejection
                .with_header(RATELIMIT_POLICY.clone(), policy)
                .with_header(RATELIMIT.clone(), limit);
        }
        if let Some([limit, remaining, reset]) = annotations.legacy {
            rejection = rejection
                .with_header(X_RATELIMIT_LIMIT.clone(), limit)
                .with_header(X_RATELIMIT_REMAINING.clone(), remaining)
                .with_header(X_RATELIMIT_RESET.clone(), reset);
        }
        Next::Reject(rejection)
    }

    fn headers(&self, v: &Verdict, tick: Duration, policy: &Compiled) -> Annotations {
        let mut out = Annotations::default();
        if self.style == HeaderStyle::None {
            return out;
        }
        let Some(t) = v.tightest else { return out };
        let reset = ceil_secs(ticks(t.reset, tick));
        if self.style.draft()
            && let Some(p) = &policy.policy_header
        {
            // `name;r=REMAINING;t=RESET`, written without `core::fmt` into one buffer
            // that becomes the header value (a shared `Bytes` clone of a prebuilt value
            // would make every thread bump one reference count).
            let name = &policy.names[t.index];
            let mut numbers = itoa::Buffer::new();
            let mut buf = BytesMut::with_capacity(name.len() + 48);
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(b";r=");
            buf.extend_from_slice(numbers.format(t.remaining).as_bytes());
            buf.extend_from_slice(b";t=");
            buf.extend_from_slice(numbers.format(reset).as_bytes());
            let value = HeaderValue::from_maybe_shared(buf.freeze());
            if let (Ok(value), Ok(p)) = (value, HeaderValue::from_bytes(p.as_bytes())) {
                out.draft = Some([p, value]);
            }
        }
        if self.style.legacy() {
            let quota = policy.local[t.index].quota;
            out.legacy = Some([
                HeaderValue::from(quota),
                HeaderValue::from(t.remaining),
                HeaderValue::from(reset),
            ]);
        }
        out
    }
}
