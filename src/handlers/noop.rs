//! The `noop` handler: does nothing and says which action it was given.

use serde_json::{Value, json};

use super::HandlerInput;
use crate::domain::HandlerMode;

/// The output of a `noop` run.
pub fn run(input: &HandlerInput<'_>) -> Value {
    json!({"mode": HandlerMode::Noop.as_str(), "action": input.action})
}
