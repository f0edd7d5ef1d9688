//! The authenticated caller, as auth layers leave it in request extensions.

use std::{borrow::Cow, fmt, sync::Arc};

use serde_json::{Map, Value};

/// A service tier such as `free` or `premium`, used to pick rate-limit policies.
///
/// Cloning a tier never allocates: a name given at run time is kept behind an `Arc`,
/// so the identity an auth layer clones into every request carries it for free.
#[derive(Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "String"))]
pub struct Tier(Name);

#[derive(Clone)]
enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Tier {
    /// The `free` tier.
    pub const FREE: Tier = Tier(Name::Static("free"));
    /// The `standard` tier.
    pub const STANDARD: Tier = Tier(Name::Static("standard"));
    /// The `premium` tier.
    pub const PREMIUM: Tier = Tier(Name::Static("premium"));
    /// The `enterprise` tier.
    pub const ENTERPRISE: Tier = Tier(Name::Static("enterprise"));

    /// A tier by name.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        match name.into() {
            Cow::Borrowed(name) => Self(Name::Static(name)),
            Cow::Owned(name) => Self(Name::Shared(name.into())),
        }
    }

    /// The tier's name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Static(name) => name,
            Name::Shared(name) => name,
        }
    }
}

impl PartialEq for Tier {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Tier {}

impl std::hash::Hash for Tier {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Tier {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Tier {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tier({})", self.as_str())
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for Tier {
    fn from(name: &'static str) -> Self {
        Self(Name::Static(name))
    }
}

impl From<String> for Tier {
    fn from(name: String) -> Self {
        Self(Name::Shared(name.into()))
    }
}

/// How an [`Identity`] was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentitySource {
    /// A verified JWT.
    Jwt,
    /// An API key.
    ApiKey,
    /// Anything else (a custom auth layer).
    Other,
}

/// The authenticated caller: set by the JWT and API-key layers, read by rate limiting,
/// transforms, key extraction and logs.
///
/// Cheap to clone: strings and claims are reference-counted.
///
/// ```
/// use gateway_layers_core::{Identity, Tier};
///
/// let identity = Identity::new()
///     .with_subject("user-42")
///     .with_tier(Tier::PREMIUM)
///     .with_scopes(["orders:read"])
///     .with_claims(serde_json::json!({"sub": "user-42", "org": {"id": 7}}));
/// assert_eq!(identity.subject(), Some("user-42"));
/// assert!(identity.has_scope("orders:read"));
/// assert_eq!(identity.claim("/org/id").unwrap(), 7);
/// assert_eq!(identity.claim("sub").unwrap(), "user-42");
/// ```
#[derive(Debug, Clone)]
pub struct Identity {
    subject: Option<Arc<str>>,
    issuer: Option<Arc<str>>,
    tier: Option<Tier>,
    scopes: Arc<[Arc<str>]>,
    claims: Arc<Map<String, Value>>,
    api_key_id: Option<Arc<str>>,
    source: IdentitySource,
}

impl Default for Identity {
    fn default() -> Self {
        Self::new()
    }
}

impl Identity {
    /// An identity with nothing set, from [`IdentitySource::Other`].
    pub fn new() -> Self {
        Self {
            subject: None,
            issuer: None,
            tier: None,
            scopes: Arc::new([]),
            claims: Arc::new(Map::new()),
            api_key_id: None,
            source: IdentitySource::Other,
        }
    }

    /// Sets the subject (`sub`).
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<Arc<str>>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the issuer (`iss`).
    #[must_use]
    pub fn with_issuer(mut self, issuer: impl Into<Arc<str>>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Sets the tier.
    #[must_use]
    pub fn with_tier(mut self, tier: impl Into<Tier>) -> Self {
        self.tier = Some(tier.into());
        self
    }

    /// Sets the granted scopes or roles.
    #[must_use]
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the verified claims. A value that is not a JSON object leaves no claims.
    #[must_use]
    pub fn with_claims(mut self, claims: Value) -> Self {
        self.claims = Arc::new(match claims {
            Value::Object(map) => map,
            _ => Map::new(),
        });
        self
    }

    /// Sets the verified claims from a shared map.
    #[must_use]
    pub fn with_claims_map(mut self, claims: Arc<Map<String, Value>>) -> Self {
        self.claims = claims;
        self
    }

    /// Sets the id of the API key used (never the key itself).
    #[must_use]
    pub fn with_api_key_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.api_key_id = Some(id.into());
        self
    }

    /// Sets how the identity was established.
    #[must_use]
    pub fn with_source(mut self, source: IdentitySource) -> Self {
        self.source = source;
        self
    }

    /// The subject.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The subject, shared.
    pub fn subject_arc(&self) -> Option<&Arc<str>> {
        self.subject.as_ref()
    }

    /// The issuer.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The tier, if the auth layer assigned one.
    pub fn tier(&self) -> Option<&Tier> {
        self.tier.as_ref()
    }

    /// The granted scopes or roles.
    pub fn scopes(&self) -> &[Arc<str>] {
        &self.scopes
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| &**s == scope)
    }

    /// All verified claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// One claim: a top-level name (`org_id`) or a JSON Pointer (`/org/id`).
    pub fn claim(&self, name: &str) -> Option<&Value> {
        if name.starts_with('/') {
            pointer(&self.claims, name)
        } else {
            self.claims.get(name)
        }
    }

    /// The API key id, for identities from an API key.
    pub fn api_key_id(&self) -> Option<&str> {
        self.api_key_id.as_deref()
    }

    /// How the identity was established.
    pub fn source(&self) -> IdentitySource {
        self.source
    }
}

fn pointer<'a>(map: &'a Map<String, Value>, pointer: &str) -> Option<&'a Value> {
    let mut tokens = pointer.split('/').skip(1);
    let first = unescape(tokens.next()?);
    let mut value = map.get(first.as_ref())?;
    for token in tokens {
        let token = unescape(token);
        value = match value {
            Value::Object(map) => map.get(token.as_ref())?,
            Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_by_name_and_pointer() {
        let id = Identity::new().with_claims(json!({
            "sub": "u1", "a/b": 1, "roles": ["x", "y"], "org": {"id": "o9"}
        }));
        assert_eq!(id.claim("sub").unwrap(), "u1");
        assert_eq!(id.claim("/a~1b").unwrap(), 1);
        assert_eq!(id.claim("/roles/1").unwrap(), "y");
        assert_eq!(id.claim("/org/id").unwrap(), "o9");
        assert!(id.claim("/org/id/deeper").is_none());
        assert!(id.claim("/roles/9").is_none());
        assert!(id.claim("missing").is_none());
        assert!(Identity::new().with_claims(json!([1])).claims().is_empty());
    }

    #[test]
    fn tiers() {
        assert_eq!(Tier::from("premium"), Tier::PREMIUM);
        assert_eq!(Tier::from(String::from("gold")).as_str(), "gold");
        let id = Identity::new().with_tier("enterprise");
        assert_eq!(id.tier(), Some(&Tier::ENTERPRISE));
    }

    #[test]
    fn a_tier_named_at_run_time_is_the_same_key_as_a_constant() {
        use std::collections::{BTreeMap, HashMap};
        let runtime = Tier::new(String::from("premium"));
        assert_eq!(runtime, Tier::PREMIUM);
        assert_eq!(format!("{runtime:?} {runtime}"), "Tier(premium) premium");
        let by_hash = HashMap::from([(Tier::PREMIUM, 1), (Tier::from(String::from("gold")), 2)]);
        assert_eq!(by_hash.get(&runtime), Some(&1));
        assert_eq!(by_hash.get(&Tier::from("gold")), Some(&2));
        let by_order = BTreeMap::from([(Tier::FREE, 1), (runtime.clone(), 2)]);
        assert_eq!(by_order.get(&Tier::new("premium")), Some(&2));
        assert!(Tier::FREE < runtime, "ordered by name");
    }
}
