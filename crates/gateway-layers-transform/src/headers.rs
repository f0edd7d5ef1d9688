//! Compiled header operations (pure: no I/O).

use gateway_layers_core::{
    ConfigError, RequestView,
    headers::header_name,
    template::{HeaderTemplate, RenderError},
};
use http::{HeaderMap, HeaderName, HeaderValue, Request, header::Entry};

use crate::config::{HeaderRules, OnTemplateError};

/// A header value: fixed at build time, or a template rendered per request into a slot.
#[derive(Debug, Clone)]
pub(crate) enum HeaderVal {
    Static(HeaderValue),
    Template {
        template: HeaderTemplate,
        slot: usize,
    },
}

/// Header operations, compiled.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderPlan {
    /// `remove` + `add` of one name, fused into a single insert (see `compile`).
    set: Box<[(HeaderName, HeaderVal)]>,
    remove: Box<[HeaderName]>,
    rename: Box<[(HeaderName, HeaderName)]>,
    replace: Box<[(HeaderName, HeaderVal)]>,
    add: Box<[(HeaderName, HeaderVal)]>,
    append: Box<[(HeaderName, HeaderVal)]>,
    templates: usize,
}

/// A template failure under [`OnTemplateError::Reject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateFailed {
    pub(crate) template: String,
    pub(crate) error: RenderError,
}

/// Renders a template; `Ok(None)` is a failure under [`OnTemplateError::Drop`].
pub(crate) fn render_template(
    template: &HeaderTemplate,
    view: &RequestView<'_>,
    policy: OnTemplateError,
) -> Result<Option<HeaderValue>, TemplateFailed> {
    match template.render(view) {
        Ok(value) => Ok(Some(value)),
        Err(error) => {
            tracing::debug!(
                target: "gateway_layers::transform",
                template = template.as_str(),
                %error,
                "transform.template_failed"
            );
            match policy {
                OnTemplateError::Drop => Ok(None),
                OnTemplateError::Reject => Err(TemplateFailed {
                    template: template.as_str().to_owned(),
                    error,
                }),
            }
        }
    }
}

/// Parses a template; a template without variables becomes a fixed value.
pub(crate) fn compile_value(
    name: &str,
    source: &str,
    slots: &mut usize,
) -> Result<HeaderVal, ConfigError> {
    let template = HeaderTemplate::parse(source)?;
    if template.is_static() {
        let empty = Request::new(());
        let value = template.render(&RequestView::new(&empty)).map_err(|e| {
            ConfigError::InvalidHeaderValue {
                name: name.to_owned(),
                reason: e.to_string(),
            }
        })?;
        return Ok(HeaderVal::Static(value));
    }
    let slot = *slots;
    *slots += 1;
    Ok(HeaderVal::Template { template, slot })
}

impl HeaderPlan {
    pub(crate) fn compile(rules: &HeaderRules) -> Result<Self, ConfigError> {
        let mut slots = 0;
        let mut values = |pairs: &[(String, String)]| -> Result<Box<[_]>, ConfigError> {
            pairs
                .iter()
                .map(|(name, template)| {
                    Ok((
                        header_name(name)?,
                        compile_value(name, template, &mut slots)?,
                    ))
                })
                .collect()
        };
        let replace = values(&rules.replace)?;
        let add = values(&rules.add)?;
        let append = values(&rules.append)?;
        let mut remove: Vec<HeaderName> = rules
            .remove
            .iter()
            .map(|n| header_name(n))
            .collect::<Result<_, _>>()?;
        let rename: Box<[(HeaderName, HeaderName)]> = rules
            .rename
            .iter()
            .map(|(from, to)| Ok((header_name(from)?, header_name(to)?)))
            .collect::<Result<_, ConfigError>>()?;
        // `remove X` then `add X` is an unconditional insert, as long as no rename or
        // replace in between looks at X: do it in one step.
        let (set, add): (Vec<_>, Vec<_>) = add.into_vec().into_iter().partition(|(name, _)| {
            remove.contains(name)
                && !rename.iter().any(|(from, to)| from == name || to == name)
                && !replace.iter().any(|(n, _)| n == name)
        });
        remove.retain(|name| !set.iter().any(|(n, _)| n == name));
        Ok(Self {
            set: set.into(),
            remove: remove.into(),
            rename,
            replace,
            add: add.into(),
            append,
            templates: slots,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty()
            && self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }

    /// Whether every value is fixed (nothing to render per request).
    pub(crate) fn is_static(&self) -> bool {
        self.templates == 0
    }

    /// Renders every template against the request (no allocation when there are none).
    pub(crate) fn render(
        &self,
        view: &RequestView<'_>,
        policy: OnTemplateError,
    ) -> Result<Vec<Option<HeaderValue>>, TemplateFailed> {
        if self.templates == 0 {
            return Ok(Vec::new());
        }
        let mut out = vec![None; self.templates];
        let values = self.set.iter().chain(&*self.replace);
        for (_, value) in values.chain(&*self.add).chain(&*self.append) {
            if let HeaderVal::Template { template, slot } = value {
                out[*slot] = render_template(template, view, policy)?;
            }
        }
        Ok(out)
    }

    /// Applies the operations in order: remove, rename, replace, add, append.
    pub(crate) fn apply(&self, headers: &mut HeaderMap, rendered: &[Option<HeaderValue>]) {
        let value = |v: &HeaderVal| -> Option<HeaderValue> {
            match v {
                HeaderVal::Static(value) => Some(value.clone()),
                HeaderVal::Template { slot, .. } => rendered.get(*slot).cloned().flatten(),
            }
        };
        for (name, v) in &self.set {
            match value(v) {
                Some(v) => {
                    headers.insert(name.clone(), v);
                }
                None => {
                    headers.remove(name);
                }
            }
        }
        for name in &self.remove {
            headers.remove(name);
        }
        for (from, to) in &self.rename {
            if from == to {
                continue;
            }
            if let Entry::Occupied(entry) = headers.entry(from) {
                let values: Vec<HeaderValue> = entry.remove_entry_mult().1.collect();
                headers.remove(to);
                for v in values {
                    headers.append(to.clone(), v);
                }
            }
        }
        for (name, v) in &self.replace {
            if headers.contains_key(name)
                && let Some(v) = value(v)
            {
                headers.insert(name.clone(), v);
            }
        }
        for (name, v) in &self.add {
            if let Entry::Vacant(entry) = headers.entry(name)
                && let Some(v) = value(v)
            {
                entry.insert(v);
            }
        }
        for (name, v) in &self.append {
            if let Some(v) = value(v) {
                headers.append(name.clone(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rules;

    fn plan(rules: Rules) -> HeaderPlan {
        HeaderPlan::compile(&rules.headers).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn all(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn each_operation() {
        let p = plan(
            Rules::new()
                .remove_header("x-secret")
                .rename_header("x-old", "x-new")
                .replace_header("x-present", "replaced")
                .replace_header("x-absent", "nope")
                .add_header("x-present2", "not-added")
                .add_header("x-added", "added")
                .append_header("via", "gw"),
        );
        let mut h = headers(&[
            ("x-secret", "1"),
            ("x-secret", "2"),
            ("x-old", "a"),
            ("x-old", "b"),
            ("x-new", "stale"),
            ("x-present", "orig"),
            ("x-present2", "kept"),
            ("via", "proxy1"),
        ]);
        p.apply(&mut h, &[]);
        assert!(!h.contains_key("x-secret"));
        assert!(!h.contains_key("x-old"));
        assert_eq!(all(&h, "x-new"), ["a", "b"]);
        assert_eq!(all(&h, "x-present"), ["replaced"]);
        assert!(!h.contains_key("x-absent"));
        assert_eq!(all(&h, "x-present2"), ["kept"]);
        assert_eq!(all(&h, "x-added"), ["added"]);
        assert_eq!(all(&h, "via"), ["proxy1", "gw"]);
    }

    #[test]
    fn fixed_order_remove_rename_replace_add_append() {
        // Declared in "reverse", applied in the fixed order.
        let p = plan(
            Rules::new()
                .append_header("x-b", "appended")
                .add_header("x-b", "added")
                .replace_header("x-b", "replaced")
                .rename_header("x-a", "x-b")
                .remove_header("x-b"),
        );
        // remove x-b, rename x-a -> x-b, replace (present) -> "replaced",
        // add (present now) skipped, append.
        let mut h = headers(&[("x-a", "from-a"), ("x-b", "forged")]);
        p.apply(&mut h, &[]);
        assert_eq!(all(&h, "x-b"), ["replaced", "appended"]);
        // Without x-a: remove x-b, nothing to rename, replace skipped, add, append.
        let mut h = headers(&[("x-b", "forged")]);
        p.apply(&mut h, &[]);
        assert_eq!(all(&h, "x-b"), ["added", "appended"]);
    }

    #[test]
    fn set_header_ignores_the_clients_value() {
        let p = plan(Rules::new().set_header("x-user-id", "{claim.sub}"));
        let mut request = Request::builder()
            .header("x-user-id", "forged")
            .body(())
            .unwrap();
        request.extensions_mut().insert(
            gateway_layers_core::Identity::new().with_claims(serde_json::json!({"sub": "u1"})),
        );
        let rendered = p
            .render(&RequestView::new(&request), OnTemplateError::Reject)
            .unwrap();
        p.apply(request.headers_mut(), &rendered);
        assert_eq!(all(request.headers(), "x-user-id"), ["u1"]);
    }

    #[test]
    fn fused_set_keeps_the_semantics() {
        let fused = plan(Rules::new().set_header("x-a", "v"));
        assert_eq!(fused.set.len(), 1);
        assert!(fused.remove.is_empty() && fused.add.is_empty());
        let mut h = headers(&[("x-a", "1"), ("x-a", "2")]);
        fused.apply(&mut h, &[]);
        assert_eq!(all(&h, "x-a"), ["v"]);
        // Not fused when a rename or replace looks at the name in between.
        let p = plan(
            Rules::new()
                .set_header("x-a", "added")
                .rename_header("x-b", "x-a"),
        );
        assert!(p.set.is_empty());
        let mut h = headers(&[("x-a", "forged"), ("x-b", "renamed")]);
        p.apply(&mut h, &[]);
        assert_eq!(all(&h, "x-a"), ["renamed"]);
        let p = plan(
            Rules::new()
                .set_header("x-a", "added")
                .replace_header("x-a", "replaced"),
        );
        assert!(p.set.is_empty());
        let mut h = headers(&[("x-a", "forged")]);
        p.apply(&mut h, &[]);
        assert_eq!(all(&h, "x-a"), ["added"]);
        // A dropped template still removes the client's value.
        let p = plan(Rules::new().set_header("x-user", "{claim.sub}"));
        let request = Request::builder()
            .header("x-user", "forged")
            .body(())
            .unwrap();
        let rendered = p
            .render(&RequestView::new(&request), OnTemplateError::Drop)
            .unwrap();
        let mut h = request.headers().clone();
        p.apply(&mut h, &rendered);
        assert!(!h.contains_key("x-user"));
    }

    #[test]
    fn failures_reject_or_drop() {
        let p = plan(Rules::new().add_header("x-page", "p{query.page}"));
        let evil = Request::builder()
            .uri("/?page=1%0d%0aX-Admin:%20true")
            .body(())
            .unwrap();
        let err = p
            .render(&RequestView::new(&evil), OnTemplateError::Reject)
            .unwrap_err();
        assert!(matches!(err.error, RenderError::Invalid(_)));
        let rendered = p
            .render(&RequestView::new(&evil), OnTemplateError::Drop)
            .unwrap();
        let mut h = HeaderMap::new();
        p.apply(&mut h, &rendered);
        assert!(h.is_empty());
        let nul = Request::builder().uri("/?page=%00").body(()).unwrap();
        assert!(
            p.render(&RequestView::new(&nul), OnTemplateError::Reject)
                .is_err()
        );
    }

    #[test]
    fn bad_config_is_refused() {
        for rules in [
            Rules::new().remove_header("bad name"),
            Rules::new().add_header("x", "a\r\nb"),
            Rules::new().add_header("x", "{nope}"),
            Rules::new().rename_header("x", ""),
        ] {
            assert!(HeaderPlan::compile(&rules.headers).is_err(), "{rules:?}");
        }
    }
}
