//! Who the client is: its IP address, resolved safely behind proxies.
//!
//! The address comes from the connection: axum's `ConnectInfo<SocketAddr>` (feature
//! `axum`), a plain [`SocketAddr`] extension, or [`PeerAddr`]. Only when that peer is
//! inside the configured [`TrustedProxies`] list are forwarding headers read, and then
//! from the right: the **rightmost address that is not a trusted proxy** is the client.
//! A client that is not a trusted proxy and sends `X-Forwarded-For` gets its socket
//! address; it cannot choose its own identity.
//!
//! # Fallbacks (documented behaviour for bad input)
//!
//! - No peer address in the extensions: `None` (key extractors then apply their
//!   missing-key behaviour).
//! - An entry that does not parse as an address (`unknown`, `_hidden`, garbage, an
//!   empty element) stops the walk: the client is the nearest hop to its right that we
//!   know, i.e. the last trusted proxy that reported it. Nothing left of a bad entry is
//!   ever used.
//! - All entries are trusted proxies: the leftmost entry is the client.
//! - Several header lines are read as one list, in order.
//! - Accepted entry forms: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80`, zones
//!   (`fe80::1%eth0`, `[fe80::1%25eth0]:80`, the zone is dropped) and IPv4-mapped IPv6
//!   (`::ffff:1.2.3.4`, read as `1.2.3.4`).
//! - At most [`MAX_HOPS`] entries are examined; a longer chain of trusted proxies
//!   resolves to the last examined hop.
//!
//! ```
//! use std::net::SocketAddr;
//! use gateway_layers_core::{ClientIpResolver, ForwardedHeader, RequestView, TrustedProxies};
//!
//! let resolver = ClientIpResolver::new(TrustedProxies::new(["10.0.0.0/8"]).unwrap())
//!     .with_header(ForwardedHeader::XForwardedFor);
//!
//! // Behind our load balancer at 10.0.0.2: the rightmost untrusted entry wins.
//! let mut request = http::Request::builder()
//!     .header("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.9")
//!     .body(()).unwrap();
//! request.extensions_mut().insert("10.0.0.2:4000".parse::<SocketAddr>().unwrap());
//! assert_eq!(resolver.resolve(&RequestView::new(&request)), Some("203.0.113.7".parse().unwrap()));
//!
//! // A client connecting directly cannot spoof its address.
//! request.extensions_mut().insert("198.51.100.1:5555".parse::<SocketAddr>().unwrap());
//! assert_eq!(resolver.resolve(&RequestView::new(&request)), Some("198.51.100.1".parse().unwrap()));
//! ```

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    str::FromStr,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, Request, header::FORWARDED};
use ipnet::IpNet;
use tower_layer::Layer;
use tower_service::Service;

use crate::{ConfigError, RequestView};

/// The most forwarding entries examined from the right.
pub const MAX_HOPS: usize = 32;

static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// The resolved client address, inserted into request extensions by [`ClientIpLayer`]
/// and read by every layer that keys on the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// The address of the connected peer, for servers that are not axum.
///
/// A plain [`SocketAddr`] extension is read too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// A list of proxy networks whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Arc<[IpNet]>,
}

impl TrustedProxies {
    /// Parses entries that are CIDR blocks (`10.0.0.0/8`, `fd00::/8`) or single
    /// addresses (`192.0.2.1`, `::1`). Any invalid entry is a [`ConfigError`].
    pub fn new<I, S>(entries: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            let net = if entry.contains('/') {
                IpNet::from_str(entry).map_err(|e| ConfigError::InvalidCidr {
                    value: entry.to_owned(),
                    reason: e.to_string(),
                })?
            } else {
                IpAddr::from_str(entry)
                    .map(IpNet::from)
                    .map_err(|e| ConfigError::InvalidCidr {
                        value: entry.to_owned(),
                        reason: e.to_string(),
                    })?
            };
            nets.push(net.trunc());
        }
        Ok(Self { nets: nets.into() })
    }

    /// Trust no proxy: the socket address is always the client.
    pub fn none() -> Self {
        Self::default()
    }

    /// Loopback only (`127.0.0.0/8`, `::1`): a proxy on the same host.
    pub fn loopback() -> Self {
        Self::new(["127.0.0.0/8", "::1/128"]).expect("static CIDRs")
    }

    /// Loopback and private networks (RFC 1918, RFC 4193 ULA): a proxy inside the
    /// same private network. Only right if no untrusted client can connect from them.
    pub fn private_networks() -> Self {
        Self::new([
            "127.0.0.0/8",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "::1/128",
            "fc00::/7",
        ])
        .expect("static CIDRs")
    }

    /// Whether `ip` belongs to a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// Which forwarding header a trusted proxy writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (the default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=...`.
    Forwarded,
}

/// Resolves the client IP from the connection and trusted forwarding headers.
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: TrustedProxies,
    header: ForwardedHeader,
}

impl ClientIpResolver {
    /// A resolver that believes forwarding headers only from `trusted` peers.
    pub fn new(trusted: TrustedProxies) -> Self {
        Self {
            trusted,
            header: ForwardedHeader::default(),
        }
    }

    /// Chooses the forwarding header the trusted proxies write.
    #[must_use]
    pub fn with_header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// The trusted proxies.
    pub fn trusted(&self) -> &TrustedProxies {
        &self.trusted
    }

    /// The client address: [`ClientIp`] if a [`ClientIpLayer`] already resolved it,
    /// otherwise resolved from the peer address and trusted headers.
    pub fn resolve(&self, request: &RequestView<'_>) -> Option<IpAddr> {
        if let Some(ClientIp(ip)) = request.extensions.get::<ClientIp>() {
            return Some(*ip);
        }
        let peer = peer_addr(request.extensions)?.ip();
        if self.trusted.is_empty() {
            // No trusted proxy: the peer is the client and headers are never read
            // (what `resolve_uncached` does first, without its call on the hot path).
            return Some(peer.to_canonical());
        }
        self.resolve_uncached(request.headers, peer)
    }

    /// Resolves from a peer address and headers, ignoring any cached [`ClientIp`].
    pub fn resolve_uncached(&self, headers: &HeaderMap, peer: IpAddr) -> Option<IpAddr> {
        let peer = peer.to_canonical();
        if self.trusted.is_empty() || !self.trusted.contains(peer) {
            return Some(peer);
        }
        let mut client = peer;
        let mut hops = 0;
        let mut examine = |entry: &str| -> bool {
            // Returns true to keep walking left.
            hops += 1;
            if hops > MAX_HOPS {
                return false;
            }
            match parse_node(entry) {
                Some(ip) => {
                    client = ip;
                    self.trusted.contains(ip)
                }
                None => false,
            }
        };
        match self.header {
            ForwardedHeader::XForwardedFor => {
                'outer: for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
                    let Ok(value) = value.to_str() else { break };
                    for entry in value.rsplit(',') {
                        if !examine(entry) {
                            break 'outer;
                        }
                    }
                }
            }
            ForwardedHeader::Forwarded => {
                'outer: for value in headers.get_all(FORWARDED).iter().rev() {
                    let Ok(value) = value.to_str() else { break };
                    let elements = split_unquoted(value, ',');
                    for element in elements.iter().rev() {
                        let Some(node) = forwarded_for(element) else {
                            break 'outer;
                        };
                        if !examine(node) {
                            break 'outer;
                        }
                    }
                }
            }
        }
        Some(client)
    }
}

/// The connected peer's address, from axum's `ConnectInfo<SocketAddr>`, a
/// [`SocketAddr`] or a [`PeerAddr`] extension.
pub fn peer_addr(extensions: &http::Extensions) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0);
    }
    if let Some(addr) = extensions.get::<SocketAddr>() {
        return Some(*addr);
    }
    extensions.get::<PeerAddr>().map(|p| p.0)
}

/// Parses one forwarding node (`ip`, `ip:port`, `[ip]`, `[ip]:port`, with an optional
/// IPv6 zone); `None` for anything else.
pub fn parse_node(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim().trim_matches('"');
    if entry.is_empty() || entry.len() > 64 {
        return None;
    }
    let host = if let Some(rest) = entry.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || valid_port(after.strip_prefix(':')?)) {
            return None;
        }
        let addr = strip_zone(inside);
        return addr
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    } else if entry.matches(':').count() == 1 {
        let (host, port) = entry.split_once(':')?;
        if !valid_port(port) {
            return None;
        }
        host
    } else {
        strip_zone(entry)
    };
    host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

fn strip_zone(addr: &str) -> &str {
    match addr.find('%') {
        Some(at) => &addr[..at],
        None => addr,
    }
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

/// Splits on `sep` outside double quotes.
fn split_unquoted(value: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&value[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&value[start..]);
    parts
}

/// The `for=` parameter of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<&str> {
    split_unquoted(element, ';').into_iter().find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim())
    })
}

/// Resolves the client IP once and inserts [`ClientIp`] into request extensions.
///
/// Put it outermost, so rate limiting, logging, transforms and the proxy's
/// `X-Forwarded-For` all agree on one address.
///
/// ```
/// use std::{convert::Infallible, net::SocketAddr};
/// use gateway_layers_core::{ClientIp, ClientIpLayer, ClientIpResolver, TrustedProxies};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let svc = ServiceBuilder::new()
///     .layer(ClientIpLayer::new(ClientIpResolver::new(TrustedProxies::loopback())))
///     .service(service_fn(|req: http::Request<()>| async move {
///         Ok::<_, Infallible>(req.extensions().get::<ClientIp>().map(|c| c.0.to_string()))
///     }));
/// let mut req = http::Request::builder()
///     .header("x-forwarded-for", "203.0.113.9")
///     .body(()).unwrap();
/// req.extensions_mut().insert("127.0.0.1:9000".parse::<SocketAddr>().unwrap());
/// assert_eq!(svc.oneshot(req).await.unwrap().as_deref(), Some("203.0.113.9"));
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientIpLayer {
    resolver: ClientIpResolver,
}

impl ClientIpLayer {
    /// A layer resolving with `resolver`.
    pub fn new(resolver: ClientIpResolver) -> Self {
        Self { resolver }
    }
}

impl<S> Layer<S> for ClientIpLayer {
    type Service = ClientIpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientIpService {
            inner,
            resolver: self.resolver.clone(),
        }
    }
}

/// The service made by [`ClientIpLayer`].
#[derive(Debug, Clone)]
pub struct ClientIpService<S> {
    inner: S,
    resolver: ClientIpResolver,
}

impl<S> ClientIpService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the wrapper.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for ClientIpService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Always recompute: a ClientIp extension set by anything before us is not trusted.
        let resolved = peer_addr(request.extensions())
            .and_then(|peer| self.resolver.resolve_uncached(request.headers(), peer.ip()));
        match resolved {
            Some(ip) => {
                request.extensions_mut().insert(ClientIp(ip));
            }
            None => {
                request.extensions_mut().remove::<ClientIp>();
            }
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn resolve(resolver: &ClientIpResolver, peer: &str, headers: &[(&str, &[u8])]) -> IpAddr {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        resolver.resolve_uncached(&map, ip(peer)).unwrap()
    }

    fn xff(trusted: &[&str]) -> ClientIpResolver {
        ClientIpResolver::new(TrustedProxies::new(trusted).unwrap())
    }

    #[test]
    fn resolve_without_trusted_proxies_is_the_canonical_peer() {
        let none = ClientIpResolver::default();
        let mut req = http::Request::builder()
            .header("x-forwarded-for", "1.1.1.1")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert("[::ffff:192.0.2.7]:80".parse::<SocketAddr>().unwrap());
        assert_eq!(none.resolve(&RequestView::new(&req)), Some(ip("192.0.2.7")));
        req.extensions_mut().insert(ClientIp(ip("203.0.113.1")));
        assert_eq!(
            none.resolve(&RequestView::new(&req)),
            Some(ip("203.0.113.1"))
        );
        let bare = http::Request::new(());
        assert_eq!(none.resolve(&RequestView::new(&bare)), None);
    }

    #[test]
    fn untrusted_peer_cannot_spoof() {
        let r = xff(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(&r, "198.51.100.1", &[("x-forwarded-for", b"1.1.1.1")]),
            ip("198.51.100.1")
        );
        // No trusted proxies at all: headers are never read.
        let none = ClientIpResolver::default();
        assert_eq!(
            resolve(&none, "10.0.0.1", &[("x-forwarded-for", b"1.1.1.1")]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn rightmost_untrusted_entry_wins() {
        let r = xff(&["10.0.0.0/8", "192.168.0.0/16"]);
        let got = resolve(
            &r,
            "10.0.0.2",
            &[(
                "x-forwarded-for",
                b"6.6.6.6, 203.0.113.7, 192.168.1.1, 10.1.1.1",
            )],
        );
        assert_eq!(got, ip("203.0.113.7"));
    }

    #[test]
    fn client_prepending_fake_entries_is_ignored() {
        // The attacker sends "X-Forwarded-For: 10.0.0.5" hoping to look internal; our
        // trusted LB appends the attacker's real address.
        let r = xff(&["10.0.0.0/8"]);
        let got = resolve(
            &r,
            "10.0.0.2",
            &[("x-forwarded-for", b"10.0.0.5, 198.51.100.66")],
        );
        assert_eq!(got, ip("198.51.100.66"));
    }

    #[test]
    fn multiple_header_lines_are_one_list() {
        let r = xff(&["10.0.0.0/8"]);
        let got = resolve(
            &r,
            "10.0.0.2",
            &[
                ("x-forwarded-for", b"203.0.113.1"),
                ("x-forwarded-for", b"10.0.0.3"),
            ],
        );
        assert_eq!(got, ip("203.0.113.1"));
    }

    #[test]
    fn all_trusted_gives_leftmost() {
        let r = xff(&["10.0.0.0/8"]);
        let got = resolve(
            &r,
            "10.0.0.2",
            &[("x-forwarded-for", b"10.0.0.9, 10.0.0.8")],
        );
        assert_eq!(got, ip("10.0.0.9"));
    }

    #[test]
    fn malformed_entries_stop_the_walk() {
        let r = xff(&["10.0.0.0/8"]);
        for bad in [
            &b"1.2.3.4, garbage, 10.0.0.7"[..],
            b"1.2.3.4, , 10.0.0.7",
            b"1.2.3.4,unknown,10.0.0.7",
            b"1.2.3.4, 999.1.1.1, 10.0.0.7",
            b"1.2.3.4, 1.2.3.4:99999, 10.0.0.7",
            b"1.2.3.4, [::1, 10.0.0.7",
        ] {
            assert_eq!(
                resolve(&r, "10.0.0.2", &[("x-forwarded-for", bad)]),
                ip("10.0.0.7")
            );
        }
        // Empty header: the peer.
        assert_eq!(
            resolve(&r, "10.0.0.2", &[("x-forwarded-for", b"")]),
            ip("10.0.0.2")
        );
        // Non-UTF-8 bytes: the peer, no panic.
        assert_eq!(
            resolve(&r, "10.0.0.2", &[("x-forwarded-for", b"\xff\xfe, 1.2.3.4")]),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn entry_forms() {
        for (entry, want) in [
            ("1.2.3.4", Some("1.2.3.4")),
            (" 1.2.3.4:8080 ", Some("1.2.3.4")),
            ("::1", Some("::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("fe80::1%eth0", Some("fe80::1")),
            ("[fe80::1%25eth0]:80", Some("fe80::1")),
            ("::ffff:192.0.2.1", Some("192.0.2.1")),
            ("\"[2001:db8:cafe::17]:4711\"", Some("2001:db8:cafe::17")),
            ("[2001:db8::1]x", None),
            ("[2001:db8::1]:", None),
            ("1.2.3.4:", None),
            ("1.2.3.4:abc", None),
            ("_hidden", None),
            ("unknown", None),
            ("", None),
        ] {
            assert_eq!(parse_node(entry), want.map(ip), "{entry}");
        }
        let long = "1".repeat(10_000);
        assert_eq!(parse_node(&long), None);
    }

    #[test]
    fn forwarded_header() {
        let r = xff(&["10.0.0.0/8"]).with_header(ForwardedHeader::Forwarded);
        let got = resolve(
            &r,
            "10.0.0.2",
            &[(
                "forwarded",
                b"for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, For=10.0.0.3;by=10.0.0.2",
            )],
        );
        assert_eq!(got, ip("2001:db8:cafe::17"));
        // Obfuscated identifier stops the walk at the trusted hop that reported it.
        let got = resolve(
            &r,
            "10.0.0.2",
            &[("forwarded", b"for=1.2.3.4, for=_hidden, for=10.0.0.3")],
        );
        assert_eq!(got, ip("10.0.0.3"));
        // Element without for=: stop.
        let got = resolve(&r, "10.0.0.2", &[("forwarded", b"for=1.2.3.4, proto=http")]);
        assert_eq!(got, ip("10.0.0.2"));
        // X-Forwarded-For is ignored when Forwarded is configured.
        let got = resolve(&r, "10.0.0.2", &[("x-forwarded-for", b"1.1.1.1")]);
        assert_eq!(got, ip("10.0.0.2"));
    }

    #[test]
    fn hop_limit_bounds_work() {
        let r = xff(&["10.0.0.0/8"]);
        let chain = vec!["10.0.0.1"; 1000].join(",");
        let got = resolve(
            &r,
            "10.0.0.2",
            &[("x-forwarded-for", format!("1.2.3.4,{chain}").as_bytes())],
        );
        assert_eq!(got, ip("10.0.0.1"));
    }

    #[test]
    fn mapped_peer_is_canonical() {
        let r = xff(&["10.0.0.0/8"]);
        assert_eq!(
            resolve(
                &r,
                "::ffff:10.0.0.2",
                &[("x-forwarded-for", b"203.0.113.5")]
            ),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn invalid_cidrs_are_config_errors() {
        for bad in ["10.0.0.0/33", "nope", "10.0.0/8", "::1/129", ""] {
            assert!(
                matches!(
                    TrustedProxies::new([bad]),
                    Err(ConfigError::InvalidCidr { .. })
                ),
                "{bad}"
            );
        }
        let ok = TrustedProxies::new(["10.1.2.3/8", "::1", "192.0.2.1"]).unwrap();
        assert!(ok.contains(ip("10.200.0.1")));
        assert!(ok.contains(ip("::1")));
        assert!(!ok.contains(ip("192.0.2.2")));
    }

    #[tokio::test]
    async fn layer_overwrites_forged_extension_and_reads_connect_info() {
        use tower::{ServiceExt, service_fn};
        let svc = ClientIpLayer::new(xff(&["127.0.0.1"])).layer(service_fn(
            |req: Request<()>| async move {
                Ok::<_, std::convert::Infallible>(req.extensions().get::<ClientIp>().copied())
            },
        ));
        let mut req = Request::builder()
            .header("x-forwarded-for", "203.0.113.1")
            .body(())
            .unwrap();
        req.extensions_mut().insert(ClientIp(ip("1.1.1.1")));
        req.extensions_mut().insert(axum::extract::ConnectInfo(
            "198.51.100.3:1234".parse::<SocketAddr>().unwrap(),
        ));
        let got = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(got, Some(ClientIp(ip("198.51.100.3"))));

        let mut req = Request::new(());
        req.extensions_mut().insert(ClientIp(ip("1.1.1.1")));
        assert_eq!(svc.oneshot(req).await.unwrap(), None);
    }
}
