use http::{Extensions, HeaderMap, Method, Request, Uri, request::Parts};

/// A borrowed view of the parts of a request that layers read to decide: method, URI,
/// headers and extensions. It is body-independent, so [`KeyExtractor`](crate::KeyExtractor)s
/// and templates can be trait objects.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request target.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request extensions (identity, client IP, route, path captures).
    pub extensions: &'a Extensions,
}

impl<'a> RequestView<'a> {
    /// A view of a whole request.
    pub fn new<B>(request: &'a Request<B>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }

    /// A view of request parts.
    pub fn from_parts(parts: &'a Parts) -> Self {
        Self {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
}

impl<'a, B> From<&'a Request<B>> for RequestView<'a> {
    fn from(request: &'a Request<B>) -> Self {
        Self::new(request)
    }
}
