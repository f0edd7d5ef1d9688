//! Why a request was refused, and how that becomes a 401 / 403.

use gateway_layers_core::Rejection;
use http::{HeaderValue, StatusCode, header::WWW_AUTHENTICATE};

/// The typed reason of a refusal; found in the rejection response's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token (or API key) in the request.
    #[error("no credentials")]
    Missing,
    /// More than one token (two Authorization headers, header and cookie, ...).
    #[error("more than one token in the request")]
    MultipleTokens,
    /// The token is over the size limit; it was not parsed.
    #[error("token too large")]
    TooLarge,
    /// Not three base64url segments of JSON, or a segment is padded or corrupted.
    #[error("malformed token")]
    Malformed,
    /// `alg: none` (any casing).
    #[error("unsecured tokens (alg none) are refused")]
    AlgNone,
    /// An algorithm this layer does not support or no configured key uses.
    #[error("algorithm not accepted")]
    AlgNotAccepted,
    /// The `kid` is too long or contains control characters.
    #[error("invalid key id")]
    InvalidKid,
    /// No configured key has this `kid` (no fallback to another key).
    #[error("unknown key id")]
    UnknownKid,
    /// The token has no `kid` and several keys could verify it.
    #[error("key id required")]
    AmbiguousKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// The header lists a `crit` member this layer does not understand.
    #[error("unsupported critical header")]
    UnsupportedCrit,
    /// The token's `iss` selects no configured provider.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// The keys of the provider could not be fetched.
    #[error("signing keys unavailable")]
    KeysUnavailable,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `exp` is missing and required.
    #[error("token has no expiry")]
    MissingExp,
    /// `exp - iat` is over the configured maximum lifetime.
    #[error("token lifetime too long")]
    LifetimeTooLong,
    /// `iss` is not an accepted issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` matches no accepted audience.
    #[error("wrong audience")]
    WrongAudience,
    /// The token carries `aud` but no audience is configured.
    #[error("unexpected audience")]
    UnexpectedAudience,
    /// `sub` does not match.
    #[error("subject not accepted")]
    WrongSubject,
    /// The header `typ` is not the expected one.
    #[error("wrong token type")]
    WrongType,
    /// A required claim is missing.
    #[error("required claim missing")]
    MissingClaim,
    /// A registered claim has the wrong JSON type (e.g. `exp` as a string).
    #[error("claim of the wrong type")]
    InvalidClaimType,
    /// Valid token, but scopes or roles are not sufficient.
    #[error("insufficient scope")]
    InsufficientScope,
    /// Valid token, but the custom predicate refused it.
    #[error("access denied")]
    Forbidden,
    /// The API key is not known.
    #[error("invalid API key")]
    InvalidApiKey,
}

impl AuthError {
    /// The machine-readable code in the problem body.
    pub fn code(self) -> &'static str {
        match self {
            AuthError::Missing => "missing_credentials",
            AuthError::MultipleTokens => "invalid_request",
            AuthError::InsufficientScope => "insufficient_scope",
            AuthError::Forbidden => "forbidden",
            AuthError::InvalidApiKey => "invalid_api_key",
            AuthError::KeysUnavailable => "keys_unavailable",
            _ => "invalid_token",
        }
    }

    /// The status: 403 for authorization refusals, 401 for everything else.
    pub fn status(self) -> StatusCode {
        match self {
            AuthError::InsufficientScope | AuthError::Forbidden => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// A fixed description (never echoes request input).
    pub fn description(self) -> &'static str {
        match self {
            AuthError::Missing => "no credentials were sent",
            AuthError::MultipleTokens => "more than one token was sent",
            AuthError::TooLarge => "the token is too large",
            AuthError::Malformed => "the token is malformed",
            AuthError::AlgNone => "unsecured tokens are not accepted",
            AuthError::AlgNotAccepted => "the token algorithm is not accepted",
            AuthError::InvalidKid => "the key id is invalid",
            AuthError::UnknownKid => "the key id is unknown",
            AuthError::AmbiguousKey => "the token needs a key id",
            AuthError::BadSignature => "the signature is invalid",
            AuthError::UnsupportedCrit => "a critical header is not supported",
            AuthError::UnknownIssuer => "the issuer is unknown",
            AuthError::KeysUnavailable => "the signing keys are unavailable",
            AuthError::Expired => "the token expired",
            AuthError::NotYetValid => "the token is not valid yet",
            AuthError::IssuedInFuture => "the token was issued in the future",
            AuthError::MissingExp => "the token has no expiry",
            AuthError::LifetimeTooLong => "the token lifetime is too long",
            AuthError::WrongIssuer => "the issuer is not accepted",
            AuthError::WrongAudience => "the audience is not accepted",
            AuthError::UnexpectedAudience => "the token has an audience but none is accepted",
            AuthError::WrongSubject => "the subject is not accepted",
            AuthError::WrongType => "the token type is not accepted",
            AuthError::MissingClaim => "a required claim is missing",
            AuthError::InvalidClaimType => "a claim has the wrong type",
            AuthError::InsufficientScope => "the token lacks the required scope",
            AuthError::Forbidden => "access is denied",
            AuthError::InvalidApiKey => "the API key is not valid",
        }
    }

    /// Renders the refusal as a core [`Rejection`] with an RFC 6750
    /// `WWW-Authenticate` challenge (`scheme` is `Bearer` for JWTs).
    pub fn rejection(
        self,
        layer: &'static str,
        scheme: &str,
        realm: &str,
        scope: &str,
    ) -> Rejection {
        let challenge = match self {
            AuthError::Missing => format!("{scheme} realm=\"{realm}\""),
            AuthError::InsufficientScope if !scope.is_empty() => format!(
                "{scheme} realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{}\", scope=\"{scope}\"",
                self.description()
            ),
            AuthError::InsufficientScope | AuthError::Forbidden => format!(
                "{scheme} realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{}\"",
                self.description()
            ),
            AuthError::MultipleTokens => format!(
                "{scheme} realm=\"{realm}\", error=\"invalid_request\", error_description=\"{}\"",
                self.description()
            ),
            _ => format!(
                "{scheme} realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                self.description()
            ),
        };
        let mut rejection = Rejection::new(self.status(), layer, self.code())
            .with_detail(self.description())
            .with_reason(self);
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            rejection = rejection.with_header(WWW_AUTHENTICATE, value);
        }
        rejection
    }
}
