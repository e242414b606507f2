//! Whether a handler target exists now: the `command` key in `commands.json`, the
//! `agent` file. Checked when a mapping or rule is stored, so a typo shows up there and
//! not as retries at run time.

use std::path::Path;

use crate::domain::HandlerMode;
use crate::handlers::{agent, command};
use crate::settings::Settings;

/// What is missing for `mode`'s `target`, or `None` when it resolves (or needs no lookup).
pub fn missing_target(s: &Settings, mode: HandlerMode, target: Option<&str>) -> Option<String> {
    let target = target.map(str::trim).unwrap_or("");
    match mode {
        HandlerMode::Command => {
            let commands = match command::load_commands(&s.commands_path) {
                Ok(c) => c,
                Err(e) => return Some(e.message),
            };
            if commands.contains_key(target) {
                return None;
            }
            let mut known: Vec<&str> = commands.keys().map(String::as_str).collect();
            known.sort_unstable();
            let hint = crate::domain::spelling::suggestion(target, &known, '-')
                .map(|meant| format!("did you mean '{meant}'? "))
                .unwrap_or_default();
            Some(format!(
                "command '{target}' is not in {} ({hint}APP_COMMANDS_PATH; it has: {})",
                s.commands_path.display(),
                if known.is_empty() {
                    "nothing".to_string()
                } else {
                    known.join(", ")
                }
            ))
        }
        HandlerMode::Agent => agent::resolve(Path::new("."), target).err().map(|e| e.message),
        _ => None,
    }
}
