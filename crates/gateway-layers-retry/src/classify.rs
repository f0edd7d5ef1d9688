//! [`RetryClassifier`]: what the retry layer calls a retryable failure.

use std::error::Error;

use gateway_layers_core::{Classification, Classify, DefaultClassifier, classify::FailureKind};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// The default statuses retried: 502 Bad Gateway, 503 Service Unavailable, 504 Gateway
/// Timeout.
pub const DEFAULT_RETRY_STATUSES: [u16; 3] = [502, 503, 504];

/// The retry layer's default classifier: [`DefaultClassifier::statuses`] (502, 503, 504
/// by default) plus every error (connection failures, resets, timeouts), and optionally
/// any response carrying a given header (with a given value).
///
/// Any [`Classify`] works with the layer: a response or error classified as
/// [`Classification::Failure`] is a candidate for retry.
///
/// ```
/// use gateway_layers_core::Classify;
/// use gateway_layers_retry::RetryClassifier;
/// use http::{HeaderMap, StatusCode};
///
/// let c = RetryClassifier::default().with_header("x-retryable".parse().unwrap(), None);
/// let mut headers = HeaderMap::new();
/// assert!(c.classify_response(StatusCode::SERVICE_UNAVAILABLE, &headers).is_failure());
/// assert!(!c.classify_response(StatusCode::INTERNAL_SERVER_ERROR, &headers).is_failure());
/// headers.insert("x-retryable", "1".parse().unwrap());
/// assert!(c.classify_response(StatusCode::INTERNAL_SERVER_ERROR, &headers).is_failure());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryClassifier {
    statuses: DefaultClassifier,
    header: Option<(HeaderName, Option<HeaderValue>)>,
}

impl Default for RetryClassifier {
    fn default() -> Self {
        Self::statuses(DEFAULT_RETRY_STATUSES)
    }
}

impl RetryClassifier {
    /// Retries exactly `statuses` (codes outside 100-599 are ignored) and every error.
    pub fn statuses(statuses: impl IntoIterator<Item = u16>) -> Self {
        Self {
            statuses: DefaultClassifier::statuses(statuses),
            header: None,
        }
    }

    /// Also retries any response carrying `name` (with exactly `value`, when given).
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: Option<HeaderValue>) -> Self {
        self.header = Some((name, value));
        self
    }
}

impl Classify for RetryClassifier {
    #[inline]
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Classification {
        let verdict = self.statuses.classify_response(status, headers);
        if verdict.is_failure() {
            return verdict;
        }
        if let Some((name, expected)) = &self.header {
            let matched = match expected {
                None => headers.contains_key(name),
                Some(expected) => headers.get_all(name).iter().any(|v| v == expected),
            };
            if matched {
                return Classification::Failure(FailureKind::Status(status));
            }
        }
        verdict
    }

    #[inline]
    fn classify_error(&self, error: &(dyn Error + 'static)) -> Classification {
        self.statuses.classify_error(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_match_with_value() {
        let c = RetryClassifier::statuses([503]).with_header(
            HeaderName::from_static("x-retry"),
            Some(HeaderValue::from_static("yes")),
        );
        let mut h = HeaderMap::new();
        assert!(!c.classify_response(StatusCode::OK, &h).is_failure());
        h.insert("x-retry", HeaderValue::from_static("no"));
        assert!(!c.classify_response(StatusCode::OK, &h).is_failure());
        h.append("x-retry", HeaderValue::from_static("yes"));
        assert!(c.classify_response(StatusCode::OK, &h).is_failure());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            c.classify_error(&reset),
            Classification::Failure(FailureKind::Connection)
        );
    }
}
