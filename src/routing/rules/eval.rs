//! Evaluating a parsed condition against a payload envelope.

use serde_json::{Map, Number, Value};

use super::{Condition, JsonPath};

/// The parts of the payload envelope conditions look at, found once per evaluation.
pub(super) struct Ctx<'p> {
    headers: Option<&'p Map<String, Value>>,
    json: Option<&'p Value>,
}

impl Condition {
    /// Pushes matched leaves onto `out`; leaves `out` as it was when returning false.
    pub(super) fn eval<'c>(&'c self, ctx: &Ctx<'_>, out: &mut Vec<&'c Condition>) -> bool {
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

    /// Whether the condition holds, without collecting leaves.
    pub(super) fn test(&self, ctx: &Ctx<'_>) -> bool {
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
    pub(super) fn signal(&self) -> Option<String> {
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
    /// Finds the headers and the JSON body of a payload envelope.
    pub(super) fn of(payload: &'p Value) -> Self {
        Ctx {
            headers: payload.get("headers").and_then(Value::as_object),
            json: payload.get("json"),
        }
    }
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

pub(super) fn number_eq(a: &Number, b: &Number) -> bool {
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
