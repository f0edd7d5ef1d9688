//! Verification keys: each key is pinned to exactly one algorithm.
//!
//! A key comes from an HMAC secret, a PEM public key, a JWK or a JWKS document. The
//! token's `alg` must equal the key's algorithm; `none` is not an algorithm here.

use std::{fmt, sync::Arc};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use gateway_layers_core::ConfigError;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// The longest `kid` looked up; longer ones are refused without a lookup.
pub const MAX_KID_LEN: usize = 256;

/// The most keys taken from one JWKS document (the rest are ignored).
pub const MAX_JWKS_KEYS: usize = 64;

/// Parses a JOSE `alg` value. Exact, case-sensitive names only (`RS256`, not `rs256`);
/// `none` in any casing is never accepted.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn is_rsa(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
    )
}

/// The shortest HMAC secret accepted for `alg`: the hash output size (RFC 7518 §3.2).
pub fn min_hmac_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

/// One verification key, pinned to one algorithm, with an optional key id.
#[derive(Clone)]
pub struct JwtKey {
    kid: Option<Arc<str>>,
    alg: Algorithm,
    key: DecodingKey,
    /// For HMAC keys, the keyed hash state prepared once (the inner and outer padded
    /// key blocks), so a verification does not redo the key schedule.
    hmac: Option<aws_lc_rs::hmac::Key>,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn key_error(field: &'static str, reason: impl fmt::Display) -> ConfigError {
    ConfigError::invalid(field, reason.to_string())
}

impl JwtKey {
    /// An HMAC secret for `HS256`, `HS384` or `HS512`. A secret shorter than the hash
    /// output (32, 48, 64 bytes) is a configuration error, and so is an empty one.
    pub fn hmac(secret: impl AsRef<[u8]>, alg: Algorithm) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        if !is_hmac(alg) {
            return Err(key_error(
                "jwt.key.alg",
                format!("{alg:?} is not an HMAC algorithm"),
            ));
        }
        if secret.len() < min_hmac_len(alg) {
            return Err(key_error(
                "jwt.key.secret",
                format!(
                    "an {alg:?} secret must be at least {} bytes, got {}",
                    min_hmac_len(alg),
                    secret.len()
                ),
            ));
        }
        let hmac_alg = match alg {
            Algorithm::HS384 => aws_lc_rs::hmac::HMAC_SHA384,
            Algorithm::HS512 => aws_lc_rs::hmac::HMAC_SHA512,
            _ => aws_lc_rs::hmac::HMAC_SHA256,
        };
        Ok(Self {
            kid: None,
            alg,
            key: DecodingKey::from_secret(secret),
            hmac: Some(aws_lc_rs::hmac::Key::new(hmac_alg, secret)),
        })
    }

    /// A PEM public key (SPKI, or PKCS#1 for RSA) for an RSA, ECDSA or EdDSA algorithm.
    pub fn from_pem(pem: impl AsRef<[u8]>, alg: Algorithm) -> Result<Self, ConfigError> {
        let pem = pem.as_ref();
        let key = match alg {
            a if is_rsa(a) => DecodingKey::from_rsa_pem(pem),
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
            _ => {
                return Err(key_error(
                    "jwt.key.alg",
                    format!("{alg:?} keys are secrets, not PEM public keys"),
                ));
            }
        }
        .map_err(|e| key_error("jwt.key.pem", e))?;
        Ok(Self {
            kid: None,
            alg,
            key,
            hmac: None,
        })
    }

    /// A key from one JWK (a JSON object). The JWK's `alg` pins the algorithm; without
    /// one, `fallback_alg` is used, else it is inferred where unambiguous (EC curve,
    /// Ed25519) or `RS256` for RSA. `use` other than `sig`, `key_ops` without `verify`,
    /// and unknown key types are refused. `x5c`, `x5u` and private members are ignored.
    pub fn from_jwk(jwk: &Value, fallback_alg: Option<Algorithm>) -> Result<Self, ConfigError> {
        let obj = jwk
            .as_object()
            .ok_or_else(|| key_error("jwt.jwk", "a JWK must be a JSON object"))?;
        let text = |name: &'static str| -> Result<Option<&str>, ConfigError> {
            match obj.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(key_error("jwt.jwk", format!("`{name}` must be a string"))),
            }
        };
        let required = |name: &'static str| -> Result<&str, ConfigError> {
            text(name)?.ok_or_else(|| key_error("jwt.jwk", format!("`{name}` is missing")))
        };
        if let Some(usage) = text("use")?
            && usage != "sig"
        {
            return Err(key_error(
                "jwt.jwk",
                format!("`use` is {usage:?}, not \"sig\""),
            ));
        }
        if let Some(ops) = obj.get("key_ops") {
            let verifies = ops
                .as_array()
                .is_some_and(|ops| ops.iter().any(|op| op == "verify"));
            if !verifies {
                return Err(key_error("jwt.jwk", "`key_ops` does not allow \"verify\""));
            }
        }
        let declared = match text("alg")? {
            Some(name) => Some(
                parse_algorithm(name)
                    .ok_or_else(|| key_error("jwt.jwk", format!("unsupported `alg` {name:?}")))?,
            ),
            None => None,
        };
        let kty = required("kty")?;
        let (alg, key) = match kty {
            "RSA" => {
                let alg = declared.or(fallback_alg).unwrap_or(Algorithm::RS256);
                if !is_rsa(alg) {
                    return Err(key_error("jwt.jwk", "an RSA key with a non-RSA `alg`"));
                }
                let n = b64(required("n")?, "n")?;
                let e = b64(required("e")?, "e")?;
                let n_trimmed = n.iter().skip_while(|b| **b == 0).count();
                if n_trimmed < 256 {
                    return Err(key_error(
                        "jwt.jwk",
                        "RSA keys shorter than 2048 bits are refused",
                    ));
                }
                (alg, DecodingKey::from_rsa_raw_components(&n, &e))
            }
            "EC" => {
                let crv = required("crv")?;
                let (alg, size) = match crv {
                    "P-256" => (Algorithm::ES256, 32),
                    "P-384" => (Algorithm::ES384, 48),
                    other => {
                        return Err(key_error("jwt.jwk", format!("unsupported curve {other:?}")));
                    }
                };
                if declared.or(fallback_alg).is_some_and(|a| a != alg) {
                    return Err(key_error("jwt.jwk", "`alg` does not match the curve"));
                }
                let x = b64(required("x")?, "x")?;
                let y = b64(required("y")?, "y")?;
                if x.len() != size || y.len() != size {
                    return Err(key_error("jwt.jwk", "EC coordinates of the wrong length"));
                }
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (alg, DecodingKey::from_ec_der(&point))
            }
            "OKP" => {
                if required("crv")? != "Ed25519" {
                    return Err(key_error("jwt.jwk", "only Ed25519 OKP keys are supported"));
                }
                if declared
                    .or(fallback_alg)
                    .is_some_and(|a| a != Algorithm::EdDSA)
                {
                    return Err(key_error(
                        "jwt.jwk",
                        "an Ed25519 key with a non-EdDSA `alg`",
                    ));
                }
                let x = b64(required("x")?, "x")?;
                if x.len() != 32 {
                    return Err(key_error("jwt.jwk", "an Ed25519 key must be 32 bytes"));
                }
                (Algorithm::EdDSA, DecodingKey::from_ed_der(&x))
            }
            "oct" => {
                let alg = declared.or(fallback_alg).ok_or_else(|| {
                    key_error("jwt.jwk", "an `oct` key needs an `alg` (HS256/384/512)")
                })?;
                let secret = b64(required("k")?, "k")?;
                return Self::hmac(secret, alg).map(|k| k.with_kid_opt(text("kid").ok().flatten()));
            }
            other => return Err(key_error("jwt.jwk", format!("unsupported `kty` {other:?}"))),
        };
        Ok(Self {
            kid: text("kid")?.map(Arc::from),
            alg,
            key,
            hmac: None,
        })
    }

    /// Sets the key id matched against the token's `kid`.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    fn with_kid_opt(mut self, kid: Option<&str>) -> Self {
        self.kid = kid.map(Arc::from);
        self
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Whether this is an HMAC secret.
    pub fn is_symmetric(&self) -> bool {
        is_hmac(self.alg)
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    /// The prepared HMAC key, for HMAC algorithms.
    pub(crate) fn hmac_key(&self) -> Option<&aws_lc_rs::hmac::Key> {
        self.hmac.as_ref()
    }
}

fn b64(value: &str, name: &'static str) -> Result<Vec<u8>, ConfigError> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| key_error("jwt.jwk", format!("`{name}` is not unpadded base64url")))
}

/// A set of keys (static, or the current content of a remote JWKS).
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Arc<JwtKey>>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key.
    #[must_use]
    pub fn with(mut self, key: JwtKey) -> Self {
        self.keys.push(Arc::new(key));
        self
    }

    /// Parses a JWKS document (`{"keys": [...]}`). Keys that cannot be used (encryption
    /// keys, unknown types, weak RSA) are skipped; an empty result is an error.
    /// `allow_symmetric: false` also skips `oct` keys (used for remote documents).
    pub fn from_jwks(document: &Value, allow_symmetric: bool) -> Result<Self, ConfigError> {
        let keys = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| key_error("jwt.jwks", "a JWKS document needs a `keys` array"))?;
        let mut set = Self::new();
        for jwk in keys.iter().take(MAX_JWKS_KEYS) {
            if !allow_symmetric && jwk.get("kty").and_then(Value::as_str) == Some("oct") {
                continue;
            }
            match JwtKey::from_jwk(jwk, None) {
                Ok(key) => set.keys.push(Arc::new(key)),
                Err(error) => {
                    tracing::debug!(target: "gateway::jwt", event = "jwt.jwks.key_skipped", %error);
                }
            }
        }
        if set.keys.is_empty() {
            return Err(key_error("jwt.jwks", "no usable signing key in the JWKS"));
        }
        Ok(set)
    }

    /// Parses a JWKS document from bytes.
    pub fn from_jwks_bytes(bytes: &[u8], allow_symmetric: bool) -> Result<Self, ConfigError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| key_error("jwt.jwks", e.to_string()))?;
        Self::from_jwks(&value, allow_symmetric)
    }

    /// The keys.
    pub fn keys(&self) -> &[Arc<JwtKey>] {
        &self.keys
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token. With a `kid`: the key with exactly that id, which must be
    /// pinned to `alg` (no fallback to another key). Without a `kid` — or when no key
    /// of the set has an id at all (a plain static secret or PEM) — the single key
    /// pinned to `alg`; several candidates are ambiguous.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selection<'_> {
        let kid = kid.filter(|_| self.keys.iter().any(|k| k.kid.is_some()));
        match kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(key) if key.alg == alg => Selection::Found(key),
                Some(_) => Selection::WrongAlg,
                None => Selection::UnknownKid,
            },
            None => {
                let mut found = self.keys.iter().filter(|k| k.alg == alg);
                match (found.next(), found.next()) {
                    (Some(key), None) => Selection::Found(key),
                    (Some(_), Some(_)) => Selection::Ambiguous,
                    (None, _) => Selection::WrongAlg,
                }
            }
        }
    }

    /// Whether some key is pinned to `alg`.
    pub(crate) fn has_alg(&self, alg: Algorithm) -> bool {
        self.keys.iter().any(|k| k.alg == alg)
    }

    pub(crate) fn same_keys(&self, other: &KeySet) -> bool {
        self.keys.len() == other.keys.len()
            && self.keys.iter().zip(&other.keys).all(|(a, b)| {
                a.kid == b.kid
                    && a.alg == b.alg
                    && format!("{:?}", a.key.kind()) == format!("{:?}", b.key.kind())
                    && key_bytes(&a.key) == key_bytes(&b.key)
            })
    }
}

fn key_bytes(key: &DecodingKey) -> Vec<u8> {
    match key.kind() {
        jsonwebtoken::DecodingKeyKind::SecretOrDer(bytes) => bytes.clone(),
        jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, e } => {
            let mut out = n.clone();
            out.push(0xff);
            out.extend_from_slice(e);
            out
        }
    }
}

pub(crate) enum Selection<'a> {
    Found(&'a Arc<JwtKey>),
    UnknownKid,
    WrongAlg,
    Ambiguous,
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_layers_test_support::jwt::{self, TestAlg};

    #[test]
    fn algorithms_are_exact() {
        assert_eq!(parse_algorithm("RS256"), Some(Algorithm::RS256));
        assert_eq!(parse_algorithm("EdDSA"), Some(Algorithm::EdDSA));
        for name in [
            "none", "None", "NONE", "nOnE", "rs256", "HS256 ", "ES512", "",
        ] {
            assert_eq!(parse_algorithm(name), None, "{name}");
        }
    }

    #[test]
    fn short_and_empty_hmac_secrets_are_config_errors() {
        assert!(JwtKey::hmac(b"", Algorithm::HS256).is_err());
        assert!(JwtKey::hmac([7u8; 31], Algorithm::HS256).is_err());
        assert!(JwtKey::hmac([7u8; 32], Algorithm::HS256).is_ok());
        assert!(JwtKey::hmac([7u8; 47], Algorithm::HS384).is_err());
        assert!(JwtKey::hmac([7u8; 63], Algorithm::HS512).is_err());
        assert!(JwtKey::hmac([7u8; 64], Algorithm::HS512).is_ok());
        assert!(JwtKey::hmac([7u8; 64], Algorithm::RS256).is_err());
    }

    #[test]
    fn jwks_of_test_support_parses_pinned() {
        let set = KeySet::from_jwks(&jwt::jwks(), false).unwrap();
        assert_eq!(set.keys().len(), 3);
        assert!(matches!(
            set.select(Some("rsa-1"), Algorithm::RS256),
            Selection::Found(_)
        ));
        assert!(matches!(
            set.select(Some("rsa-1"), Algorithm::HS256),
            Selection::WrongAlg
        ));
        assert!(matches!(
            set.select(Some("nope"), Algorithm::RS256),
            Selection::UnknownKid
        ));
        assert!(matches!(
            set.select(None, Algorithm::ES256),
            Selection::Found(_)
        ));
    }

    #[test]
    fn bad_jwks_are_refused() {
        let enc = serde_json::json!({"keys": [{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]});
        assert!(KeySet::from_jwks(&enc, false).is_err());
        let mut rsa = TestAlg::Rs256.public_jwk().unwrap();
        rsa["alg"] = "HS256".into();
        assert!(JwtKey::from_jwk(&rsa, None).is_err());
        let oct = serde_json::json!({"kty":"oct","k":"c2hvcnQ","alg":"HS256"});
        assert!(JwtKey::from_jwk(&oct, None).is_err());
        assert!(KeySet::from_jwks(&serde_json::json!({"nokeys": []}), false).is_err());
        let weak = serde_json::json!({"kty":"RSA","n":"AQAB","e":"AQAB"});
        assert!(JwtKey::from_jwk(&weak, None).is_err());
    }
}
