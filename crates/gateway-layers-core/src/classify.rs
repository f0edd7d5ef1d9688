//! What counts as a failure: one classifier shared by the circuit breaker and retry.
//!
//! The default, [`DefaultClassifier`], calls 5xx responses, timeouts and connection
//! errors failures; 4xx are not failures (the client's fault, not the upstream's); 429
//! is configurable. Retry usually wants a narrower set (502, 503, 504):
//! [`DefaultClassifier::statuses`].
//!
//! ```
//! use gateway_layers_core::{Classification, Classify, DefaultClassifier};
//! use http::{HeaderMap, StatusCode};
//!
//! let classifier = DefaultClassifier::new();
//! let headers = HeaderMap::new();
//! assert!(classifier.classify_response(StatusCode::BAD_GATEWAY, &headers).is_failure());
//! assert_eq!(classifier.classify_response(StatusCode::NOT_FOUND, &headers), Classification::Success);
//! let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
//! assert!(classifier.classify_error(&timeout).is_failure());
//! ```

use std::{convert::Infallible, error::Error, io};

use http::{HeaderMap, StatusCode};

/// The verdict on one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// The call succeeded.
    Success,
    /// The call failed, for this reason.
    Failure(FailureKind),
    /// The call says nothing about the upstream's health (e.g. cancelled).
    Ignore,
}

impl Classification {
    /// Whether this is a failure.
    pub fn is_failure(self) -> bool {
        matches!(self, Classification::Failure(_))
    }
}

/// Why a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A response status classified as failure.
    Status(StatusCode),
    /// The call timed out.
    Timeout,
    /// The connection could not be made or broke.
    Connection,
    /// Any other error.
    Error,
}

/// The kind of an error, found by walking its `source()` chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A timeout: `tower::timeout::error::Elapsed`, `tokio::time::error::Elapsed`,
    /// [`TimeoutError`], or an I/O `TimedOut`.
    Timeout,
    /// A connection failure: [`ConnectError`] or an I/O error such as refused, reset,
    /// aborted or broken pipe.
    Connection,
    /// Anything else.
    Other,
}

/// Finds the [`ErrorKind`] of `error`.
pub fn error_kind(error: &(dyn Error + 'static)) -> ErrorKind {
    let mut current = Some(error);
    let mut depth = 0;
    while let Some(err) = current {
        if err.is::<TimeoutError>()
            || err.is::<tower::timeout::error::Elapsed>()
            || err.is::<tokio::time::error::Elapsed>()
        {
            return ErrorKind::Timeout;
        }
        if err.is::<ConnectError>() {
            return ErrorKind::Connection;
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::TimedOut => return ErrorKind::Timeout,
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::NotConnected
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::AddrNotAvailable
                | io::ErrorKind::UnexpectedEof => return ErrorKind::Connection,
                _ => {}
            }
        }
        depth += 1;
        if depth > 32 {
            break;
        }
        current = err.source();
    }
    ErrorKind::Other
}

/// A timeout raised by a gateway layer (per-try timeout, upstream timeout).
#[derive(Debug, Clone, Copy, Default, thiserror::Error)]
#[error("timed out")]
pub struct TimeoutError;

/// A connection failure raised by a gateway layer (the proxy wraps its client's
/// connect errors in it, so classification need not know the client).
#[derive(Debug, thiserror::Error)]
#[error("connection failed: {0}")]
pub struct ConnectError(#[source] pub crate::BoxError);

/// Gives a classifier a `dyn Error` view of a service's error type, for errors that are
/// `std::error::Error` as well as the usual `Box<dyn Error + Send + Sync>`.
pub trait AsDynError {
    /// The error as a trait object.
    fn dyn_error(&self) -> &(dyn Error + 'static);
}

impl AsDynError for crate::BoxError {
    fn dyn_error(&self) -> &(dyn Error + 'static) {
        &**self
    }
}

impl AsDynError for Infallible {
    fn dyn_error(&self) -> &(dyn Error + 'static) {
        match *self {}
    }
}

macro_rules! as_dyn_error {
    ($($ty:ty),* $(,)?) => {$(
        impl AsDynError for $ty {
            fn dyn_error(&self) -> &(dyn Error + 'static) {
                self
            }
        }
    )*};
}

as_dyn_error!(
    io::Error,
    TimeoutError,
    ConnectError,
    tower::timeout::error::Elapsed,
    tokio::time::error::Elapsed,
    http::Error,
);

/// Decides whether a response or an error is a failure.
pub trait Classify: Send + Sync + 'static {
    /// Classifies a response by its status and headers.
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Classification;

    /// Classifies an error returned instead of a response.
    fn classify_error(&self, error: &(dyn Error + 'static)) -> Classification;
}

impl<C: Classify + ?Sized> Classify for std::sync::Arc<C> {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Classification {
        (**self).classify_response(status, headers)
    }

    fn classify_error(&self, error: &(dyn Error + 'static)) -> Classification {
        (**self).classify_error(error)
    }
}

/// The shared default: a set of failure statuses, plus every error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultClassifier {
    // Bit i set: status 100 + i is a failure.
    failures: [u64; 8],
    errors_are_failures: bool,
}

impl Default for DefaultClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl DefaultClassifier {
    /// 500-599 are failures, 429 is not, every error is a failure.
    pub fn new() -> Self {
        let mut classifier = Self {
            failures: [0; 8],
            errors_are_failures: true,
        };
        for code in 500..=599 {
            classifier.set(code, true);
        }
        classifier
    }

    /// Exactly `statuses` are failures (for retry: `[502, 503, 504]`). Codes outside
    /// 100-599 are ignored.
    pub fn statuses(statuses: impl IntoIterator<Item = u16>) -> Self {
        let mut classifier = Self {
            failures: [0; 8],
            errors_are_failures: true,
        };
        for code in statuses {
            classifier.set(code, true);
        }
        classifier
    }

    /// Whether 429 Too Many Requests is a failure (default: no).
    #[must_use]
    pub fn rate_limited_is_failure(mut self, yes: bool) -> Self {
        self.set(429, yes);
        self
    }

    /// Marks `status` as failure or not.
    #[must_use]
    pub fn with_status(mut self, status: u16, failure: bool) -> Self {
        self.set(status, failure);
        self
    }

    /// Whether errors are failures (default: yes). When not, they are ignored.
    #[must_use]
    pub fn errors_are_failures(mut self, yes: bool) -> Self {
        self.errors_are_failures = yes;
        self
    }

    fn set(&mut self, code: u16, on: bool) {
        if !(100..=599).contains(&code) {
            return;
        }
        let bit = usize::from(code - 100);
        if on {
            self.failures[bit / 64] |= 1 << (bit % 64);
        } else {
            self.failures[bit / 64] &= !(1 << (bit % 64));
        }
    }

    /// Whether `status` is a failure status.
    #[inline]
    pub fn is_failure_status(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        if !(100..=599).contains(&code) {
            return false;
        }
        let bit = usize::from(code - 100);
        self.failures[bit / 64] & (1 << (bit % 64)) != 0
    }
}

impl Classify for DefaultClassifier {
    #[inline]
    fn classify_response(&self, status: StatusCode, _headers: &HeaderMap) -> Classification {
        if self.is_failure_status(status) {
            Classification::Failure(FailureKind::Status(status))
        } else {
            Classification::Success
        }
    }

    fn classify_error(&self, error: &(dyn Error + 'static)) -> Classification {
        if !self.errors_are_failures {
            return Classification::Ignore;
        }
        Classification::Failure(match error_kind(error) {
            ErrorKind::Timeout => FailureKind::Timeout,
            ErrorKind::Connection => FailureKind::Connection,
            ErrorKind::Other => FailureKind::Error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapper(#[source] io::Error);

    #[test]
    fn default_statuses() {
        let c = DefaultClassifier::new();
        let h = HeaderMap::new();
        for code in [500, 502, 503, 504, 599] {
            assert!(
                c.classify_response(StatusCode::from_u16(code).unwrap(), &h)
                    .is_failure()
            );
        }
        for code in [200, 204, 301, 400, 401, 404, 429] {
            assert_eq!(
                c.classify_response(StatusCode::from_u16(code).unwrap(), &h),
                Classification::Success,
                "{code}"
            );
        }
        let c = c.rate_limited_is_failure(true);
        assert!(
            c.classify_response(StatusCode::TOO_MANY_REQUESTS, &h)
                .is_failure()
        );
        assert!(
            !c.with_status(500, false)
                .is_failure_status(StatusCode::INTERNAL_SERVER_ERROR)
        );
    }

    #[test]
    fn retry_statuses() {
        let c = DefaultClassifier::statuses([502, 503, 504, 42, 700]);
        let h = HeaderMap::new();
        assert!(
            c.classify_response(StatusCode::SERVICE_UNAVAILABLE, &h)
                .is_failure()
        );
        assert!(
            !c.classify_response(StatusCode::INTERNAL_SERVER_ERROR, &h)
                .is_failure()
        );
        // Non-standard codes never panic.
        assert!(
            !c.classify_response(StatusCode::from_u16(999).unwrap(), &h)
                .is_failure()
        );
    }

    #[test]
    fn error_kinds_walk_sources() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(error_kind(&refused), ErrorKind::Connection);
        let wrapped = Wrapper(io::Error::from(io::ErrorKind::TimedOut));
        assert_eq!(error_kind(&wrapped), ErrorKind::Timeout);
        assert_eq!(error_kind(&TimeoutError), ErrorKind::Timeout);
        assert_eq!(
            error_kind(&tower::timeout::error::Elapsed::new()),
            ErrorKind::Timeout
        );
        let boxed: crate::BoxError = Box::new(ConnectError("no route".into()));
        assert_eq!(error_kind(boxed.dyn_error()), ErrorKind::Connection);
        let other = io::Error::other("weird");
        assert_eq!(error_kind(&other), ErrorKind::Other);
        let c = DefaultClassifier::new();
        assert_eq!(
            c.classify_error(&refused),
            Classification::Failure(FailureKind::Connection)
        );
        assert_eq!(
            c.errors_are_failures(false).classify_error(&refused),
            Classification::Ignore
        );
    }
}
