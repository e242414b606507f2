//! `JsonPath`: where a condition looks in the JSON body.

use std::fmt;

use serde_json::Value;

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
