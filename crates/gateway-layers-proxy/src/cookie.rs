//! [`CookieKey`]: a consistent-hashing key read from a cookie.

use std::sync::Arc;

use gateway_layers_core::{ConfigError, Key, KeyExtractor, RequestView};
use http::header::COOKIE;

/// The value of cookie `name` as a core [`Key`], for sticky sessions with
/// [`ProxyBuilder::consistent_hash`](crate::ProxyBuilder::consistent_hash).
///
/// Every `Cookie` header line is read (HTTP/2 clients may split them); the first
/// non-empty value of `name` wins. No cookie: no key (the request is round-robined).
///
/// ```
/// use gateway_layers_core::{KeyExtractor, RequestView};
/// use gateway_layers_proxy::CookieKey;
///
/// let key = CookieKey::new("session").unwrap();
/// let request = http::Request::builder()
///     .header("cookie", "theme=dark; session=abc123")
///     .body(())
///     .unwrap();
/// assert_eq!(key.extract(&RequestView::new(&request)).unwrap().to_string(), "abc123");
/// ```
#[derive(Debug, Clone)]
pub struct CookieKey {
    name: Arc<str>,
}

impl CookieKey {
    /// Reads cookie `name` (a non-empty token without `=`, `;`, spaces).
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'=' | b';' | b',' | b'"'));
        if !valid {
            return Err(ConfigError::invalid(
                "cookie",
                format!("{name:?} is not a cookie name"),
            ));
        }
        Ok(Self { name: name.into() })
    }
}

impl KeyExtractor for CookieKey {
    fn extract(&self, request: &RequestView<'_>) -> Option<Key> {
        request.headers.get_all(COOKIE).iter().find_map(|line| {
            let line = line.to_str().ok()?;
            line.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                let value = value.trim().trim_matches('"');
                (name.trim() == &*self.name && !value.is_empty()).then(|| Key::Text(value.into()))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(lines: &[&str]) -> Option<String> {
        let mut builder = http::Request::builder();
        for line in lines {
            builder = builder.header("cookie", *line);
        }
        let request = builder.body(()).unwrap();
        CookieKey::new("sid")
            .unwrap()
            .extract(&RequestView::new(&request))
            .map(|k| k.to_string())
    }

    #[test]
    fn finds_the_cookie() {
        assert_eq!(key(&["a=1; sid=xyz; b=2"]).as_deref(), Some("xyz"));
        assert_eq!(key(&["a=1", "sid=\"q\""]).as_deref(), Some("q"));
        assert_eq!(key(&["sidx=1; xsid=2"]), None);
        assert_eq!(key(&["sid=; a=1"]), None);
        assert_eq!(key(&[]), None);
        assert!(CookieKey::new("").is_err());
        assert!(CookieKey::new("a b").is_err());
        assert!(CookieKey::new("a=b").is_err());
    }
}
