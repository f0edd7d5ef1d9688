//! Weighted splits between services: sticky by a key (weighted rendezvous hashing, a
//! consistent hash), with a header or cookie override for canaries.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use gateway_layers_core::{ConfigError, KeyExtractor, RequestView, SharedKeyExtractor};
use http::{HeaderMap, HeaderName, Request, Response, header::COOKIE};
use tower::util::BoxCloneSyncService;
use tower_service::Service;

use crate::RouteService;

/// The backend a weighted split chose, in the request's extensions (the route's
/// service sees it; so do logs and metrics layers inside the route).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SplitBackend(pub Arc<str>);

type Backend<B, RB, E> = (Arc<str>, u32, RouteService<B, RB, E>);

/// A weighted split between named services.
///
/// - With a [`sticky`](Split::sticky) key, a request goes to the backend chosen by
///   weighted rendezvous hashing of [`Key::stable_hash`](gateway_layers_core::Key::stable_hash):
///   the same key always gets the same backend in every gateway instance, and changing
///   a weight only moves the keys that must move.
/// - Without a key (or when the request has none), backends are picked in proportion
///   to their weights by a per-route sequence, not sticky.
/// - [`override_header`](Split::override_header) / [`override_cookie`](Split::override_cookie):
///   a request whose header or cookie value names a backend goes to it (canary testers).
///   These are client-controlled: only use them for backends anyone may reach.
pub struct Split<B, RB, E> {
    pub(crate) backends: Vec<Backend<B, RB, E>>,
    pub(crate) key: Option<SharedKeyExtractor>,
    pub(crate) header: Option<String>,
    pub(crate) cookie: Option<String>,
}

impl<B, RB, E> Default for Split<B, RB, E> {
    fn default() -> Self {
        Self {
            backends: Vec::new(),
            key: None,
            header: None,
            cookie: None,
        }
    }
}

impl<B, RB, E> fmt::Debug for Split<B, RB, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split")
            .field(
                "backends",
                &self
                    .backends
                    .iter()
                    .map(|(n, w, _)| (n, w))
                    .collect::<Vec<_>>(),
            )
            .field("sticky", &self.key.is_some())
            .field("header", &self.header)
            .field("cookie", &self.cookie)
            .finish()
    }
}

impl<B, RB, E> Split<B, RB, E> {
    /// An empty split; add at least one backend with a weight above zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds backend `name` with `weight` (relative to the others).
    #[must_use]
    pub fn backend<S>(mut self, name: impl Into<Arc<str>>, weight: u32, service: S) -> Self
    where
        S: Service<Request<B>, Response = Response<RB>, Error = E> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
    {
        self.backends
            .push((name.into(), weight, BoxCloneSyncService::new(service)));
        self
    }

    /// Makes the split sticky by `key` (client IP, subject, a header, ...).
    #[must_use]
    pub fn sticky(mut self, key: impl KeyExtractor) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// Makes the split sticky by an already shared key extractor.
    #[must_use]
    pub fn sticky_shared(mut self, key: SharedKeyExtractor) -> Self {
        self.key = Some(key);
        self
    }

    /// A request whose header `name` holds a backend's name goes to that backend.
    #[must_use]
    pub fn override_header(mut self, name: impl Into<String>) -> Self {
        self.header = Some(name.into());
        self
    }

    /// A request whose cookie `name` holds a backend's name goes to that backend.
    #[must_use]
    pub fn override_cookie(mut self, name: impl Into<String>) -> Self {
        self.cookie = Some(name.into());
        self
    }

    pub(crate) fn compile(self) -> Result<CompiledSplit<B, RB, E>, ConfigError> {
        if self.backends.is_empty() {
            return Err(ConfigError::invalid(
                "router.split",
                "a split needs a backend",
            ));
        }
        let total: u64 = self.backends.iter().map(|(_, w, _)| u64::from(*w)).sum();
        if total == 0 {
            return Err(ConfigError::invalid(
                "router.split",
                "the weights add up to zero",
            ));
        }
        for (i, (name, _, _)) in self.backends.iter().enumerate() {
            if name.is_empty() || self.backends[..i].iter().any(|(n, _, _)| n == name) {
                return Err(ConfigError::invalid(
                    "router.split",
                    format!("backend names must be non-empty and unique: {name:?}"),
                ));
            }
        }
        let header = self
            .header
            .map(|h| gateway_layers_core::headers::header_name(&h))
            .transpose()?;
        if self
            .cookie
            .as_ref()
            .is_some_and(|c| c.is_empty() || c.contains(['=', ';', ' ']))
        {
            return Err(ConfigError::invalid(
                "router.split.cookie",
                "not a cookie name",
            ));
        }
        let picker = Picker::new(self.backends.iter().map(|(n, w, _)| (&**n, *w)));
        Ok(CompiledSplit {
            picker,
            names: self
                .backends
                .iter()
                .map(|(n, _, _)| SplitBackend(n.clone()))
                .collect(),
            services: self.backends.into_iter().map(|(_, _, s)| s).collect(),
            key: self.key,
            header,
            cookie: self.cookie,
            sequence: Arc::new(AtomicU64::new(0)),
        })
    }
}

pub(crate) struct CompiledSplit<B, RB, E> {
    picker: Picker,
    pub(crate) names: Vec<SplitBackend>,
    pub(crate) services: Vec<RouteService<B, RB, E>>,
    key: Option<SharedKeyExtractor>,
    header: Option<HeaderName>,
    cookie: Option<String>,
    sequence: Arc<AtomicU64>,
}

impl<B, RB, E> CompiledSplit<B, RB, E> {
    pub(crate) fn choose(&self, view: &RequestView<'_>) -> usize {
        if let Some(i) = self.overridden(view.headers) {
            return i;
        }
        let hash = match self.key.as_ref().and_then(|k| k.extract(view)) {
            Some(key) => key.stable_hash(),
            None => mix(self.sequence.fetch_add(1, Ordering::Relaxed)),
        };
        self.picker.pick(hash)
    }

    fn overridden(&self, headers: &HeaderMap) -> Option<usize> {
        let by_name = |value: &[u8]| self.names.iter().position(|n| n.0.as_bytes() == value);
        if let Some(name) = &self.header
            && let Some(i) = headers.get(name).and_then(|v| by_name(v.as_bytes()))
        {
            return Some(i);
        }
        let cookie = self.cookie.as_deref()?;
        headers
            .get_all(COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
            .filter_map(|pair| {
                let pair = pair.trim_ascii();
                let at = pair.iter().position(|&b| b == b'=')?;
                (&pair[..at] == cookie.as_bytes()).then(|| &pair[at + 1..])
            })
            .find_map(by_name)
    }
}

/// SplitMix64 finalizer: spreads a 64-bit value over all bits.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Weighted rendezvous hashing: backend `i` scores `w_i / -ln(u_i)` with `u_i` uniform
/// from `hash` and the backend's name; the highest score wins. Each backend wins with
/// probability `w_i / sum(w)`, and changing one weight only moves keys to or from it.
#[derive(Debug, Clone)]
pub(crate) struct Picker {
    backends: Vec<(u64, f64)>,
}

impl Picker {
    pub(crate) fn new<'a>(backends: impl Iterator<Item = (&'a str, u32)>) -> Self {
        Self {
            backends: backends
                .map(|(name, weight)| {
                    let seed = gateway_layers_core::Key::Text(name.into()).stable_hash();
                    (seed, f64::from(weight))
                })
                .collect(),
        }
    }

    pub(crate) fn pick(&self, hash: u64) -> usize {
        if self.backends.len() == 1 {
            return 0;
        }
        let mut best = (0, f64::NEG_INFINITY);
        for (i, &(seed, weight)) in self.backends.iter().enumerate() {
            if weight == 0.0 {
                continue;
            }
            // 53 random bits in (0, 1).
            let bits = mix(hash ^ seed) >> 11;
            let unit = (bits as f64 + 0.5) / (1u64 << 53) as f64;
            let score = weight / -unit.ln();
            if score > best.1 {
                best = (i, score);
            }
        }
        best.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(picker: &Picker, n: u64, key: impl Fn(u64) -> u64) -> Vec<u64> {
        let mut out = vec![0; picker.backends.len()];
        for i in 0..n {
            out[picker.pick(key(i))] += 1;
        }
        out
    }

    #[test]
    fn weights_are_respected() {
        let picker = Picker::new([("stable", 90), ("canary", 10)].into_iter());
        let c = counts(&picker, 10_000, |i| {
            gateway_layers_core::Key::Text(format!("user-{i}").into()).stable_hash()
        });
        assert!((8_800..=9_200).contains(&c[0]), "{c:?}");
        let picker = Picker::new([("a", 1), ("b", 1), ("c", 2), ("zero", 0)].into_iter());
        let c = counts(&picker, 10_000, mix);
        assert_eq!(c[3], 0);
        for (got, want) in c.iter().zip([2_500u64, 2_500, 5_000]) {
            assert!(got.abs_diff(want) < 250, "{c:?}");
        }
    }

    #[test]
    fn changing_a_weight_moves_only_the_keys_that_must_move() {
        let before = Picker::new([("stable", 90), ("canary", 10)].into_iter());
        let after = Picker::new([("stable", 80), ("canary", 20)].into_iter());
        let mut moved = 0;
        for i in 0..10_000u64 {
            let h = mix(i);
            let (a, b) = (before.pick(h), after.pick(h));
            assert!(!(a == 1 && b == 0), "a canary key went back to stable");
            moved += u32::from(a != b);
        }
        // About 10% of keys must move; none more.
        assert!((800..=1_200).contains(&moved), "{moved}");
        // Adding a third backend takes keys only for itself.
        let three = Picker::new([("stable", 90), ("canary", 10), ("new", 10)].into_iter());
        for i in 0..10_000u64 {
            let h = mix(i);
            let (a, b) = (before.pick(h), three.pick(h));
            assert!(a == b || b == 2);
        }
    }
}
