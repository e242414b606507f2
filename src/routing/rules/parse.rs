//! Parsing the stored JSON form of a condition, naming the place of every refusal.

use std::fmt::Write as _;

use regex::RegexBuilder;
use serde_json::{Map, Value};

use super::{Condition, JsonPath, MAX_DEPTH, OPS, REGEX_NEST_LIMIT, REGEX_SIZE_LIMIT, RuleError};

/// A JSON value's kind as a refusal names it.
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
pub(super) fn parse_node(v: &Value, at: &mut String, depth: usize) -> Result<Condition, RuleError> {
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
