//! Authorization: scopes or roles (any-of / all-of), per-route rules, a predicate.

use std::{fmt, sync::Arc};

use http::Method;
use serde_json::{Map, Value};

use crate::error::AuthError;

/// Which grants a requirement looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum GrantKind {
    /// OAuth scopes: the `scope` claim (space-separated) and `scp`.
    Scopes,
    /// Roles: the configured roles claim (default `roles`).
    Roles,
}

/// How the listed values must be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum MatchMode {
    /// At least one of them.
    AnyOf,
    /// All of them.
    AllOf,
}

/// A requirement on scopes or roles.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub struct Requirement {
    /// Scopes or roles.
    pub kind: GrantKind,
    /// Any-of or all-of.
    pub mode: MatchMode,
    /// The values.
    pub values: Vec<String>,
}

impl Requirement {
    /// Any of these scopes.
    pub fn any_scope<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Self {
        Self::new(GrantKind::Scopes, MatchMode::AnyOf, values)
    }

    /// All of these scopes.
    pub fn all_scopes<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Self {
        Self::new(GrantKind::Scopes, MatchMode::AllOf, values)
    }

    /// Any of these roles.
    pub fn any_role<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Self {
        Self::new(GrantKind::Roles, MatchMode::AnyOf, values)
    }

    /// All of these roles.
    pub fn all_roles<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Self {
        Self::new(GrantKind::Roles, MatchMode::AllOf, values)
    }

    /// A requirement.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(
        kind: GrantKind,
        mode: MatchMode,
        values: I,
    ) -> Self {
        Self {
            kind,
            mode,
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    pub(crate) fn satisfied(&self, scopes: &[Arc<str>], roles: &[Arc<str>]) -> bool {
        let granted = match self.kind {
            GrantKind::Scopes => scopes,
            GrantKind::Roles => roles,
        };
        let has = |v: &String| granted.iter().any(|g| **g == **v);
        match self.mode {
            MatchMode::AnyOf => self.values.is_empty() || self.values.iter().any(has),
            MatchMode::AllOf => self.values.iter().all(has),
        }
    }
}

/// Requirements for requests whose method (if set) and path prefix match.
///
/// The prefix matches whole segments: `/admin` matches `/admin` and `/admin/x`, not
/// `/administrator`. Of several matching rules the longest prefix wins.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub struct Rule {
    /// The method, or any.
    #[cfg_attr(feature = "serde", serde(default, with = "method_opt"))]
    pub method: Option<Method>,
    /// The path prefix.
    pub path_prefix: String,
    /// Every one must hold.
    #[cfg_attr(feature = "serde", serde(default))]
    pub require: Vec<Requirement>,
}

#[cfg(feature = "serde")]
mod method_opt {
    use http::Method;
    use serde::Deserialize;

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Method>, D::Error> {
        let value: Option<String> = Option::deserialize(d)?;
        value
            .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
            .transpose()
            .map_err(serde::de::Error::custom)
    }
}

impl Rule {
    /// A rule for `path_prefix`, any method.
    pub fn path(path_prefix: impl Into<String>) -> Self {
        Self {
            method: None,
            path_prefix: path_prefix.into(),
            require: Vec::new(),
        }
    }

    /// Restricts the rule to one method.
    #[must_use]
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Adds a requirement.
    #[must_use]
    pub fn require(mut self, requirement: Requirement) -> Self {
        self.require.push(requirement);
        self
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        let prefix = self.path_prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return true;
        }
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// A custom decision over the verified claims: `true` allows.
pub type Predicate = Arc<dyn Fn(&Map<String, Value>) -> bool + Send + Sync>;

#[derive(Clone, Default)]
pub(crate) struct Authorizer {
    pub(crate) global: Vec<Requirement>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) predicate: Option<Predicate>,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("global", &self.global)
            .field("rules", &self.rules)
            .field("predicate", &self.predicate.is_some())
            .finish()
    }
}

impl Authorizer {
    pub(crate) fn is_empty(&self) -> bool {
        self.global.is_empty() && self.rules.is_empty() && self.predicate.is_none()
    }

    /// `Err((error, scope hint))` when refused.
    pub(crate) fn check(
        &self,
        method: &Method,
        path: &str,
        scopes: &[Arc<str>],
        roles: &[Arc<str>],
        claims: &Map<String, Value>,
    ) -> Result<(), (AuthError, String)> {
        let refuse = |r: &Requirement| {
            let hint = if r.kind == GrantKind::Scopes {
                r.values.join(" ")
            } else {
                String::new()
            };
            (AuthError::InsufficientScope, hint)
        };
        for requirement in &self.global {
            if !requirement.satisfied(scopes, roles) {
                return Err(refuse(requirement));
            }
        }
        let rule = self
            .rules
            .iter()
            .filter(|r| r.matches(method, path))
            .max_by_key(|r| r.path_prefix.trim_end_matches('/').len());
        if let Some(rule) = rule {
            for requirement in &rule.require {
                if !requirement.satisfied(scopes, roles) {
                    return Err(refuse(requirement));
                }
            }
        }
        if let Some(predicate) = &self.predicate
            && !predicate(claims)
        {
            return Err((AuthError::Forbidden, String::new()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arcs(v: &[&str]) -> Vec<Arc<str>> {
        v.iter().map(|s| Arc::from(*s)).collect()
    }

    #[test]
    fn any_all_and_rules() {
        let authz = Authorizer {
            global: vec![Requirement::any_scope(["read", "admin"])],
            rules: vec![
                Rule::path("/admin").require(Requirement::all_roles(["ops", "admin"])),
                Rule::path("/admin/public"),
                Rule::path("/orders")
                    .method(Method::POST)
                    .require(Requirement::all_scopes(["orders:write"])),
            ],
            predicate: None,
        };
        let empty = Map::new();
        let scopes = arcs(&["read"]);
        let get = Method::GET;
        assert!(authz.check(&get, "/x", &scopes, &[], &empty).is_ok());
        assert!(
            authz
                .check(&get, "/x", &arcs(&["write"]), &[], &empty)
                .is_err()
        );
        assert!(
            authz
                .check(&get, "/admin/x", &scopes, &arcs(&["ops"]), &empty)
                .is_err()
        );
        assert!(
            authz
                .check(&get, "/admin/x", &scopes, &arcs(&["ops", "admin"]), &empty)
                .is_ok()
        );
        assert!(
            authz
                .check(&get, "/administrator", &scopes, &[], &empty)
                .is_ok()
        );
        assert!(
            authz
                .check(&get, "/admin/public/a", &scopes, &[], &empty)
                .is_ok()
        );
        assert!(authz.check(&get, "/orders", &scopes, &[], &empty).is_ok());
        let err = authz
            .check(&Method::POST, "/orders/1", &scopes, &[], &empty)
            .unwrap_err();
        assert_eq!(
            err,
            (AuthError::InsufficientScope, "orders:write".to_owned())
        );
    }
}
