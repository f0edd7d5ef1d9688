//! Request and response rewriting: the upstream URI, hop-by-hop headers, forwarding
//! headers, `Host` and `Via`. Pure functions of the request parts.

use std::net::IpAddr;

use bytes::BytesMut;
use gateway_layers_core::{
    ClientIp, ClientIpResolver, RequestView,
    client_ip::peer_addr,
    headers::{is_hop_by_hop, push_ip, remove_hop_by_hop},
};
use http::{
    HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, Version,
    header::{CONNECTION, FORWARDED, HOST, TE, UPGRADE, VIA},
    request,
    uri::PathAndQuery,
};

use crate::{
    config::{HostHeader, Protocol},
    target::TargetInfo,
};

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Forwarding settings, resolved at build time.
#[derive(Debug, Clone)]
pub(crate) struct ForwardSettings {
    pub(crate) host: HostHeader,
    pub(crate) x_forwarded: bool,
    pub(crate) forwarded: bool,
    pub(crate) via: Option<HeaderValue>,
    pub(crate) resolver: ClientIpResolver,
}

/// The upstream URI: the target's scheme and authority, its base path joined with the
/// request's path and query.
pub(crate) fn upstream_uri(target: &TargetInfo, incoming: &Uri) -> Result<Uri, http::Error> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(target.scheme.clone());
    parts.authority = Some(target.authority.clone());
    parts.path_and_query = Some(upstream_path(target, incoming)?);
    Ok(Uri::from_parts(parts)?)
}

/// The target's base path joined with the request's path and query (the origin-form
/// request target).
pub(crate) fn upstream_path(
    target: &TargetInfo,
    incoming: &Uri,
) -> Result<PathAndQuery, http::Error> {
    Ok(match (&target.base_path, incoming.path_and_query()) {
        (None, Some(pq)) => pq.clone(),
        (None, None) => PathAndQuery::from_static("/"),
        (Some(base), pq) => {
            let rest = pq.map_or("/", PathAndQuery::as_str);
            let mut joined = String::with_capacity(base.len() + rest.len() + 1);
            joined.push_str(base);
            if !rest.starts_with('/') {
                joined.push('/');
            }
            joined.push_str(rest);
            PathAndQuery::try_from(joined)?
        }
    })
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| lists_token(v.as_bytes(), token.as_bytes()))
}

/// Whether a comma-separated field value lists `token` (case-insensitive).
pub(crate) fn lists_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether the request asks for a protocol upgrade (HTTP/1.1 `Connection: upgrade`);
/// returns the `Upgrade` value.
pub(crate) fn upgrade_request(parts: &request::Parts, seen: Seen) -> Option<HeaderValue> {
    if !seen.connection
        || parts.version != Version::HTTP_11
        || !has_token(&parts.headers, &CONNECTION, "upgrade")
    {
        return None;
    }
    parts.headers.get(UPGRADE).cloned()
}

/// Which of the fields the rewrite looks at a request carries, from one pass over
/// its (few) names: in the common case (none of them) the rewrite costs no lookups.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Seen {
    hop_by_hop: bool,
    connection: bool,
    te: bool,
    x_forwarded_for: bool,
    x_forwarded_proto: bool,
    x_forwarded_host: bool,
    forwarded: bool,
}

/// Notes which of the fields [`Seen`] tracks are in `headers`.
#[inline]
pub(crate) fn scan(headers: &HeaderMap) -> Seen {
    let mut seen = Seen::default();
    for name in headers.keys() {
        if is_hop_by_hop(name) {
            seen.hop_by_hop = true;
            seen.connection |= name == CONNECTION;
            seen.te |= name == TE;
            continue;
        }
        match name.as_str().len() {
            9 => seen.forwarded |= name == FORWARDED,
            15 => seen.x_forwarded_for |= name == X_FORWARDED_FOR,
            16 => seen.x_forwarded_host |= name == X_FORWARDED_HOST,
            17 => seen.x_forwarded_proto |= name == X_FORWARDED_PROTO,
            _ => {}
        }
    }
    seen
}

/// Forwarding fields left for the HTTP/1.1 client to write after the request's own
/// (so they are not inserted into the header map only to be written out again).
#[derive(Debug, Default)]
pub(crate) struct Appended {
    pub(crate) x_forwarded_for: Option<ForwardedFor>,
    pub(crate) x_forwarded_proto: Option<&'static str>,
    pub(crate) x_forwarded_host: Option<HeaderValue>,
}

/// An `X-Forwarded-For` value to write.
#[derive(Debug)]
pub(crate) enum ForwardedFor {
    /// Just this address (written without a `HeaderValue` in between).
    Ip(IpAddr),
    /// A chain.
    Value(HeaderValue),
}

/// Removes hop-by-hop headers; a scan of the (few) names first, so the common case
/// (none present) costs no hash lookups.
#[inline]
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.keys().any(is_hop_by_hop) {
        remove_hop_by_hop(headers);
    }
}

fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    let mut buf = BytesMut::with_capacity(40);
    push_ip(&mut buf, ip);
    HeaderValue::from_maybe_shared(buf.freeze()).ok()
}

fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<BytesMut> {
    let mut values = headers.get_all(name).iter().filter(|v| !v.is_empty());
    let first = values.next()?;
    let mut buf = BytesMut::from(first.as_bytes());
    for value in values {
        buf.extend_from_slice(b", ");
        buf.extend_from_slice(value.as_bytes());
    }
    Some(buf)
}

fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// Rewrites the request parts for `target`. `upgrade` is the protocol of an upgrade
/// request (its `Connection`/`Upgrade` headers are kept). `origin_form`: the URI
/// becomes path and query only and the `X-Forwarded-*` fields are returned instead
/// of inserted (for the in-place HTTP/1.1 client, which writes them), else the
/// absolute upstream URI. `seen`: [`scan`] of the request's headers.
pub(crate) fn prepare_request(
    parts: &mut request::Parts,
    target: &TargetInfo,
    settings: &ForwardSettings,
    upgrade: Option<&HeaderValue>,
    origin_form: bool,
    mut seen: Seen,
) -> Result<Appended, http::Error> {
    let had_host = parts.headers.get(HOST).cloned();
    let has_host = had_host.is_some();
    let original_host = had_host.or_else(|| {
        parts
            .uri
            .authority()
            // host[:port]: userinfo (`user:pass@`) never goes into `Host`.
            .map(|a| a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, hp)| hp))
            .and_then(|hp| HeaderValue::from_str(hp).ok())
    });
    let proto = if parts.uri.scheme_str() == Some("https") {
        "https"
    } else {
        "http"
    };
    let te_trailers = seen.te && has_token(&parts.headers, &TE, "trailers");

    if seen.hop_by_hop {
        remove_hop_by_hop(&mut parts.headers);
        // `Connection` may have named any field.
        seen = scan(&parts.headers);
    }

    let mut appended = Appended::default();
    if settings.x_forwarded || settings.forwarded {
        forwarding_headers(
            parts,
            settings,
            original_host.as_ref(),
            proto,
            seen,
            origin_form.then_some(&mut appended),
        );
    }
    if let Some(via) = &settings.via {
        parts.headers.append(VIA, via.clone());
    }
    match settings.host {
        HostHeader::Preserve => {
            // HTTP/2 clients send `:authority` instead of `Host`.
            if !has_host && let Some(host) = original_host {
                parts.headers.insert(HOST, host);
            }
        }
        HostHeader::Upstream => {
            parts.headers.insert(HOST, target.host.clone());
        }
    }
    if let Some(protocol) = upgrade {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(UPGRADE, protocol.clone());
    }
    if te_trailers {
        parts
            .headers
            .insert(TE, HeaderValue::from_static("trailers"));
    }
    // A client without `Host` (HTTP/1.0) gets the target's, as hyper-util's client
    // would add it.
    if !has_host && settings.host == HostHeader::Preserve && !parts.headers.contains_key(HOST) {
        parts.headers.insert(HOST, target.host.clone());
    }
    parts.uri = if origin_form {
        Uri::from(upstream_path(target, &parts.uri)?)
    } else {
        upstream_uri(target, &parts.uri)?
    };
    parts.version = match target.protocol {
        Protocol::Http1 => Version::HTTP_11,
        Protocol::Http2 => Version::HTTP_2,
    };
    Ok(appended)
}

/// Adds the forwarding fields; the `X-Forwarded-*` ones go into `defer` when given.
fn forwarding_headers(
    parts: &mut request::Parts,
    settings: &ForwardSettings,
    original_host: Option<&HeaderValue>,
    proto: &'static str,
    seen: Seen,
    defer: Option<&mut Appended>,
) {
    let peer = peer_addr(&parts.extensions).map(|a| a.ip());
    let trusted = peer.is_some_and(|ip| settings.resolver.trusted().contains(ip));
    // The address of the hop we append: the peer; without one, the resolved client
    // (a `ClientIp` set by an earlier layer, or the resolver's verdict).
    let hop = peer.or_else(|| {
        parts
            .extensions
            .get::<ClientIp>()
            .map(|c| c.0)
            .or_else(|| settings.resolver.resolve(&RequestView::from_parts(parts)))
    });
    let headers = &mut parts.headers;

    if settings.x_forwarded {
        let previous = if trusted && seen.x_forwarded_for {
            joined(headers, &X_FORWARDED_FOR)
        } else {
            None
        };
        if seen.x_forwarded_for {
            headers.remove(&X_FORWARDED_FOR);
        }
        let value = match (previous, hop) {
            (Some(mut chain), Some(ip)) => {
                chain.extend_from_slice(b", ");
                push_ip(&mut chain, ip);
                HeaderValue::from_maybe_shared(chain.freeze())
                    .ok()
                    .map(ForwardedFor::Value)
            }
            (None, Some(ip)) => Some(ForwardedFor::Ip(ip)),
            (Some(chain), None) => HeaderValue::from_maybe_shared(chain.freeze())
                .ok()
                .map(ForwardedFor::Value),
            (None, None) => None,
        };
        // A trusted hop's proto and host stand; anyone else's are replaced.
        let keep_proto = trusted && seen.x_forwarded_proto;
        let keep_host = trusted && seen.x_forwarded_host;
        if seen.x_forwarded_proto && !keep_proto {
            headers.remove(&X_FORWARDED_PROTO);
        }
        if seen.x_forwarded_host && !keep_host {
            headers.remove(&X_FORWARDED_HOST);
        }
        let host = original_host.filter(|_| !keep_host).cloned();
        match defer {
            Some(appended) => {
                appended.x_forwarded_for = value;
                appended.x_forwarded_proto = (!keep_proto).then_some(proto);
                appended.x_forwarded_host = host;
            }
            None => {
                let value = match value {
                    Some(ForwardedFor::Ip(ip)) => ip_value(ip),
                    Some(ForwardedFor::Value(value)) => Some(value),
                    None => None,
                };
                if let Some(value) = value {
                    headers.insert(X_FORWARDED_FOR.clone(), value);
                }
                if !keep_proto {
                    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
                }
                if let Some(host) = host {
                    headers.insert(X_FORWARDED_HOST.clone(), host);
                }
            }
        }
    }

    if settings.forwarded {
        let previous = if trusted && seen.forwarded {
            joined(headers, &FORWARDED)
        } else {
            None
        };
        if seen.forwarded {
            headers.remove(FORWARDED);
        }
        let mut element = String::with_capacity(64);
        if let Some(ip) = hop {
            element.push_str("for=");
            element.push_str(&forwarded_node(ip));
            element.push(';');
        }
        if let Some(host) = original_host.and_then(|h| h.to_str().ok()) {
            // A quoted-string: `"` and `\` in a (bogus) client `Host` are escaped, so
            // it cannot close the quote and inject `for=` parameters.
            element.push_str("host=\"");
            for c in host.chars() {
                if matches!(c, '"' | '\\') {
                    element.push('\\');
                }
                element.push(c);
            }
            element.push_str("\";");
        }
        element.push_str("proto=");
        element.push_str(proto);
        let value = match previous {
            Some(mut chain) => {
                chain.extend_from_slice(b", ");
                chain.extend_from_slice(element.as_bytes());
                HeaderValue::from_maybe_shared(chain.freeze()).ok()
            }
            None => HeaderValue::from_str(&element).ok(),
        };
        if let Some(value) = value {
            headers.insert(FORWARDED, value);
        }
    }
}

/// Cleans the upstream's response head: hop-by-hop headers go (a `101 Switching
/// Protocols` keeps `Connection: upgrade` and `Upgrade`), `Via` is added if set.
pub(crate) fn prepare_response(
    status: StatusCode,
    headers: &mut HeaderMap,
    via: Option<&HeaderValue>,
) {
    let upgrade = (status == StatusCode::SWITCHING_PROTOCOLS)
        .then(|| headers.get(UPGRADE).cloned())
        .flatten();
    strip_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, protocol);
    }
    if let Some(via) = via {
        headers.append(VIA, via.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use gateway_layers_core::TrustedProxies;
    use http::Request;

    use super::*;
    use crate::config::Target;

    fn target(url: &str) -> TargetInfo {
        TargetInfo::parse(&Target::new(url)).unwrap()
    }

    fn settings(trusted: &[&str]) -> ForwardSettings {
        ForwardSettings {
            host: HostHeader::Preserve,
            x_forwarded: true,
            forwarded: true,
            via: Some(HeaderValue::from_static("1.1 gw")),
            resolver: ClientIpResolver::new(TrustedProxies::new(trusted.iter().copied()).unwrap()),
        }
    }

    fn prep(
        parts: &mut request::Parts,
        target: &TargetInfo,
        settings: &ForwardSettings,
        upgrade: Option<&HeaderValue>,
        origin_form: bool,
    ) -> Result<Appended, http::Error> {
        let seen = scan(&parts.headers);
        prepare_request(parts, target, settings, upgrade, origin_form, seen)
    }

    fn parts(uri: &str, peer: &str, headers: &[(&str, &str)]) -> request::Parts {
        let mut builder = Request::get(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let mut req = builder.body(()).unwrap();
        req.extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        req.into_parts().0
    }

    #[test]
    fn formats_addresses() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.100.255.9",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(ip).unwrap(), ip.to_string().as_str());
        }
    }

    #[test]
    fn joins_paths_and_queries() {
        let cases = [
            ("http://u:1", "/a/b?x=1", "http://u:1/a/b?x=1"),
            ("http://u:1/", "/", "http://u:1/"),
            ("http://u:1/api", "/users?id=2", "http://u:1/api/users?id=2"),
            ("http://u:1/api/", "/", "http://u:1/api/"),
            ("http://u:1", "http://client.example/p?q", "http://u:1/p?q"),
        ];
        for (base, incoming, expected) in cases {
            let uri = upstream_uri(&target(base), &incoming.parse().unwrap()).unwrap();
            assert_eq!(uri, expected, "{base} + {incoming}");
        }
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut p = parts(
            "/x",
            "198.51.100.7:5000",
            &[
                ("host", "api.example"),
                ("connection", "close, X-Forwarded-For, X-User-Id"),
                ("x-forwarded-for", "6.6.6.6"),
                ("x-user-id", "admin"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers, gzip"),
                ("proxy-authorization", "secret"),
                ("x-kept", "1"),
            ],
        );
        prep(
            &mut p,
            &target("http://127.0.0.1:9"),
            &settings(&[]),
            None,
            false,
        )
        .unwrap();
        let h = &p.headers;
        assert!(h.get("connection").is_none());
        assert!(h.get("x-user-id").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get("proxy-authorization").is_none());
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-kept"], "1");
        assert_eq!(h["x-forwarded-for"], "198.51.100.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example");
        assert_eq!(
            h["forwarded"],
            "for=198.51.100.7;host=\"api.example\";proto=http"
        );
        assert_eq!(h["via"], "1.1 gw");
        assert_eq!(h["host"], "api.example");
        assert_eq!(p.uri, "http://127.0.0.1:9/x");
        assert_eq!(p.version, Version::HTTP_11);
    }

    /// The in-place client's request: the `X-Forwarded-*` fields it writes after the
    /// others, as it would send them.
    fn as_sent(p: &request::Parts, appended: &Appended) -> Vec<(String, String)> {
        let mut fields: Vec<(String, String)> = p
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        let extra = [
            (
                "x-forwarded-for",
                match &appended.x_forwarded_for {
                    Some(ForwardedFor::Ip(ip)) => ip_value(*ip),
                    Some(ForwardedFor::Value(value)) => Some(value.clone()),
                    None => None,
                },
            ),
            (
                "x-forwarded-proto",
                appended.x_forwarded_proto.map(HeaderValue::from_static),
            ),
            ("x-forwarded-host", appended.x_forwarded_host.clone()),
        ];
        for (name, value) in extra {
            if let Some(value) = value {
                fields.push((name.to_owned(), value.to_str().unwrap().to_owned()));
            }
        }
        fields.sort();
        fields
    }

    #[test]
    fn deferred_forwarding_fields_are_the_inserted_ones() {
        // (peer, trusted proxies, request fields)
        type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);
        let cases: [Case<'_>; 5] = [
            ("198.51.100.7:5000", &[], &[("host", "api.example")]),
            (
                "198.51.100.7:5000",
                &[],
                &[
                    ("host", "api.example"),
                    ("x-forwarded-for", "6.6.6.6"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "evil.example"),
                ],
            ),
            (
                "10.0.0.2:1",
                &["10.0.0.0/8"],
                &[
                    ("host", "h"),
                    ("x-forwarded-for", "203.0.113.9"),
                    ("x-forwarded-for", "10.0.0.9"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "front.example"),
                ],
            ),
            // Named in `Connection`: removed as hop-by-hop, then set afresh.
            (
                "10.0.0.2:1",
                &["10.0.0.0/8"],
                &[
                    ("host", "h"),
                    ("connection", "x-forwarded-proto"),
                    ("x-forwarded-proto", "https"),
                ],
            ),
            ("[2001:db8::7]:443", &[], &[]),
        ];
        for (peer, trusted, headers) in cases {
            let mut inserted = parts("/x", peer, headers);
            let mut deferred = inserted.clone();
            let none = prep(
                &mut inserted,
                &target("http://u"),
                &settings(trusted),
                None,
                false,
            )
            .unwrap();
            assert!(none.x_forwarded_for.is_none() && none.x_forwarded_proto.is_none());
            let appended = prep(
                &mut deferred,
                &target("http://u"),
                &settings(trusted),
                None,
                true,
            )
            .unwrap();
            assert!(appended.x_forwarded_proto.is_some() || trusted.len() == 1);
            assert_eq!(
                as_sent(&deferred, &appended),
                as_sent(&inserted, &Appended::default()),
                "{peer} {headers:?}"
            );
        }
    }

    #[test]
    fn trusted_peers_chains_are_extended() {
        let mut p = parts(
            "/",
            "10.0.0.2:1",
            &[
                ("host", "h"),
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-for", "10.0.0.9"),
                ("x-forwarded-proto", "https"),
                ("forwarded", "for=203.0.113.9"),
            ],
        );
        prep(
            &mut p,
            &target("http://u"),
            &settings(&["10.0.0.0/8"]),
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            p.headers["x-forwarded-for"],
            "203.0.113.9, 10.0.0.9, 10.0.0.2"
        );
        assert_eq!(p.headers["x-forwarded-proto"], "https");
        assert_eq!(
            p.headers["forwarded"],
            "for=203.0.113.9, for=10.0.0.2;host=\"h\";proto=http"
        );
    }

    #[test]
    fn forwarded_host_cannot_inject_parameters() {
        let mut p = parts(
            "/",
            "192.0.2.1:1",
            &[("host", "evil\";for=203.0.113.1;x=\"\\")],
        );
        prep(&mut p, &target("http://u"), &settings(&[]), None, false).unwrap();
        assert_eq!(
            p.headers["forwarded"],
            "for=192.0.2.1;host=\"evil\\\";for=203.0.113.1;x=\\\"\\\\\";proto=http"
        );
    }

    #[test]
    fn host_from_the_authority_drops_userinfo() {
        let mut p = parts("http://user:pw@api.example:8080/x", "192.0.2.1:1", &[]);
        prep(&mut p, &target("http://u"), &settings(&[]), None, false).unwrap();
        assert_eq!(p.headers["host"], "api.example:8080");
        assert_eq!(p.headers["x-forwarded-host"], "api.example:8080");
    }

    #[test]
    fn ipv6_forwarded_and_upstream_host() {
        let mut p = parts("/", "[2001:db8::1]:443", &[("host", "h")]);
        let mut s = settings(&[]);
        s.host = HostHeader::Upstream;
        prep(&mut p, &target("http://up:81"), &s, None, false).unwrap();
        assert_eq!(p.headers["x-forwarded-for"], "2001:db8::1");
        assert!(
            p.headers["forwarded"]
                .to_str()
                .unwrap()
                .starts_with("for=\"[2001:db8::1]\";")
        );
        assert_eq!(p.headers["host"], "up:81");
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut p = parts(
            "/ws",
            "127.0.0.1:1",
            &[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "websocket"),
            ],
        );
        let upgrade = upgrade_request(&p, scan(&p.headers));
        assert_eq!(upgrade.as_ref().unwrap(), "websocket");
        prep(
            &mut p,
            &target("http://u"),
            &settings(&[]),
            upgrade.as_ref(),
            false,
        )
        .unwrap();
        assert_eq!(p.headers["connection"], "upgrade");
        assert_eq!(p.headers["upgrade"], "websocket");

        let mut response = HeaderMap::new();
        response.insert("connection", HeaderValue::from_static("Upgrade"));
        response.insert("upgrade", HeaderValue::from_static("websocket"));
        response.insert("keep-alive", HeaderValue::from_static("x"));
        prepare_response(StatusCode::SWITCHING_PROTOCOLS, &mut response, None);
        assert_eq!(response["upgrade"], "websocket");
        assert!(response.get("keep-alive").is_none());
        let mut plain = response.clone();
        prepare_response(StatusCode::OK, &mut plain, None);
        assert!(plain.get("upgrade").is_none() && plain.get("connection").is_none());
    }
}
