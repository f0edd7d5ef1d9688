//! The route table: a pure index from (host, path, method, headers, query) to the
//! route that wins by priority. No I/O, no services.
//!
//! Priority, highest first:
//!
//! 1. **Host**: exact host with a port, exact host, `*.suffix` (longest suffix first),
//!    `prefix.*` (longest prefix first), any host.
//! 2. **Path**: exact, then templates (segment by segment from the left: a literal beats
//!    a parameter, which beats a catch-all), then prefixes (longest first), then
//!    regexes, then routes without a path matcher.
//! 3. **More matchers** (method set, each header, each query rule) over fewer.
//! 4. **Declaration order**.
//!
//! A route whose host, path, headers and query match but whose method does not adds its
//! methods to `Allow`; if no route matches at all, that makes a 405 instead of a 404.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

use gateway_layers_core::ConfigError;
use http::{HeaderMap, Method};

use crate::matcher::{
    HeaderRule, HostPattern, MethodSet, PathPattern, QueryRule, method_order, parse_query,
};

/// A fast, non-cryptographic hasher for keys chosen by configuration (FxHash).
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(K);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// What the table needs to know about a route.
#[derive(Debug, Clone)]
pub(crate) struct RouteMeta {
    pub(crate) hosts: Vec<HostPattern>,
    pub(crate) path: PathPattern,
    pub(crate) methods: MethodSet,
    pub(crate) headers: Vec<HeaderRule>,
    pub(crate) query: Vec<QueryRule>,
}

impl RouteMeta {
    pub(crate) fn matcher_count(&self) -> usize {
        usize::from(!self.methods.is_empty()) + self.headers.len() + self.query.len()
    }
}

/// The request as the table sees it (host and path already normalized).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lookup<'a> {
    pub(crate) method: &'a Method,
    pub(crate) host: Option<&'a str>,
    pub(crate) port: Option<u16>,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) headers: &'a HeaderMap,
}

/// The result of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Found(usize),
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

#[derive(Debug)]
struct TemplateGroup {
    routes: Vec<u32>,
    overlaps: Vec<u32>,
    rank: u32,
}

#[derive(Default)]
struct PathIndex {
    exact: FxMap<Box<str>, Vec<u32>>,
    /// matchit refuses some overlapping templates (`/a/{x}` with `/a/{*rest}`) in
    /// one router: those go to the next router.
    templates: Vec<matchit::Router<u32>>,
    groups: Vec<TemplateGroup>,
    shapes: FxMap<String, u32>,
    prefixes: FxMap<Box<str>, Vec<u32>>,
    prefix_lens: Vec<bool>,
    regex: Vec<u32>,
    any: Vec<u32>,
}

impl std::fmt::Debug for PathIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PathIndex")
            .field("exact", &self.exact.len())
            .field("templates", &self.groups.len())
            .field("prefixes", &self.prefixes.len())
            .field("regex", &self.regex.len())
            .field("any", &self.any.len())
            .finish()
    }
}

impl PathIndex {
    fn insert(&mut self, idx: u32, path: &PathPattern) -> Result<(), ConfigError> {
        match path {
            PathPattern::Exact(p) => self.exact.entry(p.clone()).or_default().push(idx),
            PathPattern::Prefix(p) => {
                if self.prefix_lens.len() <= p.len() {
                    self.prefix_lens.resize(p.len() + 1, false);
                }
                self.prefix_lens[p.len()] = true;
                self.prefixes.entry(p.clone()).or_default().push(idx);
            }
            PathPattern::Template(t) => {
                let shape = t.shape();
                if let Some(&gid) = self.shapes.get(&shape) {
                    self.groups[gid as usize].routes.push(idx);
                } else {
                    let gid = u32::try_from(self.groups.len()).unwrap_or(u32::MAX);
                    let mut inserted = false;
                    for router in &mut self.templates {
                        if router.insert(shape.clone(), gid).is_ok() {
                            inserted = true;
                            break;
                        }
                    }
                    if !inserted {
                        let mut router = matchit::Router::new();
                        router.insert(shape.clone(), gid).map_err(|e| {
                            ConfigError::invalid(
                                format!("router.path.template {:?}", t.source),
                                e.to_string(),
                            )
                        })?;
                        self.templates.push(router);
                    }
                    self.shapes.insert(shape, gid);
                    self.groups.push(TemplateGroup {
                        routes: vec![idx],
                        overlaps: Vec::new(),
                        rank: 0,
                    });
                }
            }
            PathPattern::Regex(_) => self.regex.push(idx),
            PathPattern::Any => self.any.push(idx),
        }
        Ok(())
    }

    fn finish(&mut self, routes: &[RouteMeta]) {
        let order = |list: &mut Vec<u32>| {
            list.sort_by_key(|&i| (std::cmp::Reverse(routes[i as usize].matcher_count()), i));
        };
        self.exact.values_mut().for_each(order);
        self.prefixes.values_mut().for_each(order);
        order(&mut self.regex);
        order(&mut self.any);
        let template_of = |g: &TemplateGroup| match &routes[g.routes[0] as usize].path {
            PathPattern::Template(t) => Some(t.clone()),
            _ => None,
        };
        let templates: Vec<_> = self.groups.iter().map(template_of).collect();
        let mut by_rank: Vec<usize> = (0..self.groups.len()).collect();
        by_rank.sort_by(|&a, &b| match (&templates[a], &templates[b]) {
            (Some(x), Some(y)) => y.specificity(x).then(a.cmp(&b)),
            _ => a.cmp(&b),
        });
        for (rank, &g) in by_rank.iter().enumerate() {
            self.groups[g].rank = u32::try_from(rank).unwrap_or(u32::MAX);
        }
        for a in 0..self.groups.len() {
            order(&mut self.groups[a].routes);
            let mut overlaps = Vec::new();
            for b in 0..self.groups.len() {
                if let (Some(x), Some(y)) = (&templates[a], &templates[b])
                    && a != b
                    && x.may_overlap(y)
                {
                    overlaps.push(u32::try_from(b).unwrap_or(u32::MAX));
                }
            }
            self.groups[a].overlaps = overlaps;
        }
    }

    fn search_templates(
        &self,
        path: &str,
        visit: &mut impl FnMut(u32) -> bool,
        routes: &[RouteMeta],
    ) -> bool {
        let [router] = &self.templates[..] else {
            return self.search_templates_slow(path, visit, routes);
        };
        let Ok(m) = router.at(path) else {
            return false;
        };
        let group = &self.groups[*m.value as usize];
        if group.overlaps.is_empty() {
            return group.routes.iter().any(|&i| visit(i));
        }
        self.search_templates_slow(path, visit, routes)
    }

    /// Several templates may match: visit all that do, most specific first. Any
    /// template that matches overlaps the one its matchit router returned.
    fn search_templates_slow(
        &self,
        path: &str,
        visit: &mut impl FnMut(u32) -> bool,
        routes: &[RouteMeta],
    ) -> bool {
        let mut matching: Vec<u32> = Vec::new();
        for router in &self.templates {
            let Ok(m) = router.at(path) else { continue };
            let best = *m.value;
            matching.push(best);
            matching.extend(
                self.groups[best as usize]
                    .overlaps
                    .iter()
                    .copied()
                    .filter(|&g| {
                        let first = self.groups[g as usize].routes[0] as usize;
                        routes[first].path.matches(path)
                    }),
            );
        }
        matching.sort_by_key(|&g| self.groups[g as usize].rank);
        matching.dedup();
        matching
            .into_iter()
            .any(|g| self.groups[g as usize].routes.iter().any(|&i| visit(i)))
    }

    /// Visits candidates in priority order until `visit` returns true.
    fn search_with(
        &self,
        path: &str,
        visit: &mut impl FnMut(u32) -> bool,
        routes: &[RouteMeta],
    ) -> bool {
        if !self.exact.is_empty()
            && let Some(list) = self.exact.get(path)
            && list.iter().any(|&i| visit(i))
        {
            return true;
        }
        if !self.groups.is_empty() && self.search_templates(path, visit, routes) {
            return true;
        }
        if !self.prefixes.is_empty() {
            let trimmed = if path.len() > 1 {
                path.strip_suffix('/').unwrap_or(path)
            } else {
                ""
            };
            let mut end = trimmed.len();
            loop {
                let candidate = &trimmed[..end];
                if self.prefix_lens.get(end).copied().unwrap_or(false)
                    && let Some(list) = self.prefixes.get(candidate)
                    && list.iter().any(|&i| visit(i))
                {
                    return true;
                }
                match candidate.rfind('/') {
                    Some(at) => end = at,
                    None => break,
                }
            }
        }
        self.regex.iter().any(|&i| visit(i)) || self.any.iter().any(|&i| visit(i))
    }
}

/// The compiled table.
#[derive(Debug)]
pub(crate) struct Table {
    routes: Vec<RouteMeta>,
    exact: FxMap<Box<str>, HostEntry>,
    suffix: FxMap<Box<str>, PathIndex>,
    prefix: FxMap<Box<str>, PathIndex>,
    any: PathIndex,
}

#[derive(Debug, Default)]
struct HostEntry {
    ports: Vec<(u16, PathIndex)>,
    any_port: Option<PathIndex>,
}

impl Table {
    pub(crate) fn new(routes: Vec<RouteMeta>) -> Result<Self, ConfigError> {
        let mut table = Table {
            routes: Vec::new(),
            exact: FxMap::default(),
            suffix: FxMap::default(),
            prefix: FxMap::default(),
            any: PathIndex::default(),
        };
        for (i, route) in routes.iter().enumerate() {
            let idx = u32::try_from(i)
                .map_err(|_| ConfigError::invalid("router.routes", "too many routes"))?;
            if route.hosts.is_empty() {
                table.any.insert(idx, &route.path)?;
            }
            for host in &route.hosts {
                let index = match host {
                    HostPattern::Exact { name, port } => {
                        let entry = table.exact.entry(name.clone()).or_default();
                        match port {
                            None => entry.any_port.get_or_insert_with(PathIndex::default),
                            Some(port) => {
                                let at = match entry.ports.iter().position(|(p, _)| p == port) {
                                    Some(at) => at,
                                    None => {
                                        entry.ports.push((*port, PathIndex::default()));
                                        entry.ports.len() - 1
                                    }
                                };
                                &mut entry.ports[at].1
                            }
                        }
                    }
                    HostPattern::Suffix(s) => table.suffix.entry(s.clone()).or_default(),
                    HostPattern::Prefix(p) => table.prefix.entry(p.clone()).or_default(),
                    HostPattern::Any => &mut table.any,
                };
                index.insert(idx, &route.path)?;
            }
        }
        let finish = |index: &mut PathIndex| index.finish(&routes);
        for entry in table.exact.values_mut() {
            entry.ports.iter_mut().for_each(|(_, i)| finish(i));
            entry.any_port.iter_mut().for_each(finish);
        }
        table.suffix.values_mut().for_each(finish);
        table.prefix.values_mut().for_each(finish);
        finish(&mut table.any);
        table.routes = routes;
        Ok(table)
    }

    pub(crate) fn route(&self, idx: usize) -> &RouteMeta {
        &self.routes[idx]
    }

    pub(crate) fn lookup(&self, req: &Lookup<'_>) -> Outcome {
        let mut query: Option<Vec<(String, String)>> = None;
        let mut allow: Vec<Method> = Vec::new();
        let mut found = None;
        let mut visit = |idx: u32| {
            let route = &self.routes[idx as usize];
            if !route.headers.iter().all(|h| h.check(req.headers)) {
                return false;
            }
            if !route.query.is_empty() {
                let pairs = query.get_or_insert_with(|| parse_query(req.query.unwrap_or("")));
                if !route.query.iter().all(|q| q.check(pairs)) {
                    return false;
                }
            }
            if let PathPattern::Regex(re) = &route.path
                && !re.is_match(req.path)
            {
                return false;
            }
            if route.methods.contains(req.method) {
                found = Some(idx as usize);
                true
            } else {
                allow.extend(route.methods.iter().cloned());
                false
            }
        };
        let hit = self.search_hosts(req, &mut visit);
        if hit && let Some(idx) = found {
            return Outcome::Found(idx);
        }
        if allow.is_empty() {
            Outcome::NotFound
        } else {
            allow.sort_by_key(method_order);
            allow.dedup();
            Outcome::MethodNotAllowed(allow)
        }
    }

    fn search_hosts(&self, req: &Lookup<'_>, visit: &mut impl FnMut(u32) -> bool) -> bool {
        let path = req.path;
        if let Some(host) = req.host {
            if !self.exact.is_empty()
                && let Some(entry) = self.exact.get(host)
            {
                if let Some(port) = req.port
                    && let Some((_, index)) = entry.ports.iter().find(|(p, _)| *p == port)
                    && self.search_path(index, path, visit)
                {
                    return true;
                }
                if let Some(index) = &entry.any_port
                    && self.search_path(index, path, visit)
                {
                    return true;
                }
            }
            if !self.suffix.is_empty() {
                for (at, _) in host.match_indices('.') {
                    if let Some(index) = self.suffix.get(&host[at..])
                        && at > 0
                        && self.search_path(index, path, visit)
                    {
                        return true;
                    }
                }
            }
            if !self.prefix.is_empty() {
                for (at, _) in host.rmatch_indices('.') {
                    if at + 1 < host.len()
                        && let Some(index) = self.prefix.get(&host[..=at])
                        && self.search_path(index, path, visit)
                    {
                        return true;
                    }
                }
            }
        }
        self.search_path(&self.any, path, visit)
    }

    fn search_path(
        &self,
        index: &PathIndex,
        path: &str,
        visit: &mut impl FnMut(u32) -> bool,
    ) -> bool {
        index.search_with(path, visit, &self.routes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::{HeaderRule, Template, ValueRule, anchored_regex, parse_prefix};
    use http::HeaderName;
    use std::cmp::Ordering;

    /// The reference definition of priority: filter all routes that match, take the
    /// maximum by the documented order. The index must agree with it.
    fn reference(routes: &[RouteMeta], req: &Lookup<'_>) -> Outcome {
        let host_rank = |r: &RouteMeta| -> Option<(u8, usize)> {
            if r.hosts.is_empty() {
                return Some((0, 0));
            }
            r.hosts
                .iter()
                .filter_map(|h| match (h, req.host) {
                    (HostPattern::Any, _) => Some((0, 0)),
                    (HostPattern::Exact { name, port }, Some(host)) if **name == *host => {
                        match port {
                            None => Some((3, 0)),
                            Some(p) if Some(*p) == req.port => Some((4, 0)),
                            Some(_) => None,
                        }
                    }
                    (HostPattern::Suffix(s), Some(host))
                        if host.ends_with(&**s) && host.len() > s.len() =>
                    {
                        Some((2, s.len()))
                    }
                    (HostPattern::Prefix(p), Some(host))
                        if host.starts_with(&**p) && host.len() > p.len() =>
                    {
                        Some((1, p.len()))
                    }
                    _ => None,
                })
                .max()
        };
        let path_cmp = |a: &PathPattern, b: &PathPattern| {
            a.tier().cmp(&b.tier()).then_with(|| match (a, b) {
                (PathPattern::Template(x), PathPattern::Template(y)) => x.specificity(y),
                (PathPattern::Prefix(x), PathPattern::Prefix(y)) => x.len().cmp(&y.len()),
                _ => Ordering::Equal,
            })
        };
        let mut pairs = None;
        let mut candidates: Vec<(usize, (u8, usize))> = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let Some(rank) = host_rank(r) else { continue };
            if !r.path.matches(req.path) || !r.headers.iter().all(|h| h.check(req.headers)) {
                continue;
            }
            let pairs = pairs.get_or_insert_with(|| parse_query(req.query.unwrap_or("")));
            if !r.query.iter().all(|q| q.check(pairs)) {
                continue;
            }
            candidates.push((i, rank));
        }
        let better = |a: &(usize, (u8, usize)), b: &(usize, (u8, usize))| {
            let (ra, rb) = (&routes[a.0], &routes[b.0]);
            a.1.cmp(&b.1)
                .then_with(|| path_cmp(&ra.path, &rb.path))
                .then_with(|| ra.matcher_count().cmp(&rb.matcher_count()))
                .then_with(|| b.0.cmp(&a.0))
        };
        let with_method: Vec<_> = candidates
            .iter()
            .filter(|(i, _)| routes[*i].methods.contains(req.method))
            .collect();
        if let Some(best) = with_method.into_iter().max_by(|a, b| better(a, b)) {
            return Outcome::Found(best.0);
        }
        let mut allow: Vec<Method> = candidates
            .iter()
            .flat_map(|(i, _)| routes[*i].methods.iter().cloned())
            .collect();
        if allow.is_empty() {
            return Outcome::NotFound;
        }
        allow.sort_by_key(method_order);
        allow.dedup();
        Outcome::MethodNotAllowed(allow)
    }

    /// A small deterministic generator.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 33) as usize) % n
        }
    }

    #[test]
    fn index_agrees_with_the_reference_definition() {
        let hosts = [
            "a.example.com",
            "b.example.com",
            "*.example.com",
            "api.*",
            "a.example.com:8443",
            "*",
        ];
        let paths = [
            "exact:/a",
            "exact:/a/b",
            "prefix:/",
            "prefix:/a",
            "prefix:/a/b",
            "tpl:/a/{x}",
            "tpl:/a/b",
            "tpl:/{x}/b",
            "tpl:/a/{*rest}",
            "tpl:/{x}/{y}",
            "regex:/a/.*",
            "regex:/[ab]/b",
            "any",
        ];
        let mut rng = Lcg(7);
        let mut failures = 0;
        for round in 0..60 {
            let count = 3 + rng.next(25);
            let mut routes = Vec::new();
            for _ in 0..count {
                let host_count = rng.next(3);
                let hosts = (0..host_count)
                    .map(|_| HostPattern::parse(hosts[rng.next(hosts.len())]).unwrap())
                    .collect();
                let spec = paths[rng.next(paths.len())];
                let path = match spec.split_once(':') {
                    Some(("exact", p)) => PathPattern::Exact(p.into()),
                    Some(("prefix", p)) => PathPattern::Prefix(parse_prefix(p).unwrap()),
                    Some(("tpl", p)) => PathPattern::Template(Template::parse(p).unwrap()),
                    Some(("regex", p)) => PathPattern::Regex(anchored_regex("t", p).unwrap()),
                    _ => PathPattern::Any,
                };
                let methods = match rng.next(4) {
                    0 => MethodSet::new([Method::GET]),
                    1 => MethodSet::new([Method::POST]),
                    _ => MethodSet::default(),
                };
                let headers = (0..rng.next(3))
                    .map(|i| HeaderRule {
                        name: HeaderName::from_static(if i == 0 { "x-a" } else { "x-b" }),
                        rule: if rng.next(2) == 0 {
                            ValueRule::Present
                        } else {
                            ValueRule::Absent
                        },
                    })
                    .collect();
                let query = (0..rng.next(2))
                    .map(|_| QueryRule {
                        name: "q".into(),
                        rule: ValueRule::Present,
                    })
                    .collect();
                routes.push(RouteMeta {
                    hosts,
                    path,
                    methods,
                    headers,
                    query,
                });
            }
            let table = Table::new(routes.clone()).unwrap();
            for _ in 0..200 {
                let host = [
                    "a.example.com",
                    "b.example.com",
                    "x.y.example.com",
                    "api.internal",
                    "example.com",
                ][rng.next(5)];
                let port = [None, Some(8443), Some(80)][rng.next(3)];
                let path = [
                    "/", "/a", "/a/", "/a/b", "/a/c", "/b/b", "/a/b/c", "/c", "/a/bb",
                ][rng.next(9)];
                let method = [Method::GET, Method::POST, Method::DELETE][rng.next(3)].clone();
                let mut headers = HeaderMap::new();
                if rng.next(2) == 0 {
                    headers.insert("x-a", http::HeaderValue::from_static("1"));
                }
                if rng.next(2) == 0 {
                    headers.insert("x-b", http::HeaderValue::from_static("1"));
                }
                let query = [None, Some("q=1")][rng.next(2)];
                let req = Lookup {
                    method: &method,
                    host: Some(host),
                    port,
                    path,
                    query,
                    headers: &headers,
                };
                let got = table.lookup(&req);
                let want = reference(&routes, &req);
                if got != want {
                    failures += 1;
                    eprintln!(
                        "round {round}: {method} {host}:{port:?}{path}?{query:?} got {got:?} want {want:?}"
                    );
                }
            }
        }
        assert_eq!(failures, 0);
    }
}
