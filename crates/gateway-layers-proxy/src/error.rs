//! Why the proxy could not get a response from an upstream.

use std::{error::Error, fmt, sync::Arc};

use gateway_layers_core::AsDynError;

use crate::target::UpstreamTarget;

/// What went wrong toward the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyErrorKind {
    /// Connecting failed, or the connection broke before a response head arrived
    /// (answered `502 Bad Gateway`).
    Connect,
    /// A connect, response-header or total timeout expired (`504 Gateway Timeout`).
    Timeout,
    /// No target is usable: all are unhealthy or ejected (`503 Service Unavailable`).
    NoHealthyTarget,
}

impl ProxyErrorKind {
    /// The stable machine-readable code, also the rejection's `code`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Connect => "upstream_unavailable",
            Self::Timeout => "upstream_timeout",
            Self::NoHealthyTarget => "no_healthy_upstream",
        }
    }
}

/// An upstream failure. It is put into the extensions of the 502/503/504 response the
/// proxy answers with; its source chain holds core's
/// [`ConnectError`](gateway_layers_core::classify::ConnectError) or
/// [`TimeoutError`](gateway_layers_core::classify::TimeoutError), so
/// [`error_kind`](gateway_layers_core::classify::error_kind) and
/// [`Classify::classify_error`](gateway_layers_core::Classify::classify_error) recognise
/// it.
///
/// ```
/// use gateway_layers_core::classify::{ErrorKind, error_kind};
/// use gateway_layers_proxy::{ProxyError, ProxyErrorKind};
///
/// let error = ProxyError::new(ProxyErrorKind::Timeout, None);
/// assert_eq!(error_kind(&error), ErrorKind::Timeout);
/// ```
#[derive(Clone)]
pub struct ProxyError {
    kind: ProxyErrorKind,
    target: Option<UpstreamTarget>,
    source: Arc<dyn Error + Send + Sync>,
}

impl ProxyError {
    /// An error of `kind` for `target`, with the matching core error as its source.
    pub fn new(kind: ProxyErrorKind, target: Option<UpstreamTarget>) -> Self {
        let source: Arc<dyn Error + Send + Sync> = match kind {
            ProxyErrorKind::Timeout => Arc::new(gateway_layers_core::classify::TimeoutError),
            ProxyErrorKind::Connect => Arc::new(gateway_layers_core::classify::ConnectError(
                "upstream connection failed".into(),
            )),
            ProxyErrorKind::NoHealthyTarget => Arc::new(
                gateway_layers_core::classify::ConnectError("no healthy upstream".into()),
            ),
        };
        Self {
            kind,
            target,
            source,
        }
    }

    pub(crate) fn connect(cause: gateway_layers_core::BoxError, target: UpstreamTarget) -> Self {
        Self {
            kind: ProxyErrorKind::Connect,
            target: Some(target),
            source: Arc::new(gateway_layers_core::classify::ConnectError(cause)),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ProxyErrorKind {
        self.kind
    }

    /// The target it went wrong with, if one was chosen.
    pub fn target(&self) -> Option<&UpstreamTarget> {
        self.target.as_ref()
    }
}

impl fmt::Debug for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyError")
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ProxyErrorKind::Connect => "upstream connection failed",
            ProxyErrorKind::Timeout => "upstream timed out",
            ProxyErrorKind::NoHealthyTarget => "no healthy upstream",
        };
        match &self.target {
            Some(target) => write!(f, "{what} ({})", target.authority()),
            None => f.write_str(what),
        }
    }
}

impl Error for ProxyError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source as &(dyn Error + 'static))
    }
}

impl AsDynError for ProxyError {
    fn dyn_error(&self) -> &(dyn Error + 'static) {
        self
    }
}

#[cfg(test)]
mod tests {
    use gateway_layers_core::classify::{ErrorKind, error_kind};

    use super::*;

    #[test]
    fn core_recognises_the_kinds() {
        assert_eq!(
            error_kind(&ProxyError::new(ProxyErrorKind::Connect, None)),
            ErrorKind::Connection
        );
        assert_eq!(
            error_kind(&ProxyError::new(ProxyErrorKind::Timeout, None)),
            ErrorKind::Timeout
        );
        assert_eq!(
            ProxyError::new(ProxyErrorKind::NoHealthyTarget, None).to_string(),
            "no healthy upstream"
        );
    }
}
