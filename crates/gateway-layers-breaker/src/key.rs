//! The default per-key circuit key: the request's authority.

use gateway_layers_core::{Key, KeyExtractor, RequestView};
use http::header::HOST;

/// The request's authority: the URI's `host[:port]` (set on requests a proxy sends
/// upstream, or on absolute-form requests), else the `Host` header; lowercased, as a
/// [`Key::Text`] either way (a `Host` that is not visible ASCII stays a [`Key::Header`]).
///
/// In front of a proxy this gives one circuit per upstream, so a failing upstream A
/// never opens the circuit of upstream B.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthorityKey;

impl KeyExtractor for AuthorityKey {
    fn extract(&self, request: &RequestView<'_>) -> Option<Key> {
        if let Some(authority) = request.uri.authority() {
            return Some(text_key(authority.as_str()));
        }
        // The same key as the URI's authority (hosts are case-insensitive), so one
        // upstream reached both ways keeps one circuit.
        request
            .headers
            .get(HOST)
            .filter(|v| !v.is_empty())
            .map(|v| match v.to_str() {
                Ok(text) => text_key(text),
                Err(_) => Key::Header(v.clone()),
            })
    }
}

/// `text` as a key, lowercased.
fn text_key(text: &str) -> Key {
    let key: std::sync::Arc<str> = if text.bytes().any(|b| b.is_ascii_uppercase()) {
        text.to_ascii_lowercase().into()
    } else {
        text.into()
    };
    Key::Text(key)
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
            .header("host", "B.example")
            .body(())
            .unwrap();
        let from_host = AuthorityKey.extract(&RequestView::new(&r)).unwrap();
        assert_eq!(from_host, Key::Text("b.example".into()));
        let r = http::Request::get("http://b.example/x").body(()).unwrap();
        assert_eq!(
            AuthorityKey.extract(&RequestView::new(&r)).unwrap(),
            from_host,
            "the same key from the URI and from Host"
        );
        let r = http::Request::get("/x").body(()).unwrap();
        assert!(AuthorityKey.extract(&RequestView::new(&r)).is_none());
    }
}
