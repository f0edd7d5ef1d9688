//! The default per-key circuit key: the request's authority.

use gateway_layers_core::{Key, KeyExtractor, RequestView};
use http::header::HOST;

/// The request's authority: the URI's `host[:port]` (set on requests a proxy sends
/// upstream, or on absolute-form requests), else the `Host` header.
///
/// In front of a proxy this gives one circuit per upstream, so a failing upstream A
/// never opens the circuit of upstream B.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthorityKey;

impl KeyExtractor for AuthorityKey {
    fn extract(&self, request: &RequestView<'_>) -> Option<Key> {
        if let Some(authority) = request.uri.authority() {
            let text = authority.as_str();
            let key: std::sync::Arc<str> = if text.bytes().any(|b| b.is_ascii_uppercase()) {
                text.to_ascii_lowercase().into()
            } else {
                text.into()
            };
            return Some(Key::Text(key));
        }
        request
            .headers
            .get(HOST)
            .filter(|v| !v.is_empty())
            .map(|v| Key::Header(v.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_authority_then_host() {
        let r = http::Request::get("http://API.example:8080/x")
            .body(())
            .unwrap();
        let key = AuthorityKey.extract(&RequestView::new(&r)).unwrap();
        assert_eq!(key.to_string(), "api.example:8080");
        let r = http::Request::get("/x")
            .header("host", "b.example")
            .body(())
            .unwrap();
        assert_eq!(
            AuthorityKey
                .extract(&RequestView::new(&r))
                .unwrap()
                .to_string(),
            "b.example"
        );
        let r = http::Request::get("/x").body(()).unwrap();
        assert!(AuthorityKey.extract(&RequestView::new(&r)).is_none());
    }
}
