//! Which bucket, circuit or hash slot a request belongs to.
//!
//! One [`KeyExtractor`] idea is shared by rate limiting, sticky load balancing, canary
//! hashing and per-key circuit breakers. Implementations:
//!
//! | extractor | key |
//! |---|---|
//! | [`ClientIpKey`] | the client IP ([`ClientIp`](crate::ClientIp) or resolved with trusted proxies) |
//! | [`HeaderKey`] | the first value of a header |
//! | [`SubjectKey`] | the authenticated subject from [`Identity`] |
//! | [`ClaimKey`] | a verified claim (name or JSON Pointer) from [`Identity`] |
//! | [`ApiKeyKey`] | the API key id from [`Identity`] (never the raw key) |
//! | [`TierKey`] | the tier from [`Identity`] |
//! | [`RouteKey`] | the matched route ([`RouteName`], or axum's `MatchedPath`) |
//! | [`ConstantKey`] | one fixed key: a global limit |
//! | [`CompositeKey`] | several keys at once, all required (`subject + route`) |
//! | [`FirstKey`] | the first extractor that yields a key |
//!
//! A [`KeyPolicy`] pairs an extractor with what to do when it finds no key
//! ([`OnMissingKey`]): refuse with a 4xx, or fall back to the client IP.
//!
//! ```
//! use std::sync::Arc;
//! use gateway_layers_core::{Identity, KeyPolicy, OnMissingKey, RequestView, key::*};
//!
//! let policy = KeyPolicy::new(CompositeKey::new([
//!     Arc::new(SubjectKey) as SharedKeyExtractor,
//!     Arc::new(HeaderKey::new("x-tenant").unwrap()),
//! ]))
//! .on_missing(OnMissingKey::reject(http::StatusCode::UNAUTHORIZED));
//!
//! let mut request = http::Request::builder().header("x-tenant", "acme").body(()).unwrap();
//! request.extensions_mut().insert(Identity::new().with_subject("u-1"));
//! let key = policy.resolve(&RequestView::new(&request)).unwrap();
//! assert_eq!(key.to_string(), "u-1|acme");
//!
//! let anonymous = http::Request::builder().header("x-tenant", "acme").body(()).unwrap();
//! let refused = policy.resolve(&RequestView::new(&anonymous)).unwrap_err();
//! assert_eq!(refused.status(), 401);
//! ```

use std::{
    fmt,
    hash::{Hash, Hasher},
    net::IpAddr,
    sync::Arc,
};

use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::Value;

use crate::{ClientIpResolver, ConfigError, Identity, Rejection, RequestView, ext::RouteName};

/// A key extracted from a request. Cheap to clone; hashable; displayed as text for
/// backends that need a string (Redis).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// An IP address.
    Ip(IpAddr),
    /// A header value (shared with the request, not copied).
    Header(HeaderValue),
    /// A text value (subject, claim, route).
    Text(Arc<str>),
    /// A fixed value.
    Static(&'static str),
    /// Several keys, all required.
    Composite(Arc<[Key]>),
}

impl Key {
    /// A stable 64-bit hash of the key (FNV-1a over its text form), the same in every
    /// process, for consistent hashing across gateway instances.
    pub fn stable_hash(&self) -> u64 {
        let mut hasher = Fnv1a::default();
        self.write_stable(&mut hasher);
        hasher.finish()
    }

    fn write_stable(&self, hasher: &mut Fnv1a) {
        match self {
            Key::Ip(ip) => match ip {
                IpAddr::V4(v4) => hasher.write(&v4.octets()),
                IpAddr::V6(v6) => hasher.write(&v6.octets()),
            },
            Key::Header(value) => hasher.write(value.as_bytes()),
            Key::Text(text) => hasher.write(text.as_bytes()),
            Key::Static(text) => hasher.write(text.as_bytes()),
            Key::Composite(keys) => {
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        hasher.write(b"|");
                    }
                    key.write_stable(hasher);
                }
            }
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Ip(ip) => write!(f, "{ip}"),
            Key::Header(value) => f.write_str(&String::from_utf8_lossy(value.as_bytes())),
            Key::Text(text) => f.write_str(text),
            Key::Static(text) => f.write_str(text),
            Key::Composite(keys) => {
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        f.write_str("|")?;
                    }
                    write!(f, "{key}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

#[derive(Clone, Copy)]
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Extracts a [`Key`] from a request, or `None` when the request has none.
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key of `request`.
    fn extract(&self, request: &RequestView<'_>) -> Option<Key>;
}

/// A key extractor shared by all clones of a layer.
pub type SharedKeyExtractor = Arc<dyn KeyExtractor>;

impl<K: KeyExtractor + ?Sized> KeyExtractor for Arc<K> {
    fn extract(&self, request: &RequestView<'_>) -> Option<Key> {
        (**self).extract(request)
    }
}

/// The client IP, with trusted-proxy resolution.
#[derive(Debug, Clone, Default)]
pub struct ClientIpKey {
    resolver: ClientIpResolver,
}

impl ClientIpKey {
    /// Keys on the client IP resolved by `resolver` (or [`ClientIp`](crate::ClientIp)
    /// when a [`ClientIpLayer`](crate::ClientIpLayer) ran first).
    pub fn new(resolver: ClientIpResolver) -> Self {
        Self { resolver }
    }
}

impl KeyExtractor for ClientIpKey {
    fn extract(&self, request: &RequestView<'_>) -> Option<Key> {
        self.resolver.resolve(request).map(Key::Ip)
    }
}

/// The first non-empty value of a header.
///
/// The header is client-controlled: use it for keys a client may choose (a tenant id
/// checked elsewhere), not for identity.
#[derive(Debug, Clone)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys on header `name`.
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            name: crate::headers::header_name(name)?,
        })
    }
}

impl KeyExtractor for HeaderKey {
    fn extract(&self, request: &RequestView<'_>) -> Option<Key> {
        request
            .headers
            .get_all(&self.name)
            .iter()
            .find(|v| !v.is_empty())
            .map(|v| Key::Header(v.clone()))
    }
}

/// The authenticated subject.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubjectKey;

impl KeyExtractor for SubjectKey {
    fn extract(&self, request: &RequestView<'_>) -> Option<Key> {
        let identity = request.extensions.get::<Identity>()?;
        identity.subject_arc().map(|s| Key::Text(s.clone()))
    }
}

/// A verified claim: strings, numbers and booleans are keys; other types are not.
#[derive(Debug, Clone)]
pub struct ClaimKey {
    claim: Arc<str>,
}

impl ClaimKey {
    /// Keys on claim `claim` (a top-level name or a JSON Pointer such as `/org/id`).
    pub fn new(claim: impl Into<Arc<str>>) -> Self {
        Self {
            claim: claim.into(),
        }
    }
}

impl KeyExtractor for ClaimKey {
    fn extract(&self, request: &RequestView<'_>) -> Option<Key> {
        let identity = request.extensions.get::<Identity>()?;
        match identity.claim(&self.claim)? {
            Value::String(s) if !s.is_empty() => Some(Key::Text(s.as_str().into())),
            Value::Number(n) => Some(Key::Text(n.to_string().into())),
            Value::Bool(b) => Some(Key::Static(if *b { "true" } else { "false" })),
            _ => None,
        }
    }
}

/// The id of the API key that authenticated the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiKeyKey;

impl KeyExtractor for ApiKeyKey {
    fn extract(&self, request: &RequestView<'_>) -> Option<Key> {
        let identity = request.extensions.get::<Identity>()?;
        identity.api_key_id().map(|id| Key::Text(id.into()))
    }
}

/// The tier of the authenticated identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct TierKey;

impl KeyExtractor for TierKey {
    fn extract(&self, request: &RequestView<'_>) -> Option<Key> {
        let identity = request.extensions.get::<Identity>()?;
        identity.tier().map(|t| Key::Text(t.as_str().into()))
    }
}

/// The matched route: [`RouteName`] set by the gateway router, else axum's
/// `MatchedPath` (feature `axum`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteKey;

impl KeyExtractor for RouteKey {
    fn extract(&self, request: &RequestView<'_>) -> Option<Key> {
        if let Some(RouteName(name)) = request.extensions.get::<RouteName>() {
            return Some(Key::Text(name.clone()));
        }
        #[cfg(feature = "axum")]
        if let Some(path) = request.extensions.get::<axum::extract::MatchedPath>() {
            return Some(Key::Text(path.as_str().into()));
        }
        None
    }
}

/// One fixed key for every request (a global limit).
#[derive(Debug, Clone, Copy)]
pub struct ConstantKey(pub &'static str);

impl KeyExtractor for ConstantKey {
    fn extract(&self, _request: &RequestView<'_>) -> Option<Key> {
        Some(Key::Static(self.0))
    }
}

/// Several extractors at once; the key exists only when all of them find one.
#[derive(Clone)]
pub struct CompositeKey {
    parts: Arc<[SharedKeyExtractor]>,
}

impl CompositeKey {
    /// All of `parts`, in order.
    pub fn new(parts: impl IntoIterator<Item = SharedKeyExtractor>) -> Self {
        Self {
            parts: parts.into_iter().collect(),
        }
    }
}

impl KeyExtractor for CompositeKey {
    fn extract(&self, request: &RequestView<'_>) -> Option<Key> {
        let keys = self
            .parts
            .iter()
            .map(|p| p.extract(request))
            .collect::<Option<Vec<_>>>()?;
        Some(Key::Composite(keys.into()))
    }
}

impl fmt::Debug for CompositeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompositeKey({} parts)", self.parts.len())
    }
}

/// The first of several extractors that finds a key (`subject`, else `client IP`).
#[derive(Clone)]
pub struct FirstKey {
    candidates: Arc<[SharedKeyExtractor]>,
}

impl FirstKey {
    /// Tries `candidates` in order.
    pub fn new(candidates: impl IntoIterator<Item = SharedKeyExtractor>) -> Self {
        Self {
            candidates: candidates.into_iter().collect(),
        }
    }
}

impl KeyExtractor for FirstKey {
    fn extract(&self, request: &RequestView<'_>) -> Option<Key> {
        self.candidates.iter().find_map(|c| c.extract(request))
    }
}

impl fmt::Debug for FirstKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FirstKey({} candidates)", self.candidates.len())
    }
}

/// What a [`KeyPolicy`] does when its extractor finds no key.
#[derive(Debug, Clone)]
pub enum OnMissingKey {
    /// Refuse the request with this status (e.g. 400 or 401).
    Reject(StatusCode),
    /// Use the client IP instead.
    ClientIp(ClientIpResolver),
}

impl OnMissingKey {
    /// Refuse with `status`.
    pub fn reject(status: StatusCode) -> Self {
        Self::Reject(status)
    }
}

impl Default for OnMissingKey {
    fn default() -> Self {
        Self::Reject(StatusCode::BAD_REQUEST)
    }
}

/// An extractor plus its missing-key behaviour: what layers hold.
#[derive(Clone)]
pub struct KeyPolicy {
    extractor: SharedKeyExtractor,
    on_missing: OnMissingKey,
}

impl KeyPolicy {
    /// A policy with `extractor`; a missing key is refused with 400 by default.
    pub fn new(extractor: impl KeyExtractor) -> Self {
        Self {
            extractor: Arc::new(extractor),
            on_missing: OnMissingKey::default(),
        }
    }

    /// A policy from an already shared extractor.
    pub fn from_shared(extractor: SharedKeyExtractor) -> Self {
        Self {
            extractor,
            on_missing: OnMissingKey::default(),
        }
    }

    /// Sets the missing-key behaviour.
    #[must_use]
    pub fn on_missing(mut self, on_missing: OnMissingKey) -> Self {
        self.on_missing = on_missing;
        self
    }

    /// The key of `request`, or the rejection to send.
    pub fn resolve(&self, request: &RequestView<'_>) -> Result<Key, Rejection> {
        if let Some(key) = self.extractor.extract(request) {
            return Ok(key);
        }
        let status = match &self.on_missing {
            OnMissingKey::ClientIp(resolver) => {
                if let Some(ip) = resolver.resolve(request) {
                    return Ok(Key::Ip(ip));
                }
                StatusCode::BAD_REQUEST
            }
            OnMissingKey::Reject(status) => *status,
        };
        Err(Rejection::new(status, "key", "missing_key")
            .with_detail("the request carries no value for the configured key"))
    }

    /// The extractor.
    pub fn extractor(&self) -> &SharedKeyExtractor {
        &self.extractor
    }
}

impl fmt::Debug for KeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPolicy")
            .field("on_missing", &self.on_missing)
            .finish_non_exhaustive()
    }
}

/// A key extractor as written in a configuration file.
///
/// ```yaml
/// key: client_ip
/// key: { header: x-tenant }
/// key: { claim: /org/id }
/// key: { composite: [subject, route] }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum KeySpec {
    /// [`ClientIpKey`].
    ClientIp,
    /// [`SubjectKey`].
    Subject,
    /// [`ApiKeyKey`].
    ApiKey,
    /// [`TierKey`].
    Tier,
    /// [`RouteKey`].
    Route,
    /// [`HeaderKey`].
    Header(String),
    /// [`ClaimKey`].
    Claim(String),
    /// [`ConstantKey`] (the text is leaked once, at build time).
    Constant(String),
    /// [`CompositeKey`].
    Composite(Vec<KeySpec>),
    /// [`FirstKey`].
    FirstOf(Vec<KeySpec>),
}

impl KeySpec {
    /// Builds the extractor; `resolver` is used for client IPs.
    pub fn build(&self, resolver: &ClientIpResolver) -> Result<SharedKeyExtractor, ConfigError> {
        Ok(match self {
            KeySpec::ClientIp => Arc::new(ClientIpKey::new(resolver.clone())),
            KeySpec::Subject => Arc::new(SubjectKey),
            KeySpec::ApiKey => Arc::new(ApiKeyKey),
            KeySpec::Tier => Arc::new(TierKey),
            KeySpec::Route => Arc::new(RouteKey),
            KeySpec::Header(name) => Arc::new(HeaderKey::new(name)?),
            KeySpec::Claim(name) => {
                if name.is_empty() {
                    return Err(ConfigError::invalid("key.claim", "claim name is empty"));
                }
                Arc::new(ClaimKey::new(name.as_str()))
            }
            KeySpec::Constant(text) => {
                Arc::new(ConstantKey(Box::leak(text.clone().into_boxed_str())))
            }
            KeySpec::Composite(parts) | KeySpec::FirstOf(parts) => {
                if parts.is_empty() {
                    return Err(ConfigError::invalid("key", "an empty list of keys"));
                }
                let built = parts
                    .iter()
                    .map(|p| p.build(resolver))
                    .collect::<Result<Vec<_>, _>>()?;
                if matches!(self, KeySpec::Composite(_)) {
                    Arc::new(CompositeKey::new(built))
                } else {
                    Arc::new(FirstKey::new(built))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientIp, TrustedProxies};
    use serde_json::json;
    use std::net::SocketAddr;

    fn request() -> http::Request<()> {
        http::Request::builder().body(()).unwrap()
    }

    #[test]
    fn each_extractor() {
        let mut req = http::Request::builder()
            .header("x-tenant", "")
            .header("x-tenant", "acme")
            .body(())
            .unwrap();
        req.extensions_mut().insert(
            Identity::new()
                .with_subject("u1")
                .with_tier("premium")
                .with_api_key_id("key-7")
                .with_claims(json!({"org": {"id": 9}, "admin": true, "obj": {}})),
        );
        req.extensions_mut().insert(RouteName("orders".into()));
        req.extensions_mut()
            .insert("10.0.0.1:80".parse::<SocketAddr>().unwrap());
        let view = RequestView::new(&req);
        let text = |k: &dyn KeyExtractor| k.extract(&view).map(|k| k.to_string());
        assert_eq!(
            text(&HeaderKey::new("x-tenant").unwrap()).as_deref(),
            Some("acme")
        );
        assert_eq!(text(&SubjectKey).as_deref(), Some("u1"));
        assert_eq!(text(&TierKey).as_deref(), Some("premium"));
        assert_eq!(text(&ApiKeyKey).as_deref(), Some("key-7"));
        assert_eq!(text(&ClaimKey::new("/org/id")).as_deref(), Some("9"));
        assert_eq!(text(&ClaimKey::new("admin")).as_deref(), Some("true"));
        assert_eq!(text(&ClaimKey::new("obj")), None);
        assert_eq!(text(&RouteKey).as_deref(), Some("orders"));
        assert_eq!(text(&ConstantKey("all")).as_deref(), Some("all"));
        assert_eq!(text(&ClientIpKey::default()).as_deref(), Some("10.0.0.1"));
        let composite = CompositeKey::new([
            Arc::new(SubjectKey) as SharedKeyExtractor,
            Arc::new(RouteKey),
        ]);
        assert_eq!(text(&composite).as_deref(), Some("u1|orders"));
    }

    #[test]
    fn missing_keys() {
        let req = request();
        let view = RequestView::new(&req);
        assert!(SubjectKey.extract(&view).is_none());
        assert!(RouteKey.extract(&view).is_none());
        assert!(ClientIpKey::default().extract(&view).is_none());
        let composite = CompositeKey::new([
            Arc::new(ConstantKey("a")) as SharedKeyExtractor,
            Arc::new(SubjectKey),
        ]);
        assert!(composite.extract(&view).is_none());
        let first = FirstKey::new([
            Arc::new(SubjectKey) as SharedKeyExtractor,
            Arc::new(ConstantKey("anon")),
        ]);
        assert_eq!(first.extract(&view), Some(Key::Static("anon")));
    }

    #[test]
    fn policy_missing_behaviour() {
        let mut req = request();
        req.extensions_mut()
            .insert("198.51.100.9:1".parse::<SocketAddr>().unwrap());
        let view = RequestView::new(&req);
        let reject = KeyPolicy::new(SubjectKey);
        let err = reject.resolve(&view).unwrap_err();
        assert_eq!(err.status(), 400);
        assert_eq!(err.code(), "missing_key");
        let fallback = KeyPolicy::new(SubjectKey).on_missing(OnMissingKey::ClientIp(
            ClientIpResolver::new(TrustedProxies::loopback()),
        ));
        assert_eq!(
            fallback.resolve(&view).unwrap(),
            Key::Ip("198.51.100.9".parse().unwrap())
        );
        // No peer address either: refused, not panicking.
        let bare = request();
        assert_eq!(
            fallback
                .resolve(&RequestView::new(&bare))
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn client_ip_extension_is_used() {
        let mut req = request();
        req.extensions_mut()
            .insert(ClientIp("203.0.113.4".parse().unwrap()));
        let key = ClientIpKey::default().extract(&RequestView::new(&req));
        assert_eq!(key, Some(Key::Ip("203.0.113.4".parse().unwrap())));
    }

    #[test]
    fn stable_hash_is_stable_and_distinguishes() {
        let a = Key::Text("alice".into());
        assert_eq!(a.stable_hash(), Key::Static("alice").stable_hash());
        assert_ne!(a.stable_hash(), Key::Text("bob".into()).stable_hash());
        // Known FNV-1a 64 value of "a".
        assert_eq!(Key::Static("a").stable_hash(), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn spec_builds_and_validates() {
        let resolver = ClientIpResolver::default();
        let spec = KeySpec::Composite(vec![KeySpec::Header("x-a".into()), KeySpec::Route]);
        assert!(spec.build(&resolver).is_ok());
        assert!(
            KeySpec::Header("bad header".into())
                .build(&resolver)
                .is_err()
        );
        assert!(KeySpec::Composite(vec![]).build(&resolver).is_err());
        assert!(KeySpec::Claim(String::new()).build(&resolver).is_err());
    }
}
