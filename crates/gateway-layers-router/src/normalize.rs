//! One normalization pass over the request path and host, whose result is used both
//! to match routes and to forward the request.
//!
//! The path goes through, in this order:
//!
//! 1. **Percent-escapes.** An escape of an unreserved character (`A-Z a-z 0-9 - . _ ~`)
//!    is decoded (`%2e` becomes `.`, `%41` becomes `A`); every other escape is kept with
//!    uppercase hex (`%2f` becomes `%2F`; `%252e` stays `%252e`: nothing is decoded
//!    twice). `%00`, a truncated or non-hex escape are refused (400). `%2F` and `%5C`
//!    (and a raw `\`) follow [`EncodedSlash`]. Bytes that may not appear raw in a path
//!    (non-ASCII, `"`, `<`, `{`, ...) are percent-encoded.
//! 2. **Optional lowercasing** ([`Normalization::lowercase`]) of everything but the hex
//!    digits of escapes.
//! 3. **Slash merging** ([`Normalization::merge_slashes`], on by default): `//a///b`
//!    becomes `/a/b`.
//! 4. **Dot-segment removal** (RFC 3986 section 5.2.4): `/a/./b/../c` becomes `/a/c`;
//!    `..` never climbs above the root.
//!
//! Because escapes of `.` are decoded *before* dot segments are removed, `/%2e%2e/admin`
//! is `/admin` for the router and for the upstream alike.

use std::borrow::Cow;

/// What to do with an encoded slash (`%2F`) or backslash (`%5C`, or a raw `\`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum EncodedSlash {
    /// Refuse the request with 400 (the default: an upstream that decodes `%2F` would
    /// otherwise see a different path than the router matched).
    #[default]
    Reject,
    /// Keep the escape (`%2F`, `%5C`) inside its segment; it matches and is forwarded
    /// encoded. Safe only when the upstream does not decode it either.
    Keep,
    /// Decode both to `/`, a real separator, before slash merging and dot-segment
    /// removal (what WHATWG URL parsers and Windows servers do with `\`).
    Decode,
}

/// Why a path (or host) was refused. Each maps to a 400 response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    InvalidEscape,
    /// `%00`.
    Nul,
    /// `%2F`, `%5C` or `\` under [`EncodedSlash::Reject`].
    EncodedSlash,
    /// A `;` while [`Normalization::reject_semicolon`] is on.
    Semicolon,
    /// The path does not start with `/` (e.g. `OPTIONS *`).
    NotAbsolute,
    /// The host (URI authority or `Host` header) is malformed.
    InvalidHost,
}

impl PathError {
    /// The machine-readable code used in the 400 rejection.
    pub fn code(self) -> &'static str {
        match self {
            PathError::InvalidEscape => "invalid_escape",
            PathError::Nul => "nul_in_path",
            PathError::EncodedSlash => "encoded_slash",
            PathError::Semicolon => "semicolon_in_path",
            PathError::NotAbsolute => "path_not_absolute",
            PathError::InvalidHost => "invalid_host",
        }
    }

    /// A human-readable explanation.
    pub fn detail(self) -> &'static str {
        match self {
            PathError::InvalidEscape => "the path contains an invalid percent-escape",
            PathError::Nul => "the path contains an encoded NUL byte",
            PathError::EncodedSlash => "the path contains an encoded slash or backslash",
            PathError::Semicolon => "the path contains a ';'",
            PathError::NotAbsolute => "the path does not start with '/'",
            PathError::InvalidHost => "the host is malformed",
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.detail())
    }
}

impl std::error::Error for PathError {}

/// The path normalization settings. The defaults are the safe choice for a gateway:
/// merge slashes, refuse `%2F` / `%5C`, keep `;` and case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Normalization {
    /// Merge runs of `/` into one (default `true`; nginx does the same upstream).
    pub merge_slashes: bool,
    /// Policy for `%2F`, `%5C` and `\` (default [`EncodedSlash::Reject`]).
    pub encoded_slash: EncodedSlash,
    /// Lowercase the path (default `false`): use it in front of case-insensitive
    /// upstreams (IIS), so `/ADMIN` cannot bypass a route for `/admin`.
    pub lowercase: bool,
    /// Refuse any `;` with 400 (default `false`): use it in front of upstreams that
    /// strip `;params` from segments (Tomcat, Jetty), so `/admin;x` cannot bypass a
    /// route for `/admin`.
    pub reject_semicolon: bool,
}

impl Default for Normalization {
    fn default() -> Self {
        Self {
            merge_slashes: true,
            encoded_slash: EncodedSlash::Reject,
            lowercase: false,
            reject_semicolon: false,
        }
    }
}

const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes that may appear raw in a normalized path: unreserved, sub-delims, `:`, `@`, `/`.
pub(crate) const fn is_path_char(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

/// Path bytes that never need a closer look: path characters other than `/`, `.`, `;`
/// and uppercase letters.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] =
            is_path_char(byte) && !matches!(byte, b'/' | b'.' | b';') && !byte.is_ascii_uppercase();
        b += 1;
    }
    table
};

/// Host bytes: 0 invalid, 1 valid, 2 uppercase letter, 3 `:`.
const HOST_CLASS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = if byte.is_ascii_uppercase() {
            2
        } else if byte == b':' {
            3
        } else if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_') {
            1
        } else {
            0
        };
        b += 1;
    }
    table
};

const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    out.push(b'%');
    out.push(HEX[usize::from(b >> 4)]);
    out.push(HEX[usize::from(b & 0x0f)]);
}

impl Normalization {
    /// Normalizes `path` (the path component only, without the query). Borrows when the
    /// path is already normal, which is the common case.
    pub fn path<'a>(&self, path: &'a str) -> Result<Cow<'a, str>, PathError> {
        let bytes = path.as_bytes();
        if bytes.first() != Some(&b'/') {
            return Err(PathError::NotAbsolute);
        }
        if self.is_normal(bytes)? {
            return Ok(Cow::Borrowed(path));
        }
        let decoded = self.decode(bytes)?;
        let out = self.remove_dot_segments(&decoded);
        // Every byte pushed is ASCII.
        Ok(Cow::Owned(String::from_utf8(out).unwrap_or_default()))
    }

    /// `Ok(true)` when `bytes` needs no change; errors that need no decoding are
    /// reported here too.
    fn is_normal(&self, bytes: &[u8]) -> Result<bool, PathError> {
        let mut prev = 0u8;
        let mut normal = true;
        for (i, &b) in bytes.iter().enumerate() {
            if PLAIN[usize::from(b)] {
                prev = b;
                continue;
            }
            match b {
                b'%' | b'\\' => normal = false,
                b';' if self.reject_semicolon => return Err(PathError::Semicolon),
                b'/' if prev == b'/' && self.merge_slashes => normal = false,
                b'.' if prev == b'/' => {
                    let rest = &bytes[i + 1..];
                    if rest.is_empty()
                        || rest[0] == b'/'
                        || (rest[0] == b'.' && (rest.len() == 1 || rest[1] == b'/'))
                    {
                        normal = false;
                    }
                }
                b'A'..=b'Z' if self.lowercase => normal = false,
                _ if !is_path_char(b) => normal = false,
                _ => {}
            }
            prev = b;
        }
        Ok(normal)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, PathError> {
        let mut out = Vec::with_capacity(bytes.len() + 8);
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let (value, escaped) = if b == b'%' {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::InvalidEscape);
                };
                i += 3;
                ((hi << 4) | lo, true)
            } else {
                i += 1;
                (b, false)
            };
            match value {
                0 => return Err(PathError::Nul),
                b'/' | b'\\' if escaped || value == b'\\' => match self.encoded_slash {
                    EncodedSlash::Reject => return Err(PathError::EncodedSlash),
                    EncodedSlash::Keep => push_escaped(&mut out, value),
                    EncodedSlash::Decode => out.push(b'/'),
                },
                b';' if self.reject_semicolon => return Err(PathError::Semicolon),
                v if is_unreserved(v) || (!escaped && is_path_char(v)) => {
                    out.push(if self.lowercase {
                        v.to_ascii_lowercase()
                    } else {
                        v
                    });
                }
                v => push_escaped(&mut out, v),
            }
        }
        Ok(out)
    }

    fn remove_dot_segments(&self, path: &[u8]) -> Vec<u8> {
        // `path` starts with '/' (checked by the caller; decoding keeps the first byte).
        let segments: Vec<&[u8]> = path[1..].split(|&b| b == b'/').collect();
        let last = segments.len() - 1;
        let mut stack: Vec<&[u8]> = Vec::with_capacity(segments.len());
        for (i, seg) in segments.into_iter().enumerate() {
            let is_last = i == last;
            match seg {
                b"." => {
                    if is_last {
                        stack.push(b"");
                    }
                }
                b".." => {
                    stack.pop();
                    if is_last {
                        stack.push(b"");
                    }
                }
                b"" if self.merge_slashes && !is_last => {}
                _ => stack.push(seg),
            }
        }
        let mut out = Vec::with_capacity(path.len());
        for seg in stack {
            out.push(b'/');
            out.extend_from_slice(seg);
        }
        if out.is_empty() {
            out.push(b'/');
        }
        out
    }
}

/// A request host, normalized: lowercase, no trailing dot, port split off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedHost<'a> {
    /// The host name or IP literal (IPv6 keeps its brackets).
    pub name: Cow<'a, str>,
    /// The explicit port, if any.
    pub port: Option<u16>,
}

/// Normalizes a host as found in the URI authority or the `Host` header.
pub fn normalize_host(raw: &str) -> Result<NormalizedHost<'_>, PathError> {
    if raw.starts_with('[') {
        return normalize_ip_literal(raw);
    }
    let mut upper = false;
    let mut colon = None;
    for (i, &b) in raw.as_bytes().iter().enumerate() {
        match HOST_CLASS[usize::from(b)] {
            1 => {}
            2 => upper = true,
            3 if colon.is_none() => colon = Some(i),
            _ => return Err(PathError::InvalidHost),
        }
    }
    let (name, port) = match colon {
        None => (raw, None),
        Some(at) => {
            let port = &raw[at + 1..];
            let port = if port.is_empty() {
                None
            } else if port.bytes().all(|b| b.is_ascii_digit()) {
                Some(port.parse::<u16>().map_err(|_| PathError::InvalidHost)?)
            } else {
                return Err(PathError::InvalidHost);
            };
            (&raw[..at], port)
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(PathError::InvalidHost);
    }
    let name = if upper {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    };
    Ok(NormalizedHost { name, port })
}

fn normalize_ip_literal(raw: &str) -> Result<NormalizedHost<'_>, PathError> {
    let end = raw.find(']').ok_or(PathError::InvalidHost)?;
    let (name, rest) = raw.split_at(end + 1);
    let port = match rest {
        "" | ":" => None,
        _ => {
            let port = rest.strip_prefix(':').ok_or(PathError::InvalidHost)?;
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PathError::InvalidHost);
            }
            Some(port.parse::<u16>().map_err(|_| PathError::InvalidHost)?)
        }
    };
    let inner = &name[1..name.len() - 1];
    if inner.is_empty()
        || !inner
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return Err(PathError::InvalidHost);
    }
    let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    };
    Ok(NormalizedHost { name, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(path: &str) -> Result<String, PathError> {
        Normalization::default().path(path).map(Cow::into_owned)
    }

    #[test]
    fn already_normal_paths_are_borrowed() {
        for p in ["/", "/a", "/a/b/", "/a.b/c..d/.e", "/a;b=c", "/~x/_-"] {
            assert!(
                matches!(Normalization::default().path(p), Ok(Cow::Borrowed(_))),
                "{p}"
            );
        }
    }

    #[test]
    fn rfc3986_dot_segments() {
        let cases = [
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/..", "/"),
            ("/../..", "/"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/./a", "/a"),
            ("/public/../admin", "/admin"),
            ("/a/...", "/a/..."),
        ];
        for (input, expected) in cases {
            assert_eq!(norm(input).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(norm("/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/%2E%2e/%61dmin").unwrap(), "/admin");
        assert_eq!(norm("/a%3bb").unwrap(), "/a%3Bb");
        assert_eq!(norm("/a%7e").unwrap(), "/a~");
        assert_eq!(norm("/%252e%252e/admin").unwrap(), "/%252e%252e/admin");
        assert_eq!(norm("/a%20b").unwrap(), "/a%20b");
        assert_eq!(norm("/caf\u{e9}").unwrap(), "/caf%C3%A9");
        assert_eq!(norm("/a%"), Err(PathError::InvalidEscape));
        assert_eq!(norm("/a%4"), Err(PathError::InvalidEscape));
        assert_eq!(norm("/a%zz"), Err(PathError::InvalidEscape));
        assert_eq!(norm("/a%00b"), Err(PathError::Nul));
        assert_eq!(norm("a"), Err(PathError::NotAbsolute));
        assert_eq!(norm("*"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn slash_policies() {
        assert_eq!(norm("/admin%2fx"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/admin%5Cx"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/admin\\x"), Err(PathError::EncodedSlash));
        let keep = Normalization {
            encoded_slash: EncodedSlash::Keep,
            ..Normalization::default()
        };
        assert_eq!(keep.path("/admin%2fx").unwrap(), "/admin%2Fx");
        assert_eq!(keep.path("/a%2f..%2fadmin").unwrap(), "/a%2F..%2Fadmin");
        let decode = Normalization {
            encoded_slash: EncodedSlash::Decode,
            ..Normalization::default()
        };
        assert_eq!(decode.path("/admin%2fx").unwrap(), "/admin/x");
        assert_eq!(decode.path("/public%2f..%2fadmin").unwrap(), "/admin");
        assert_eq!(decode.path("/public\\..\\admin").unwrap(), "/admin");
    }

    #[test]
    fn slash_merging_and_options() {
        assert_eq!(norm("//admin").unwrap(), "/admin");
        assert_eq!(norm("/a//b///").unwrap(), "/a/b/");
        let keep = Normalization {
            merge_slashes: false,
            ..Normalization::default()
        };
        assert_eq!(keep.path("//admin").unwrap(), "//admin");
        assert_eq!(keep.path("/a//../b").unwrap(), "/a/b");
        let lower = Normalization {
            lowercase: true,
            ..Normalization::default()
        };
        assert_eq!(lower.path("/ADMIN/%3b%C3").unwrap(), "/admin/%3B%C3");
        let semi = Normalization {
            reject_semicolon: true,
            ..Normalization::default()
        };
        assert_eq!(semi.path("/admin;x"), Err(PathError::Semicolon));
        assert_eq!(semi.path("/admin%3bx"), Err(PathError::Semicolon));
        assert_eq!(norm("/admin;x").unwrap(), "/admin;x");
    }

    #[test]
    fn normalization_is_idempotent() {
        let inputs = [
            "/a/./b/../../c//d/%2e/%7E",
            "/%41%42/x%3a/",
            "/..//../a/%252F",
            "/caf\u{e9}/%c3%a9",
        ];
        for input in inputs {
            let once = norm(input).unwrap();
            let twice = norm(&once).unwrap();
            assert_eq!(once, twice, "{input}");
        }
    }

    #[test]
    fn hosts() {
        let h = normalize_host("API.Example.COM.:8443").unwrap();
        assert_eq!((h.name.as_ref(), h.port), ("api.example.com", Some(8443)));
        let h = normalize_host("example.com").unwrap();
        assert!(matches!(h.name, Cow::Borrowed("example.com")));
        assert_eq!(h.port, None);
        let h = normalize_host("[::1]:80").unwrap();
        assert_eq!((h.name.as_ref(), h.port), ("[::1]", Some(80)));
        assert_eq!(normalize_host("example.com:").unwrap().port, None);
        assert_eq!(normalize_host("a b"), Err(PathError::InvalidHost));
        assert_eq!(normalize_host("a:99999"), Err(PathError::InvalidHost));
        assert_eq!(normalize_host(""), Err(PathError::InvalidHost));
        assert_eq!(normalize_host("."), Err(PathError::InvalidHost));
        assert_eq!(normalize_host("a:b:1"), Err(PathError::InvalidHost));
        assert_eq!(normalize_host("a:+1"), Err(PathError::InvalidHost));
        assert_eq!(normalize_host("[::1"), Err(PathError::InvalidHost));
        assert_eq!(normalize_host("[zz]"), Err(PathError::InvalidHost));
        assert_eq!(normalize_host("[::1]x"), Err(PathError::InvalidHost));
        assert_eq!(normalize_host("[::FFFF]").unwrap().name, "[::ffff]");
    }
}
