//! Header hygiene: hop-by-hop headers and header values built at run time.
//!
//! ```
//! use gateway_layers_core::headers::{remove_hop_by_hop, header_value};
//! use http::HeaderMap;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("connection", "close, X-User-Id".parse().unwrap());
//! headers.insert("x-user-id", "forged".parse().unwrap());
//! headers.insert("keep-alive", "timeout=5".parse().unwrap());
//! headers.insert("accept", "*/*".parse().unwrap());
//! remove_hop_by_hop(&mut headers);
//! assert_eq!(headers.len(), 1);
//! assert!(header_value("x-user-id", "evil\r\nx-admin: 1").is_err());
//! ```

use std::net::IpAddr;

use bytes::BufMut;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::ConfigError;

/// The hop-by-hop fields of RFC 9110 §7.6.1 plus the legacy ones proxies also drop
/// (`Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`, `Trailer`).
pub static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// The lengths of the [`HOP_BY_HOP`] names (10, 16, 10, 2, 7, 17, 7, 18, 19), as bits:
/// most names are told apart by their length alone, without comparing them to each of
/// the nine. A test checks it against the list.
const HOP_BY_HOP_LENS: u32 = 1 << 2 | 1 << 7 | 1 << 10 | 1 << 16 | 1 << 17 | 1 << 18 | 1 << 19;

/// Whether `name` is a fixed hop-by-hop field.
#[inline]
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    let len = name.as_str().len();
    len < 32 && HOP_BY_HOP_LENS & (1 << len) != 0 && HOP_BY_HOP.contains(name)
}

/// Removes every hop-by-hop field, including each field named in any `Connection`
/// header (comma lists, any case, several lines). Invalid names in `Connection` are
/// skipped.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',') {
            let token = token.trim();
            if token.is_empty() {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(name);
            }
        }
    }
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Why a run-time header value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHeaderValue {
    /// The value holds a carriage return or line feed (header injection).
    #[error("value contains CR or LF")]
    LineBreak,
    /// The value holds a NUL byte.
    #[error("value contains NUL")]
    Nul,
    /// The value holds another control character.
    #[error("value contains a control character")]
    Control,
    /// The value is longer than the limit.
    #[error("value is longer than {MAX_VALUE_LEN} bytes")]
    TooLong,
}

/// The longest header value built at run time (8 KiB).
pub const MAX_VALUE_LEN: usize = 8 * 1024;

/// Validates a value built at run time: refuses CR, LF, NUL and other control
/// characters (tab is allowed), and values over [`MAX_VALUE_LEN`].
pub fn checked_value(value: &[u8]) -> Result<HeaderValue, InvalidHeaderValue> {
    if value.len() > MAX_VALUE_LEN {
        return Err(InvalidHeaderValue::TooLong);
    }
    for &b in value {
        match b {
            b'\r' | b'\n' => return Err(InvalidHeaderValue::LineBreak),
            0 => return Err(InvalidHeaderValue::Nul),
            b'\t' => {}
            0x01..=0x1f | 0x7f => return Err(InvalidHeaderValue::Control),
            _ => {}
        }
    }
    HeaderValue::from_bytes(value).map_err(|_| InvalidHeaderValue::Control)
}

/// A header value from configuration, as a [`ConfigError`] when invalid.
pub fn header_value(name: &str, value: &str) -> Result<HeaderValue, ConfigError> {
    checked_value(value.as_bytes()).map_err(|e| ConfigError::InvalidHeaderValue {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// A header name from configuration (any case), as a [`ConfigError`] when invalid.
pub fn header_name(name: &str) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| ConfigError::InvalidHeaderName(name.to_owned()))
}

/// Appends `ip` as text (the `Display` form). IPv4, on nearly every proxied request,
/// is written without `core::fmt`, several times faster.
///
/// ```
/// let mut buf = Vec::new();
/// gateway_layers_core::headers::push_ip(&mut buf, [192, 0, 2, 10].into());
/// assert_eq!(buf, b"192.0.2.10");
/// ```
pub fn push_ip(buf: &mut impl BufMut, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.put_u8(b'.');
                }
                if octet >= 100 {
                    buf.put_u8(b'0' + octet / 100);
                }
                if octet >= 10 {
                    buf.put_u8(b'0' + octet / 10 % 10);
                }
                buf.put_u8(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => buf.put_slice(v6.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hop_by_hop_length_mask_matches_the_list() {
        let bits = HOP_BY_HOP
            .iter()
            .fold(0u32, |bits, name| bits | 1 << name.as_str().len());
        assert_eq!(bits, HOP_BY_HOP_LENS);
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            "user-agent",
            "ratelimit-policy",
            "host",
            "x-forwarded-for",
            "trailers",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn push_ip_matches_display() {
        let mut ips: Vec<IpAddr> = vec![
            "::1".parse().unwrap(),
            "2001:db8::8a2e:370:7334".parse().unwrap(),
            "::ffff:192.0.2.1".parse().unwrap(),
        ];
        for a in [0u8, 1, 9, 10, 99, 100, 199, 200, 255] {
            for b in [0u8, 7, 42, 128, 255] {
                ips.push(IpAddr::from([a, b, 255 - a, b / 3]));
            }
        }
        for ip in ips {
            let mut buf = Vec::new();
            super::push_ip(&mut buf, ip);
            assert_eq!(buf, ip.to_string().into_bytes(), "{ip}");
        }
    }

    use super::*;

    #[test]
    fn connection_named_fields_are_removed() {
        let mut h = HeaderMap::new();
        h.append("connection", "close, X-Forwarded-For".parse().unwrap());
        h.append("connection", "x-user-id,, upgrade".parse().unwrap());
        h.append("connection", HeaderValue::from_bytes(b"\xff bad").unwrap());
        h.append("x-forwarded-for", "1.1.1.1".parse().unwrap());
        h.append("x-user-id", "a".parse().unwrap());
        h.append("X-User-Id", "b".parse().unwrap());
        h.append("upgrade", "websocket".parse().unwrap());
        h.append("te", "trailers".parse().unwrap());
        h.append("transfer-encoding", "chunked".parse().unwrap());
        h.append("proxy-connection", "keep-alive".parse().unwrap());
        h.append("trailer", "x".parse().unwrap());
        h.append("host", "example.com".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("host"));
    }

    #[test]
    fn injection_is_refused() {
        assert_eq!(checked_value(b"a\r\nb"), Err(InvalidHeaderValue::LineBreak));
        assert_eq!(checked_value(b"a\nb"), Err(InvalidHeaderValue::LineBreak));
        assert_eq!(checked_value(b"a\rb"), Err(InvalidHeaderValue::LineBreak));
        assert_eq!(checked_value(b"a\0b"), Err(InvalidHeaderValue::Nul));
        assert_eq!(checked_value(b"a\x07b"), Err(InvalidHeaderValue::Control));
        assert_eq!(checked_value(b"a\x7fb"), Err(InvalidHeaderValue::Control));
        assert_eq!(
            checked_value(&vec![b'a'; MAX_VALUE_LEN + 1]),
            Err(InvalidHeaderValue::TooLong)
        );
        assert_eq!(checked_value(b"a\tb c").unwrap(), "a\tb c");
        assert!(header_value("x", "ok value").is_ok());
        assert!(matches!(
            header_value("x", "bad\r\n"),
            Err(ConfigError::InvalidHeaderValue { .. })
        ));
        assert!(header_name("X-Good").is_ok());
        assert!(header_name("bad name").is_err());
        assert!(header_name("bad\r\nname").is_err());
        assert!(header_name("").is_err());
    }
}
