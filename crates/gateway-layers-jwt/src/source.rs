//! Where tokens are read from. Exactly one token may be present; two are refused.

use std::borrow::Cow;

use gateway_layers_core::ConfigError;
use http::{HeaderMap, HeaderName, Uri, header};

use crate::error::AuthError;

/// The default token size limit: 8 KiB.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The places a token is looked for.
///
/// Default: `Authorization: Bearer <token>` only (scheme case-insensitive). Custom
/// headers, cookies and (explicitly) a query parameter can be added. If more than one
/// place holds a token, or a header appears twice, the request is refused.
#[derive(Debug, Clone)]
pub struct TokenSources {
    pub(crate) bearer: bool,
    pub(crate) headers: Vec<(HeaderName, String)>,
    pub(crate) cookies: Vec<String>,
    pub(crate) query: Vec<String>,
    pub(crate) max_bytes: usize,
}

impl Default for TokenSources {
    fn default() -> Self {
        Self {
            bearer: true,
            headers: Vec::new(),
            cookies: Vec::new(),
            query: Vec::new(),
            max_bytes: DEFAULT_MAX_TOKEN_BYTES,
        }
    }
}

impl TokenSources {
    /// `Authorization: Bearer` only.
    pub fn bearer() -> Self {
        Self::default()
    }

    /// No source at all (add some).
    pub fn none() -> Self {
        Self {
            bearer: false,
            ..Self::default()
        }
    }

    /// Also reads header `name`, whose value starts with `prefix` (may be empty).
    pub fn header(mut self, name: &str, prefix: &str) -> Result<Self, ConfigError> {
        let name = gateway_layers_core::headers::header_name(name)?;
        self.headers.push((name, prefix.to_owned()));
        Ok(self)
    }

    /// Also reads cookie `name`.
    #[must_use]
    pub fn cookie(mut self, name: &str) -> Self {
        self.cookies.push(name.to_owned());
        self
    }

    /// Also reads query parameter `name`. Tokens in URLs end up in logs and caches:
    /// enable only when a client cannot send headers (e.g. WebSocket upgrades).
    #[must_use]
    pub fn query(mut self, name: &str) -> Self {
        self.query.push(name.to_owned());
        self
    }

    /// The size limit; larger tokens are refused before parsing.
    #[must_use]
    pub fn max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max;
        self
    }

    /// Finds the token: `Ok(None)` when there is none.
    pub(crate) fn extract<'a>(
        &self,
        headers: &'a HeaderMap,
        uri: &'a Uri,
    ) -> Result<Option<Cow<'a, str>>, AuthError> {
        let mut found: Option<Cow<'a, str>> = None;
        let mut put = |token: Cow<'a, str>| -> Result<(), AuthError> {
            if token.len() > self.max_bytes {
                return Err(AuthError::TooLarge);
            }
            if found.is_some() {
                return Err(AuthError::MultipleTokens);
            }
            found = Some(token);
            Ok(())
        };
        if self.bearer {
            for value in headers.get_all(header::AUTHORIZATION) {
                let bytes = value.as_bytes();
                if bytes.len() > self.max_bytes.saturating_add(64) {
                    return Err(AuthError::TooLarge);
                }
                let Some(space) = bytes.iter().position(|b| *b == b' ') else {
                    continue;
                };
                if !bytes[..space].eq_ignore_ascii_case(b"bearer") {
                    continue;
                }
                let rest = value.to_str().map_err(|_| AuthError::Malformed)?;
                let token = rest[space..].trim_start_matches(' ');
                put(Cow::Borrowed(token))?;
            }
        }
        for (name, prefix) in &self.headers {
            for value in headers.get_all(name) {
                if value.len() > self.max_bytes.saturating_add(prefix.len()) {
                    return Err(AuthError::TooLarge);
                }
                let value = value.to_str().map_err(|_| AuthError::Malformed)?;
                let Some(token) = strip_prefix_ignore_case(value, prefix) else {
                    continue;
                };
                put(Cow::Borrowed(token.trim_start_matches(' ')))?;
            }
        }
        if !self.cookies.is_empty() {
            for value in headers.get_all(header::COOKIE) {
                let Ok(value) = value.to_str() else { continue };
                for pair in value.split(';') {
                    let Some((name, token)) = pair.trim().split_once('=') else {
                        continue;
                    };
                    if self.cookies.iter().any(|c| c == name) {
                        put(Cow::Borrowed(token.trim_matches('"')))?;
                    }
                }
            }
        }
        if !self.query.is_empty()
            && let Some(query) = uri.query()
        {
            for pair in query.split('&') {
                let (name, token) = pair.split_once('=').unwrap_or((pair, ""));
                if self.query.iter().any(|q| q == name) {
                    if token.len() > self.max_bytes.saturating_mul(3) {
                        return Err(AuthError::TooLarge);
                    }
                    let decoded = percent_encoding::percent_decode_str(token)
                        .decode_utf8()
                        .map_err(|_| AuthError::Malformed)?;
                    put(Cow::Owned(decoded.into_owned()))?;
                }
            }
        }
        match found {
            Some(token) if token.is_empty() => Err(AuthError::Malformed),
            other => Ok(other),
        }
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    if value.len() >= prefix.len()
        && value.is_char_boundary(prefix.len())
        && value[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&value[prefix.len()..])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let uri = Uri::from_static("/");
        let s = TokenSources::bearer();
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "BeArEr  abc"] {
            let h = headers(&[("authorization", v)]);
            assert_eq!(s.extract(&h, &uri).unwrap().as_deref(), Some("abc"), "{v}");
        }
        let h = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
        assert_eq!(s.extract(&h, &uri).unwrap(), None);
    }

    #[test]
    fn two_tokens_are_refused() {
        let uri = Uri::from_static("/?access_token=c");
        let s = TokenSources::bearer().cookie("jwt").query("access_token");
        let h = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(
            s.extract(&h, &Uri::from_static("/")).unwrap_err(),
            AuthError::MultipleTokens
        );
        let h = headers(&[("authorization", "Bearer a"), ("cookie", "jwt=b")]);
        assert_eq!(
            s.extract(&h, &Uri::from_static("/")).unwrap_err(),
            AuthError::MultipleTokens
        );
        let h = headers(&[("cookie", "x=1; jwt=b")]);
        assert_eq!(s.extract(&h, &uri).unwrap_err(), AuthError::MultipleTokens);
        assert_eq!(
            s.extract(&h, &Uri::from_static("/")).unwrap().as_deref(),
            Some("b")
        );
    }

    #[test]
    fn query_only_when_enabled_and_size_limit() {
        let uri = Uri::from_static("/?access_token=abc");
        assert_eq!(
            TokenSources::bearer()
                .extract(&HeaderMap::new(), &uri)
                .unwrap(),
            None
        );
        let s = TokenSources::bearer().query("access_token");
        assert_eq!(
            s.extract(&HeaderMap::new(), &uri).unwrap().as_deref(),
            Some("abc")
        );
        let big = format!("Bearer {}", "a".repeat(DEFAULT_MAX_TOKEN_BYTES + 1));
        let h = headers(&[("authorization", &big)]);
        assert_eq!(s.extract(&h, &uri).unwrap_err(), AuthError::TooLarge);
        let s = TokenSources::none().header("X-Token", "Token ").unwrap();
        let h = headers(&[("x-token", "token xyz")]);
        assert_eq!(s.extract(&h, &uri).unwrap().as_deref(), Some("xyz"));
    }

    #[test]
    fn huge_limit_does_not_overflow() {
        let uri = Uri::from_static("/?access_token=abc");
        let s = TokenSources::bearer()
            .header("X-Token", "Token ")
            .unwrap()
            .query("access_token")
            .max_bytes(usize::MAX);
        let h = headers(&[("x-token", "Token xyz")]);
        assert_eq!(s.extract(&h, &uri).unwrap_err(), AuthError::MultipleTokens);
        let h = headers(&[("authorization", "Bearer xyz")]);
        assert_eq!(
            s.extract(&h, &Uri::from_static("/")).unwrap().as_deref(),
            Some("xyz")
        );
    }
}
