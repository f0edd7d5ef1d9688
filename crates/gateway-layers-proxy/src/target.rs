//! Targets: parsed addresses, live counters and health, and the `UpstreamTarget`
//! extension.

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
};

use gateway_layers_core::ConfigError;
use http::{
    HeaderValue, Uri,
    uri::{Authority, Scheme},
};

use crate::{
    balance::{Picker, Strategy},
    config::{MAX_WEIGHT, Protocol, Target},
    conn::IdleConns,
    health::Streak,
};

/// The parsed, immutable part of a target.
#[derive(Debug)]
pub(crate) struct TargetInfo {
    pub(crate) url: Box<str>,
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    /// Base path without a trailing slash; `None` for `/`.
    pub(crate) base_path: Option<Box<str>>,
    pub(crate) protocol: Protocol,
    pub(crate) host: HeaderValue,
    /// `host:port` to connect to (the scheme's default port filled in).
    pub(crate) connect_addr: Box<str>,
    /// Plain `http://` with HTTP/1.1: served by the in-place client (`conn`).
    pub(crate) direct: bool,
}

impl TargetInfo {
    pub(crate) fn parse(target: &Target) -> Result<Self, ConfigError> {
        let field = "targets.url";
        let uri: Uri = target
            .url
            .parse()
            .map_err(|e| ConfigError::invalid(field, format!("{:?}: {e}", target.url)))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| {
            ConfigError::invalid(field, format!("{:?} has no scheme", target.url))
        })?;
        let supported =
            scheme == Scheme::HTTP || (cfg!(feature = "tls") && scheme == Scheme::HTTPS);
        if !supported {
            return Err(ConfigError::invalid(
                field,
                format!(
                    "{:?}: the scheme must be http:// (or https:// with the `tls` feature)",
                    target.url
                ),
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| ConfigError::invalid(field, format!("{:?} has no host", target.url)))?;
        if authority.as_str().contains('@') {
            return Err(ConfigError::invalid(
                field,
                format!(
                    "{:?}: credentials in target URLs are not supported",
                    target.url
                ),
            ));
        }
        if uri.query().is_some() {
            return Err(ConfigError::invalid(
                field,
                format!("{:?}: a target URL cannot carry a query", target.url),
            ));
        }
        let path = uri.path().trim_end_matches('/');
        let base_path = (!path.is_empty()).then(|| path.into());
        if !(1..=MAX_WEIGHT).contains(&target.weight) {
            return Err(ConfigError::invalid(
                "targets.weight",
                format!("{} is not within 1..={MAX_WEIGHT}", target.weight),
            ));
        }
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|e| ConfigError::invalid(field, e.to_string()))?;
        let connect_addr = match authority.port_u16() {
            Some(_) => authority.as_str().into(),
            None => format!(
                "{}:{}",
                authority.host(),
                if scheme == Scheme::HTTPS { 443 } else { 80 }
            )
            .into(),
        };
        let direct = scheme == Scheme::HTTP && target.protocol == Protocol::Http1;
        Ok(Self {
            url: target.url.as_str().into(),
            scheme,
            authority,
            base_path,
            protocol: target.protocol,
            host,
            connect_addr,
            direct,
        })
    }
}

/// Which target served a response: in the extensions of every response the proxy
/// returns (also of its 502/504 rejections), so a circuit breaker can key on the
/// target's authority and logs can name it.
///
/// A request that carries an `UpstreamTarget` extension (e.g. a retry copying it from
/// the failed response) avoids that target when another one is usable.
#[derive(Clone)]
pub struct UpstreamTarget(pub(crate) Arc<TargetInfo>);

impl UpstreamTarget {
    /// `host:port` of the target.
    pub fn authority(&self) -> &Authority {
        &self.0.authority
    }

    /// The target's configured base URL.
    pub fn url(&self) -> &str {
        &self.0.url
    }

    /// The protocol used toward it.
    pub fn protocol(&self) -> Protocol {
        self.0.protocol
    }
}

impl fmt::Debug for UpstreamTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpstreamTarget({})", self.0.url)
    }
}

impl PartialEq for UpstreamTarget {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.url == other.0.url
    }
}

impl Eq for UpstreamTarget {}

/// A target with its live state.
#[derive(Debug)]
pub(crate) struct TargetState {
    pub(crate) info: Arc<TargetInfo>,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) requests: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) consecutive_failures: AtomicU32,
    /// Nanoseconds since the proxy's epoch until which the target is ejected; 0: not.
    pub(crate) ejected_until: AtomicU64,
    pub(crate) ejections: AtomicU32,
    pub(crate) active_healthy: AtomicBool,
    pub(crate) streak: Mutex<Streak>,
    /// Idle HTTP/1.1 connections (direct targets only).
    pub(crate) idle: IdleConns,
}

impl TargetState {
    pub(crate) fn new(info: TargetInfo) -> Self {
        Self {
            info: Arc::new(info),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            active_healthy: AtomicBool::new(true),
            streak: Mutex::new(Streak::default()),
            idle: IdleConns::default(),
        }
    }

    pub(crate) fn label(&self) -> &str {
        self.info.authority.as_str()
    }

    /// Whether an ejection is in force at `now` (ns since epoch).
    #[inline]
    pub(crate) fn is_ejected(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && now < until
    }

    #[inline]
    pub(crate) fn usable(&self, now: u64) -> bool {
        self.active_healthy.load(Ordering::Relaxed) && !self.is_ejected(now)
    }
}

/// One version of the target set with its picker.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) targets: Box<[Arc<TargetState>]>,
    pub(crate) picker: Picker,
}

impl Snapshot {
    /// Builds a snapshot, reusing the live state of targets already in `previous`
    /// (same URL and protocol), so health and counters survive updates.
    pub(crate) fn build(
        strategy: Strategy,
        targets: &[Target],
        previous: Option<&Snapshot>,
    ) -> Result<Self, ConfigError> {
        if targets.is_empty() {
            return Err(ConfigError::invalid("targets", "at least one target"));
        }
        let mut states = Vec::with_capacity(targets.len());
        for target in targets {
            let info = TargetInfo::parse(target)?;
            if states
                .iter()
                .any(|s: &Arc<TargetState>| *s.info.url == *info.url)
            {
                return Err(ConfigError::invalid(
                    "targets",
                    format!("{:?} is listed twice", target.url),
                ));
            }
            let reused = previous.and_then(|p| {
                p.targets
                    .iter()
                    .find(|s| s.info.url == info.url && s.info.protocol == info.protocol)
                    .cloned()
            });
            states.push(reused.unwrap_or_else(|| Arc::new(TargetState::new(info))));
        }
        let weights: Vec<u32> = targets.iter().map(|t| t.weight).collect();
        let ids: Vec<&str> = states.iter().map(|s| &*s.info.url).collect();
        let picker = Picker::new(strategy, &weights, &ids);
        Ok(Self {
            targets: states.into_boxed_slice(),
            picker,
        })
    }
}

/// A target's state as reported by [`Proxy::targets`](crate::Proxy::targets).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TargetStatus {
    /// The configured base URL.
    pub url: String,
    /// Requests sent to it (since it joined the target set).
    pub requests: u64,
    /// Connection errors, timeouts and failure responses.
    pub errors: u64,
    /// Requests in flight (until their response body ends).
    pub in_flight: usize,
    /// The active health checks' verdict (true when active checks are off).
    pub healthy: bool,
    /// Whether passive ejection currently keeps it out.
    pub ejected: bool,
    /// Idle pooled HTTP/1.1 connections (plain `http://` targets; 0 for others).
    pub idle_connections: usize,
}

impl TargetStatus {
    /// Whether it receives traffic: healthy and not ejected.
    pub fn is_usable(&self) -> bool {
        self.healthy && !self.ejected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = TargetInfo::parse(&Target::new("http://127.0.0.1:8080/api/")).unwrap();
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.base_path.as_deref(), Some("/api"));
        assert_eq!(t.host, "127.0.0.1:8080");
        let t = TargetInfo::parse(&Target::new("http://svc")).unwrap();
        assert_eq!(t.base_path, None);
        for bad in [
            "127.0.0.1:80",
            #[cfg(not(feature = "tls"))]
            "https://secure",
            "ftp://files",
            "http://u:p@host",
            "http://h/?q=1",
            "not a url",
            "/path",
        ] {
            assert!(TargetInfo::parse(&Target::new(bad)).is_err(), "{bad}");
        }
        assert!(TargetInfo::parse(&Target::new("http://h").weight(0)).is_err());
        assert!(TargetInfo::parse(&Target::new("http://h").weight(MAX_WEIGHT + 1)).is_err());
    }

    #[test]
    fn snapshots_keep_state_and_refuse_duplicates() {
        let first = Snapshot::build(
            Strategy::RoundRobin,
            &[Target::new("http://a"), Target::new("http://b")],
            None,
        )
        .unwrap();
        first.targets[1].requests.store(7, Ordering::Relaxed);
        let second = Snapshot::build(
            Strategy::RoundRobin,
            &[Target::new("http://b").weight(2), Target::new("http://c")],
            Some(&first),
        )
        .unwrap();
        assert_eq!(second.targets[0].requests.load(Ordering::Relaxed), 7);
        assert!(Arc::ptr_eq(&first.targets[1], &second.targets[0]));
        assert!(Snapshot::build(Strategy::RoundRobin, &[], None).is_err());
        assert!(
            Snapshot::build(
                Strategy::RoundRobin,
                &[Target::new("http://a"), Target::new("http://a")],
                None
            )
            .is_err()
        );
    }
}
