//! The JSON config file (CONTRACT §6): load, validate as a whole, apply all-or-nothing.

mod keys;
mod prices;
mod schedules;

use std::path::Path;

use serde_json::{Map, Value};

use crate::domain::flow::{self, Flow};
use crate::domain::{HandlerMode, Mapping};
use crate::ingest::sources::{self, Source};
use crate::routing::Condition;
use crate::store::{Db, RoutingChanges, RuleUpsert, StoreError};

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    // The OS error is part of the message, not a `source`: a chain printer (`{:#}`) would
    // repeat it.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// The file is not valid or an entry is bad; nothing was applied.
    #[error("config file {path} refused, nothing applied: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, naming the entry.
        message: String,
    },
    /// Storing the changes failed; the transaction was rolled back.
    #[error("config file {path} could not be stored: {error}")]
    Store {
        /// The file.
        path: String,
        /// The store error.
        error: StoreError,
    },
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<RoutingChanges, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.display().to_string(),
        error,
    })?;
    parse(&text).map_err(|message| ConfigError::Invalid {
        path: path.display().to_string(),
        message,
    })
}

/// How many entries of each kind a config file held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Mappings upserted.
    pub mappings: usize,
    /// Rules upserted.
    pub rules: usize,
    /// Schedules upserted.
    pub schedules: usize,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} mappings, {} rules and {} schedules",
            self.mappings, self.rules, self.schedules
        )
    }
}

/// Loads, validates and applies a config file in one transaction; returns what it held.
pub async fn apply_file(db: &Db, path: &Path) -> Result<Applied, ConfigError> {
    let changes = load(path)?;
    let applied = Applied {
        mappings: changes.mappings.len(),
        rules: changes.rules.len(),
        schedules: changes.schedules.len(),
    };
    db.apply(changes).await.map_err(|error| ConfigError::Store {
        path: path.display().to_string(),
        error,
    })?;
    Ok(applied)
}

/// Validates config text; the error names the bad entry.
pub fn parse(text: &str) -> Result<RoutingChanges, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let root = root.as_object().ok_or("the top level must be a JSON object")?;
    match root.get("version") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_i64() == Some(1) => {}
        Some(v) => return Err(format!("unsupported version {v} (only 1 is known)")),
    }
    keys::check(root, keys::TOP).map_err(|e| format!("top level: {e}"))?;
    // Sources and prices are not stored; they are checked here so a bad one refuses the
    // whole file.
    sources_of(root)?;
    prices::parse(root)?;
    let mut changes = RoutingChanges {
        pools: flow::parse_pools(root.get("pools"))?,
        ..RoutingChanges::default()
    };
    // A flow may name only a pool this file defines: the file is the whole configuration.
    let pools: Vec<String> = changes.pools.iter().map(|p| p.name.clone()).collect();
    for (i, entry) in list(root, "mappings")?.iter().enumerate() {
        let m = mapping(entry, &pools).map_err(|e| format!("mappings[{i}]: {e}"))?;
        changes
            .budgets
            .extend(budget(entry, &m.action).map_err(|e| format!("mappings[{i}]: {e}"))?);
        changes.mappings.push(m);
    }
    for (i, entry) in list(root, "rules")?.iter().enumerate() {
        let r = rule(entry, &pools).map_err(|e| format!("rules[{i}]: {e}"))?;
        changes
            .budgets
            .extend(budget(entry, &r.action).map_err(|e| format!("rules[{i}]: {e}"))?);
        changes.rules.push(r);
    }
    changes.schedules = schedules::parse(list(root, "schedules")?)?;
    Ok(changes)
}

/// The file's `"sources"` (CONTRACT §8), `env:` secrets resolved from the environment.
fn sources_of(root: &Map<String, Value>) -> Result<Vec<Source>, String> {
    let env = |var: &str| std::env::var(var).ok();
    for (i, entry) in list(root, "sources")?.iter().enumerate() {
        if let Some(obj) = entry.as_object() {
            keys::check(obj, keys::SOURCE)
                .map_err(|e| format!("sources[{i}]: {}{e}", keys::entry_name(obj, &[("name", "source")])))?;
        }
    }
    root.get("sources")
        .map_or(Ok(Vec::new()), |v| sources::parse_config(v, &env))
}

/// Reads a config file's sources, refusing the file as [`load`] does.
pub fn load_sources(path: &Path) -> Result<Vec<Source>, ConfigError> {
    read_part(path, sources_of)
}

/// Reads a config file's `"prices"` (used by the worker, in memory only).
pub fn load_prices(path: &Path) -> Result<crate::domain::Prices, ConfigError> {
    read_part(path, prices::parse)
}

/// Reads a config file and one part of it, refusing the file as [`load`] does.
fn read_part<T>(path: &Path, part: impl Fn(&Map<String, Value>) -> Result<T, String>) -> Result<T, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.display().to_string(),
        error,
    })?;
    let root: Value = serde_json::from_str(&text).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    let root = root
        .as_object()
        .ok_or_else(|| invalid("the top level must be a JSON object".into()))?;
    part(root).map_err(invalid)
}

/// The `"budget"` of a mapping or rule entry, for its action (CONTRACT §14).
fn budget(entry: &Value, action: &str) -> Result<Option<crate::domain::ActionBudget>, String> {
    match entry.get("budget") {
        None | Some(Value::Null) => Ok(None),
        Some(b) => Ok(Some(crate::domain::ActionBudget {
            action: action.to_owned(),
            budget: crate::domain::Budget::parse(b)?,
        })),
    }
}

/// The `"flow"` of a mapping or rule entry (CONTRACT §13); `pools` are the file's.
fn flow_of(obj: &Map<String, Value>, pools: &[String]) -> Result<Option<Flow>, String> {
    match obj.get("flow") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Flow::parse(v, Some(pools)).map(Some),
    }
}

fn list<'a>(root: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], String> {
    match root.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("'{key}' must be an array")),
    }
}

fn string(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(Value::String(_)) => Err(format!("'{key}' must not be empty")),
        Some(_) => Err(format!("'{key}' must be a string")),
        None => Err(format!("missing '{key}'")),
    }
}

fn optional_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(format!("'{key}' must be a string or null")),
    }
}

fn enabled(obj: &Map<String, Value>) -> Result<bool, String> {
    flag(obj, "enabled", true)
}

/// A true/false key (0 and 1 accepted, as the seed's SQLite rows hold them).
fn flag(obj: &Map<String, Value>, key: &str, default: bool) -> Result<bool, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) if v.as_i64() == Some(0) => Ok(false),
        Some(v) if v.as_i64() == Some(1) => Ok(true),
        Some(_) => Err(format!("'{key}' must be true or false")),
    }
}

fn handler_mode(obj: &Map<String, Value>) -> Result<HandlerMode, String> {
    match optional_string(obj, "handler_mode")? {
        Some(mode) => mode.parse().map_err(|e: crate::domain::UnknownValue| e.to_string()),
        None => Ok(HandlerMode::Noop),
    }
}

fn mapping(entry: &Value, pools: &[String]) -> Result<Mapping, String> {
    let obj = entry.as_object().ok_or("must be an object")?;
    keys::check(obj, keys::MAPPING).map_err(|e| keys::entry_name(obj, &[("provider", "provider")]) + &e)?;
    let provider = string(obj, "provider")?.to_lowercase();
    let wrap = |e: String| format!("(provider '{provider}') {e}");
    Ok(Mapping {
        action: string(obj, "action").map_err(wrap)?,
        handler_mode: handler_mode(obj).map_err(wrap)?,
        handler_target: optional_string(obj, "handler_target").map_err(wrap)?,
        enabled: enabled(obj).map_err(wrap)?,
        flow: flow_of(obj, pools).map_err(wrap)?,
        provider,
    })
}

fn rule(entry: &Value, pools: &[String]) -> Result<RuleUpsert, String> {
    let obj = entry.as_object().ok_or("must be an object")?;
    keys::check(obj, keys::RULE)
        .map_err(|e| keys::entry_name(obj, &[("name", "rule"), ("provider", "provider")]) + &e)?;
    let provider = string(obj, "provider")?.to_lowercase();
    let name = string(obj, "name")?;
    let wrap = |e: String| format!("(rule '{name}' of provider '{provider}') {e}");
    let priority = match obj.get("priority") {
        None | Some(Value::Null) => 100,
        Some(v) => v.as_i64().ok_or_else(|| wrap("'priority' must be an integer".into()))?,
    };
    let conditions = obj
        .get("conditions")
        .ok_or_else(|| wrap("missing 'conditions'".into()))?;
    Condition::parse(conditions).map_err(|e| wrap(e.to_string()))?;
    Ok(RuleUpsert {
        priority,
        conditions_json: conditions.to_string(),
        action: string(obj, "action").map_err(wrap)?,
        handler_mode: handler_mode(obj).map_err(wrap)?,
        handler_target: optional_string(obj, "handler_target").map_err(wrap)?,
        enabled: enabled(obj).map_err(wrap)?,
        continue_after_match: flag(obj, "continue", false).map_err(wrap)?,
        flow: flow_of(obj, pools).map_err(wrap)?,
        provider,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_example_parses() {
        let text = r#"{"version": 1,
         "mappings": [{"provider": "Unknown", "action": "echo_action", "handler_mode": "agent",
                       "handler_target": "echo", "enabled": true}],
         "rules": [{"provider": "github", "name": "push", "priority": 10,
                    "conditions": {"all": [{"op": "header_equals", "name": "x-github-event", "value": "push"}]},
                    "action": "handle_github_push", "handler_mode": "noop", "handler_target": null,
                    "enabled": true}]}"#;
        let c = parse(text).unwrap();
        assert_eq!(c.mappings[0].provider, "unknown");
        assert_eq!(c.rules[0].priority, 10);
        assert_eq!(c.rules[0].handler_target, None);
    }

    #[test]
    fn a_budget_on_a_mapping_or_a_rule_is_read_for_its_action() {
        let text = r#"{"mappings": [{"provider": "linear", "action": "triage", "handler_mode": "agent",
                        "handler_target": "triage", "budget": {"daily_usd": 5}}],
         "rules": [{"provider": "github", "name": "pr", "conditions": {"all": []}, "action": "review",
                    "budget": {"per_run_usd": 0.5, "monthly_usd": 40}}]}"#;
        let c = parse(text).unwrap();
        let of = |action: &str| c.budgets.iter().find(|b| b.action == action).map(|b| b.budget);
        assert_eq!(of("triage").and_then(|b| b.daily_usd), Some(5.0));
        assert_eq!(of("review").and_then(|b| b.per_run_usd), Some(0.5));
        assert_eq!(of("review").and_then(|b| b.monthly_usd), Some(40.0));
    }

    #[test]
    fn continue_is_read_and_defaults_to_false() {
        let rule = |extra: &str| {
            format!(r#"{{"rules":[{{"provider":"g","name":"n","conditions":{{"all":[]}},"action":"a"{extra}}}]}}"#)
        };
        assert!(parse(&rule(r#","continue":true"#)).unwrap().rules[0].continue_after_match);
        assert!(!parse(&rule("")).unwrap().rules[0].continue_after_match);
        let e = parse(&rule(r#","continue":"yes""#)).unwrap_err();
        assert!(
            e.contains("rules[0]") && e.contains("'continue' must be true or false"),
            "{e}"
        );
    }

    #[test]
    fn flows_and_pools_are_read_and_a_flow_may_name_only_the_files_pools() {
        let text = r#"{"pools": {"anthropic": {"limit": 4}},
         "mappings": [{"provider": "linear", "action": "triage", "flow": {"debounce": {"quiet": "90s"}}}],
         "rules": [{"provider": "github", "name": "pr", "conditions": {"all": []}, "action": "review",
                    "flow": {"key": "{{payload.pr}}", "concurrency": {"limit": 2, "per_key": 1},
                             "on_conflict": "supersede", "pool": "anthropic"}},
                   {"provider": "github", "name": "push", "conditions": {"all": []}, "action": "push"}]}"#;
        let c = parse(text).unwrap();
        assert_eq!(c.pools.len(), 1);
        assert_eq!((c.pools[0].name.as_str(), c.pools[0].limit), ("anthropic", 4));
        let quiet = c.mappings[0].flow.as_ref().and_then(|f| f.debounce).map(|d| d.quiet);
        assert_eq!(quiet, Some(std::time::Duration::from_secs(90)));
        let f = c.rules[0].flow.as_ref().unwrap();
        assert_eq!(
            (f.limit, f.per_key, f.pool.as_deref()),
            (Some(2), Some(1), Some("anthropic"))
        );
        assert_eq!(c.rules[1].flow, None);

        let e = parse(&text.replace(r#""anthropic": {"limit": 4}"#, r#""openai": {"limit": 4}"#)).unwrap_err();
        assert!(
            e.starts_with("rules[0]: (rule 'pr' of provider 'github') flow: unknown pool 'anthropic' (known: openai)"),
            "{e}"
        );
        let e = parse(r#"{"mappings": [{"provider": "g", "action": "a", "flow": {"pool": "p"}}]}"#).unwrap_err();
        assert!(
            e.starts_with("mappings[0]: (provider 'g') flow: unknown pool 'p' (the config defines no \"pools\")"),
            "{e}"
        );
        let e = parse(r#"{"pools": {"p": {"limit": 0}}}"#).unwrap_err();
        assert!(e.contains("pools.p.limit"), "{e}");
        let e = parse(r#"{"pool": {}}"#).unwrap_err();
        assert!(e.contains("unknown key 'pool' (did you mean 'pools'?"), "{e}");
        let e = parse(
            r#"{"rules": [{"provider": "g", "name": "n", "conditions": {"all": []}, "action": "a", "flows": {}}]}"#,
        )
        .unwrap_err();
        assert!(
            e.contains("rules[0]: (rule 'n' of provider 'g') unknown key 'flows' (did you mean 'flow'?"),
            "{e}"
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let e =
            parse(r#"{"rules":[{"provider":"g","name":"n","conditions":{"op":"nope"},"action":"a"}]}"#).unwrap_err();
        assert!(e.contains("rules[0]") && e.contains("'n'") && e.contains("nope"), "{e}");
        let e = parse(r#"{"mappings":[{"provider":"g"}]}"#).unwrap_err();
        assert!(e.contains("mappings[0]") && e.contains("action"), "{e}");
        let e = parse(r#"{"mappings":[{"provider":"g","action":"a","handler_mode":"shell"}]}"#).unwrap_err();
        assert!(e.contains("shell"), "{e}");
        assert!(parse("{").unwrap_err().contains("invalid JSON"));
        assert!(parse(r#"{"version":2}"#).unwrap_err().contains("version"));
        assert!(parse(r#"{"mapings":[]}"#).unwrap_err().contains("mapings"));
        let e = parse(r#"{"sources":[{"name":"s","scheme":"paypal","secrets":["k"]}]}"#).unwrap_err();
        assert!(
            e.contains("sources[0]") && e.contains("'s'") && e.contains("paypal"),
            "{e}"
        );
        assert!(parse(r#"{"sources":[{"name":"s","scheme":"github","secrets":["k"]}]}"#).is_ok());
    }
}
