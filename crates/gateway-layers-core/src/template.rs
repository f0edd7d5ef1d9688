//! Header value templates rendered against a request, e.g. `user-{claim.sub}`.
//!
//! | variable | value |
//! |---|---|
//! | `{header.NAME}` | first value of request header `NAME` |
//! | `{query.NAME}` | first query parameter `NAME`, percent-decoded |
//! | `{path.NAME}` | path capture `NAME` of the matched route ([`PathParams`]) |
//! | `{claim.NAME}` | verified claim (`sub`, or a pointer `/org/id`) from [`Identity`] |
//! | `{client_ip}` | [`ClientIp`], else the peer address |
//! | `{request_id}` | the `x-request-id` header (set by tower-http's request-id layer) |
//! | `{method}`, `{path}`, `{host}` | request method, path, `Host` header |
//! | `{tier}`, `{subject}` | tier and subject from [`Identity`] |
//!
//! `{{` and `}}` are literal braces. A template is parsed once, at build time: unknown
//! variables, unclosed braces and literal text that could never be a header value (CR,
//! LF, NUL) are [`ConfigError`]s. Rendering refuses a result with CR, LF, NUL or other
//! control characters ([`RenderError::Invalid`]): a client cannot inject headers
//! through a value it controls. A variable the request lacks is
//! [`RenderError::Missing`]; the caller decides to drop the header or refuse.
//!
//! ```
//! use gateway_layers_core::{Identity, RequestView, template::{HeaderTemplate, RenderError}};
//!
//! let template = HeaderTemplate::parse("user={claim.sub}; page={query.page}").unwrap();
//! let mut request = http::Request::builder().uri("/x?page=2").body(()).unwrap();
//! request.extensions_mut().insert(Identity::new().with_claims(serde_json::json!({"sub": "u7"})));
//! assert_eq!(template.render(&RequestView::new(&request)).unwrap(), "user=u7; page=2");
//!
//! let evil = http::Request::builder().uri("/x?page=1%0d%0aX-Admin:%20true").body(()).unwrap();
//! assert!(matches!(template.render(&RequestView::new(&evil)), Err(RenderError::Missing(_) | RenderError::Invalid(_))));
//! assert!(HeaderTemplate::parse("{nope}").is_err());
//! ```

use std::fmt;

use http::{HeaderName, HeaderValue, header::HOST};
use serde_json::Value;

use crate::{
    ClientIp, ConfigError, Identity, RequestView,
    client_ip::peer_addr,
    ext::PathParams,
    headers::{InvalidHeaderValue, checked_value},
};

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate {
    source: Box<str>,
    parts: Box<[Part]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    Header(HeaderName),
    Query(Box<str>),
    Path(Box<str>),
    Claim(Box<str>),
    ClientIp,
    RequestId,
    Method,
    UriPath,
    Host,
    Tier,
    Subject,
}

/// Why a template could not be rendered for a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The request has no value for this variable.
    #[error("no value for template variable `{0}`")]
    Missing(Box<str>),
    /// The rendered value is not a safe header value.
    #[error("rendered value refused: {0}")]
    Invalid(#[from] InvalidHeaderValue),
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl HeaderTemplate {
    /// Parses `source`.
    pub fn parse(source: &str) -> Result<Self, ConfigError> {
        let error = |position: usize, reason: &str| ConfigError::InvalidTemplate {
            template: source.to_owned(),
            position,
            reason: reason.to_owned(),
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let bytes = source.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    literal.push('{');
                    i += 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    literal.push('}');
                    i += 2;
                }
                b'}' => return Err(error(i, "unmatched `}` (write `}}` for a brace)")),
                b'{' => {
                    let Some(len) = source[i + 1..].find('}') else {
                        return Err(error(i, "unclosed `{`"));
                    };
                    let name = &source[i + 1..i + 1 + len];
                    let part = parse_variable(name).map_err(|reason| error(i + 1, &reason))?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal).into()));
                    }
                    parts.push(part);
                    i += len + 2;
                }
                _ => {
                    let c = source[i..].chars().next().expect("in bounds");
                    literal.push(c);
                    i += c.len_utf8();
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal.into()));
        }
        for part in &parts {
            if let Part::Literal(text) = part
                && let Err(e) = checked_value(text.as_bytes())
            {
                return Err(error(0, &format!("literal text refused: {e}")));
            }
        }
        Ok(Self {
            source: source.into(),
            parts: parts.into(),
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the template has no variables.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Renders the template for `request`.
    pub fn render(&self, request: &RequestView<'_>) -> Result<HeaderValue, RenderError> {
        let mut out = Vec::with_capacity(64);
        for part in self.parts.iter() {
            match part {
                Part::Literal(text) => out.extend_from_slice(text.as_bytes()),
                other => {
                    append(other, request, &mut out)
                        .ok_or_else(|| RenderError::Missing(other.to_string().into()))?;
                    if out.len() > crate::headers::MAX_VALUE_LEN {
                        return Err(InvalidHeaderValue::TooLong.into());
                    }
                }
            }
        }
        Ok(checked_value(&out)?)
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Literal(text) => f.write_str(text),
            Part::Header(name) => write!(f, "header.{name}"),
            Part::Query(name) => write!(f, "query.{name}"),
            Part::Path(name) => write!(f, "path.{name}"),
            Part::Claim(name) => write!(f, "claim.{name}"),
            Part::ClientIp => f.write_str("client_ip"),
            Part::RequestId => f.write_str("request_id"),
            Part::Method => f.write_str("method"),
            Part::UriPath => f.write_str("path"),
            Part::Host => f.write_str("host"),
            Part::Tier => f.write_str("tier"),
            Part::Subject => f.write_str("subject"),
        }
    }
}

fn parse_variable(name: &str) -> Result<Part, String> {
    let name = name.trim();
    if let Some((namespace, key)) = name.split_once('.') {
        if key.is_empty() {
            return Err(format!("`{name}` names no {namespace}"));
        }
        return match namespace {
            "header" => HeaderName::from_bytes(key.as_bytes())
                .map(Part::Header)
                .map_err(|_| format!("`{key}` is not a header name")),
            "query" => Ok(Part::Query(key.into())),
            "path" => Ok(Part::Path(key.into())),
            "claim" => Ok(Part::Claim(key.into())),
            _ => Err(format!(
                "unknown variable namespace `{namespace}` (header, query, path, claim)"
            )),
        };
    }
    match name {
        "client_ip" => Ok(Part::ClientIp),
        "request_id" => Ok(Part::RequestId),
        "method" => Ok(Part::Method),
        "path" => Ok(Part::UriPath),
        "host" => Ok(Part::Host),
        "tier" => Ok(Part::Tier),
        "subject" => Ok(Part::Subject),
        "" => Err("empty variable `{}`".to_owned()),
        other => Err(format!("unknown variable `{other}`")),
    }
}

/// Appends `part`'s value for `request` to `out`; `None` when the request has none.
fn append(part: &Part, request: &RequestView<'_>, out: &mut Vec<u8>) -> Option<()> {
    let identity = || request.extensions.get::<Identity>();
    let bytes = |out: &mut Vec<u8>, value: &[u8]| out.extend_from_slice(value);
    match part {
        Part::Literal(_) => return None,
        Part::Header(name) => bytes(out, request.headers.get(name)?.as_bytes()),
        Part::Query(name) => {
            let query = request.uri.query()?;
            let (_, value) =
                form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name.as_ref())?;
            bytes(out, value.as_bytes());
        }
        Part::Path(name) => bytes(
            out,
            request
                .extensions
                .get::<PathParams>()?
                .get(name)?
                .as_bytes(),
        ),
        Part::Claim(name) => match identity()?.claim(name)? {
            Value::String(s) => bytes(out, s.as_bytes()),
            Value::Null => return None,
            other => bytes(out, other.to_string().as_bytes()),
        },
        Part::ClientIp => {
            let ip = match request.extensions.get::<ClientIp>() {
                Some(ClientIp(ip)) => *ip,
                None => peer_addr(request.extensions)?.ip(),
            };
            crate::headers::push_ip(out, ip);
        }
        Part::RequestId => bytes(out, request.headers.get(&X_REQUEST_ID)?.as_bytes()),
        Part::Method => bytes(out, request.method.as_str().as_bytes()),
        Part::UriPath => bytes(out, request.uri.path().as_bytes()),
        Part::Host => {
            let host = match request.headers.get(HOST) {
                Some(value) => value.as_bytes(),
                None => request.uri.host()?.as_bytes(),
            };
            bytes(out, host);
        }
        Part::Tier => bytes(out, identity()?.tier()?.as_str().as_bytes()),
        Part::Subject => bytes(out, identity()?.subject()?.as_bytes()),
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Tier, ext::PathParams};
    use std::{net::SocketAddr, sync::Arc};

    fn req(uri: &str) -> http::Request<()> {
        http::Request::builder()
            .uri(uri)
            .header("host", "api.example.com")
            .header("x-client-id", "c-1")
            .header("x-request-id", "r-9")
            .body(())
            .unwrap()
    }

    #[test]
    fn every_variable() {
        let mut r = req("/orders/7?page=3&q=a%20b");
        r.extensions_mut().insert(
            Identity::new()
                .with_subject("u1")
                .with_tier(Tier::PREMIUM)
                .with_claims(serde_json::json!({"sub": "u1", "n": 5, "org": {"id": "o"}})),
        );
        r.extensions_mut()
            .insert(PathParams(Arc::new([(Arc::from("id"), Arc::from("7"))])));
        r.extensions_mut()
            .insert("192.0.2.8:1000".parse::<SocketAddr>().unwrap());
        let view = RequestView::new(&r);
        let cases = [
            ("{header.X-Client-Id}", "c-1"),
            ("{query.page}/{query.q}", "3/a b"),
            ("{path.id}", "7"),
            ("{claim.sub}:{claim.n}:{claim./org/id}", "u1:5:o"),
            ("{client_ip}", "192.0.2.8"),
            ("{request_id}", "r-9"),
            ("{method} {path} {host}", "GET /orders/7 api.example.com"),
            ("{tier}/{subject}", "premium/u1"),
            ("{{literal}} {{{path.id}}}", "{literal} {7}"),
            ("plain", "plain"),
        ];
        for (template, want) in cases {
            let t = HeaderTemplate::parse(template).unwrap();
            assert_eq!(t.render(&view).unwrap(), want, "{template}");
        }
        assert!(HeaderTemplate::parse("plain").unwrap().is_static());
    }

    #[test]
    fn client_ip_extension_wins() {
        let mut r = req("/");
        r.extensions_mut()
            .insert("10.0.0.1:1".parse::<SocketAddr>().unwrap());
        r.extensions_mut()
            .insert(ClientIp("203.0.113.1".parse().unwrap()));
        let t = HeaderTemplate::parse("{client_ip}").unwrap();
        assert_eq!(t.render(&RequestView::new(&r)).unwrap(), "203.0.113.1");
    }

    #[test]
    fn missing_values() {
        let r = req("/");
        let view = RequestView::new(&r);
        for template in [
            "{header.x-nope}",
            "{query.page}",
            "{path.id}",
            "{claim.sub}",
            "{client_ip}",
            "{tier}",
        ] {
            let t = HeaderTemplate::parse(template).unwrap();
            assert!(
                matches!(t.render(&view), Err(RenderError::Missing(_))),
                "{template}"
            );
        }
    }

    #[test]
    fn injection_attempts_are_refused() {
        let t = HeaderTemplate::parse("v={query.v}").unwrap();
        for evil in [
            "%0d%0aX-Admin:%20true",
            "%0aa",
            "%0d",
            "%00",
            "%7f",
            "a%1bb",
        ] {
            let r = req(&format!("/?v={evil}"));
            assert!(
                matches!(
                    t.render(&RequestView::new(&r)),
                    Err(RenderError::Invalid(_))
                ),
                "{evil}"
            );
        }
        let mut r = req("/");
        r.extensions_mut()
            .insert(Identity::new().with_claims(serde_json::json!({"sub": "a\r\nx: y"})));
        let t = HeaderTemplate::parse("{claim.sub}").unwrap();
        assert_eq!(
            t.render(&RequestView::new(&r)),
            Err(RenderError::Invalid(InvalidHeaderValue::LineBreak))
        );
        // A huge query value is refused, not rendered.
        let r = req(&format!("/?v={}", "a".repeat(20_000)));
        let t = HeaderTemplate::parse("{query.v}").unwrap();
        assert_eq!(
            t.render(&RequestView::new(&r)),
            Err(RenderError::Invalid(InvalidHeaderValue::TooLong))
        );
    }

    #[test]
    fn invalid_templates_are_config_errors() {
        for bad in [
            "{",
            "abc{header.x",
            "}",
            "{}",
            "{nope}",
            "{header.}",
            "{header.bad name}",
            "{cookie.x}",
            "line\r\nbreak",
            "nul\0",
        ] {
            assert!(
                matches!(
                    HeaderTemplate::parse(bad),
                    Err(ConfigError::InvalidTemplate { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
