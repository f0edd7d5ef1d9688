//! Configuration: what to change in requests and responses, and the limits.
//!
//! Everything here is plain data (behind the `serde` feature it is
//! `serde::Deserialize`), validated into a [`TransformLayer`](crate::TransformLayer) by
//! [`TransformConfig::build`]. A file can declare transforms per route:
//!
//! ```json
//! {
//!   "request": {
//!     "headers": { "remove": ["x-user-id"], "add": { "x-user-id": "{claim.sub}" } },
//!     "json": { "remove": ["password"], "add": { "meta.source": "gateway" } }
//!   },
//!   "response": {
//!     "json": { "remove": ["items[*].internal_id"], "rename": { "userName": "user_name" } }
//!   },
//!   "max_body_bytes": 1048576,
//!   "on_template_error": "reject",
//!   "compressed": "transform"
//! }
//! ```
//!
//! Maps (`rename`, `add`, ...) keep the order they are written in.

use serde_json::Value;

/// The default cap on a buffered body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// What to do when a template cannot be rendered for a request (a missing variable, or
/// a value with CR, LF, NUL or another control character).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum OnTemplateError {
    /// Refuse the request with `400 Bad Request` (problem+json, code `template_failed`).
    #[default]
    Reject,
    /// Skip the operation that used the template (the header or field is not set).
    Drop,
}

/// What to do with a JSON body sent with `Content-Encoding: gzip` or `deflate`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum CompressedBodies {
    /// Decode, transform and encode again with the same coding.
    #[default]
    Transform,
    /// Leave compressed bodies untouched (headers are still transformed).
    Passthrough,
}

/// The JSON type a value is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum CastType {
    /// A string: strings stay, other values become their JSON text.
    String,
    /// A number (integer or float): numeric strings and booleans (1/0) convert.
    Number,
    /// An integer: integer strings, integral floats and booleans (1/0) convert.
    Integer,
    /// A boolean: `true`/`false`/`1`/`0` strings and the numbers 1 and 0 convert.
    Boolean,
}

/// A value for a JSON operation: a literal, or a template rendered per request.
///
/// In a file, any JSON value is a literal, except an object whose only keys are
/// `template` (and optionally `as`): `{"template": "{claim.sub}", "as": "integer"}`.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueSpec {
    /// A literal JSON value.
    Literal(Value),
    /// A template (same variables as header templates), rendered to a string and
    /// converted to `cast` when set.
    Template {
        /// The template, e.g. `{claim.sub}`.
        template: String,
        /// The type to convert the rendered string to.
        cast: Option<CastType>,
    },
}

impl ValueSpec {
    /// A template value rendered to a JSON string.
    pub fn template(template: impl Into<String>) -> Self {
        Self::Template {
            template: template.into(),
            cast: None,
        }
    }

    /// Converts a template's rendered string to `cast` (no effect on literals).
    #[must_use]
    pub fn cast(self, to: CastType) -> Self {
        match self {
            Self::Template { template, .. } => Self::Template {
                template,
                cast: Some(to),
            },
            literal => literal,
        }
    }
}

impl From<Value> for ValueSpec {
    fn from(value: Value) -> Self {
        Self::Literal(value)
    }
}

impl From<&str> for ValueSpec {
    fn from(value: &str) -> Self {
        Self::Literal(Value::from(value))
    }
}

impl From<String> for ValueSpec {
    fn from(value: String) -> Self {
        Self::Literal(Value::from(value))
    }
}

impl From<i64> for ValueSpec {
    fn from(value: i64) -> Self {
        Self::Literal(Value::from(value))
    }
}

impl From<bool> for ValueSpec {
    fn from(value: bool) -> Self {
        Self::Literal(Value::from(value))
    }
}

/// Header operations, applied in this fixed order: `remove`, `rename`, `replace`
/// (only if present), `add` (only if absent), `append`.
///
/// Values are templates (`{header.x}`, `{query.x}`, `{path.x}`, `{claim.x}`,
/// `{client_ip}`, `{request_id}`, ...; `{{`/`}}` for literal braces), rendered against
/// the request as this layer received it. `remove` + `add` of one name sets it
/// unconditionally, which is how an identity header is set without letting the client
/// forge it ([`Rules::set_header`]).
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct HeaderRules {
    /// Names to remove (every value).
    pub remove: Vec<String>,
    /// `from` -> `to`: the values of `from` move to `to`, replacing any `to` values.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "ordered::map"))]
    pub rename: Vec<(String, String)>,
    /// Name -> template, set only when the header is present.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "ordered::map"))]
    pub replace: Vec<(String, String)>,
    /// Name -> template, set only when the header is absent.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "ordered::map"))]
    pub add: Vec<(String, String)>,
    /// Name -> template, always appended as another value.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "ordered::map"))]
    pub append: Vec<(String, String)>,
}

/// JSON body operations, applied in this fixed order: `remove`, `rename`, `replace`
/// (only if present), `add` (only if absent), `append`, `cast`, and last the `allow`
/// list, which is the final shape of the document.
///
/// Paths are JSON Pointers (`/items/0/id`) or dot paths (`items[0].id`,
/// `items[*].internal_id`, `meta.*.secret`); `[*]` / `*` match every element of an
/// array or every value of an object.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct JsonRules {
    /// Paths to remove.
    pub remove: Vec<String>,
    /// Path -> new key name (in the same object).
    #[cfg_attr(feature = "serde", serde(deserialize_with = "ordered::map"))]
    pub rename: Vec<(String, String)>,
    /// Path -> value, set only where the path exists.
    #[cfg_attr(feature = "serde", serde(deserialize_with = "ordered::map"))]
    pub replace: Vec<(String, ValueSpec)>,
    /// Path -> value, set only where the key is absent (missing parent objects are created).
    #[cfg_attr(feature = "serde", serde(deserialize_with = "ordered::map"))]
    pub add: Vec<(String, ValueSpec)>,
    /// Path -> value pushed onto the array there (absent: a new array; a scalar: an
    /// array of the old value and the new one).
    #[cfg_attr(feature = "serde", serde(deserialize_with = "ordered::map"))]
    pub append: Vec<(String, ValueSpec)>,
    /// Path -> type the existing value is converted to (left as is when it cannot be).
    #[cfg_attr(feature = "serde", serde(deserialize_with = "ordered::map"))]
    pub cast: Vec<(String, CastType)>,
    /// When set, only these paths are kept (dot paths or pointers, `[*]` allowed; an
    /// array on the way applies the rest of the path to each element).
    pub allow: Option<Vec<String>>,
}

impl JsonRules {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
            && self.cast.is_empty()
            && self.allow.is_none()
    }
}

/// The operations for one direction (request or response).
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Rules {
    /// Header operations.
    pub headers: HeaderRules,
    /// JSON body operations (only bodies with a JSON content type are touched).
    pub json: JsonRules,
}

impl Rules {
    /// No operations.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes header `name`.
    #[must_use]
    pub fn remove_header(mut self, name: impl Into<String>) -> Self {
        self.headers.remove.push(name.into());
        self
    }

    /// Renames header `from` to `to`.
    #[must_use]
    pub fn rename_header(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.headers.rename.push((from.into(), to.into()));
        self
    }

    /// Replaces header `name` with `template` when it is present.
    #[must_use]
    pub fn replace_header(mut self, name: impl Into<String>, template: impl Into<String>) -> Self {
        self.headers.replace.push((name.into(), template.into()));
        self
    }

    /// Adds header `name` = `template` when it is absent.
    #[must_use]
    pub fn add_header(mut self, name: impl Into<String>, template: impl Into<String>) -> Self {
        self.headers.add.push((name.into(), template.into()));
        self
    }

    /// Appends another value `template` to header `name`.
    #[must_use]
    pub fn append_header(mut self, name: impl Into<String>, template: impl Into<String>) -> Self {
        self.headers.append.push((name.into(), template.into()));
        self
    }

    /// Sets header `name` whatever the client sent: `remove` + `add`.
    #[must_use]
    pub fn set_header(self, name: impl Into<String>, template: impl Into<String>) -> Self {
        let name = name.into();
        self.remove_header(name.clone()).add_header(name, template)
    }

    /// Removes the JSON field(s) at `path`.
    #[must_use]
    pub fn remove_field(mut self, path: impl Into<String>) -> Self {
        self.json.remove.push(path.into());
        self
    }

    /// Renames the key at `path` to `to`.
    #[must_use]
    pub fn rename_field(mut self, path: impl Into<String>, to: impl Into<String>) -> Self {
        self.json.rename.push((path.into(), to.into()));
        self
    }

    /// Replaces the value at `path` when present.
    #[must_use]
    pub fn replace_field(mut self, path: impl Into<String>, value: impl Into<ValueSpec>) -> Self {
        self.json.replace.push((path.into(), value.into()));
        self
    }

    /// Adds `value` at `path` when absent.
    #[must_use]
    pub fn add_field(mut self, path: impl Into<String>, value: impl Into<ValueSpec>) -> Self {
        self.json.add.push((path.into(), value.into()));
        self
    }

    /// Appends `value` to the array at `path`.
    #[must_use]
    pub fn append_field(mut self, path: impl Into<String>, value: impl Into<ValueSpec>) -> Self {
        self.json.append.push((path.into(), value.into()));
        self
    }

    /// Converts the value at `path` to `to`.
    #[must_use]
    pub fn cast_field(mut self, path: impl Into<String>, to: CastType) -> Self {
        self.json.cast.push((path.into(), to));
        self
    }

    /// Keeps only the listed paths.
    #[must_use]
    pub fn allow_fields<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.json
            .allow
            .get_or_insert_with(Vec::new)
            .extend(paths.into_iter().map(Into::into));
        self
    }
}

/// The whole configuration of a [`TransformLayer`](crate::TransformLayer).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct TransformConfig {
    /// Operations on the request, before it reaches the inner service.
    pub request: Rules,
    /// Operations on the response, before it leaves the layer.
    pub response: Rules,
    /// The largest (decoded) body buffered for a JSON transform; default 1 MiB. A request
    /// over it gets 413; a response over it passes through untransformed.
    pub max_body_bytes: usize,
    /// A template that cannot be rendered: refuse (400, default) or skip the operation.
    pub on_template_error: OnTemplateError,
    /// gzip/deflate-encoded JSON bodies: transform (default) or pass through.
    pub compressed: CompressedBodies,
}

impl Default for TransformConfig {
    fn default() -> Self {
        Self {
            request: Rules::default(),
            response: Rules::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            on_template_error: OnTemplateError::default(),
            compressed: CompressedBodies::default(),
        }
    }
}

impl TransformConfig {
    /// Nothing to do, default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the request operations.
    #[must_use]
    pub fn request(mut self, rules: Rules) -> Self {
        self.request = rules;
        self
    }

    /// Sets the response operations.
    #[must_use]
    pub fn response(mut self, rules: Rules) -> Self {
        self.response = rules;
        self
    }

    /// Sets the buffer cap.
    #[must_use]
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets what a template that cannot be rendered does.
    #[must_use]
    pub fn on_template_error(mut self, policy: OnTemplateError) -> Self {
        self.on_template_error = policy;
        self
    }

    /// Sets what happens to gzip/deflate-encoded JSON bodies.
    #[must_use]
    pub fn compressed(mut self, policy: CompressedBodies) -> Self {
        self.compressed = policy;
        self
    }

    /// Validates into a layer.
    pub fn build(self) -> Result<crate::TransformLayer, gateway_layers_core::ConfigError> {
        crate::TransformLayer::new(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for ValueSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(deserializer)?;
        if let Value::Object(map) = &value
            && let Some(Value::String(template)) = map.get("template")
            && map.keys().all(|k| k == "template" || k == "as")
        {
            let cast = match map.get("as") {
                None => None,
                Some(as_) => Some(CastType::deserialize(as_).map_err(D::Error::custom)?),
            };
            return Ok(Self::Template {
                template: template.clone(),
                cast,
            });
        }
        Ok(Self::Literal(value))
    }
}

#[cfg(feature = "serde")]
mod ordered {
    use std::{fmt, marker::PhantomData};

    use serde::{
        Deserialize, Deserializer,
        de::{MapAccess, Visitor},
    };

    /// A map deserialized into pairs, in the order written.
    pub(super) fn map<'de, D, V>(deserializer: D) -> Result<Vec<(String, V)>, D::Error>
    where
        D: Deserializer<'de>,
        V: Deserialize<'de>,
    {
        struct Pairs<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Pairs<V> {
            type Value = Vec<(String, V)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::with_capacity(access.size_hint().unwrap_or(0));
                while let Some(pair) = access.next_entry::<String, V>()? {
                    pairs.push(pair);
                }
                Ok(pairs)
            }
        }
        deserializer.deserialize_map(Pairs(PhantomData))
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deserializes_a_route_file() {
        // From text: `json!` would sort the keys before they reach the deserializer.
        let text = json!({
            "request": {
                "headers": {
                    "remove": ["x-user-id"],
                    "add": {"x-user-id": "{claim.sub}", "x-b": "2"},
                    "rename": {"x-old": "x-new"}
                },
                "json": {
                    "add": {"meta.user": {"template": "{claim.sub}"}, "n": {"template": "{query.n}", "as": "integer"}},
                    "replace": {"kept": {"template": 1, "other": 2}},
                    "allow": ["a", "items[*].id"]
                }
            },
            "response": {"json": {"remove": ["items[*].internal_id"], "cast": {"id": "string"}}},
            "max_body_bytes": 2048,
            "on_template_error": "drop",
            "compressed": "passthrough"
        })
        .to_string()
        .replace(r#""x-b":"2","x-user-id":"{claim.sub}""#, r#""x-user-id":"{claim.sub}","x-b":"2""#);
        let config: TransformConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(config.max_body_bytes, 2048);
        assert_eq!(config.on_template_error, OnTemplateError::Drop);
        assert_eq!(config.compressed, CompressedBodies::Passthrough);
        assert_eq!(
            config.request.headers.add,
            [
                ("x-user-id".to_owned(), "{claim.sub}".to_owned()),
                ("x-b".to_owned(), "2".to_owned())
            ]
        );
        assert_eq!(
            config.request.json.add[1].1,
            ValueSpec::template("{query.n}").cast(CastType::Integer)
        );
        // Not a template object: a literal.
        assert_eq!(
            config.request.json.replace[0].1,
            ValueSpec::Literal(json!({"template": 1, "other": 2}))
        );
        assert_eq!(config.response.json.cast[0].1, CastType::String);
        assert!(config.build().is_ok());

        let defaults: TransformConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(defaults, TransformConfig::default());
        assert_eq!(defaults.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert!(serde_json::from_value::<TransformConfig>(json!({"nope": 1})).is_err());
    }
}
