//! Client IP resolution from hostile `X-Forwarded-For` / `Forwarded` values: never
//! panics, and an untrusted peer always resolves to itself.
#![no_main]

use std::net::IpAddr;

use gateway_layers_core::{
    ClientIpResolver, ForwardedHeader, TrustedProxies, client_ip::parse_node,
};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = std::str::from_utf8(data).map(parse_node);
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let peer: IpAddr = "10.0.0.2".parse().unwrap();
    let trusted = TrustedProxies::new(["10.0.0.0/8", "fd00::/8"]).unwrap();
    for header in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
        let mut headers = HeaderMap::new();
        let name = match header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        headers.append(name, value.clone());
        headers.append(name, value.clone());
        let resolver = ClientIpResolver::new(trusted.clone()).with_header(header);
        // Never panics, always answers for a known peer.
        let ip = resolver.resolve_uncached(&headers, peer);
        assert!(ip.is_some());
        // A peer that is not a trusted proxy can never choose its address.
        let outsider: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            resolver.resolve_uncached(&headers, outsider),
            Some(outsider)
        );
    }
});
