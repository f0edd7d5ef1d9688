//! Fixed test keys, their JWKS, and token minting.
//!
//! The private keys here are for tests only; they are public in this repository.
//!
//! ```
//! use gateway_layers_test_support::jwt::{self, TestAlg};
//!
//! let token = jwt::mint(TestAlg::Rs256, &jwt::claims("user-1", 300));
//! assert_eq!(token.split('.').count(), 3);
//! assert_eq!(jwt::jwks()["keys"].as_array().unwrap().len(), 3);
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// HMAC secret for HS256 (32 bytes: the minimum for HS256).
pub const HMAC_SECRET: &[u8] = b"gateway-layers-test-secret-32byt";

/// RSA 2048 private key (PKCS#8 PEM), kid `rsa-1`.
pub const RSA_PRIVATE_PEM: &str = include_str!("keys/rsa.pem");
/// RSA public key (SPKI PEM).
pub const RSA_PUBLIC_PEM: &str = include_str!("keys/rsa.pub.pem");
/// P-256 private key (PKCS#8 PEM), kid `ec-1`.
pub const EC_PRIVATE_PEM: &str = include_str!("keys/ec.pem");
/// P-256 public key (SPKI PEM).
pub const EC_PUBLIC_PEM: &str = include_str!("keys/ec.pub.pem");
/// Ed25519 private key (PKCS#8 PEM), kid `ed-1`.
pub const ED_PRIVATE_PEM: &str = include_str!("keys/ed.pem");
/// Ed25519 public key (SPKI PEM).
pub const ED_PUBLIC_PEM: &str = include_str!("keys/ed.pub.pem");

const RSA_N: &str = "rumJSDG-1kpxUwWJ-v0prAzQr66jT6k-6iLa9aG2S4WeoG1V2LuSH8ihFRz6V49amlTNwnJS0cETSTGSLNCzoYfnBQ0nlvuHNEFiyvdlp0xeE7aVgE8JreX3Em4ykbhFsj4jF6ITn4ipNGlNamqgmjgr_MbTeVEJgLq9dAFJ4afCZsD4-CgqAvjSAJBgqjLHcuQAM5bgoS4UMn3zpa3i4DCN9ilGIx9W7fXIcvWUoyjDMWZAeeTIS2AAUNJAIrjG3gZHQoouCOLPSoocs7tPeumV3r2yFhtUHrlIx_vQMCbs2_-pu4odfmIgXI0H227w_VopmELhRbsHADNiNug_vw";
const EC_X: &str = "N0p2-HylJd5YF8B2bxQfL4hdxRUr3bpJhM4uTilzqos";
const EC_Y: &str = "ThjDoa-O2A8LF97QI64SqCwcleBd3lite2kcIGOWKNw";
const ED_X: &str = "QFSr9CRQsTbxKeHU4fXvdXnItLRP1m9mhBiAj7x0E6o";

/// The test key families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestAlg {
    /// HMAC SHA-256 with [`HMAC_SECRET`], kid `hs-1`.
    Hs256,
    /// RSA PKCS#1 v1.5 SHA-256, kid `rsa-1`.
    Rs256,
    /// ECDSA P-256 SHA-256, kid `ec-1`.
    Es256,
    /// Ed25519, kid `ed-1`.
    EdDsa,
}

impl TestAlg {
    /// The JOSE algorithm.
    pub fn algorithm(self) -> Algorithm {
        match self {
            TestAlg::Hs256 => Algorithm::HS256,
            TestAlg::Rs256 => Algorithm::RS256,
            TestAlg::Es256 => Algorithm::ES256,
            TestAlg::EdDsa => Algorithm::EdDSA,
        }
    }

    /// The key id used in headers and the JWKS.
    pub fn kid(self) -> &'static str {
        match self {
            TestAlg::Hs256 => "hs-1",
            TestAlg::Rs256 => "rsa-1",
            TestAlg::Es256 => "ec-1",
            TestAlg::EdDsa => "ed-1",
        }
    }

    /// The signing key.
    ///
    /// # Panics
    ///
    /// Never for the embedded keys.
    pub fn encoding_key(self) -> EncodingKey {
        match self {
            TestAlg::Hs256 => EncodingKey::from_secret(HMAC_SECRET),
            TestAlg::Rs256 => EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).expect("rsa"),
            TestAlg::Es256 => EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).expect("ec"),
            TestAlg::EdDsa => EncodingKey::from_ed_pem(ED_PRIVATE_PEM.as_bytes()).expect("ed"),
        }
    }

    /// The public JWK (none for HS256).
    pub fn public_jwk(self) -> Option<Value> {
        match self {
            TestAlg::Hs256 => None,
            TestAlg::Rs256 => Some(json!({
                "kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": RSA_N, "e": "AQAB"
            })),
            TestAlg::Es256 => Some(json!({
                "kty": "EC", "kid": "ec-1", "alg": "ES256", "use": "sig", "crv": "P-256", "x": EC_X, "y": EC_Y
            })),
            TestAlg::EdDsa => Some(json!({
                "kty": "OKP", "kid": "ed-1", "alg": "EdDSA", "use": "sig", "crv": "Ed25519", "x": ED_X
            })),
        }
    }
}

/// The JWKS document with the three public keys.
pub fn jwks() -> Value {
    let keys: Vec<Value> = [TestAlg::Rs256, TestAlg::Es256, TestAlg::EdDsa]
        .iter()
        .filter_map(|a| a.public_jwk())
        .collect();
    json!({ "keys": keys })
}

/// Seconds since the Unix epoch.
///
/// # Panics
///
/// If the clock is before 1970.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Claims `{sub, iat, exp: now + ttl}`.
pub fn claims(sub: &str, ttl_secs: u64) -> Value {
    let now = now();
    json!({"sub": sub, "iat": now, "exp": now + ttl_secs})
}

/// Signs `claims` with the test key, `alg` and `kid` set.
///
/// # Panics
///
/// If signing fails (it does not for the embedded keys).
pub fn mint(alg: TestAlg, claims: &Value) -> String {
    let mut header = Header::new(alg.algorithm());
    header.kid = Some(alg.kid().to_owned());
    mint_with_header(alg, &header, claims)
}

/// Signs `claims` with the test key and a custom header.
///
/// # Panics
///
/// If signing fails.
pub fn mint_with_header(alg: TestAlg, header: &Header, claims: &Value) -> String {
    jsonwebtoken::encode(header, claims, &alg.encoding_key()).expect("sign")
}

/// Builds a token from raw JSON header and claims and an arbitrary signature
/// (base64url-encoded here): for malformed-token tests.
pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

/// Unpadded base64url.
pub fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = match chunk.len() {
            3 => (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]),
            2 => (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8),
            _ => u32::from(chunk[0]) << 16,
        };
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, decode, jwk::Jwk};

    #[test]
    fn minted_tokens_verify_with_public_keys_and_jwks() {
        for alg in [TestAlg::Rs256, TestAlg::Es256, TestAlg::EdDsa] {
            let token = mint(alg, &claims("u1", 60));
            let jwk: Jwk = serde_json::from_value(alg.public_jwk().unwrap()).unwrap();
            let key = DecodingKey::from_jwk(&jwk).unwrap();
            let data = decode::<Value>(&token, &key, &Validation::new(alg.algorithm())).unwrap();
            assert_eq!(data.claims["sub"], "u1");
            assert_eq!(data.header.kid.as_deref(), Some(alg.kid()));
        }
        let token = mint(TestAlg::Hs256, &claims("u2", 60));
        let key = DecodingKey::from_secret(HMAC_SECRET);
        assert!(decode::<Value>(&token, &key, &Validation::new(Algorithm::HS256)).is_ok());
        let pem = DecodingKey::from_rsa_pem(RSA_PUBLIC_PEM.as_bytes()).unwrap();
        let token = mint(TestAlg::Rs256, &claims("u3", 60));
        assert!(decode::<Value>(&token, &pem, &Validation::new(Algorithm::RS256)).is_ok());
    }

    #[test]
    fn base64url() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg");
        assert_eq!(b64(b"fo"), "Zm8");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(&[0xfb, 0xff]), "-_8");
    }
}
