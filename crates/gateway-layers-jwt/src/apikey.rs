//! [`ApiKeyLayer`]: API keys from a header or (opt-in) query parameter, stored as
//! SHA-256 digests, compared in constant time, mapped to an identity and a tier.

use std::{
    collections::HashMap,
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use gateway_layers_core::{
    ConfigError, GatewayBody, Identity, RejectionResponder, SharedResponder, Tier,
    identity::IdentitySource,
};
use http::{HeaderName, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    error::AuthError,
    layer::{Kind, ResponseFuture},
};

/// The longest API key looked at; longer values are refused unhashed.
pub const MAX_API_KEY_BYTES: usize = 512;

type Digest = [u8; 32];

fn sha256(bytes: &[u8]) -> Digest {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// One API key: its id (logged, never the key), tier, subject and scopes.
#[derive(Clone)]
pub struct ApiKey {
    id: String,
    digest: Digest,
    tier: Tier,
    subject: Option<String>,
    scopes: Vec<String>,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("tier", &self.tier)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    /// A key given in clear; only its SHA-256 digest is kept. Tier `free`.
    pub fn new(id: impl Into<String>, key: impl AsRef<[u8]>) -> Self {
        Self {
            id: id.into(),
            digest: sha256(key.as_ref()),
            tier: Tier::FREE,
            subject: None,
            scopes: Vec::new(),
        }
    }

    /// A key given as the hex SHA-256 digest of the key (so config files hold no key).
    pub fn from_sha256_hex(id: impl Into<String>, hex: &str) -> Result<Self, ConfigError> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err(ConfigError::invalid(
                "api_key.sha256",
                "expected 64 hex digits",
            ));
        }
        let mut digest = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair)
                .map_err(|_| ConfigError::invalid("api_key.sha256", "not hex"))?;
            digest[i] = u8::from_str_radix(text, 16)
                .map_err(|_| ConfigError::invalid("api_key.sha256", "not hex"))?;
        }
        Ok(Self {
            id: id.into(),
            digest,
            tier: Tier::FREE,
            subject: None,
            scopes: Vec::new(),
        })
    }

    /// Sets the tier.
    #[must_use]
    pub fn tier(mut self, tier: impl Into<Tier>) -> Self {
        self.tier = tier.into();
        self
    }

    /// Sets the identity's subject (default: the key id).
    #[must_use]
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets granted scopes.
    #[must_use]
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
}

struct Shared {
    keys: HashMap<Digest, (Digest, Identity)>,
    header: Option<HeaderName>,
    query: Option<String>,
    realm: String,
    responder: SharedResponder,
}

/// Builds an [`ApiKeyLayer`].
#[must_use]
pub struct ApiKeyBuilder {
    keys: Vec<ApiKey>,
    header: Option<String>,
    query: Option<String>,
    realm: String,
    responder: SharedResponder,
}

impl fmt::Debug for ApiKeyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyBuilder")
            .field("keys", &self.keys)
            .field("header", &self.header)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl ApiKeyBuilder {
    /// Adds a key.
    pub fn key(mut self, key: ApiKey) -> Self {
        self.keys.push(key);
        self
    }

    /// The header carrying the key (default `x-api-key`).
    pub fn header(mut self, name: impl Into<String>) -> Self {
        self.header = Some(name.into());
        self
    }

    /// Also accepts the key in this query parameter (off by default: URLs are logged).
    pub fn query(mut self, name: impl Into<String>) -> Self {
        self.query = Some(name.into());
        self
    }

    /// The realm in `WWW-Authenticate`.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Replaces how refusals are rendered.
    pub fn with_rejection_response(mut self, responder: impl RejectionResponder) -> Self {
        self.responder = SharedResponder::new(responder);
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<ApiKeyLayer, ConfigError> {
        if self.keys.is_empty() {
            return Err(ConfigError::invalid(
                "api_key.keys",
                "at least one key is required",
            ));
        }
        if self
            .realm
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            return Err(ConfigError::invalid("api_key.realm", "invalid characters"));
        }
        let header = gateway_layers_core::headers::header_name(
            self.header.as_deref().unwrap_or("x-api-key"),
        )?;
        let mut keys = HashMap::with_capacity(self.keys.len());
        for key in self.keys {
            let identity = Identity::new()
                .with_source(IdentitySource::ApiKey)
                .with_api_key_id(key.id.as_str())
                .with_subject(key.subject.as_deref().unwrap_or(&key.id))
                .with_tier(key.tier)
                .with_scopes(key.scopes);
            if keys.insert(key.digest, (key.digest, identity)).is_some() {
                return Err(ConfigError::invalid(
                    "api_key.keys",
                    format!("key {:?} is a duplicate", key.id),
                ));
            }
        }
        Ok(ApiKeyLayer {
            shared: Arc::new(Shared {
                keys,
                header: Some(header),
                query: self.query,
                realm: self.realm,
                responder: self.responder,
            }),
        })
    }
}

/// API-key authentication: sets the core [`Identity`] (with tier) or answers 401.
///
/// ```
/// use gateway_layers_jwt::{ApiKey, ApiKeyLayer};
/// use gateway_layers_core::{Identity, Tier};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # tokio_test(async {
/// let layer = ApiKeyLayer::builder()
///     .key(ApiKey::new("mobile-app", "k_live_0123456789abcdef").tier(Tier::PREMIUM))
///     .build()
///     .unwrap();
/// let svc = ServiceBuilder::new().layer(layer).service_fn(|req: http::Request<()>| async move {
///     let tier = req.extensions().get::<Identity>().unwrap().tier().unwrap().to_string();
///     Ok::<_, std::convert::Infallible>(http::Response::new(tier))
/// });
/// let req = http::Request::get("/").header("x-api-key", "k_live_0123456789abcdef").body(()).unwrap();
/// let res = svc.clone().oneshot(req).await.unwrap();
/// assert_eq!(res.into_body().into_inner().unwrap(), "premium");
/// let res = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(res.status(), 401);
/// # });
/// # fn tokio_test<F: std::future::Future>(f: F) { tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f); }
/// ```
#[derive(Clone)]
pub struct ApiKeyLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for ApiKeyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayer")
            .field("keys", &self.shared.keys.len())
            .field("header", &self.shared.header)
            .field("query", &self.shared.query)
            .finish()
    }
}

impl ApiKeyLayer {
    /// A builder.
    pub fn builder() -> ApiKeyBuilder {
        ApiKeyBuilder {
            keys: Vec::new(),
            header: None,
            query: None,
            realm: "api".into(),
            responder: SharedResponder::default(),
        }
    }
}

impl<S> Layer<S> for ApiKeyLayer {
    type Service = ApiKeyAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeyAuth {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`ApiKeyLayer`].
#[derive(Clone)]
pub struct ApiKeyAuth<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for ApiKeyAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn authenticate<B>(&self, request: &Request<B>) -> Result<&Identity, AuthError> {
        let mut presented: Option<std::borrow::Cow<'_, [u8]>> = None;
        if let Some(name) = &self.header {
            for value in request.headers().get_all(name) {
                if presented.is_some() {
                    return Err(AuthError::MultipleTokens);
                }
                presented = Some(std::borrow::Cow::Borrowed(value.as_bytes()));
            }
        }
        if let (Some(param), Some(query)) = (&self.query, request.uri().query()) {
            for pair in query.split('&') {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                if name == param {
                    if presented.is_some() {
                        return Err(AuthError::MultipleTokens);
                    }
                    if value.len() > 3 * MAX_API_KEY_BYTES {
                        return Err(AuthError::InvalidApiKey);
                    }
                    let decoded: Vec<u8> = percent_encoding::percent_decode_str(value).collect();
                    presented = Some(std::borrow::Cow::Owned(decoded));
                }
            }
        }
        let key = presented.ok_or(AuthError::Missing)?;
        if key.is_empty() || key.len() > MAX_API_KEY_BYTES {
            return Err(AuthError::InvalidApiKey);
        }
        let digest = sha256(&key);
        match self.keys.get(&digest) {
            Some((stored, identity))
                if aws_lc_rs::constant_time::verify_slices_are_equal(stored, &digest).is_ok() =>
            {
                Ok(identity)
            }
            _ => Err(AuthError::InvalidApiKey),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ApiKeyAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<GatewayBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match self.shared.authenticate(&request) {
            Ok(identity) => {
                let identity = identity.clone();
                request.extensions_mut().insert(identity);
                ResponseFuture::new(Kind::Inner {
                    future: self.inner.call(request),
                })
            }
            Err(error) => {
                tracing::debug!(target: "gateway::jwt", event = "api_key.rejected", code = error.code());
                gateway_layers_core::metrics::counter(
                    "gateway.api_key.rejected",
                    1,
                    &[("code", error.code())],
                );
                let rejection = error.rejection("api_key", "ApiKey", &self.shared.realm, "");
                ResponseFuture::new(Kind::Refused {
                    response: Some(self.shared.responder.respond(rejection)),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digest_equals_clear_key() {
        let clear = ApiKey::new("a", "secret-key");
        let hex: String = clear.digest.iter().map(|b| format!("{b:02x}")).collect();
        let hashed = ApiKey::from_sha256_hex("a", &hex).unwrap();
        assert_eq!(clear.digest, hashed.digest);
        assert!(ApiKey::from_sha256_hex("a", "zz").is_err());
        assert!(ApiKey::from_sha256_hex("a", &"g".repeat(64)).is_err());
    }
}
