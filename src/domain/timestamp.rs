//! The stored form of a point in time.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A time as stored and shown: RFC 3339 UTC text with a `+00:00` offset (the seed wrote
/// seconds, we write microseconds). Within one column these sort correctly as text, which
/// is what lets the due-row index work on text columns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(String);

impl Timestamp {
    /// Wraps text read from the store or written by `time` (not re-validated: rows of
    /// the seed's era are kept as they are).
    pub fn from_stored(text: String) -> Timestamp {
        Timestamp(text)
    }

    /// The stored text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stored text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
