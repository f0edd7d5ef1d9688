//! Matchers: what a route requires of a request's host, path, method, headers and
//! query. Built from text by the route builder; compiled once.

use std::{cmp::Ordering, fmt, sync::Arc};

use gateway_layers_core::ConfigError;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use regex::Regex;

/// A host a route accepts, parsed from `example.com`, `example.com:8443`,
/// `*.example.com`, `api.*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// Exact name, optionally with a port.
    Exact { name: Box<str>, port: Option<u16> },
    /// `*.example.com`: stored as `.example.com`.
    Suffix(Box<str>),
    /// `api.*`: stored as `api.`.
    Prefix(Box<str>),
    /// `*`.
    Any,
}

impl HostPattern {
    pub(crate) fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad =
            |reason: &'static str| ConfigError::invalid(format!("router.host {text:?}"), reason);
        let lower = text.trim().to_ascii_lowercase();
        if lower == "*" {
            return Ok(Self::Any);
        }
        let check = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        };
        if let Some(rest) = lower.strip_prefix("*.") {
            let rest = rest.strip_suffix('.').unwrap_or(rest);
            if !check(rest) || rest.contains(['*', ':']) {
                return Err(bad("a wildcard host is `*.domain` with no port"));
            }
            return Ok(Self::Suffix(format!(".{rest}").into()));
        }
        if let Some(rest) = lower.strip_suffix(".*") {
            if !check(rest) {
                return Err(bad("a wildcard host is `name.*` with no port"));
            }
            return Ok(Self::Prefix(format!("{rest}.").into()));
        }
        if lower.contains('*') {
            return Err(bad("`*` is allowed only as `*.domain`, `name.*` or `*`"));
        }
        let host = crate::normalize::normalize_host(&lower).map_err(|_| bad("not a valid host"))?;
        Ok(Self::Exact {
            name: host.name.into_owned().into(),
            port: host.port,
        })
    }
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Literal(Box<str>),
    Param(Arc<str>),
    CatchAll(Arc<str>),
}

impl Segment {
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 3,
            Segment::Param(_) => 2,
            Segment::CatchAll(_) => 1,
        }
    }
}

/// A path template such as `/users/{id}/files/{*rest}`: parameters are whole segments,
/// a catch-all only last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) source: Box<str>,
    pub(crate) segments: Box<[Segment]>,
}

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = |reason: &'static str| {
            ConfigError::invalid(format!("router.path.template {text:?}"), reason)
        };
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| bad("a template starts with `/`"))?;
        let raw: Vec<&str> = rest.split('/').collect();
        let mut segments = Vec::with_capacity(raw.len());
        let mut names: Vec<&str> = Vec::new();
        for (i, seg) in raw.iter().enumerate() {
            if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let (catch_all, name) = match inner.strip_prefix('*') {
                    Some(name) => (true, name),
                    None => (false, inner),
                };
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(bad("a parameter is `{name}` or `{*name}` with a word name"));
                }
                if names.contains(&name) {
                    return Err(bad("a parameter name is used twice"));
                }
                names.push(name);
                if catch_all {
                    if i + 1 != raw.len() {
                        return Err(bad("a catch-all `{*name}` must be the last segment"));
                    }
                    segments.push(Segment::CatchAll(name.into()));
                } else {
                    segments.push(Segment::Param(name.into()));
                }
            } else if seg.contains(['{', '}']) {
                return Err(bad("a parameter must be a whole segment"));
            } else {
                segments.push(Segment::Literal((*seg).into()));
            }
        }
        Ok(Self {
            source: text.into(),
            segments: segments.into(),
        })
    }

    /// The template with parameter names erased: two templates with the same shape
    /// match the same paths.
    pub(crate) fn shape(&self) -> String {
        let mut out = String::new();
        let mut n = 0;
        for seg in &*self.segments {
            out.push('/');
            match seg {
                Segment::Literal(l) => out.push_str(l),
                Segment::Param(_) => {
                    out.push_str(&format!("{{p{n}}}"));
                    n += 1;
                }
                Segment::CatchAll(_) => {
                    out.push_str(&format!("{{*p{n}}}"));
                    n += 1;
                }
            }
        }
        out
    }

    /// The captures when `path` matches.
    pub(crate) fn captures<'p>(&self, path: &'p str) -> Option<Vec<(Arc<str>, &'p str)>> {
        let mut out = Vec::new();
        self.each_capture(path, |name, value| out.push((name.clone(), value)))
            .then_some(out)
    }

    /// Calls `f` with each capture, in order; false when `path` does not match.
    pub(crate) fn each_capture<'t, 'p>(
        &'t self,
        path: &'p str,
        mut f: impl FnMut(&'t Arc<str>, &'p str),
    ) -> bool {
        self.walk(path, &mut f).is_some()
    }

    fn walk<'t, 'p>(
        &'t self,
        path: &'p str,
        f: &mut impl FnMut(&'t Arc<str>, &'p str),
    ) -> Option<()> {
        let mut rest = path.strip_prefix('/')?;
        let count = self.segments.len();
        for (i, seg) in self.segments.iter().enumerate() {
            let last = i + 1 == count;
            if let Segment::CatchAll(name) = seg {
                if rest.is_empty() {
                    return None;
                }
                f(name, rest);
                return Some(());
            }
            let (current, next) = match rest.find('/') {
                Some(at) if !last => (&rest[..at], &rest[at + 1..]),
                Some(_) => return None,
                None if last => (rest, ""),
                None => return None,
            };
            match seg {
                Segment::Literal(l) if **l == *current => {}
                Segment::Param(name) if !current.is_empty() => f(name, current),
                _ => return None,
            }
            rest = next;
        }
        Some(())
    }

    /// Whether some path may match both templates (conservative: may say yes wrongly,
    /// never no wrongly).
    pub(crate) fn may_overlap(&self, other: &Template) -> bool {
        let (a, b) = (&self.segments, &other.segments);
        for i in 0..a.len().max(b.len()) {
            match (a.get(i), b.get(i)) {
                (Some(Segment::CatchAll(_)), _) | (_, Some(Segment::CatchAll(_))) => return true,
                (Some(Segment::Literal(x)), Some(Segment::Literal(y))) if x != y => return false,
                (Some(_), Some(_)) => {}
                _ => return false,
            }
        }
        true
    }

    /// Specificity: segment by segment from the left, literal > parameter > catch-all;
    /// `Greater` means more specific.
    pub(crate) fn specificity(&self, other: &Template) -> Ordering {
        for (x, y) in self.segments.iter().zip(other.segments.iter()) {
            match x.rank().cmp(&y.rank()) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        self.segments.len().cmp(&other.segments.len())
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::CatchAll(n) => Some(&**n),
            Segment::Literal(_) => None,
        })
    }
}

/// How a route matches the (normalized) path.
#[derive(Debug, Clone)]
pub(crate) enum PathPattern {
    Exact(Box<str>),
    /// Stored without a trailing slash; the root prefix is stored as `""`.
    Prefix(Box<str>),
    Template(Template),
    Regex(Regex),
    Any,
}

impl PathPattern {
    #[cfg(test)]
    pub(crate) fn tier(&self) -> u8 {
        match self {
            PathPattern::Exact(_) => 4,
            PathPattern::Template(_) => 3,
            PathPattern::Prefix(_) => 2,
            PathPattern::Regex(_) => 1,
            PathPattern::Any => 0,
        }
    }

    pub(crate) fn capture_names(&self) -> Vec<String> {
        match self {
            PathPattern::Template(t) => t.names().map(str::to_owned).collect(),
            PathPattern::Regex(r) => r.capture_names().flatten().map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the path matches (the index already guarantees it for most kinds; this
    /// is the reference definition used by tests and the regex tier).
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => **p == *path,
            PathPattern::Prefix(p) => prefix_matches(p, path),
            PathPattern::Template(t) => t.captures(path).is_some(),
            PathPattern::Regex(r) => r.is_match(path),
            PathPattern::Any => true,
        }
    }

    /// The named captures for `path`, which matched (`None` when there are none).
    pub(crate) fn captures(&self, path: &str) -> Option<Captures> {
        let captures: Captures = match self {
            PathPattern::Template(t) => {
                // Up to 8 captures without an intermediate vector.
                let mut names: [Option<&Arc<str>>; 8] = [None; 8];
                let mut values: [&str; 8] = [""; 8];
                let mut count = 0;
                let mut overflow = false;
                let matched = t.each_capture(path, |name, value| {
                    if count < 8 {
                        names[count] = Some(name);
                        values[count] = value;
                        count += 1;
                    } else {
                        overflow = true;
                    }
                });
                if !matched {
                    return None;
                }
                if overflow {
                    t.captures(path)?
                        .into_iter()
                        .map(|(k, v)| (k, Arc::from(v)))
                        .collect()
                } else {
                    (0..count)
                        .map(|i| {
                            let name = names[i].cloned().unwrap_or_else(|| Arc::from(""));
                            (name, Arc::from(values[i]))
                        })
                        .collect()
                }
            }
            PathPattern::Regex(r) => {
                let caps = r.captures(path)?;
                r.capture_names()
                    .flatten()
                    .filter_map(|name| {
                        caps.name(name)
                            .map(|m| (Arc::from(name), Arc::from(m.as_str())))
                    })
                    .collect()
            }
            _ => return None,
        };
        (!captures.is_empty()).then_some(captures)
    }
}

/// Named captures, shared (the representation of core's `PathParams`).
pub(crate) type Captures = Arc<[(Arc<str>, Arc<str>)]>;

/// Segment-aware prefix test: `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Parses a path prefix: must start with `/`; a trailing `/` is ignored.
pub(crate) fn parse_prefix(text: &str) -> Result<Box<str>, ConfigError> {
    if !text.starts_with('/') {
        return Err(ConfigError::invalid(
            format!("router.path.prefix {text:?}"),
            "a prefix starts with `/`",
        ));
    }
    Ok(text.trim_end_matches('/').into())
}

/// Compiles an anchored regex (the whole path or value must match).
pub(crate) fn anchored_regex(field: &str, text: &str) -> Result<Regex, ConfigError> {
    Regex::new(&format!("^(?:{text})$"))
        .map_err(|e| ConfigError::invalid(format!("{field} {text:?}"), e.to_string()))
}

/// A set of methods. A set with `GET` also accepts `HEAD`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MethodSet {
    methods: Vec<Method>,
}

impl MethodSet {
    pub(crate) fn new(methods: impl IntoIterator<Item = Method>) -> Self {
        let mut methods: Vec<Method> = methods.into_iter().collect();
        if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
            methods.push(Method::HEAD);
        }
        methods.sort_by_key(method_order);
        methods.dedup();
        Self { methods }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.methods.is_empty()
    }

    pub(crate) fn contains(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Method> {
        self.methods.iter()
    }
}

pub(crate) fn method_order(m: &Method) -> (u8, String) {
    let rank = match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        Method::TRACE => 7,
        Method::CONNECT => 8,
        _ => 9,
    };
    (
        rank,
        if rank == 9 {
            m.as_str().to_owned()
        } else {
            String::new()
        },
    )
}

/// What a header or query parameter must be.
#[derive(Clone)]
pub(crate) enum ValueRule {
    Exact(Box<[u8]>),
    Regex(Regex),
    Present,
    Absent,
}

impl fmt::Debug for ValueRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueRule::Exact(v) => write!(f, "Exact({:?})", String::from_utf8_lossy(v)),
            ValueRule::Regex(r) => write!(f, "Regex({})", r.as_str()),
            ValueRule::Present => f.write_str("Present"),
            ValueRule::Absent => f.write_str("Absent"),
        }
    }
}

impl ValueRule {
    /// Whether the values (all occurrences) satisfy the rule: `Exact`/`Regex` need one
    /// value that matches.
    fn check<'v>(&self, mut values: impl Iterator<Item = &'v [u8]>) -> bool {
        match self {
            ValueRule::Present => values.next().is_some(),
            ValueRule::Absent => values.next().is_none(),
            ValueRule::Exact(want) => values.any(|v| v == &**want),
            ValueRule::Regex(re) => {
                values.any(|v| std::str::from_utf8(v).is_ok_and(|s| re.is_match(s)))
            }
        }
    }
}

/// A header requirement.
#[derive(Debug, Clone)]
pub(crate) struct HeaderRule {
    pub(crate) name: HeaderName,
    pub(crate) rule: ValueRule,
}

impl HeaderRule {
    pub(crate) fn check(&self, headers: &HeaderMap) -> bool {
        self.rule.check(
            headers
                .get_all(&self.name)
                .iter()
                .map(HeaderValue::as_bytes),
        )
    }
}

/// A query parameter requirement (compared after decoding `+` and percent-escapes).
#[derive(Debug, Clone)]
pub(crate) struct QueryRule {
    pub(crate) name: Box<str>,
    pub(crate) rule: ValueRule,
}

impl QueryRule {
    pub(crate) fn check(&self, pairs: &[(String, String)]) -> bool {
        self.rule.check(
            pairs
                .iter()
                .filter(|(k, _)| *k == *self.name)
                .map(|(_, v)| v.as_bytes()),
        )
    }
}

/// Decodes a query string into pairs (`+` is a space; invalid escapes stay literal).
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let plus = s.replace('+', " ");
        percent_encoding::percent_decode_str(&plus)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        assert_eq!(
            HostPattern::parse("API.example.com.").unwrap(),
            HostPattern::Exact {
                name: "api.example.com".into(),
                port: None
            }
        );
        assert_eq!(
            HostPattern::parse("example.com:8443").unwrap(),
            HostPattern::Exact {
                name: "example.com".into(),
                port: Some(8443)
            }
        );
        assert_eq!(
            HostPattern::parse("*.Example.com").unwrap(),
            HostPattern::Suffix(".example.com".into())
        );
        assert_eq!(
            HostPattern::parse("api.*").unwrap(),
            HostPattern::Prefix("api.".into())
        );
        assert_eq!(HostPattern::parse("*").unwrap(), HostPattern::Any);
        for bad in ["a.*.com", "*.a.com:80", "**", "", "a b", "*."] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates() {
        let t = Template::parse("/users/{id}/files/{*rest}").unwrap();
        let caps = t.captures("/users/7/files/a/b").unwrap();
        assert_eq!(caps.len(), 2);
        assert_eq!(caps[0].1, "7");
        assert_eq!(caps[1].1, "a/b");
        assert!(t.captures("/users/7/files/").is_none());
        assert!(t.captures("/users//files/x").is_none());
        assert!(t.captures("/users/7/file/x").is_none());
        let u = Template::parse("/users/{id}").unwrap();
        assert!(u.captures("/users/7/").is_none());
        assert!(u.captures("/users/7").is_some());
        assert_eq!(u.shape(), Template::parse("/users/{name}").unwrap().shape());
        for bad in ["users", "/a/{*x}/b", "/a/x{y}", "/{a}/{a}", "/{}", "/{a-b}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overlap_and_specificity() {
        let t = |s| Template::parse(s).unwrap();
        assert!(t("/a/{x}").may_overlap(&t("/a/b")));
        assert!(!t("/a/{x}").may_overlap(&t("/b/{x}")));
        assert!(!t("/a/{x}").may_overlap(&t("/a/{x}/c")));
        assert!(t("/a/{*x}").may_overlap(&t("/a/b/c")));
        assert_eq!(t("/a/b").specificity(&t("/a/{x}")), Ordering::Greater);
        assert_eq!(t("/a/{x}").specificity(&t("/a/{*x}")), Ordering::Greater);
        assert_eq!(t("/{x}/c").specificity(&t("/a/{y}")), Ordering::Less);
    }

    #[test]
    fn prefix_is_segment_aware() {
        assert!(prefix_matches("/api/dev", "/api/dev"));
        assert!(prefix_matches("/api/dev", "/api/dev/"));
        assert!(prefix_matches("/api/dev", "/api/dev/x"));
        assert!(!prefix_matches("/api/dev", "/api/developer"));
        assert!(prefix_matches("", "/anything"));
        assert_eq!(&*parse_prefix("/api/").unwrap(), "/api");
        assert_eq!(&*parse_prefix("/").unwrap(), "");
        assert!(parse_prefix("api").is_err());
    }

    #[test]
    fn methods_and_values() {
        let set = MethodSet::new([Method::POST, Method::GET]);
        assert!(set.contains(&Method::HEAD));
        assert!(!set.contains(&Method::DELETE));
        let names: Vec<_> = set.iter().map(Method::as_str).collect();
        assert_eq!(names, ["GET", "HEAD", "POST"]);
        assert!(MethodSet::default().contains(&Method::DELETE));

        let mut headers = HeaderMap::new();
        headers.append("x-env", HeaderValue::from_static("prod"));
        headers.append("x-env", HeaderValue::from_static("canary"));
        let rule = |rule| HeaderRule {
            name: HeaderName::from_static("x-env"),
            rule,
        };
        assert!(rule(ValueRule::Exact((*b"canary").into())).check(&headers));
        assert!(!rule(ValueRule::Exact((*b"beta").into())).check(&headers));
        assert!(rule(ValueRule::Regex(anchored_regex("h", "can.*").unwrap())).check(&headers));
        assert!(!rule(ValueRule::Regex(anchored_regex("h", "an").unwrap())).check(&headers));
        assert!(rule(ValueRule::Present).check(&headers));
        assert!(!rule(ValueRule::Absent).check(&headers));

        let pairs = parse_query("a=1&b=x+y%21&c&a=2");
        let q = |name: &str, rule| QueryRule {
            name: name.into(),
            rule,
        };
        assert!(q("a", ValueRule::Exact((*b"2").into())).check(&pairs));
        assert!(q("b", ValueRule::Exact((*b"x y!").into())).check(&pairs));
        assert!(q("c", ValueRule::Present).check(&pairs));
        assert!(q("d", ValueRule::Absent).check(&pairs));
        assert!(!q("a", ValueRule::Absent).check(&pairs));
    }
}
