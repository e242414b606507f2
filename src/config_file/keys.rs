//! The keys each kind of config entry may hold, one list per kind in this one place, and
//! the refusal of any other key with a "did you mean". A key the parser reads must be
//! listed here, or a file using it is refused.

use serde_json::{Map, Value};

/// Keys of the file's top level.
pub(super) const TOP: &[&str] = &[
    "version",
    "mappings",
    "rules",
    "sources",
    "schedules",
    "prices",
    "pools",
];

/// Keys of a `"mappings"` entry.
pub(super) const MAPPING: &[&str] = &[
    "provider",
    "action",
    "handler_mode",
    "handler_target",
    "enabled",
    "budget",
    "flow",
];

/// Keys of a `"rules"` entry.
pub(super) const RULE: &[&str] = &[
    "provider",
    "name",
    "priority",
    "conditions",
    "action",
    "handler_mode",
    "handler_target",
    "enabled",
    "continue",
    "budget",
    "flow",
];

/// Keys of a `"schedules"` entry.
pub(super) const SCHEDULE: &[&str] = &["job", "cron", "timezone", "payload", "enabled", "missed"];

/// Keys of a `"sources"` entry (the list the sources parser itself checks).
pub(super) const SOURCE: &[&str] = crate::ingest::sources::ENTRY_KEYS;

/// Refuses the first key of `obj` that is not in `known`, suggesting the key meant.
pub(super) fn check(obj: &Map<String, Value>, known: &[&str]) -> Result<(), String> {
    let Some(key) = obj.keys().find(|k| !known.contains(&k.as_str())) else {
        return Ok(());
    };
    let hint = match crate::domain::spelling::suggestion(key, known, '_') {
        Some(meant) => format!("did you mean '{meant}'? "),
        None => String::new(),
    };
    Err(format!(
        "unknown key '{key}' ({hint}expected one of {})",
        known.join(", ")
    ))
}

/// How an entry is named in a message before it is parsed: `(provider 'github')`, from
/// the entry's own `fields` when they are strings.
pub(super) fn entry_name(obj: &Map<String, Value>, fields: &[(&str, &str)]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .filter_map(|(key, label)| Some(format!("{label} '{}'", obj.get(*key)?.as_str()?.trim())))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("({}) ", parts.join(" of "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_is_named_with_the_key_meant() {
        let obj = serde_json::json!({"provider": "g", "handler_mod": "command"});
        let e = check(obj.as_object().unwrap(), MAPPING).unwrap_err();
        assert!(
            e.starts_with("unknown key 'handler_mod' (did you mean 'handler_mode'?"),
            "{e}"
        );
        let obj = serde_json::json!({"colour": 1});
        let e = check(obj.as_object().unwrap(), RULE).unwrap_err();
        assert!(e.starts_with("unknown key 'colour' (expected one of provider"), "{e}");
    }
}
