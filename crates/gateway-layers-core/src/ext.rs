//! Request extensions shared between layers: the matched route, path captures and the
//! raw path before normalization. The router sets them; key extraction, transforms and
//! the proxy read them.

use std::sync::Arc;

/// The name (or pattern) of the route that matched the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteName(pub Arc<str>);

/// Named path captures of the matched route, in pattern order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathParams(pub Arc<[(Arc<str>, Arc<str>)]>);

impl PathParams {
    /// The value of capture `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| &**key == name)
            .map(|(_, value)| &**value)
    }
}

/// The request path as received, before normalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPath(pub Arc<str>);
