//! The pure part: parse a compact JWS strictly, verify its signature with a pinned
//! key, validate its claims against a clock value. No I/O.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use gateway_layers_core::Identity;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{
    error::AuthError,
    keys::{JwtKey, MAX_KID_LEN, parse_algorithm},
};

/// The default clock-skew leeway for `exp`, `nbf` and `iat`: 30 seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// A parsed (not yet verified) token.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub(crate) alg: Algorithm,
    pub(crate) info: Arc<HeadInfo>,
    /// `header.payload`, the signing input.
    pub(crate) message: &'a str,
    pub(crate) signature: &'a str,
    pub(crate) payload: Vec<u8>,
    pub(crate) claims: Map<String, Value>,
}

/// The header members read. Unknown members are ignored; `jku`, `x5u`, `x5c` and
/// `jwk` are never used. Duplicate known members make the header invalid.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Vec<String>>,
}

fn is_b64url(segment: &str) -> bool {
    segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The header of a token whose segments passed the syntax checks.
#[derive(Debug)]
pub(crate) struct Head<'a> {
    pub(crate) alg: Algorithm,
    info: Arc<HeadInfo>,
    payload: &'a str,
    message: &'a str,
    signature: &'a str,
}

/// The parts of a header that matter, once validated.
#[derive(Debug)]
pub(crate) struct HeadInfo {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    pub(crate) typ: Option<String>,
}

/// Most distinct header segments remembered per layer.
const MEMO_LIMIT: usize = 256;

/// Validated header segments: tokens of one issuer share a few headers, so each is
/// decoded and checked once. Bounded; when full, new headers are simply parsed.
#[derive(Debug, Default)]
pub(crate) struct HeaderMemo {
    map: RwLock<HashMap<Box<str>, Arc<HeadInfo>>>,
}

impl HeaderMemo {
    fn get(&self, segment: &str) -> Option<Arc<HeadInfo>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(segment)
            .cloned()
    }

    fn put(&self, segment: &str, info: Arc<HeadInfo>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() < MEMO_LIMIT {
            map.insert(segment.into(), info);
        }
    }
}

/// First stage: exactly three non-empty unpadded base64url segments, a JSON object
/// header with a known `alg`, understood `crit` members only, a sane `kid`.
pub(crate) fn parse_head<'a>(
    token: &'a str,
    understood_crit: &[String],
    memo: Option<&HeaderMemo>,
) -> Result<Head<'a>, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    if header.is_empty() || payload.is_empty() {
        return Err(AuthError::Malformed);
    }
    let message = &token[..header.len() + 1 + payload.len()];
    if let Some(info) = memo.and_then(|m| m.get(header)) {
        return Ok(Head {
            alg: info.alg,
            info,
            payload,
            message,
            signature,
        });
    }
    if !is_b64url(header) {
        return Err(AuthError::Malformed);
    }
    let header_bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    let raw: RawHeader = match serde_json::from_slice(&header_bytes) {
        Ok(raw) => raw,
        Err(_) => {
            // Tell `alg: none` apart from other garbage, for logs and tests.
            let value: Option<Value> = serde_json::from_slice(&header_bytes).ok();
            if let Some(alg) = value
                .as_ref()
                .and_then(|v| v.get("alg"))
                .and_then(Value::as_str)
                && alg.trim().eq_ignore_ascii_case("none")
            {
                return Err(AuthError::AlgNone);
            }
            return Err(AuthError::Malformed);
        }
    };
    if raw.alg.trim().eq_ignore_ascii_case("none") {
        return Err(AuthError::AlgNone);
    }
    let alg = parse_algorithm(&raw.alg).ok_or(AuthError::AlgNotAccepted)?;
    if let Some(crit) = &raw.crit {
        // RFC 7515 §4.1.11: a non-empty list of names this recipient understands.
        if crit.is_empty() || crit.iter().any(|name| !understood_crit.contains(name)) {
            return Err(AuthError::UnsupportedCrit);
        }
    }
    if let Some(kid) = &raw.kid
        && (kid.is_empty() || kid.len() > MAX_KID_LEN || kid.chars().any(char::is_control))
    {
        return Err(AuthError::InvalidKid);
    }
    let info = Arc::new(HeadInfo {
        alg,
        kid: raw.kid,
        typ: raw.typ,
    });
    if let Some(memo) = memo {
        memo.put(header, info.clone());
    }
    Ok(Head {
        alg,
        info,
        payload,
        message,
        signature,
    })
}

impl<'a> Head<'a> {
    /// Second stage: payload and signature must be base64url, the payload a JSON
    /// object. (Split from the first so a cache hit skips scanning the whole token.)
    pub(crate) fn into_parsed(self) -> Result<Parsed<'a>, AuthError> {
        // The payload's alphabet is checked by the strict decoder below (unpadded
        // base64url only, same `Malformed`), so it is scanned once.
        if !is_b64url(self.signature) {
            return Err(AuthError::Malformed);
        }
        if self.signature.is_empty() {
            return Err(if is_b64url(self.payload) {
                AuthError::BadSignature
            } else {
                AuthError::Malformed
            });
        }
        let payload_bytes = URL_SAFE_NO_PAD
            .decode(self.payload)
            .map_err(|_| AuthError::Malformed)?;
        let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&payload_bytes) else {
            return Err(AuthError::Malformed);
        };
        Ok(Parsed {
            alg: self.alg,
            info: self.info,
            message: self.message,
            signature: self.signature,
            payload: payload_bytes,
            claims,
        })
    }
}

/// Both stages.
#[cfg(test)]
pub(crate) fn parse<'a>(
    token: &'a str,
    understood_crit: &[String],
) -> Result<Parsed<'a>, AuthError> {
    parse_head(token, understood_crit, None)?.into_parsed()
}

/// Verifies a compact JWS with one key and returns its payload bytes, without any
/// claim validation (the payload need not be JSON). For known-answer tests and for
/// callers that validate the payload themselves.
pub fn verify_jws(token: &str, key: &JwtKey) -> Result<Vec<u8>, AuthError> {
    let head = parse_head(token, &[], None)?;
    verify_raw(head.message, head.signature, head.alg, key)?;
    URL_SAFE_NO_PAD
        .decode(head.payload)
        .map_err(|_| AuthError::Malformed)
}

/// Verifies the signature of `parsed` with `key`; the key's pinned algorithm must be
/// the token's `alg`.
pub(crate) fn verify_signature(parsed: &Parsed<'_>, key: &JwtKey) -> Result<(), AuthError> {
    verify_raw(parsed.message, parsed.signature, parsed.alg, key)
}

/// Signature check of a compact JWS split into signing input and signature.
pub(crate) fn verify_raw(
    message: &str,
    signature: &str,
    alg: Algorithm,
    key: &JwtKey,
) -> Result<(), AuthError> {
    if key.algorithm() != alg {
        return Err(AuthError::AlgNotAccepted);
    }
    if let Some(hmac) = key.hmac_key() {
        // The tag (at most 64 bytes for HS512) is decoded on the stack, and the key
        // schedule was prepared when the key was built. `hmac::verify` compares in
        // constant time.
        let mut tag = [0u8; 64];
        let len = URL_SAFE_NO_PAD
            .decode_slice(signature, &mut tag)
            .map_err(|_| AuthError::BadSignature)?;
        return aws_lc_rs::hmac::verify(hmac, message.as_bytes(), &tag[..len])
            .map_err(|_| AuthError::BadSignature);
    }
    match jsonwebtoken::crypto::verify(signature, message.as_bytes(), key.decoding_key(), alg) {
        Ok(true) => Ok(()),
        _ => Err(AuthError::BadSignature),
    }
}

/// How `sub` must look.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum SubjectMatcher {
    /// One of these exact values.
    OneOf(Vec<String>),
    /// Starts with this prefix.
    Prefix(String),
}

impl SubjectMatcher {
    fn matches(&self, sub: &str) -> bool {
        match self {
            SubjectMatcher::OneOf(values) => values.iter().any(|v| v == sub),
            SubjectMatcher::Prefix(prefix) => sub.starts_with(prefix.as_str()),
        }
    }
}

/// What the claims of a verified token must satisfy.
///
/// Defaults: `exp` required, 30 s leeway, no `aud` accepted (a token carrying `aud`
/// is refused until audiences are configured), no issuer, type, subject or lifetime
/// constraint.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    pub(crate) leeway: u64,
    pub(crate) require_exp: bool,
    pub(crate) max_lifetime: Option<u64>,
    pub(crate) issuers: Vec<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) subject: Option<SubjectMatcher>,
    pub(crate) types: Vec<String>,
    pub(crate) required: Vec<String>,
}

impl Default for ClaimRules {
    fn default() -> Self {
        Self {
            leeway: DEFAULT_LEEWAY_SECS,
            require_exp: true,
            max_lifetime: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            subject: None,
            types: Vec::new(),
            required: Vec::new(),
        }
    }
}

/// What validation learned, for the cache.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validity {
    pub(crate) exp: Option<u64>,
}

fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                Ok(Some(v))
            } else if let Some(f) = n.as_f64()
                && f.is_finite()
                && (0.0..1e15).contains(&f)
            {
                Ok(Some(f as u64))
            } else {
                Err(AuthError::InvalidClaimType)
            }
        }
        Some(_) => Err(AuthError::InvalidClaimType),
    }
}

fn optional_str<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AuthError::InvalidClaimType),
    }
}

fn type_matches(expected: &str, actual: &str) -> bool {
    let strip = |s: &str| -> String {
        let lower = s.to_ascii_lowercase();
        lower
            .strip_prefix("application/")
            .map(str::to_owned)
            .unwrap_or(lower)
    };
    strip(expected) == strip(actual)
}

impl ClaimRules {
    /// Validates the claims of `identity` and the header type at `now` (Unix seconds).
    pub(crate) fn validate(
        &self,
        identity: &Identity,
        typ: Option<&str>,
        now: u64,
    ) -> Result<Validity, AuthError> {
        let claims = identity.claims();
        // Types of registered claims first: a wrongly typed claim is never "absent".
        let exp = numeric_date(claims, "exp")?;
        let nbf = numeric_date(claims, "nbf")?;
        let iat = numeric_date(claims, "iat")?;
        let iss = optional_str(claims, "iss")?;
        let sub = optional_str(claims, "sub")?;
        optional_str(claims, "jti")?;
        let aud: Vec<&str> = match claims.get("aud") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(item.as_str().ok_or(AuthError::InvalidClaimType)?);
                }
                out
            }
            Some(_) => return Err(AuthError::InvalidClaimType),
        };

        match exp {
            Some(exp) if now >= exp.saturating_add(self.leeway) => return Err(AuthError::Expired),
            None if self.require_exp => return Err(AuthError::MissingExp),
            _ => {}
        }
        if let Some(nbf) = nbf
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(AuthError::NotYetValid);
        }
        if let Some(iat) = iat
            && iat > now.saturating_add(self.leeway)
        {
            return Err(AuthError::IssuedInFuture);
        }
        if let Some(max) = self.max_lifetime {
            let exp = exp.ok_or(AuthError::MissingExp)?;
            let start = iat.unwrap_or(now);
            if exp.saturating_sub(start) > max {
                return Err(AuthError::LifetimeTooLong);
            }
        }
        if !self.issuers.is_empty() {
            match iss {
                Some(iss) if self.issuers.iter().any(|i| i == iss) => {}
                Some(_) => return Err(AuthError::WrongIssuer),
                None => return Err(AuthError::MissingClaim),
            }
        }
        if self.audiences.is_empty() {
            if !aud.is_empty() {
                return Err(AuthError::UnexpectedAudience);
            }
        } else if aud.is_empty() {
            return Err(AuthError::MissingClaim);
        } else if !aud
            .iter()
            .any(|a| self.audiences.iter().any(|want| want == a))
        {
            return Err(AuthError::WrongAudience);
        }
        if let Some(matcher) = &self.subject {
            match sub {
                Some(sub) if matcher.matches(sub) => {}
                Some(_) => return Err(AuthError::WrongSubject),
                None => return Err(AuthError::MissingClaim),
            }
        }
        if !self.types.is_empty() {
            match typ {
                Some(typ) if self.types.iter().any(|t| type_matches(t, typ)) => {}
                _ => return Err(AuthError::WrongType),
            }
        }
        for name in &self.required {
            if identity.claim(name).is_none_or(Value::is_null) {
                return Err(AuthError::MissingClaim);
            }
        }
        Ok(Validity { exp })
    }
}

/// Collects a grant list (scopes or roles) from a claim value (see
/// [`Identity::claim`]): a space-separated string or an array of strings. Any other
/// type is an error.
pub(crate) fn grants(value: Option<&Value>, out: &mut Vec<Arc<str>>) -> Result<(), AuthError> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            out.extend(s.split(' ').filter(|s| !s.is_empty()).map(Arc::from));
            Ok(())
        }
        Some(Value::Array(items)) => {
            for item in items {
                out.push(Arc::from(item.as_str().ok_or(AuthError::InvalidClaimType)?));
            }
            Ok(())
        }
        Some(_) => Err(AuthError::InvalidClaimType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Identity {
        assert!(v.is_object());
        Identity::new().with_claims(v)
    }

    #[test]
    fn time_claims() {
        let rules = ClaimRules::default();
        let now = 1_000_000;
        assert!(
            rules
                .validate(&map(json!({"exp": now + 10})), None, now)
                .is_ok()
        );
        // Inside the leeway.
        assert!(
            rules
                .validate(&map(json!({"exp": now - 10})), None, now)
                .is_ok()
        );
        assert_eq!(
            rules
                .validate(&map(json!({"exp": now - 31})), None, now)
                .unwrap_err(),
            AuthError::Expired
        );
        assert_eq!(
            rules
                .validate(&map(json!({"sub": "x"})), None, now)
                .unwrap_err(),
            AuthError::MissingExp
        );
        assert_eq!(
            rules
                .validate(&map(json!({"exp": now + 100, "nbf": now + 100})), None, now)
                .unwrap_err(),
            AuthError::NotYetValid
        );
        assert_eq!(
            rules
                .validate(&map(json!({"exp": "99999999999"})), None, now)
                .unwrap_err(),
            AuthError::InvalidClaimType
        );
        assert_eq!(
            rules
                .validate(&map(json!({"exp": now + 10, "nbf": "0"})), None, now)
                .unwrap_err(),
            AuthError::InvalidClaimType
        );
        assert_eq!(
            rules
                .validate(&map(json!({"exp": -5})), None, now)
                .unwrap_err(),
            AuthError::InvalidClaimType
        );
    }

    #[test]
    fn audience_issuer_type_subject_lifetime() {
        let now = 1_000_000;
        let mut rules = ClaimRules::default();
        assert_eq!(
            rules
                .validate(&map(json!({"exp": now + 10, "aud": "api"})), None, now)
                .unwrap_err(),
            AuthError::UnexpectedAudience
        );
        rules.audiences = vec!["api".into(), "web".into()];
        rules.issuers = vec!["https://issuer".into()];
        rules.types = vec!["at+jwt".into()];
        rules.subject = Some(SubjectMatcher::Prefix("user-".into()));
        rules.max_lifetime = Some(3600);
        let ok = json!({"exp": now + 10, "iat": now, "aud": ["x", "web"], "iss": "https://issuer", "sub": "user-1"});
        assert!(
            rules
                .validate(&map(ok.clone()), Some("application/AT+JWT"), now)
                .is_ok()
        );
        assert_eq!(
            rules
                .validate(&map(ok.clone()), Some("JWT"), now)
                .unwrap_err(),
            AuthError::WrongType
        );
        let mut bad = ok.clone();
        bad["aud"] = json!(["x"]);
        assert_eq!(
            rules.validate(&map(bad), Some("at+jwt"), now).unwrap_err(),
            AuthError::WrongAudience
        );
        let mut bad = ok.clone();
        bad["iss"] = json!("https://evil");
        assert_eq!(
            rules.validate(&map(bad), Some("at+jwt"), now).unwrap_err(),
            AuthError::WrongIssuer
        );
        let mut bad = ok.clone();
        bad["sub"] = json!("admin");
        assert_eq!(
            rules.validate(&map(bad), Some("at+jwt"), now).unwrap_err(),
            AuthError::WrongSubject
        );
        let mut bad = ok.clone();
        bad["exp"] = json!(now + 7200);
        assert_eq!(
            rules.validate(&map(bad), Some("at+jwt"), now).unwrap_err(),
            AuthError::LifetimeTooLong
        );
        let mut bad = ok;
        bad["aud"] = json!(7);
        assert_eq!(
            rules.validate(&map(bad), Some("at+jwt"), now).unwrap_err(),
            AuthError::InvalidClaimType
        );
    }

    #[test]
    fn strict_segments() {
        assert_eq!(parse("a.b", &[]).unwrap_err(), AuthError::Malformed);
        assert_eq!(parse("a.b.c.d", &[]).unwrap_err(), AuthError::Malformed);
        assert_eq!(
            parse("eyJhbGciOiJIUzI1NiJ9.b.", &[]).unwrap_err(),
            AuthError::BadSignature
        );
        assert_eq!(parse("YQ==.b.c", &[]).unwrap_err(), AuthError::Malformed);
        // A bad payload alphabet is `Malformed` with or without a signature.
        for token in [
            "eyJhbGciOiJIUzI1NiJ9.b*.",
            "eyJhbGciOiJIUzI1NiJ9.e30=.c2ln",
            "eyJhbGciOiJIUzI1NiJ9.e3+/.c2ln",
        ] {
            assert_eq!(
                parse(token, &[]).unwrap_err(),
                AuthError::Malformed,
                "{token}"
            );
        }
        assert!(parse("eyJhbGciOiJIUzI1NiJ9.e30.c2ln", &[]).is_ok());
        assert_eq!(parse("a b.b.c", &[]).unwrap_err(), AuthError::Malformed);
    }

    #[test]
    fn prepared_hmac_keys_verify_every_size_and_refuse_tampering() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        let secret = [7u8; 64];
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let key = JwtKey::hmac(secret, alg).unwrap();
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(alg),
                &serde_json::json!({"sub": "u"}),
                &jsonwebtoken::EncodingKey::from_secret(&secret),
            )
            .unwrap();
            assert_eq!(verify_jws(&token, &key).unwrap(), br#"{"sub":"u"}"#);
            let (message, signature) = token.rsplit_once('.').unwrap();
            let tag = B64.decode(signature).unwrap();
            let with_tag = |tag: &[u8]| format!("{message}.{}", B64.encode(tag));
            let mut flipped = tag.clone();
            flipped[0] ^= 1;
            let mut longer = tag.clone();
            longer.extend_from_slice(&[0; 40]);
            for bad in [
                with_tag(&flipped),
                with_tag(&tag[..tag.len() - 1]),
                with_tag(&longer),
                with_tag(&[0; 100]),
                format!("{message}.{}", &signature[..signature.len() - 1]),
            ] {
                assert_eq!(
                    verify_jws(&bad, &key).unwrap_err(),
                    AuthError::BadSignature,
                    "{alg:?} {bad}"
                );
            }
            // The key is pinned: another HMAC size is not accepted with it.
            let other = if alg == Algorithm::HS256 {
                Algorithm::HS512
            } else {
                Algorithm::HS256
            };
            let other_key = JwtKey::hmac(secret, other).unwrap();
            assert_eq!(
                verify_jws(&token, &other_key).unwrap_err(),
                AuthError::AlgNotAccepted
            );
        }
    }

    #[test]
    fn header_memo_remembers_only_valid_headers() {
        let memo = HeaderMemo::default();
        let good = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln";
        let first = parse_head(good, &[], Some(&memo)).unwrap();
        let second = parse_head(good, &[], Some(&memo)).unwrap();
        assert!(Arc::ptr_eq(&first.info, &second.info));
        // {"alg":"none"} is refused every time and never remembered.
        let none = "eyJhbGciOiJub25lIn0.e30.c2ln";
        for _ in 0..2 {
            assert_eq!(
                parse_head(none, &[], Some(&memo)).unwrap_err(),
                AuthError::AlgNone
            );
        }
        assert_eq!(memo.map.read().unwrap().len(), 1);
        // A remembered header still gets its payload and signature checked.
        let bad_payload = "eyJhbGciOiJSUzI1NiJ9.e30=.c2ln";
        let head = parse_head(bad_payload, &[], Some(&memo)).unwrap();
        assert_eq!(head.into_parsed().unwrap_err(), AuthError::Malformed);
    }

    #[test]
    fn required_claims_by_name_or_pointer() {
        let now = 1_000_000;
        let rules = ClaimRules {
            required: vec!["tenant".into(), "/org/id".into()],
            ..ClaimRules::default()
        };
        let ok = json!({"exp": now + 10, "tenant": "t", "org": {"id": 7}});
        assert!(rules.validate(&map(ok), None, now).is_ok());
        for bad in [
            json!({"exp": now + 10, "org": {"id": 7}}),
            json!({"exp": now + 10, "tenant": "t", "org": {"id": null}}),
            json!({"exp": now + 10, "tenant": "t", "org": 7}),
        ] {
            assert_eq!(
                rules.validate(&map(bad), None, now).unwrap_err(),
                AuthError::MissingClaim
            );
        }
    }

    #[test]
    fn grants_from_string_or_array() {
        let claims =
            map(json!({"scope": "a  b", "roles": ["x"], "bad": [1], "realm": {"roles": ["r"]}}));
        let mut out = Vec::new();
        grants(claims.claim("scope"), &mut out).unwrap();
        grants(claims.claim("roles"), &mut out).unwrap();
        grants(claims.claim("/realm/roles"), &mut out).unwrap();
        assert_eq!(
            out.iter().map(|s| &**s).collect::<Vec<_>>(),
            ["a", "b", "x", "r"]
        );
        assert!(grants(claims.claim("bad"), &mut out).is_err());
    }
}
