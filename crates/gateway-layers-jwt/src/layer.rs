//! [`JwtAuthLayer`], its builder, [`Provider`], the service and its future.

use std::{
    any::{Any, TypeId},
    fmt,
    future::Future,
    marker::PhantomData,
    ops::Deref,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use gateway_layers_core::{
    ConfigError, GatewayBody, Identity, RejectionResponder, SharedResponder,
    identity::IdentitySource,
};
use http::{HeaderName, HeaderValue, Method, Request, Response, header};
use jsonwebtoken::Algorithm;
use pin_project_lite::pin_project;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    authz::{Authorizer, Predicate, Requirement, Rule},
    cache::{CacheConfig, TokenCache},
    error::AuthError,
    jwks::{JwksOptions, RemoteJwks},
    keys::{JwtKey, KeySet, Selection},
    source::TokenSources,
    token::{self, ClaimRules, SubjectMatcher},
};

/// The name of this layer in rejections and metrics.
pub const LAYER: &str = "jwt";

/// The default claims type: the JSON object itself.
pub type ClaimsMap = Map<String, Value>;

/// The verified claims, typed, in request extensions (`Extension<JwtClaims<C>>` in
/// axum, or the [`JwtClaims`] extractor with the `axum` feature).
#[derive(Debug)]
pub struct JwtClaims<C = ClaimsMap>(pub Arc<C>);

impl<C> Clone for JwtClaims<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C> Deref for JwtClaims<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.0
    }
}

enum ProviderKeys {
    Static(Arc<KeySet>),
    Remote(RemoteJwks),
}

/// One token issuer: its keys and what its tokens' claims must satisfy.
///
/// With several providers, the token's `iss` selects the provider whose issuer it
/// equals; a provider without an issuer takes tokens no other provider claims.
pub struct Provider {
    issuer: Option<String>,
    keys: ProviderKeys,
    rules: ClaimRules,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = match &self.keys {
            ProviderKeys::Static(set) => format!("static ({} keys)", set.keys().len()),
            ProviderKeys::Remote(jwks) => format!("{jwks:?}"),
        };
        f.debug_struct("Provider")
            .field("issuer", &self.issuer)
            .field("keys", &keys)
            .field("rules", &self.rules)
            .finish()
    }
}

impl Provider {
    /// Static keys.
    pub fn new(keys: KeySet) -> Self {
        Self {
            issuer: None,
            keys: ProviderKeys::Static(Arc::new(keys)),
            rules: ClaimRules::default(),
        }
    }

    /// One static key.
    pub fn key(key: JwtKey) -> Self {
        Self::new(KeySet::new().with(key))
    }

    /// One HMAC secret (at least as long as the hash output).
    pub fn hmac(secret: impl AsRef<[u8]>, alg: Algorithm) -> Result<Self, ConfigError> {
        Ok(Self::key(JwtKey::hmac(secret, alg)?))
    }

    /// A PEM public key pinned to `alg`.
    pub fn pem(pem: impl AsRef<[u8]>, alg: Algorithm) -> Result<Self, ConfigError> {
        Ok(Self::key(JwtKey::from_pem(pem, alg)?))
    }

    /// A static JWKS document (symmetric `oct` keys allowed).
    pub fn jwks(document: &Value) -> Result<Self, ConfigError> {
        Ok(Self::new(KeySet::from_jwks(document, true)?))
    }

    /// A remote JWKS (shared refresher per URL).
    pub fn remote(jwks: RemoteJwks) -> Self {
        Self {
            issuer: None,
            keys: ProviderKeys::Remote(jwks),
            rules: ClaimRules::default(),
        }
    }

    /// A remote JWKS at `url` with default [`JwksOptions`].
    pub fn jwks_url(url: &str) -> Result<Self, ConfigError> {
        Ok(Self::remote(RemoteJwks::shared(
            url,
            JwksOptions::default(),
        )?))
    }

    /// An OIDC issuer: keys by discovery, and `iss` must equal `issuer`.
    pub fn oidc(issuer: &str, options: JwksOptions) -> Result<Self, ConfigError> {
        Ok(Self::remote(RemoteJwks::discover(issuer, options)?).issuer(issuer))
    }

    /// The issuer: selects this provider and is required in `iss`.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        self.rules.issuers = vec![issuer.clone()];
        self.issuer = Some(issuer);
        self
    }

    /// Adds an accepted audience (`aud` must contain any of them).
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.rules.audiences.push(audience.into());
        self
    }

    /// Clock-skew leeway for `exp`, `nbf`, `iat` (default 30 s).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.rules.leeway = leeway.as_secs();
        self
    }

    /// Accepts tokens without `exp` (not recommended; such tokens are never cached).
    #[must_use]
    pub fn allow_missing_exp(mut self) -> Self {
        self.rules.require_exp = false;
        self
    }

    /// Refuses tokens living longer than `max` (`exp - iat`, or `exp - now`).
    #[must_use]
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.rules.max_lifetime = Some(max.as_secs());
        self
    }

    /// Constrains `sub`.
    #[must_use]
    pub fn subject(mut self, matcher: SubjectMatcher) -> Self {
        self.rules.subject = Some(matcher);
        self
    }

    /// Adds an accepted header `typ` (e.g. `at+jwt`; `application/` prefix and case
    /// are ignored). Once one is set, a token without `typ` is refused.
    #[must_use]
    pub fn token_type(mut self, typ: impl Into<String>) -> Self {
        self.rules.types.push(typ.into());
        self
    }

    /// Requires a claim (a name or a JSON Pointer such as `/org/id`).
    #[must_use]
    pub fn require_claim(mut self, name: impl Into<String>) -> Self {
        self.rules.required.push(name.into());
        self
    }
}

/// The verified result shared by the cache and the request.
pub(crate) struct Verified<C> {
    claims: Arc<C>,
    identity: Identity,
    scopes: Box<[Arc<str>]>,
    roles: Box<[Arc<str>]>,
    forward: Vec<(HeaderName, HeaderValue)>,
}

type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

struct Shared<C> {
    providers: Vec<Provider>,
    sources: TokenSources,
    authz: Authorizer,
    roles_claim: String,
    tier_claim: Option<String>,
    forward: Vec<(String, HeaderName)>,
    strip_authorization: bool,
    anonymous: bool,
    allow_preflight: bool,
    cache: Option<TokenCache<Verified<C>>>,
    realm: String,
    understood_crit: Vec<String>,
    header_memo: token::HeaderMemo,
    responder: SharedResponder,
    clock: Option<Clock>,
}

/// Builds a [`JwtAuthLayer`]. See the [crate docs](crate).
#[must_use]
pub struct JwtAuthBuilder {
    providers: Vec<Provider>,
    sources: TokenSources,
    authz: Authorizer,
    roles_claim: String,
    tier_claim: Option<String>,
    forward: Vec<(String, String)>,
    strip_authorization: bool,
    anonymous: bool,
    allow_preflight: bool,
    cache: CacheConfig,
    realm: String,
    understood_crit: Vec<String>,
    responder: SharedResponder,
    clock: Option<Clock>,
}

impl fmt::Debug for JwtAuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthBuilder")
            .field("providers", &self.providers)
            .field("sources", &self.sources)
            .field("authz", &self.authz)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

impl Default for JwtAuthBuilder {
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            sources: TokenSources::default(),
            authz: Authorizer::default(),
            roles_claim: "roles".into(),
            tier_claim: None,
            forward: Vec::new(),
            strip_authorization: false,
            anonymous: false,
            allow_preflight: false,
            cache: CacheConfig::default(),
            realm: "api".into(),
            understood_crit: Vec::new(),
            responder: SharedResponder::default(),
            clock: None,
        }
    }
}

impl JwtAuthBuilder {
    /// Adds a token provider (at least one is required).
    pub fn provider(mut self, provider: Provider) -> Self {
        self.providers.push(provider);
        self
    }

    /// Where tokens are read (default: `Authorization: Bearer`, 8 KiB limit).
    pub fn sources(mut self, sources: TokenSources) -> Self {
        self.sources = sources;
        self
    }

    /// A requirement for every request.
    pub fn require(mut self, requirement: Requirement) -> Self {
        self.authz.global.push(requirement);
        self
    }

    /// A per-route rule (method + path prefix).
    pub fn rule(mut self, rule: Rule) -> Self {
        self.authz.rules.push(rule);
        self
    }

    /// A custom decision over the claims; `false` answers 403.
    pub fn predicate(
        mut self,
        predicate: impl Fn(&Map<String, Value>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.authz.predicate = Some(Arc::new(predicate) as Predicate);
        self
    }

    /// The claim holding roles (a name or JSON Pointer such as
    /// `/realm_access/roles`; default `roles`).
    pub fn roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.roles_claim = claim.into();
        self
    }

    /// A claim whose string value becomes the identity's tier.
    pub fn tier_claim(mut self, claim: impl Into<String>) -> Self {
        self.tier_claim = Some(claim.into());
        self
    }

    /// Forwards a claim (name or JSON Pointer) upstream as header `header`. Incoming
    /// copies of `header` are always removed first, authenticated or not.
    pub fn forward_claim(mut self, claim: impl Into<String>, header: impl Into<String>) -> Self {
        self.forward.push((claim.into(), header.into()));
        self
    }

    /// Removes the `Authorization` header before calling the inner service.
    pub fn strip_authorization(mut self, strip: bool) -> Self {
        self.strip_authorization = strip;
        self
    }

    /// Requests without any token continue without identity; bad tokens still get 401.
    pub fn anonymous(mut self, anonymous: bool) -> Self {
        self.anonymous = anonymous;
        self
    }

    /// Lets CORS preflights (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) through without a token.
    pub fn allow_preflight(mut self, allow: bool) -> Self {
        self.allow_preflight = allow;
        self
    }

    /// The verified-token cache bounds ([`CacheConfig::disabled`] to turn it off).
    pub fn cache(mut self, cache: CacheConfig) -> Self {
        self.cache = cache;
        self
    }

    /// The realm in `WWW-Authenticate` (default `api`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Header names this deployment understands in `crit` (default none: any `crit`
    /// is refused).
    pub fn understood_crit<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.understood_crit = names.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces how refusals are rendered.
    pub fn with_rejection_response(mut self, responder: impl RejectionResponder) -> Self {
        self.responder = SharedResponder::new(responder);
        self
    }

    /// A fixed or custom clock in Unix seconds (tests, replay of recorded tokens).
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Builds a layer whose claims type is the JSON object ([`ClaimsMap`]).
    pub fn build(self) -> Result<JwtAuthLayer, ConfigError> {
        self.build_typed()
    }

    /// Builds a layer that also deserializes the claims into `C`.
    pub fn build_typed<C>(self) -> Result<JwtAuthLayer<C>, ConfigError>
    where
        C: DeserializeOwned + Send + Sync + 'static,
    {
        if self.providers.is_empty() {
            return Err(ConfigError::invalid(
                "jwt.providers",
                "at least one provider is required",
            ));
        }
        let mut catch_all = 0;
        for (i, p) in self.providers.iter().enumerate() {
            match &p.issuer {
                None => catch_all += 1,
                Some(iss) => {
                    if self.providers[..i]
                        .iter()
                        .any(|o| o.issuer.as_ref() == Some(iss))
                    {
                        return Err(ConfigError::invalid(
                            "jwt.providers",
                            format!("issuer {iss:?} is configured twice"),
                        ));
                    }
                }
            }
            if let ProviderKeys::Static(set) = &p.keys
                && set.is_empty()
            {
                return Err(ConfigError::invalid(
                    "jwt.providers",
                    "a provider has no keys",
                ));
            }
        }
        if catch_all > 1 {
            return Err(ConfigError::invalid(
                "jwt.providers",
                "at most one provider may have no issuer",
            ));
        }
        if self
            .realm
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            return Err(ConfigError::invalid(
                "jwt.realm",
                "quotes, backslashes and control characters are not allowed",
            ));
        }
        if self.sources.max_bytes == 0 {
            return Err(ConfigError::invalid(
                "jwt.max_token_bytes",
                "must be positive",
            ));
        }
        let forward = self
            .forward
            .into_iter()
            .map(|(claim, name)| Ok((claim, gateway_layers_core::headers::header_name(&name)?)))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(JwtAuthLayer {
            shared: Arc::new(Shared {
                providers: self.providers,
                sources: self.sources,
                authz: self.authz,
                roles_claim: self.roles_claim,
                tier_claim: self.tier_claim,
                forward,
                strip_authorization: self.strip_authorization,
                anonymous: self.anonymous,
                allow_preflight: self.allow_preflight,
                cache: TokenCache::new(self.cache),
                realm: self.realm,
                understood_crit: self.understood_crit,
                header_memo: token::HeaderMemo::default(),
                responder: self.responder,
                clock: self.clock,
            }),
        })
    }
}

enum Step<C> {
    Done(Arc<Verified<C>>),
    Refused(AuthError),
    NeedKeys { provider: usize, unknown_kid: bool },
}

fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn typed_claims<C: DeserializeOwned + Send + Sync + 'static>(
    map: &Arc<ClaimsMap>,
    payload: &[u8],
) -> Result<Arc<C>, AuthError> {
    if TypeId::of::<C>() == TypeId::of::<ClaimsMap>() {
        let any: Arc<dyn Any + Send + Sync> = map.clone();
        if let Ok(claims) = any.downcast::<C>() {
            return Ok(claims);
        }
    }
    serde_json::from_slice::<C>(payload)
        .map(Arc::new)
        .map_err(|_| AuthError::InvalidClaimType)
}

fn header_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match item {
                    Value::String(s) => out.push_str(s),
                    Value::Number(n) => out.push_str(&n.to_string()),
                    _ => return None,
                }
            }
            Some(out)
        }
        _ => None,
    }
}

impl<C: DeserializeOwned + Send + Sync + 'static> Shared<C> {
    fn now(&self) -> u64 {
        match &self.clock {
            Some(clock) => clock(),
            None => system_now(),
        }
    }

    fn generation(&self, provider: usize) -> u64 {
        match self.providers.get(provider).map(|p| &p.keys) {
            Some(ProviderKeys::Remote(jwks)) => jwks.generation(),
            _ => 0,
        }
    }

    fn verify(&self, token: &str, now: u64, may_wait: bool) -> Step<C> {
        // A hit needs the very same token bytes that verified before (under the same
        // layer configuration and key generation, not yet expired): parsing it again
        // would give the same result, so a hit skips parsing too.
        let cached = self.cache.as_ref().map(|cache| (cache, cache.key(token)));
        if let Some((cache, key)) = cached
            && let Some(hit) = cache.get(key, token, now, |p| self.generation(p))
        {
            gateway_layers_core::metrics::counter("gateway.jwt.cache_hits", 1, &[]);
            return Step::Done(hit);
        }
        let head = match token::parse_head(token, &self.understood_crit, Some(&self.header_memo)) {
            Ok(head) => head,
            Err(e) => return Step::Refused(e),
        };
        let parsed = match head.into_parsed() {
            Ok(parsed) => parsed,
            Err(e) => return Step::Refused(e),
        };
        let iss = match parsed.claims.get("iss") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Step::Refused(AuthError::InvalidClaimType),
        };
        let index = iss
            .and_then(|iss| {
                self.providers
                    .iter()
                    .position(|p| p.issuer.as_deref() == Some(iss))
            })
            .or_else(|| self.providers.iter().position(|p| p.issuer.is_none()));
        let Some(index) = index else {
            return Step::Refused(AuthError::UnknownIssuer);
        };
        let provider = &self.providers[index];
        let (keys, generation) = match &provider.keys {
            ProviderKeys::Static(set) => (set.clone(), 0),
            ProviderKeys::Remote(jwks) => match jwks.current() {
                Some(found) => found,
                None if may_wait => {
                    return Step::NeedKeys {
                        provider: index,
                        unknown_kid: false,
                    };
                }
                None => return Step::Refused(AuthError::KeysUnavailable),
            },
        };
        let key = match keys.select(parsed.info.kid.as_deref(), parsed.alg) {
            Selection::Found(key) => key,
            Selection::UnknownKid => {
                if may_wait && matches!(provider.keys, ProviderKeys::Remote(_)) {
                    return Step::NeedKeys {
                        provider: index,
                        unknown_kid: true,
                    };
                }
                if !keys.has_alg(parsed.alg) {
                    return Step::Refused(AuthError::AlgNotAccepted);
                }
                return Step::Refused(AuthError::UnknownKid);
            }
            Selection::WrongAlg => return Step::Refused(AuthError::AlgNotAccepted),
            Selection::Ambiguous => return Step::Refused(AuthError::AmbiguousKey),
        };
        if let Err(e) = token::verify_signature(&parsed, key) {
            return Step::Refused(e);
        }
        // Claims are read through core's `Identity::claim` (names or JSON Pointers).
        let issuer: Option<Arc<str>> = iss.map(Arc::from);
        let claims_map = Arc::new(parsed.claims);
        let mut identity = Identity::new()
            .with_source(IdentitySource::Jwt)
            .with_claims_map(claims_map.clone());
        let validity = match provider
            .rules
            .validate(&identity, parsed.info.typ.as_deref(), now)
        {
            Ok(v) => v,
            Err(e) => return Step::Refused(e),
        };
        let mut scopes = Vec::new();
        let mut roles = Vec::new();
        if let Err(e) = token::grants(identity.claim("scope"), &mut scopes)
            .and_then(|()| token::grants(identity.claim("scp"), &mut scopes))
            .and_then(|()| token::grants(identity.claim(&self.roles_claim), &mut roles))
        {
            return Step::Refused(e);
        }
        let mut forward = Vec::with_capacity(self.forward.len());
        for (claim, name) in &self.forward {
            if let Some(text) = identity.claim(claim).and_then(header_text)
                && let Ok(value) = gateway_layers_core::headers::checked_value(text.as_bytes())
            {
                forward.push((name.clone(), value));
            }
        }
        let tier = self
            .tier_claim
            .as_deref()
            .and_then(|name| match identity.claim(name) {
                Some(Value::String(tier)) => Some(tier.clone()),
                _ => None,
            });
        if !scopes.is_empty() {
            identity = identity.with_scopes(scopes.iter().cloned());
        }
        if let Some(Value::String(sub)) = claims_map.get("sub") {
            identity = identity.with_subject(sub.as_str());
        }
        if let Some(iss) = issuer {
            identity = identity.with_issuer(iss);
        }
        if let Some(tier) = tier {
            identity = identity.with_tier(tier);
        }
        let payload_len = parsed.payload.len();
        let claims = match typed_claims::<C>(&claims_map, &parsed.payload) {
            Ok(c) => c,
            Err(e) => return Step::Refused(e),
        };
        let verified = Arc::new(Verified {
            claims,
            identity,
            scopes: scopes.into(),
            roles: roles.into(),
            forward,
        });
        if let (Some((cache, key)), Some(exp)) = (cached, validity.exp) {
            // The decoded claims are charged twice their JSON size (the map's nodes).
            cache.insert(
                key,
                token,
                verified.clone(),
                exp,
                index,
                generation,
                payload_len.saturating_mul(2),
                now,
            );
        }
        Step::Done(verified)
    }

    fn reject<B>(&self, error: AuthError, scope: &str) -> Response<GatewayBody<B>> {
        tracing::debug!(target: "gateway::jwt", event = "jwt.rejected", code = error.code(), reason = %error);
        if gateway_layers_core::metrics::enabled() {
            gateway_layers_core::metrics::counter(
                "gateway.jwt.rejected",
                1,
                &[("code", error.code())],
            );
        }
        self.responder
            .respond(error.rejection(LAYER, "Bearer", &self.realm, scope))
    }

    /// Authorizes and decorates the request, or refuses it.
    #[allow(clippy::result_large_err)]
    fn admit<B, R>(
        &self,
        request: &mut Request<B>,
        verified: &Verified<C>,
    ) -> Result<(), Response<GatewayBody<R>>> {
        if !self.authz.is_empty()
            && let Err((error, scope)) = self.authz.check(
                request.method(),
                request.uri().path(),
                &verified.scopes,
                &verified.roles,
                verified.identity.claims(),
            )
        {
            return Err(self.reject(error, &scope));
        }
        let headers = request.headers_mut();
        if self.strip_authorization {
            headers.remove(header::AUTHORIZATION);
        }
        for (name, value) in &verified.forward {
            headers.append(name.clone(), value.clone());
        }
        let extensions = request.extensions_mut();
        extensions.insert(verified.identity.clone());
        extensions.insert(JwtClaims(verified.claims.clone()));
        Ok(())
    }
}

/// The JWT authentication layer. Build it with [`JwtAuthLayer::builder`]; see the
/// [crate docs](crate) for an example.
pub struct JwtAuthLayer<C = ClaimsMap> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for JwtAuthLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<C> fmt::Debug for JwtAuthLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayer")
            .field("providers", &self.shared.providers)
            .field("realm", &self.shared.realm)
            .finish_non_exhaustive()
    }
}

impl JwtAuthLayer {
    /// A builder.
    pub fn builder() -> JwtAuthBuilder {
        JwtAuthBuilder::default()
    }
}

impl<S, C> Layer<S> for JwtAuthLayer<C> {
    type Service = JwtAuth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuth {
            inner,
            shared: self.shared.clone(),
            _claims: PhantomData,
        }
    }
}

/// The service of [`JwtAuthLayer`].
pub struct JwtAuth<S, C = ClaimsMap> {
    inner: S,
    shared: Arc<Shared<C>>,
    _claims: PhantomData<fn() -> C>,
}

impl<S: Clone, C> Clone for JwtAuth<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            _claims: PhantomData,
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for JwtAuth<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, C> JwtAuth<S, C> {
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
}

type BoxResponseFuture<R, E> =
    Pin<Box<dyn Future<Output = Result<Response<GatewayBody<R>>, E>> + Send>>;

pin_project! {
    /// The future of [`JwtAuth`].
    pub struct ResponseFuture<F, R, E> {
        #[pin]
        kind: Kind<F, R, E>,
    }
}

pin_project! {
    #[project = KindProj]
    pub(crate) enum Kind<F, R, E> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response<GatewayBody<R>>> },
        Waiting { future: BoxResponseFuture<R, E> },
    }
}

impl<F, R, E> ResponseFuture<F, R, E> {
    pub(crate) fn new(kind: Kind<F, R, E>) -> Self {
        Self { kind }
    }
}

impl<F, R, E> fmt::Debug for ResponseFuture<F, R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture(..)")
    }
}

impl<F, R, E> Future for ResponseFuture<F, R, E>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<GatewayBody<R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => match future.poll(cx) {
                Poll::Ready(Ok(response)) => Poll::Ready(Ok(response.map(GatewayBody::inner))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            KindProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            KindProj::Waiting { future } => future.as_mut().poll(cx),
        }
    }
}

fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for JwtAuth<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    C: DeserializeOwned + Send + Sync + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<GatewayBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        // Identity headers are never taken from the client.
        for (_, name) in &shared.forward {
            request.headers_mut().remove(name);
        }
        let refused = |response| ResponseFuture {
            kind: Kind::Refused {
                response: Some(response),
            },
        };
        let step = {
            let token = match shared.sources.extract(request.headers(), request.uri()) {
                Ok(token) => token,
                Err(error) => return refused(shared.reject(error, "")),
            };
            match token {
                Some(token) => shared.verify(&token, shared.now(), true),
                None if shared.anonymous || (shared.allow_preflight && is_preflight(&request)) => {
                    return ResponseFuture {
                        kind: Kind::Inner {
                            future: self.inner.call(request),
                        },
                    };
                }
                None => Step::Refused(AuthError::Missing),
            }
        };
        match step {
            Step::Done(verified) => match shared.admit(&mut request, &verified) {
                Ok(()) => ResponseFuture {
                    kind: Kind::Inner {
                        future: self.inner.call(request),
                    },
                },
                Err(response) => refused(response),
            },
            Step::Refused(error) => refused(shared.reject(error, "")),
            Step::NeedKeys {
                provider,
                unknown_kid,
            } => {
                let shared = self.shared.clone();
                let ready = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, ready);
                ResponseFuture {
                    kind: Kind::Waiting {
                        future: Box::pin(async move {
                            if let Some(ProviderKeys::Remote(jwks)) =
                                shared.providers.get(provider).map(|p| &p.keys)
                            {
                                if unknown_kid {
                                    let seen = jwks.attempts();
                                    if jwks.request_refresh() {
                                        jwks.wait_next_attempt(seen).await;
                                    }
                                } else {
                                    let _ = jwks.keys_or_wait().await;
                                }
                            }
                            let step =
                                match shared.sources.extract(request.headers(), request.uri()) {
                                    Ok(Some(token)) => shared.verify(&token, shared.now(), false),
                                    Ok(None) => Step::Refused(AuthError::Missing),
                                    Err(e) => Step::Refused(e),
                                };
                            match step {
                                Step::Done(verified) => match shared.admit(&mut request, &verified)
                                {
                                    Ok(()) => {
                                        inner.call(request).await.map(|r| r.map(GatewayBody::inner))
                                    }
                                    Err(response) => Ok(response),
                                },
                                Step::Refused(error) => Ok(shared.reject(error, "")),
                                Step::NeedKeys { unknown_kid, .. } => Ok(shared.reject(
                                    if unknown_kid {
                                        AuthError::UnknownKid
                                    } else {
                                        AuthError::KeysUnavailable
                                    },
                                    "",
                                )),
                            }
                        }),
                    },
                }
            }
        }
    }
}
