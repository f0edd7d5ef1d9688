//! JSON paths and compiled JSON body operations (pure: no I/O).

use std::collections::BTreeMap;

use gateway_layers_core::{ConfigError, RequestView, template::HeaderTemplate};
use serde_json::{Map, Number, Value};

use crate::{
    config::{CastType, JsonRules, OnTemplateError, ValueSpec},
    headers::{TemplateFailed, render_template},
};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// An object key; `index` when the key also reads as an array index (`/items/0`).
    Key {
        name: Box<str>,
        index: Option<usize>,
    },
    /// An array index (`[0]`).
    Index(usize),
    /// Every element of an array or value of an object (`[*]`, `*`).
    Any,
}

impl Seg {
    fn key(name: &str) -> Self {
        Self::Key {
            name: name.into(),
            index: name.parse().ok().filter(|_| !name.starts_with('+')),
        }
    }
}

/// Parses a JSON Pointer (`/a/b/0`) or a dot path (`a.b[0]`, `items[*].id`, `a.*.b`).
pub(crate) fn parse_path(path: &str) -> Result<Vec<Seg>, String> {
    let segs = if let Some(pointer) = path.strip_prefix('/') {
        pointer
            .split('/')
            .map(|token| {
                let token = token.replace("~1", "/").replace("~0", "~");
                Seg::key(&token)
            })
            .collect()
    } else {
        parse_dot_path(path)?
    };
    if segs.is_empty() {
        return Err("empty path".to_owned());
    }
    Ok(segs)
}

fn parse_dot_path(path: &str) -> Result<Vec<Seg>, String> {
    let path = path.strip_prefix("$.").unwrap_or(path);
    let mut segs = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        match name {
            "" if rest.is_empty() => return Err(format!("empty segment in `{path}`")),
            "" => {}
            "*" => segs.push(Seg::Any),
            name if name.contains(']') => return Err(format!("unexpected `]` in `{path}`")),
            name => segs.push(Seg::key(name)),
        }
        while !rest.is_empty() {
            let Some(end) = rest.find(']') else {
                return Err(format!("unclosed `[` in `{path}`"));
            };
            if !rest.starts_with('[') {
                return Err(format!("unexpected `{rest}` in `{path}`"));
            }
            match &rest[1..end] {
                "*" => segs.push(Seg::Any),
                index => segs.push(Seg::Index(index.parse().map_err(|_| {
                    format!("`[{index}]` is not an index or `[*]` in `{path}`")
                })?)),
            }
            rest = &rest[end + 1..];
        }
    }
    Ok(segs)
}

/// Calls `f` on every value `segs` reaches; with `create`, missing object keys on the
/// way are created as empty objects.
fn visit(value: &mut Value, segs: &[Seg], create: bool, f: &mut impl FnMut(&mut Value)) {
    let Some((first, rest)) = segs.split_first() else {
        f(value);
        return;
    };
    match (first, value) {
        (Seg::Key { name, .. }, Value::Object(map)) => {
            if let Some(child) = map.get_mut(&**name) {
                visit(child, rest, create, f);
            } else if create {
                let child = map
                    .entry(name.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                visit(child, rest, create, f);
            }
        }
        (Seg::Key { index: Some(i), .. } | Seg::Index(i), Value::Array(items)) => {
            if let Some(child) = items.get_mut(*i) {
                visit(child, rest, create, f);
            }
        }
        (Seg::Any, Value::Array(items)) => {
            for child in items {
                visit(child, rest, create, f);
            }
        }
        (Seg::Any, Value::Object(map)) => {
            for child in map.values_mut() {
                visit(child, rest, create, f);
            }
        }
        _ => {}
    }
}

/// A value for an operation, resolved at run time.
#[derive(Debug, Clone)]
enum Val {
    Literal(Value),
    Template {
        template: HeaderTemplate,
        cast: Option<CastType>,
        slot: usize,
    },
}

#[derive(Debug, Clone)]
struct Op<T> {
    parent: Vec<Seg>,
    last: Seg,
    /// `parent` then `last`, kept whole so applying an op allocates no path.
    full: Box<[Seg]>,
    arg: T,
}

#[derive(Debug, Clone, Default)]
struct AllowNode {
    keep_all: bool,
    keys: BTreeMap<Box<str>, AllowNode>,
    any: Option<Box<AllowNode>>,
}

impl AllowNode {
    fn insert(&mut self, segs: &[Seg]) {
        let Some((first, rest)) = segs.split_first() else {
            self.keep_all = true;
            return;
        };
        let child = match first {
            Seg::Key { name, .. } => self.keys.entry(name.clone()).or_default(),
            Seg::Any | Seg::Index(_) => self.any.get_or_insert_with(Default::default),
        };
        child.insert(rest);
    }

    /// Filters `value` in place; returns whether it is kept.
    fn filter(&self, value: &mut Value) -> bool {
        if self.keep_all {
            return true;
        }
        match value {
            Value::Object(map) => {
                map.retain(|key, child| match self.keys.get(key.as_str()) {
                    Some(node) => node.filter(child),
                    None => match &self.any {
                        Some(node) => node.filter(child),
                        None => false,
                    },
                });
                true
            }
            Value::Array(items) => {
                let node = self.any.as_deref().unwrap_or(self);
                items.retain_mut(|item| node.filter(item));
                true
            }
            _ => false,
        }
    }
}

/// JSON operations, compiled.
#[derive(Debug, Clone, Default)]
pub(crate) struct JsonPlan {
    remove: Vec<Op<()>>,
    rename: Vec<Op<String>>,
    replace: Vec<Op<Val>>,
    add: Vec<Op<Val>>,
    append: Vec<Op<Val>>,
    cast: Vec<Op<CastType>>,
    allow: Option<AllowNode>,
    templates: usize,
}

fn op<T>(field: &'static str, path: &str, arg: T) -> Result<Op<T>, ConfigError> {
    let full: Box<[Seg]> = parse_path(path)
        .map_err(|reason| ConfigError::invalid(field, format!("{path}: {reason}")))?
        .into();
    let mut parent = full.to_vec();
    let last = parent.pop().expect("non-empty path");
    Ok(Op {
        parent,
        last,
        full,
        arg,
    })
}

impl JsonPlan {
    pub(crate) fn compile(rules: &JsonRules, side: &'static str) -> Result<Self, ConfigError> {
        let field = |name: &'static str| -> &'static str {
            match (side, name) {
                ("request", "remove") => "request.json.remove",
                ("request", "rename") => "request.json.rename",
                ("request", "replace") => "request.json.replace",
                ("request", "add") => "request.json.add",
                ("request", "append") => "request.json.append",
                ("request", "cast") => "request.json.cast",
                ("request", _) => "request.json.allow",
                (_, "remove") => "response.json.remove",
                (_, "rename") => "response.json.rename",
                (_, "replace") => "response.json.replace",
                (_, "add") => "response.json.add",
                (_, "append") => "response.json.append",
                (_, "cast") => "response.json.cast",
                _ => "response.json.allow",
            }
        };
        let mut templates = 0;
        let mut value = |spec: &ValueSpec| -> Result<Val, ConfigError> {
            Ok(match spec {
                ValueSpec::Literal(v) => Val::Literal(v.clone()),
                ValueSpec::Template { template, cast } => {
                    let template = HeaderTemplate::parse(template)?;
                    templates += 1;
                    Val::Template {
                        template,
                        cast: *cast,
                        slot: templates - 1,
                    }
                }
            })
        };
        let mut plan = Self::default();
        for path in &rules.remove {
            plan.remove.push(op(field("remove"), path, ())?);
        }
        for (path, to) in &rules.rename {
            let o = op(field("rename"), path, to.clone())?;
            if !matches!(o.last, Seg::Key { .. }) || to.is_empty() {
                return Err(ConfigError::invalid(
                    field("rename"),
                    format!("{path}: rename needs a path ending in a key and a new key name"),
                ));
            }
            plan.rename.push(o);
        }
        for (path, spec) in &rules.replace {
            plan.replace.push(op(field("replace"), path, value(spec)?)?);
        }
        for (path, spec) in &rules.add {
            let o = op(field("add"), path, value(spec)?)?;
            if !matches!(o.last, Seg::Key { .. }) {
                return Err(ConfigError::invalid(
                    field("add"),
                    format!("{path}: add needs a path ending in a key"),
                ));
            }
            plan.add.push(o);
        }
        for (path, spec) in &rules.append {
            plan.append.push(op(field("append"), path, value(spec)?)?);
        }
        for (path, to) in &rules.cast {
            plan.cast.push(op(field("cast"), path, *to)?);
        }
        if let Some(paths) = &rules.allow {
            let mut root = AllowNode::default();
            for path in paths {
                let segs = parse_path(path).map_err(|reason| {
                    ConfigError::invalid(field("allow"), format!("{path}: {reason}"))
                })?;
                root.insert(&segs);
            }
            plan.allow = Some(root);
        }
        plan.templates = templates;
        Ok(plan)
    }

    /// Renders every template value against the request.
    pub(crate) fn render(
        &self,
        view: &RequestView<'_>,
        policy: OnTemplateError,
    ) -> Result<Vec<Option<Value>>, TemplateFailed> {
        if self.templates == 0 {
            return Ok(Vec::new());
        }
        let mut out = vec![None; self.templates];
        for o in self.replace.iter().chain(&self.add).chain(&self.append) {
            if let Val::Template {
                template,
                cast,
                slot,
            } = &o.arg
            {
                let Some(rendered) = render_template(template, view, policy)? else {
                    continue;
                };
                let text = Value::String(String::from_utf8_lossy(rendered.as_bytes()).into_owned());
                out[*slot] = match cast {
                    None => Some(text),
                    Some(to) => match cast_value(&text, *to) {
                        Some(v) => Some(v),
                        None if policy == OnTemplateError::Drop => None,
                        None => {
                            return Err(TemplateFailed {
                                template: template.as_str().to_owned(),
                                error: gateway_layers_core::template::RenderError::Missing(
                                    format!("a value castable to {to:?}").into(),
                                ),
                            });
                        }
                    },
                };
            }
        }
        Ok(out)
    }

    /// Applies the operations in order: remove, rename, replace, add, append, cast, allow.
    pub(crate) fn apply(&self, doc: &mut Value, rendered: &[Option<Value>]) {
        let resolve = |v: &Val| -> Option<Value> {
            match v {
                Val::Literal(value) => Some(value.clone()),
                Val::Template { slot, .. } => rendered.get(*slot).cloned().flatten(),
            }
        };
        for o in &self.remove {
            visit(
                doc,
                &o.parent,
                false,
                &mut |parent| match (&o.last, parent) {
                    (Seg::Key { name, .. }, Value::Object(map)) => {
                        map.remove(&**name);
                    }
                    (Seg::Key { index: Some(i), .. } | Seg::Index(i), Value::Array(items))
                        if *i < items.len() =>
                    {
                        items.remove(*i);
                    }
                    (Seg::Any, Value::Array(items)) => items.clear(),
                    (Seg::Any, Value::Object(map)) => map.clear(),
                    _ => {}
                },
            );
        }
        for o in &self.rename {
            let Seg::Key { name, .. } = &o.last else {
                continue;
            };
            visit(doc, &o.parent, false, &mut |parent| {
                if let Value::Object(map) = parent
                    && let Some(value) = map.remove(&**name)
                {
                    map.insert(o.arg.clone(), value);
                }
            });
        }
        for o in &self.replace {
            let Some(value) = resolve(&o.arg) else {
                continue;
            };
            visit(doc, &o.full, false, &mut |target| *target = value.clone());
        }
        for o in &self.add {
            let (Seg::Key { name, .. }, Some(value)) = (&o.last, resolve(&o.arg)) else {
                continue;
            };
            visit(doc, &o.parent, true, &mut |parent| {
                if let Value::Object(map) = parent
                    && !map.contains_key(&**name)
                {
                    map.insert(name.to_string(), value.clone());
                }
            });
        }
        for o in &self.append {
            let Some(value) = resolve(&o.arg) else {
                continue;
            };
            match &o.last {
                Seg::Key { name, .. } => visit(doc, &o.parent, true, &mut |parent| match parent {
                    Value::Object(map) => {
                        let slot = map
                            .entry(name.to_string())
                            .or_insert(Value::Array(Vec::new()));
                        push(slot, value.clone());
                    }
                    Value::Array(items) => {
                        if let Seg::Key { index: Some(i), .. } = &o.last
                            && let Some(slot) = items.get_mut(*i)
                        {
                            push(slot, value.clone());
                        }
                    }
                    _ => {}
                }),
                _ => {
                    visit(doc, &o.full, false, &mut |target| {
                        push(target, value.clone())
                    });
                }
            }
        }
        for o in &self.cast {
            visit(doc, &o.full, false, &mut |target| {
                if let Some(cast) = cast_value(target, o.arg) {
                    *target = cast;
                }
            });
        }
        if let Some(allow) = &self.allow
            && matches!(doc, Value::Object(_) | Value::Array(_))
        {
            allow.filter(doc);
        }
    }
}

fn push(slot: &mut Value, value: Value) {
    match slot {
        Value::Array(items) => items.push(value),
        other => {
            let old = std::mem::take(other);
            *other = Value::Array(vec![old, value]);
        }
    }
}

/// Converts `value` to `to`; `None` when it cannot be.
pub(crate) fn cast_value(value: &Value, to: CastType) -> Option<Value> {
    match (to, value) {
        (CastType::String, Value::String(_)) => Some(value.clone()),
        (CastType::String, other) => Some(Value::String(other.to_string())),
        (CastType::Number | CastType::Integer, Value::Bool(b)) => Some(Value::from(u8::from(*b))),
        (CastType::Number, Value::Number(_)) => Some(value.clone()),
        (CastType::Number, Value::String(s)) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                Some(Value::from(i))
            } else if let Ok(u) = s.parse::<u64>() {
                Some(Value::from(u))
            } else {
                s.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            }
        }
        (CastType::Integer, Value::Number(n)) => {
            if n.is_i64() || n.is_u64() {
                Some(value.clone())
            } else {
                let f = n.as_f64()?;
                (f.fract() == 0.0 && f.abs() < 9.0e15).then(|| Value::from(f as i64))
            }
        }
        (CastType::Integer, Value::String(s)) => {
            let s = s.trim();
            s.parse::<i64>()
                .map(Value::from)
                .or_else(|_| s.parse::<u64>().map(Value::from))
                .ok()
        }
        (CastType::Boolean, Value::Bool(_)) => Some(value.clone()),
        (CastType::Boolean, Value::String(s)) => match s.trim() {
            "true" | "1" => Some(Value::Bool(true)),
            "false" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        (CastType::Boolean, Value::Number(n)) => match n.as_f64() {
            Some(1.0) => Some(Value::Bool(true)),
            Some(0.0) => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rules;
    use serde_json::json;

    fn run(rules: Rules, mut doc: Value) -> Value {
        let plan = JsonPlan::compile(&rules.json, "request").unwrap();
        plan.apply(&mut doc, &[]);
        doc
    }

    #[test]
    fn paths_parse() {
        let k = Seg::key;
        assert_eq!(
            parse_path("items[*].internal_id").unwrap(),
            [k("items"), Seg::Any, k("internal_id")]
        );
        assert_eq!(
            parse_path("a.b[0][1].c").unwrap(),
            [k("a"), k("b"), Seg::Index(0), Seg::Index(1), k("c")]
        );
        assert_eq!(
            parse_path("/a~1b/0/c~0d").unwrap(),
            [k("a/b"), k("0"), k("c~d")]
        );
        assert_eq!(parse_path("$.a.*.b").unwrap(), [k("a"), Seg::Any, k("b")]);
        for bad in ["", "a..b", "a[", "a[x]", "a]b[0]"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn remove_nested_and_wildcards() {
        let doc = json!({
            "password": "x",
            "user": {"name": "a", "ssn": "1"},
            "items": [{"id": 1, "internal_id": 9}, {"id": 2, "internal_id": 8}, 3],
            "list": [1, 2, 3],
            "maps": {"a": {"secret": 1, "k": 1}, "b": {"secret": 2}}
        });
        let out = run(
            Rules::new()
                .remove_field("password")
                .remove_field("/user/ssn")
                .remove_field("items[*].internal_id")
                .remove_field("list[1]")
                .remove_field("maps.*.secret")
                .remove_field("does.not.exist"),
            doc,
        );
        assert_eq!(
            out,
            json!({
                "user": {"name": "a"},
                "items": [{"id": 1}, {"id": 2}, 3],
                "list": [1, 3],
                "maps": {"a": {"k": 1}, "b": {}}
            })
        );
    }

    #[test]
    fn rename_replace_add_append() {
        let doc = json!({
            "userName": "a",
            "items": [{"sku": "x"}, {"sku": "y"}],
            "status": "old",
            "tags": ["a"],
            "single": 1
        });
        let out = run(
            Rules::new()
                .rename_field("userName", "user_name")
                .rename_field("items[*].sku", "code")
                .replace_field("status", "new")
                .replace_field("missing", "never")
                .add_field("status", "ignored")
                .add_field("meta.source", "gateway")
                .add_field("items[*].seen", true)
                .append_field("tags", "b")
                .append_field("fresh", 1)
                .append_field("single", 2),
            doc,
        );
        assert_eq!(
            out,
            json!({
                "user_name": "a",
                "items": [{"code": "x", "seen": true}, {"code": "y", "seen": true}],
                "status": "new",
                "meta": {"source": "gateway"},
                "tags": ["a", "b"],
                "fresh": [1],
                "single": [1, 2]
            })
        );
    }

    #[test]
    fn json_order_and_allow_list_last() {
        let out = run(
            Rules::new()
                .allow_fields(["id", "items[*].name", "renamed", "added"])
                .cast_field("id", CastType::String)
                .add_field("added", 1)
                .add_field("dropped", 1)
                .rename_field("old", "renamed")
                .remove_field("items[*].name"),
            json!({"id": 7, "old": "o", "secret": "s", "items": [{"name": "n", "price": 1}]}),
        );
        // remove runs before allow: items keep nothing; renamed and added survive.
        assert_eq!(
            out,
            json!({"id": "7", "renamed": "o", "added": 1, "items": [{}]})
        );
        let out = run(
            Rules::new().allow_fields(["data.user.name", "data.items.id"]),
            json!({"data": {"user": {"name": "a", "pw": "p"}, "items": [{"id": 1, "x": 2}], "extra": 1}, "top": 1}),
        );
        assert_eq!(
            out,
            json!({"data": {"user": {"name": "a"}, "items": [{"id": 1}]}})
        );
        // An array at the root applies the list to each element.
        let out = run(
            Rules::new().allow_fields(["id"]),
            json!([{"id": 1, "x": 1}, {"id": 2}]),
        );
        assert_eq!(out, json!([{"id": 1}, {"id": 2}]));
    }

    #[test]
    fn casts() {
        let out = run(
            Rules::new()
                .cast_field("a", CastType::Integer)
                .cast_field("b", CastType::Number)
                .cast_field("c", CastType::Boolean)
                .cast_field("d", CastType::String)
                .cast_field("e", CastType::Integer)
                .cast_field("list[*]", CastType::Integer),
            json!({"a": "42", "b": "1.5", "c": "true", "d": 5, "e": "not a number", "list": ["1", 2.0, "x"]}),
        );
        assert_eq!(
            out,
            json!({"a": 42, "b": 1.5, "c": true, "d": "5", "e": "not a number", "list": [1, 2, "x"]})
        );
    }

    #[test]
    fn templated_values_with_casts() {
        let rules = Rules::new()
            .add_field("user", ValueSpec::template("{claim.sub}"))
            .add_field(
                "page",
                ValueSpec::template("{query.page}").cast(CastType::Integer),
            )
            .add_field("path_id", ValueSpec::template("{path.id}"));
        let plan = JsonPlan::compile(&rules.json, "request").unwrap();
        let mut request = http::Request::builder()
            .uri("/orders/7?page=3")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(gateway_layers_core::Identity::new().with_claims(json!({"sub": "u1"})));
        request
            .extensions_mut()
            .insert(gateway_layers_core::ext::PathParams(std::sync::Arc::new([
                ("id".into(), "7".into()),
            ])));
        let rendered = plan
            .render(&RequestView::new(&request), OnTemplateError::Reject)
            .unwrap();
        let mut doc = json!({});
        plan.apply(&mut doc, &rendered);
        assert_eq!(doc, json!({"user": "u1", "page": 3, "path_id": "7"}));

        // A value that does not cast: refused, or dropped.
        let bad = http::Request::builder().uri("/?page=x").body(()).unwrap();
        let view = RequestView::new(&bad);
        assert!(plan.render(&view, OnTemplateError::Reject).is_err());
        let rendered = plan.render(&view, OnTemplateError::Drop).unwrap();
        let mut doc = json!({});
        plan.apply(&mut doc, &rendered);
        assert_eq!(doc, json!({}));
    }

    #[test]
    fn bad_rules_are_config_errors() {
        for rules in [
            Rules::new().remove_field("a[x]"),
            Rules::new().rename_field("items[*]", "x"),
            Rules::new().rename_field("a", ""),
            Rules::new().add_field("items[0]", 1),
            Rules::new().add_field("a", ValueSpec::template("{nope}")),
            Rules::new().allow_fields([""]),
        ] {
            assert!(
                JsonPlan::compile(&rules.json, "response").is_err(),
                "{rules:?}"
            );
        }
    }
}
