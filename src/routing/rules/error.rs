//! Why a rule condition was refused.

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
    /// `all`/`any` nesting exceeds [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("conditions nested deeper than {max} levels at {at}")]
    TooDeep {
        /// Location of the node.
        at: String,
        /// The limit.
        max: usize,
    },
}
