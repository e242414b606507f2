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

mod error;
mod eval;
mod parse;
mod path;

use regex::Regex;
use serde_json::Value;

pub use error::RuleError;
pub use path::JsonPath;

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

impl Condition {
    /// Parses the JSON condition form; rejects unknown ops, missing/mistyped fields, non-object nodes, regexes over the size limit.
    pub fn parse(v: &Value) -> Result<Condition, RuleError> {
        let mut at = String::from("conditions");
        parse::parse_node(v, &mut at, 0)
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
        self.eval(&eval::Ctx::of(payload), &mut leaves)
            .then(|| leaves.iter().filter_map(|c| c.signal()).collect())
    }

    /// Like [`Condition::evaluate`] without collecting signals.
    pub fn matches(&self, payload: &Value) -> bool {
        self.test(&eval::Ctx::of(payload))
    }
}

#[cfg(test)]
mod tests;
