//! The rule condition language (CONTRACT §4.4): parsing the stored JSON form once, then
//! evaluating it cheaply against each event's payload envelope.
//!
//! Forms: `{"all": [...]}`, `{"any": [...]}`, or one condition `{"op": "...", ...}`.
//! Ops: `header_present {name}`, `header_equals {name, value}`, `json_path_exists {path}`,
//! `json_path_equals {path, value}`, `json_path_regex {path, pattern}`. Keys other than
//! the ones an op needs are ignored (the seed's configs may carry comments).
//!
//! Signals reported on a match, one per matched leaf: `header_present:<name>`,
//! `header_equals:<name>`, `json_path_exists:<path>`, `json_path_equals:<path>`,
//! `json_path_regex:<path>`.

use std::fmt::{self, Write as _};

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Number, Value};

/// Deepest `all`/`any` nesting accepted; bounds parse and evaluation recursion.
pub const MAX_DEPTH: usize = 32;
/// Compiled-size limit for user regexes, so one rule cannot eat memory or CPU.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Syntax nesting limit for user regexes (groups, repetitions).
pub const REGEX_NEST_LIMIT: u32 = 32;
/// The condition ops, as written in the JSON form.
pub const OPS: &[&str] = &[
    "header_present",
    "header_equals",
    "json_path_exists",
    "json_path_equals",
    "json_path_regex",
];

/// A parsed rule condition tree.
#[derive(Debug, Clone)]
pub enum Condition {
    /// Every child matches; an empty `all` matches everything (a catch-all rule).
    All(Vec<Condition>),
    /// At least one child matches; an empty `any` never matches.
    Any(Vec<Condition>),
    /// The header is present (name lower-cased).
    HeaderPresent {
        /// Lower-case header name.
        name: String,
    },
    /// The header's value equals `value` exactly.
    HeaderEquals {
        /// Lower-case header name.
        name: String,
        /// Expected header value (case-sensitive).
        value: String,
    },
    /// The path resolves in the JSON body (a present `null` counts as existing).
    JsonPathExists {
        /// Where to look in the JSON body.
        path: JsonPath,
    },
    /// The value at the path equals `value` as JSON (`7` = `7.0`, `7` ≠ `"7"`).
    JsonPathEquals {
        /// Where to look in the JSON body.
        path: JsonPath,
        /// Expected JSON value.
        value: Value,
    },
    /// The value at the path is a string the regex finds a match in (unanchored search).
    JsonPathRegex {
        /// Where to look in the JSON body.
        path: JsonPath,
        /// The compiled pattern (compiled once, at parse).
        regex: Regex,
    },
}

/// Why a condition was refused; every message names the place (`conditions.all[1]`).
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The stored text is not JSON.
    #[error("invalid conditions JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// A node is not a JSON object.
    #[error("expected a condition object at {at}, found {found}")]
    NotAnObject {
        /// Location of the node.
        at: String,
        /// JSON kind found instead.
        found: &'static str,
    },
    /// An object has none of `op`, `all`, `any`.
    #[error(r#"missing "op" at {at} (a condition is {{"op": ...}}, {{"all": [...]}} or {{"any": [...]}})"#)]
    MissingOp {
        /// Location of the node.
        at: String,
    },
    /// An object has more than one of `op`, `all`, `any`.
    #[error(r#"condition at {at} must have exactly one of "op", "all", "any""#)]
    Ambiguous {
        /// Location of the node.
        at: String,
    },
    /// `all`/`any` is not an array.
    #[error(r#""{key}" at {at} must be an array of conditions"#)]
    NotAList {
        /// `all` or `any`.
        key: &'static str,
        /// Location of the node.
        at: String,
    },
    /// `op` is not a string.
    #[error(r#""op" at {at} must be a string"#)]
    OpNotString {
        /// Location of the node.
        at: String,
    },
    /// `op` names no known operation.
    #[error(r#"unknown op "{op}" at {at} (expected one of: header_present, header_equals, json_path_exists, json_path_equals, json_path_regex)"#)]
    UnknownOp {
        /// The op as written.
        op: String,
        /// Location of the node.
        at: String,
    },
    /// A field the op needs is absent.
    #[error(r#"missing field "{field}" for {op} at {at}"#)]
    MissingField {
        /// Field name.
        field: &'static str,
        /// The op that needs it.
        op: &'static str,
        /// Location of the node.
        at: String,
    },
    /// A field has the wrong JSON type (or is empty where it must not be).
    #[error(r#"field "{field}" for {op} at {at} must be {expected}"#)]
    WrongType {
        /// Field name.
        field: &'static str,
        /// The op it belongs to.
        op: &'static str,
        /// What it must be.
        expected: &'static str,
        /// Location of the node.
        at: String,
    },
    /// The path is malformed.
    #[error("invalid path {path:?} at {at}: {reason}")]
    InvalidPath {
        /// The path as written.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
        /// Location of the node.
        at: String,
    },
    /// The regex does not compile or is over the size/nesting limits.
    #[error("invalid regex at {at}: {source}")]
    InvalidRegex {
        /// Location of the node.
        at: String,
        /// The compiler's complaint.
        source: regex::Error,
    },
    /// `all`/`any` nesting exceeds [`MAX_DEPTH`].
    #[error("conditions nested deeper than {max} levels at {at}")]
    TooDeep {
        /// Location of the node.
        at: String,
        /// The limit.
        max: usize,
    },
}

/// A dot-separated path into the JSON body, split once at parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    raw: String,
    parts: Vec<PathPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PathPart {
    key: String,
    /// Set when the part is a decimal integer: it then also indexes arrays.
    index: Option<usize>,
}

impl JsonPath {
    /// Splits `a.b.0.c`; refuses an empty path or an empty segment (`a..b`, `a.`).
    pub fn parse(raw: &str) -> Result<JsonPath, &'static str> {
        if raw.is_empty() {
            return Err("path is empty");
        }
        let parts = raw
            .split('.')
            .map(|key| {
                if key.is_empty() {
                    return Err("empty segment (two dots in a row, or a leading/trailing dot)");
                }
                let index = if key.bytes().all(|b| b.is_ascii_digit()) {
                    key.parse().ok()
                } else {
                    None
                };
                Ok(PathPart {
                    key: key.to_owned(),
                    index,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(JsonPath {
            raw: raw.to_owned(),
            parts,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Walks the path from `root`: object parts by key, decimal parts also index arrays.
    pub fn resolve<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.parts.iter().try_fold(root, |cur, part| match cur {
            Value::Object(m) => m.get(&part.key),
            Value::Array(a) => part.index.and_then(|i| a.get(i)),
            _ => None,
        })
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// The parts of the payload envelope conditions look at, found once per evaluation.
struct Ctx<'p> {
    headers: Option<&'p Map<String, Value>>,
    json: Option<&'p Value>,
}

impl Condition {
    /// Parses the JSON condition form; rejects unknown ops, missing/mistyped fields, non-object nodes, regexes over the size limit.
    pub fn parse(v: &Value) -> Result<Condition, RuleError> {
        let mut at = String::from("conditions");
        parse_node(v, &mut at, 0)
    }

    /// Parses from the stored JSON text (invalid JSON is a RuleError naming the JSON error).
    pub fn parse_str(s: &str) -> Result<Condition, RuleError> {
        let v: Value = serde_json::from_str(s).map_err(RuleError::InvalidJson)?;
        Condition::parse(&v)
    }

    /// Evaluates against a stored payload envelope; on match returns Some(signals) (the matched leaf signals, e.g. "header_equals:x-github-event", "json_path_equals:action"), else None.
    ///
    /// `all` reports the signals of all its children, `any` those of its first matching
    /// child. Headers come from `payload["headers"]`, paths start at `payload["json"]`.
    pub fn evaluate(&self, payload: &Value) -> Option<Vec<String>> {
        let mut leaves = Vec::new();
        // Signals are formatted only once the whole tree matched.
        self.eval(&Ctx::of(payload), &mut leaves)
            .then(|| leaves.iter().filter_map(|c| c.signal()).collect())
    }

    /// Like [`Condition::evaluate`] without collecting signals.
    pub fn matches(&self, payload: &Value) -> bool {
        self.test(&Ctx::of(payload))
    }

    /// Pushes matched leaves onto `out`; leaves `out` as it was when returning false.
    fn eval<'c>(&'c self, ctx: &Ctx<'_>, out: &mut Vec<&'c Condition>) -> bool {
        match self {
            Condition::All(children) => {
                let mark = out.len();
                let ok = children.iter().all(|c| c.eval(ctx, out));
                if !ok {
                    out.truncate(mark);
                }
                ok
            }
            Condition::Any(children) => children.iter().any(|c| c.eval(ctx, out)),
            leaf => {
                let ok = leaf.test(ctx);
                if ok {
                    out.push(leaf);
                }
                ok
            }
        }
    }

    fn test(&self, ctx: &Ctx<'_>) -> bool {
        let header = |name: &str| ctx.headers.and_then(|h| h.get(name));
        let at_path = |path: &JsonPath| ctx.json.and_then(|j| path.resolve(j));
        match self {
            Condition::All(children) => children.iter().all(|c| c.test(ctx)),
            Condition::Any(children) => children.iter().any(|c| c.test(ctx)),
            Condition::HeaderPresent { name } => header(name).is_some(),
            Condition::HeaderEquals { name, value } => header(name).and_then(Value::as_str) == Some(value.as_str()),
            Condition::JsonPathExists { path } => at_path(path).is_some(),
            Condition::JsonPathEquals { path, value } => at_path(path).is_some_and(|v| json_eq(v, value)),
            Condition::JsonPathRegex { path, regex } => {
                at_path(path).and_then(Value::as_str).is_some_and(|s| regex.is_match(s))
            }
        }
    }

    /// The signal of a leaf; `None` for `all`/`any`.
    fn signal(&self) -> Option<String> {
        let (op, subject) = match self {
            Condition::All(_) | Condition::Any(_) => return None,
            Condition::HeaderPresent { name } => ("header_present", name.as_str()),
            Condition::HeaderEquals { name, .. } => ("header_equals", name.as_str()),
            Condition::JsonPathExists { path } => ("json_path_exists", path.as_str()),
            Condition::JsonPathEquals { path, .. } => ("json_path_equals", path.as_str()),
            Condition::JsonPathRegex { path, .. } => ("json_path_regex", path.as_str()),
        };
        let mut s = String::with_capacity(op.len() + 1 + subject.len());
        s.push_str(op);
        s.push(':');
        s.push_str(subject);
        Some(s)
    }
}

impl<'p> Ctx<'p> {
    fn of(payload: &'p Value) -> Self {
        Ctx {
            headers: payload.get("headers").and_then(Value::as_object),
            json: payload.get("json"),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one node; `at` is its location, extended in place for children (cloned only on error).
fn parse_node(v: &Value, at: &mut String, depth: usize) -> Result<Condition, RuleError> {
    let Value::Object(obj) = v else {
        return Err(RuleError::NotAnObject {
            at: at.clone(),
            found: kind(v),
        });
    };
    let all = obj.get("all");
    let any = obj.get("any");
    let op = obj.get("op");
    match (all, any, op) {
        (Some(list), None, None) => parse_list("all", list, at, depth).map(Condition::All),
        (None, Some(list), None) => parse_list("any", list, at, depth).map(Condition::Any),
        (None, None, Some(op)) => parse_leaf(obj, op, at),
        (None, None, None) => Err(RuleError::MissingOp { at: at.clone() }),
        _ => Err(RuleError::Ambiguous { at: at.clone() }),
    }
}

fn parse_list(key: &'static str, list: &Value, at: &mut String, depth: usize) -> Result<Vec<Condition>, RuleError> {
    let Value::Array(items) = list else {
        return Err(RuleError::NotAList { key, at: at.clone() });
    };
    if depth >= MAX_DEPTH {
        return Err(RuleError::TooDeep {
            at: at.clone(),
            max: MAX_DEPTH,
        });
    }
    let mark = at.len();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        // Writing into a String cannot fail.
        let _ = write!(at, ".{key}[{i}]");
        out.push(parse_node(item, at, depth + 1)?);
        at.truncate(mark);
    }
    Ok(out)
}

fn parse_leaf(obj: &Map<String, Value>, op: &Value, at: &str) -> Result<Condition, RuleError> {
    let Some(op) = op.as_str() else {
        return Err(RuleError::OpNotString { at: at.to_owned() });
    };
    let Some(&op) = OPS.iter().find(|o| **o == op) else {
        return Err(RuleError::UnknownOp {
            op: op.to_owned(),
            at: at.to_owned(),
        });
    };
    let field = |field: &'static str| {
        obj.get(field).ok_or_else(|| RuleError::MissingField {
            field,
            op,
            at: at.to_owned(),
        })
    };
    let string = |field_name: &'static str, allow_empty: bool| {
        field(field_name).and_then(|v| match v.as_str() {
            Some(s) if allow_empty || !s.is_empty() => Ok(s),
            _ => Err(RuleError::WrongType {
                field: field_name,
                op,
                expected: if allow_empty { "a string" } else { "a non-empty string" },
                at: at.to_owned(),
            }),
        })
    };
    let header_name = || string("name", false).map(|s| s.trim().to_ascii_lowercase());
    let path = || {
        let raw = string("path", false)?;
        JsonPath::parse(raw).map_err(|reason| RuleError::InvalidPath {
            path: raw.to_owned(),
            reason,
            at: at.to_owned(),
        })
    };
    Ok(match op {
        "header_present" => Condition::HeaderPresent { name: header_name()? },
        "header_equals" => Condition::HeaderEquals {
            name: header_name()?,
            value: string("value", true)?.to_owned(),
        },
        "json_path_exists" => Condition::JsonPathExists { path: path()? },
        "json_path_equals" => Condition::JsonPathEquals {
            path: path()?,
            value: field("value")?.clone(),
        },
        _ => {
            // json_path_regex, the last of OPS.
            let path = path()?;
            let pattern = string("pattern", true)?;
            let regex = RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .nest_limit(REGEX_NEST_LIMIT)
                .build()
                .map_err(|source| RuleError::InvalidRegex {
                    at: at.to_owned(),
                    source,
                })?;
            Condition::JsonPathRegex { path, regex }
        }
    })
}

/// JSON equality: like `==` but numbers compare by value, so `7` equals `7.0`.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_eq(x, y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn number_eq(a: &Number, b: &Number) -> bool {
    if a.is_f64() || b.is_f64() {
        // as_f64 is always Some without serde_json's arbitrary_precision.
        return a.as_f64().is_some_and(|x| b.as_f64() == Some(x));
    }
    // Both integers: i64 or u64; comparing both ways covers mixed representations.
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x == y,
        _ => a.as_u64().is_some_and(|x| b.as_u64() == Some(x)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::detect::tests::arb_json;
    use proptest::prelude::*;
    use serde_json::json;

    fn payload() -> Value {
        json!({
            "source_hint": "github",
            "headers": {"x-github-event": "push", "content-type": "application/json", "x-num": "7"},
            "json": {
                "action": "opened",
                "count": 7,
                "ratio": 0.5,
                "ref": "refs/heads/main",
                "draft": false,
                "nothing": null,
                "labels": [{"name": "bug"}, {"name": "p1"}],
                "matrix": [[1, 2], [3, 4]],
                "0": {"x": "key-zero"},
                "pull_request": {"title": "Fix: crash on start", "user": {"login": "octocat"}}
            }
        })
    }

    fn eval(cond: Value) -> Option<Vec<String>> {
        let c = Condition::parse(&cond).unwrap_or_else(|e| panic!("{cond}: {e}"));
        let got = c.evaluate(&payload());
        assert_eq!(got.is_some(), c.matches(&payload()), "matches() agrees with evaluate()");
        got
    }

    fn err(cond: Value) -> String {
        match Condition::parse(&cond) {
            Ok(c) => panic!("{cond} parsed as {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn sig(s: &[&str]) -> Option<Vec<String>> {
        Some(s.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn header_present() {
        assert_eq!(
            eval(json!({"op": "header_present", "name": "X-GitHub-Event"})),
            sig(&["header_present:x-github-event"])
        );
        assert_eq!(eval(json!({"op": "header_present", "name": "x-missing"})), None);
    }

    #[test]
    fn header_equals() {
        assert_eq!(
            eval(json!({"op": "header_equals", "name": "x-github-event", "value": "push"})),
            sig(&["header_equals:x-github-event"])
        );
        assert_eq!(
            eval(json!({"op": "header_equals", "name": "x-github-event", "value": "Push"})),
            None
        );
        assert_eq!(
            eval(json!({"op": "header_equals", "name": "x-nope", "value": "push"})),
            None
        );
    }

    #[test]
    fn header_ops_without_headers_do_not_match() {
        let c = Condition::parse(&json!({"op": "header_present", "name": "a"})).unwrap();
        assert_eq!(c.evaluate(&json!({"json": {}})), None);
        assert_eq!(c.evaluate(&json!({"headers": "a"})), None);
        assert_eq!(c.evaluate(&json!(null)), None);
    }

    #[test]
    fn json_path_exists() {
        assert_eq!(
            eval(json!({"op": "json_path_exists", "path": "pull_request.user.login"})),
            sig(&["json_path_exists:pull_request.user.login"])
        );
        // A present null exists; a missing key does not.
        assert!(eval(json!({"op": "json_path_exists", "path": "nothing"})).is_some());
        assert_eq!(
            eval(json!({"op": "json_path_exists", "path": "pull_request.body"})),
            None
        );
        // Walking through a scalar fails rather than panicking.
        assert_eq!(eval(json!({"op": "json_path_exists", "path": "action.x"})), None);
    }

    #[test]
    fn json_path_equals_is_typed() {
        assert_eq!(
            eval(json!({"op": "json_path_equals", "path": "action", "value": "opened"})),
            sig(&["json_path_equals:action"])
        );
        assert!(eval(json!({"op": "json_path_equals", "path": "count", "value": 7})).is_some());
        assert_eq!(
            eval(json!({"op": "json_path_equals", "path": "count", "value": "7"})),
            None
        );
        // A JSON number is a number: 7 and 7.0 are equal.
        assert!(eval(json!({"op": "json_path_equals", "path": "count", "value": 7.0})).is_some());
        assert_eq!(
            eval(json!({"op": "json_path_equals", "path": "ratio", "value": 0.25})),
            None
        );
        assert!(eval(json!({"op": "json_path_equals", "path": "draft", "value": false})).is_some());
        assert_eq!(
            eval(json!({"op": "json_path_equals", "path": "draft", "value": null})),
            None
        );
        assert!(eval(json!({"op": "json_path_equals", "path": "nothing", "value": null})).is_some());
        // Missing is not null.
        assert_eq!(
            eval(json!({"op": "json_path_equals", "path": "absent", "value": null})),
            None
        );
        // Structured values compare deeply.
        assert!(eval(json!({"op": "json_path_equals", "path": "matrix", "value": [[1, 2], [3, 4.0]]})).is_some());
        assert!(eval(json!({"op": "json_path_equals", "path": "labels.0", "value": {"name": "bug"}})).is_some());
        assert_eq!(
            eval(json!({"op": "json_path_equals", "path": "labels.0", "value": {"name": "bug", "x": 1}})),
            None
        );
    }

    #[test]
    fn number_equality_edges() {
        assert!(number_eq(&Number::from(u64::MAX), &Number::from(u64::MAX)));
        assert!(!number_eq(&Number::from(-1i64), &Number::from(u64::MAX)));
        assert!(number_eq(&Number::from(-3i64), &Number::from(-3i64)));
        assert!(!number_eq(&Number::from(3u64), &Number::from(4u64)));
    }

    #[test]
    fn json_path_regex() {
        assert_eq!(
            eval(json!({"op": "json_path_regex", "path": "ref", "pattern": "^refs/heads/(main|master)$"})),
            sig(&["json_path_regex:ref"])
        );
        // Unanchored search, like Python's re.search.
        assert!(eval(json!({"op": "json_path_regex", "path": "pull_request.title", "pattern": "(?i)crash"})).is_some());
        assert_eq!(
            eval(json!({"op": "json_path_regex", "path": "ref", "pattern": "^main"})),
            None
        );
        // Only strings are searched: 7 is not "7".
        assert_eq!(
            eval(json!({"op": "json_path_regex", "path": "count", "pattern": "7"})),
            None
        );
        assert_eq!(
            eval(json!({"op": "json_path_regex", "path": "absent", "pattern": ".*"})),
            None
        );
    }

    #[test]
    fn array_index_paths() {
        assert!(eval(json!({"op": "json_path_equals", "path": "labels.1.name", "value": "p1"})).is_some());
        assert!(eval(json!({"op": "json_path_equals", "path": "matrix.1.0", "value": 3})).is_some());
        assert_eq!(eval(json!({"op": "json_path_exists", "path": "labels.2"})), None);
        assert_eq!(eval(json!({"op": "json_path_exists", "path": "labels.name"})), None);
        assert_eq!(eval(json!({"op": "json_path_exists", "path": "labels.-1"})), None);
        assert_eq!(
            eval(json!({"op": "json_path_exists", "path": "labels.99999999999999999999999"})),
            None
        );
        // On an object, a numeric part is a key.
        assert!(eval(json!({"op": "json_path_equals", "path": "0.x", "value": "key-zero"})).is_some());
    }

    #[test]
    fn all_collects_every_signal() {
        let c = json!({"all": [
            {"op": "header_equals", "name": "x-github-event", "value": "push"},
            {"op": "json_path_equals", "path": "action", "value": "opened"},
        ]});
        assert_eq!(
            eval(c),
            sig(&["header_equals:x-github-event", "json_path_equals:action"])
        );
        let c = json!({"all": [
            {"op": "header_equals", "name": "x-github-event", "value": "push"},
            {"op": "json_path_equals", "path": "action", "value": "closed"},
        ]});
        assert_eq!(eval(c), None);
        // Empty all is a catch-all.
        assert_eq!(eval(json!({"all": []})), sig(&[]));
    }

    #[test]
    fn any_reports_first_matching_child() {
        let c = json!({"any": [
            {"op": "json_path_equals", "path": "action", "value": "closed"},
            {"op": "header_present", "name": "x-github-event"},
            {"op": "json_path_exists", "path": "action"},
        ]});
        assert_eq!(eval(c), sig(&["header_present:x-github-event"]));
        assert_eq!(eval(json!({"any": [{"op": "header_present", "name": "nope"}]})), None);
        assert_eq!(eval(json!({"any": []})), None);
    }

    #[test]
    fn nested_failed_branch_leaves_no_signals() {
        let c = json!({"any": [
            {"all": [
                {"op": "header_present", "name": "x-github-event"},
                {"op": "json_path_equals", "path": "action", "value": "closed"},
            ]},
            {"all": [
                {"op": "json_path_exists", "path": "ref"},
                {"any": [{"op": "json_path_regex", "path": "ref", "pattern": "main"}]},
            ]},
        ]});
        assert_eq!(eval(c), sig(&["json_path_exists:ref", "json_path_regex:ref"]));
    }

    #[test]
    fn single_condition_form() {
        assert_eq!(
            eval(json!({"op": "json_path_exists", "path": "action", "comment": "ignored"})),
            sig(&["json_path_exists:action"])
        );
    }

    #[test]
    fn unknown_op_is_refused_naming_it_and_where() {
        let e = err(json!({"all": [{"op": "header_present", "name": "a"}, {"op": "foo"}]}));
        assert!(e.starts_with(r#"unknown op "foo" at conditions.all[1]"#), "{e}");
        let e = err(json!({"op": "json_path_contains", "path": "a"}));
        assert!(
            e.starts_with(r#"unknown op "json_path_contains" at conditions "#),
            "{e}"
        );
    }

    #[test]
    fn missing_fields_are_refused() {
        let e = err(json!({"any": [{"op": "header_equals", "value": "push"}]}));
        assert_eq!(e, r#"missing field "name" for header_equals at conditions.any[0]"#);
        let e = err(json!({"op": "header_equals", "name": "x"}));
        assert_eq!(e, r#"missing field "value" for header_equals at conditions"#);
        let e = err(json!({"op": "json_path_equals", "path": "a"}));
        assert_eq!(e, r#"missing field "value" for json_path_equals at conditions"#);
        let e = err(json!({"op": "json_path_regex", "path": "a"}));
        assert_eq!(e, r#"missing field "pattern" for json_path_regex at conditions"#);
        let e = err(json!({"all": [{"any": [{"op": "json_path_exists"}]}]}));
        assert_eq!(
            e,
            r#"missing field "path" for json_path_exists at conditions.all[0].any[0]"#
        );
    }

    #[test]
    fn mistyped_and_malformed_nodes_are_refused() {
        let e = err(json!({"op": "header_equals", "name": "x", "value": 7}));
        assert_eq!(e, r#"field "value" for header_equals at conditions must be a string"#);
        let e = err(json!({"op": "header_present", "name": ""}));
        assert_eq!(
            e,
            r#"field "name" for header_present at conditions must be a non-empty string"#
        );
        let e = err(json!({"op": 3}));
        assert_eq!(e, r#""op" at conditions must be a string"#);
        let e = err(json!({"all": {"op": "header_present", "name": "a"}}));
        assert_eq!(e, r#""all" at conditions must be an array of conditions"#);
        let e = err(json!({"any": [["op"]]}));
        assert_eq!(e, "expected a condition object at conditions.any[0], found an array");
        let e = err(json!("header_present"));
        assert_eq!(e, "expected a condition object at conditions, found a string");
        let e = err(json!({"name": "x"}));
        assert!(e.starts_with(r#"missing "op" at conditions"#), "{e}");
        let e = err(json!({"all": [], "op": "header_present", "name": "a"}));
        assert_eq!(
            e,
            r#"condition at conditions must have exactly one of "op", "all", "any""#
        );
        let e = err(json!({"op": "json_path_exists", "path": "a..b"}));
        assert!(
            e.starts_with(r#"invalid path "a..b" at conditions: empty segment"#),
            "{e}"
        );
    }

    #[test]
    fn invalid_json_is_refused_naming_the_error() {
        let e = Condition::parse_str(r#"{"op": "header_present", "name": }"#).unwrap_err();
        assert!(matches!(e, RuleError::InvalidJson(_)));
        let msg = e.to_string();
        assert!(
            msg.starts_with("invalid conditions JSON: expected value at line 1 column"),
            "{msg}"
        );
        let c = Condition::parse_str(r#"{"op": "header_present", "name": "x-github-event"}"#).unwrap();
        assert!(c.matches(&payload()));
    }

    #[test]
    fn bad_regex_is_refused() {
        let e = err(json!({"any": [{"op": "json_path_regex", "path": "a", "pattern": "(unclosed"}]}));
        assert!(e.starts_with("invalid regex at conditions.any[0]: "), "{e}");
    }

    #[test]
    fn oversized_regex_is_refused_at_parse() {
        // Each \w{100} expands to a large Unicode class program: far over 256 KiB compiled.
        let e = err(json!({"op": "json_path_regex", "path": "a", "pattern": r"\w{100}\w{100}\w{100}"}));
        assert!(e.starts_with("invalid regex at conditions: "), "{e}");
        assert!(e.contains("size limit"), "{e}");
        // A modest pattern of the same kind is fine.
        assert!(Condition::parse(&json!({"op": "json_path_regex", "path": "a", "pattern": r"\w{3}"})).is_ok());
    }

    #[test]
    fn deeply_nested_regex_syntax_is_refused() {
        let pattern = format!("{}a{}", "(".repeat(100), ")".repeat(100));
        let e = err(json!({"op": "json_path_regex", "path": "a", "pattern": pattern}));
        assert!(e.starts_with("invalid regex at conditions: "), "{e}");
    }

    fn nested(levels: usize) -> Value {
        let mut v = json!({"op": "header_present", "name": "x-github-event"});
        for i in 0..levels {
            let key = if i % 2 == 0 { "all" } else { "any" };
            v = json!({ key: [v] });
        }
        v
    }

    #[test]
    fn depth_limit() {
        let c = Condition::parse(&nested(MAX_DEPTH)).expect("32 levels are allowed");
        assert_eq!(c.evaluate(&payload()), sig(&["header_present:x-github-event"]));
        let e = err(nested(MAX_DEPTH + 1));
        assert!(
            e.starts_with("conditions nested deeper than 32 levels at conditions.all[0].any[0]."),
            "{e}"
        );
        // Hostile depth far beyond the limit is refused, not a stack overflow.
        let deep = "{\"all\":[".repeat(60) + &"]}".repeat(60);
        assert!(matches!(Condition::parse_str(&deep), Err(RuleError::TooDeep { .. })));
        let mut v = json!({"op": "header_present", "name": "a"});
        for _ in 0..200 {
            v = json!({ "any": [v] });
        }
        assert!(matches!(Condition::parse(&v), Err(RuleError::TooDeep { .. })));
        // Past serde_json's own recursion limit the text is refused as JSON.
        let deeper = "{\"all\":[".repeat(500) + &"]}".repeat(500);
        let e = Condition::parse_str(&deeper).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid conditions JSON: recursion limit exceeded"),
            "{e}"
        );
    }

    /// Conditions that are often valid: known ops with plausible (sometimes wrong) fields.
    fn arb_condition() -> impl Strategy<Value = Value> {
        let name = prop_oneof![
            prop::sample::select(vec!["x-github-event", "X-Github-Event", "content-type", "x-a"]).prop_map(Value::from),
            arb_json(),
        ];
        let path = prop_oneof![
            prop::sample::select(vec!["action", "a.0", "a.b", "0", "labels.1.name", "a..b", ""]).prop_map(Value::from),
            "[a-z0-9.]{0,8}".prop_map(Value::from),
            arb_json(),
        ];
        let pattern = prop_oneof![
            prop::sample::select(vec!["^a", "(?i)PUSH", "[", r"\d+", "x{2,}"]).prop_map(Value::from),
            ".{0,10}".prop_map(Value::from),
        ];
        let leaf = (
            prop::sample::select(OPS.iter().copied().chain(["nope"]).collect::<Vec<_>>()),
            proptest::option::of(name),
            proptest::option::of(path),
            proptest::option::of(arb_json()),
            proptest::option::of(pattern),
        )
            .prop_map(|(op, name, path, value, pattern)| {
                let mut m = Map::new();
                m.insert("op".into(), op.into());
                for (k, v) in [("name", name), ("path", path), ("value", value), ("pattern", pattern)] {
                    if let Some(v) = v {
                        m.insert(k.into(), v);
                    }
                }
                Value::Object(m)
            });
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({"all": v})),
                prop::collection::vec(inner, 0..4).prop_map(|v| json!({"any": v})),
            ]
        })
    }

    fn arb_payload() -> impl Strategy<Value = Value> {
        prop_oneof![
            arb_json(),
            (crate::routing::detect::tests::arb_headers(), arb_json())
                .prop_map(|(h, j)| json!({"headers": h, "json": j})),
            arb_json().prop_map(|j| {
                let mut p = payload();
                p["json"]["a"] = j;
                p
            }),
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_json(v in arb_json()) {
            let _ = Condition::parse(&v);
            let _ = Condition::parse_str(&v.to_string());
        }

        #[test]
        fn parse_str_never_panics_on_arbitrary_text(s in ".{0,40}") {
            let _ = Condition::parse_str(&s);
        }

        #[test]
        fn evaluate_never_panics_and_agrees_with_wrappers(c in arb_condition(), p in arb_payload()) {
            if let Ok(cond) = Condition::parse(&c) {
                let got = cond.evaluate(&p);
                prop_assert_eq!(got.is_some(), cond.matches(&p));
                // all[c] and any[c] behave exactly like c, signals included.
                let all = Condition::parse(&json!({"all": [c.clone()]})).expect("wrapping a valid condition");
                prop_assert_eq!(&all.evaluate(&p), &got);
                let any = Condition::parse(&json!({"any": [c.clone()]})).expect("wrapping a valid condition");
                prop_assert_eq!(&any.evaluate(&p), &got);
            }
        }

        #[test]
        fn any_is_or_and_all_is_and(a in arb_condition(), b in arb_condition(), p in arb_payload()) {
            if let (Ok(ca), Ok(cb)) = (Condition::parse(&a), Condition::parse(&b)) {
                let (ma, mb) = (ca.matches(&p), cb.matches(&p));
                let any = Condition::parse(&json!({"any": [a.clone(), b.clone()]})).expect("valid");
                let all = Condition::parse(&json!({"all": [a, b]})).expect("valid");
                prop_assert_eq!(any.matches(&p), ma || mb);
                prop_assert_eq!(all.matches(&p), ma && mb);
                if let (Some(sa), Some(sb)) = (ca.evaluate(&p), cb.evaluate(&p)) {
                    let joined: Vec<String> = sa.iter().chain(&sb).cloned().collect();
                    prop_assert_eq!(all.evaluate(&p), Some(joined));
                    prop_assert_eq!(any.evaluate(&p), Some(sa));
                }
            }
        }
    }
}
