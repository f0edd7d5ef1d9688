//! Which bodies are touched, and gzip/deflate decoding and encoding.

use std::io::{Read, Write};

use flate2::{
    Compression,
    read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder},
    write::{GzEncoder, ZlibEncoder},
};
use http::{
    HeaderMap,
    header::{CONTENT_ENCODING, CONTENT_TYPE},
};

use crate::config::CompressedBodies;

/// A body coding this crate can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Identity,
    Gzip,
    Deflate,
}

/// Why a body was not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Decoded, it would exceed the cap.
    TooLarge,
    /// Not valid gzip/deflate.
    Corrupt,
}

/// Whether `headers` describe a JSON body: `application/json` or any `*/*+json`.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    (kind.eq_ignore_ascii_case("application") && subtype.eq_ignore_ascii_case("json"))
        || (subtype.len() > 5
            && subtype.is_char_boundary(subtype.len() - 5)
            && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// The coding of a body the layer may transform, or `None` to leave it alone.
pub(crate) fn coding(headers: &HeaderMap, policy: CompressedBodies) -> Option<Coding> {
    let mut values = headers.get_all(CONTENT_ENCODING).iter();
    let Some(first) = values.next() else {
        return Some(Coding::Identity);
    };
    if values.next().is_some() {
        return None;
    }
    let coding = match first.to_str().ok()?.trim() {
        c if c.is_empty() || c.eq_ignore_ascii_case("identity") => return Some(Coding::Identity),
        c if c.eq_ignore_ascii_case("gzip") || c.eq_ignore_ascii_case("x-gzip") => Coding::Gzip,
        c if c.eq_ignore_ascii_case("deflate") => Coding::Deflate,
        // br, zstd, stacked codings ("gzip, br"): passed through.
        _ => return None,
    };
    (policy == CompressedBodies::Transform).then_some(coding)
}

fn read_capped(reader: impl Read, cap: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    reader
        .take((cap as u64).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|_| DecodeError::Corrupt)?;
    if out.len() > cap {
        return Err(DecodeError::TooLarge);
    }
    Ok(out)
}

/// Decodes `body` (never more than `cap` bytes of output).
pub(crate) fn decode(coding: Coding, body: &[u8], cap: usize) -> Result<Vec<u8>, DecodeError> {
    match coding {
        Coding::Identity if body.len() > cap => Err(DecodeError::TooLarge),
        Coding::Identity => Ok(body.to_vec()),
        // Every member: a gzip body may be several members back to back (RFC 1952 §2.2),
        // and `GzDecoder` would silently drop all but the first.
        Coding::Gzip => read_capped(MultiGzDecoder::new(body), cap),
        // RFC 9110 "deflate" is zlib; some servers send raw deflate.
        Coding::Deflate => match read_capped(ZlibDecoder::new(body), cap) {
            Err(DecodeError::Corrupt) => read_capped(DeflateDecoder::new(body), cap),
            other => other,
        },
    }
}

/// Encodes `body` with `coding`.
pub(crate) fn encode(coding: Coding, body: Vec<u8>) -> Vec<u8> {
    fn finish<W: Write>(
        mut w: W,
        body: &[u8],
        done: impl FnOnce(W) -> std::io::Result<Vec<u8>>,
    ) -> Vec<u8> {
        // Writing into a Vec cannot fail.
        w.write_all(body).expect("in-memory write");
        done(w).expect("in-memory write")
    }
    match coding {
        Coding::Identity => body,
        Coding::Gzip => finish(
            GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), Compression::fast()),
            &body,
            GzEncoder::finish,
        ),
        Coding::Deflate => finish(
            ZlibEncoder::new(Vec::with_capacity(body.len() / 4 + 64), Compression::fast()),
            &body,
            ZlibEncoder::finish,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn json_content_types() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
            "application/vnd.api+json",
        ] {
            assert!(is_json(&h(&[("content-type", yes)])), "{yes}");
        }
        for no in [
            "text/plain",
            "application/jsonx",
            "+json",
            "application/x-ndjson",
            "text/html; x=+json",
        ] {
            assert!(!is_json(&h(&[("content-type", no)])), "{no}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn codings() {
        let t = CompressedBodies::Transform;
        assert_eq!(coding(&HeaderMap::new(), t), Some(Coding::Identity));
        assert_eq!(
            coding(&h(&[("content-encoding", "GZIP")]), t),
            Some(Coding::Gzip)
        );
        assert_eq!(
            coding(&h(&[("content-encoding", "deflate")]), t),
            Some(Coding::Deflate)
        );
        assert_eq!(coding(&h(&[("content-encoding", "br")]), t), None);
        assert_eq!(coding(&h(&[("content-encoding", "gzip, br")]), t), None);
        assert_eq!(
            coding(
                &h(&[("content-encoding", "gzip")]),
                CompressedBodies::Passthrough
            ),
            None
        );
    }

    #[test]
    fn round_trips_and_caps() {
        let body = br#"{"a":"hello hello hello hello"}"#.to_vec();
        for c in [Coding::Gzip, Coding::Deflate, Coding::Identity] {
            let encoded = encode(c, body.clone());
            assert_eq!(decode(c, &encoded, 1024).unwrap(), body);
            assert_eq!(decode(c, &encoded, 5), Err(DecodeError::TooLarge));
        }
        // Raw deflate is accepted too.
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), Compression::fast());
        raw.write_all(&body).unwrap();
        assert_eq!(
            decode(Coding::Deflate, &raw.finish().unwrap(), 1024).unwrap(),
            body
        );
        assert_eq!(
            decode(Coding::Gzip, b"not gzip", 1024),
            Err(DecodeError::Corrupt)
        );
        // The largest cap does not overflow.
        assert_eq!(
            decode(
                Coding::Gzip,
                &encode(Coding::Gzip, body.clone()),
                usize::MAX
            )
            .unwrap(),
            body
        );
        // A multi-member gzip body decodes whole, not only its first member.
        let mut two = encode(Coding::Gzip, br#"{"a":"#.to_vec());
        two.extend(encode(Coding::Gzip, b"1}".to_vec()));
        assert_eq!(decode(Coding::Gzip, &two, 1024).unwrap(), br#"{"a":1}"#);
        // A bomb stops at the cap.
        let bomb = encode(Coding::Gzip, vec![b' '; 10 << 20]);
        assert_eq!(
            decode(Coding::Gzip, &bomb, 1 << 20),
            Err(DecodeError::TooLarge)
        );
    }
}
