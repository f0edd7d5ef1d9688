use std::borrow::Cow;

/// A configuration problem found while a layer is built.
///
/// Builders return it instead of panicking, so a gateway can refuse a bad file at start
/// and never fail at request time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A trusted-proxy entry is neither an IP address nor a CIDR block.
    #[error("invalid CIDR or IP address {value:?}: {reason}")]
    InvalidCidr {
        /// The entry as written.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A header name is not a valid HTTP field name.
    #[error("invalid header name {0:?}")]
    InvalidHeaderName(String),
    /// A header value contains CR, LF, NUL or another byte a field value may not hold.
    #[error("invalid value for header {name:?}: {reason}")]
    InvalidHeaderValue {
        /// The header the value was meant for.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// A value template could not be parsed.
    #[error("invalid template {template:?} at byte {position}: {reason}")]
    InvalidTemplate {
        /// The template as written.
        template: String,
        /// Byte offset of the problem.
        position: usize,
        /// Why it was refused.
        reason: String,
    },
    /// Any other invalid setting, named by its field.
    #[error("invalid setting `{field}`: {reason}")]
    Invalid {
        /// The setting, e.g. `retry.max_attempts`.
        field: Cow<'static, str>,
        /// Why it was refused.
        reason: Cow<'static, str>,
    },
}

impl ConfigError {
    /// An invalid setting named by its field.
    pub fn invalid(
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
