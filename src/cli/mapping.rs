//! `switchyard mapping …`: provider mappings, routing rules and the config file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::domain::flow::Flow;
use crate::domain::{HandlerMode, Mapping};
use crate::routing::Condition;
use crate::settings::{DefaultedPaths, Settings};
use crate::store::{RoutingChanges, RuleUpsert};

/// `mapping` subcommands.
#[derive(Debug, Subcommand)]
pub enum MappingCommand {
    /// Upsert a provider mapping; prints `ok`.
    Set {
        /// Provider (lower-cased).
        #[arg(long)]
        provider: String,
        /// Action name.
        #[arg(long)]
        action: String,
        /// noop, command, agent, llm or http.
        #[arg(long, default_value = HandlerMode::Noop.as_str())]
        handler_mode: String,
        /// Handler target (command key, agent name, provider:model, URL).
        #[arg(long)]
        handler_target: Option<String>,
        /// Store the mapping disabled.
        #[arg(long)]
        disabled: bool,
        /// LLM budget of the action: {"per_run_usd", "daily_usd", "monthly_usd"} (CONTRACT §14).
        #[arg(long, value_name = "JSON")]
        budget_json: Option<String>,
        /// Flow control of the action's runs: {"key", "concurrency", "on_conflict", "debounce",
        /// "rate", "pool"} (CONTRACT §13); a pool must be defined by the config file's "pools".
        #[arg(long, value_name = "JSON")]
        flow_json: Option<String>,
        /// How the handler target is checked.
        #[command(flatten)]
        check: TargetCheck,
    },
    /// Print a provider's mapping, or `not found` (exit 1).
    Get {
        /// Provider.
        #[arg(long)]
        provider: String,
    },
    /// Upsert a routing rule; invalid JSON or an unknown op exits 2.
    RuleSet {
        /// Provider.
        #[arg(long)]
        provider: String,
        /// Rule name (unique per provider).
        #[arg(long)]
        name: String,
        /// Lower runs first.
        #[arg(long, default_value_t = 100)]
        priority: i64,
        /// Conditions as JSON.
        #[arg(long)]
        conditions_json: String,
        /// Action name.
        #[arg(long)]
        action: String,
        /// noop, command, agent, llm or http.
        #[arg(long, default_value = HandlerMode::Noop.as_str())]
        handler_mode: String,
        /// Handler target.
        #[arg(long)]
        handler_target: Option<String>,
        /// Store the rule disabled.
        #[arg(long)]
        disabled: bool,
        /// After a match, evaluate the later rules too: each match adds its action (fan-out).
        #[arg(long = "continue")]
        continue_after_match: bool,
        /// LLM budget of the action: {"per_run_usd", "daily_usd", "monthly_usd"} (CONTRACT §14).
        #[arg(long, value_name = "JSON")]
        budget_json: Option<String>,
        /// Flow control of the action's runs: {"key", "concurrency", "on_conflict", "debounce",
        /// "rate", "pool"} (CONTRACT §13); a pool must be defined by the config file's "pools".
        #[arg(long, value_name = "JSON")]
        flow_json: Option<String>,
        /// How the handler target is checked.
        #[command(flatten)]
        check: TargetCheck,
    },
    /// List rules in evaluation order (all providers without --provider), or `no rules`.
    RuleList {
        /// Only this provider's rules.
        #[arg(long)]
        provider: Option<String>,
    },
    /// Delete a rule; `not found` (exit 1) when there is none.
    RuleDelete {
        /// Provider.
        #[arg(long)]
        provider: String,
        /// Rule name.
        #[arg(long)]
        name: String,
    },
    /// Apply a JSON config file: mappings, rules, sources and schedules (README: Config file).
    ApplyConfig {
        /// The JSON config file.
        #[arg(long = "config", env = "APP_CONFIG_PATH", value_name = "APP_CONFIG_PATH")]
        config_path: Option<PathBuf>,
        /// How the file's handler targets are checked.
        #[command(flatten)]
        check: TargetCheck,
    },
}

/// How `set` and `rule-set` check that a `command` or `agent` target exists.
#[derive(Debug, Clone, Args)]
pub struct TargetCheck {
    /// Refuse (exit 2) instead of warning when the handler target cannot be found.
    #[arg(long)]
    strict: bool,
    /// The whitelist a `command` target is looked up in [default: commands.json].
    #[arg(long, env = "APP_COMMANDS_PATH", value_name = "APP_COMMANDS_PATH")]
    commands_path: Option<PathBuf>,
}

impl TargetCheck {
    /// Puts `--commands-path` over the environment's settings.
    fn overlay(&self, s: &mut Settings, defaulted: &mut DefaultedPaths) {
        if let Some(path) = &self.commands_path {
            s.commands_path = path.clone();
            defaulted.commands_path = false;
        }
    }
}

impl MappingCommand {
    /// Puts this subcommand's file flags over the environment's settings.
    pub fn overlay(&self, s: &mut Settings, defaulted: &mut DefaultedPaths) {
        match self {
            MappingCommand::Set { check, .. } | MappingCommand::RuleSet { check, .. } => check.overlay(s, defaulted),
            MappingCommand::ApplyConfig { config_path, check } => {
                if config_path.is_some() {
                    s.config_path.clone_from(config_path);
                }
                check.overlay(s, defaulted);
            }
            MappingCommand::Get { .. } | MappingCommand::RuleList { .. } | MappingCommand::RuleDelete { .. } => {}
        }
    }
}

/// A mapping as `get` prints it: its fields in order, then its flow (only on mappings with
/// one, so the others print as they always did).
#[derive(serde::Serialize)]
struct ShownMapping<'a> {
    #[serde(flatten)]
    mapping: &'a Mapping,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<serde_json::Value>,
}

/// Prints the rules of `provider` (all providers when `None`) in evaluation order.
async fn rule_list(db: &crate::store::Db, provider: Option<String>) -> anyhow::Result<()> {
    let rules = match provider {
        Some(p) => db.rules(&p.trim().to_lowercase()).await?,
        None => {
            let mut all = db.routing_tables().await?.rules;
            all.sort_by(|a, b| (&a.provider, a.priority, a.id).cmp(&(&b.provider, b.priority, b.id)));
            all
        }
    };
    if rules.is_empty() {
        println!("no rules");
    }
    for r in rules {
        let mut line = json!({
            "id": r.id, "provider": r.provider, "name": r.name, "priority": r.priority,
            "conditions": r.conditions_json, "action": r.action, "handler_mode": r.handler_mode,
            "handler_target": r.handler_target, "enabled": r.enabled,
        });
        // Only on fan-out rules, so the listing of other rules reads as it always did.
        if r.continue_after_match {
            line["continue"] = json!(true);
        }
        if let Some(flow) = &r.flow {
            line["flow"] = flow.to_json();
        }
        println!("{line}");
    }
    Ok(())
}

/// Warns on stderr when a `command` or `agent` target cannot be found now (it may be added
/// before the event arrives); with `strict` that refuses instead. False means refuse.
fn check_target(s: &Settings, mode: HandlerMode, target: Option<&str>, strict: bool) -> bool {
    check_target_of(s, "--handler-target", mode, target, strict)
}

/// [`check_target`] for the target `place` names (a flag, or a config file's entry).
fn check_target_of(s: &Settings, place: &str, mode: HandlerMode, target: Option<&str>, strict: bool) -> bool {
    let Some(problem) = super::targets::missing_target(s, mode, target) else {
        return true;
    };
    if strict {
        eprintln!("error: {place}: {problem}");
        false
    } else {
        eprintln!("warning: {place}: {problem}; events routed here will fail until it exists");
        true
    }
}

/// Checks every `command` and `agent` target of a config file as `mapping set` checks
/// its flag; false means refuse (`strict` and one missing).
fn check_file_targets(s: &Settings, changes: &RoutingChanges, strict: bool) -> bool {
    let mappings = changes.mappings.iter().enumerate().map(|(i, m)| {
        let place = format!("mappings[{i}] (provider '{}') handler_target", m.provider);
        (place, m.handler_mode, m.handler_target.as_deref())
    });
    let rules = changes.rules.iter().enumerate().map(|(i, r)| {
        let place = format!(
            "rules[{i}] (rule '{}' of provider '{}') handler_target",
            r.name, r.provider
        );
        (place, r.handler_mode, r.handler_target.as_deref())
    });
    // Every entry is checked (not only up to the first problem), so one run names them all.
    let results: Vec<bool> = mappings
        .chain(rules)
        .map(|(place, mode, target)| check_target_of(s, &place, mode, target, strict))
        .collect();
    results.into_iter().all(|ok| ok)
}

fn target(t: Option<String>) -> Option<String> {
    t.map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// The budget `--budget-json` sets for `action` (none without the flag), reporting a bad
/// one on stderr.
fn budget_of(action: &str, json: Option<&str>) -> Option<Vec<crate::domain::ActionBudget>> {
    let Some(json) = json else { return Some(Vec::new()) };
    let parsed = serde_json::from_str::<serde_json::Value>(json)
        .map_err(|e| format!("budget: invalid JSON: {e}"))
        .and_then(|v| crate::domain::Budget::parse(&v));
    match parsed {
        Ok(budget) => Some(vec![crate::domain::ActionBudget {
            action: action.trim().to_owned(),
            budget,
        }]),
        Err(e) => {
            eprintln!("error: --budget-json: {e}");
            None
        }
    }
}

/// The flow `--flow-json` sets (none without the flag), reporting a bad one on stderr. Its
/// pool is checked against the database's once it is open ([`pools_known`]).
fn flow_of(json: Option<&str>) -> Option<Option<Flow>> {
    let Some(json) = json else { return Some(None) };
    let parsed = serde_json::from_str::<serde_json::Value>(json)
        .map_err(|e| format!("flow: invalid JSON: {e}"))
        .and_then(|v| Flow::parse(&v, None));
    match parsed {
        Ok(flow) => Some(Some(flow)),
        Err(e) => {
            eprintln!("error: --flow-json: {e}");
            None
        }
    }
}

/// Whether every pool the change's flows name is one the database holds (the config
/// file's `"pools"`), reporting the first unknown one on stderr.
async fn pools_known(db: &crate::store::Db, changes: &RoutingChanges) -> anyhow::Result<bool> {
    let flows = changes.mappings.iter().map(|m| &m.flow);
    let named: Vec<&Flow> = flows
        .chain(changes.rules.iter().map(|r| &r.flow))
        .flatten()
        .filter(|f| f.pool.is_some())
        .collect();
    if named.is_empty() {
        return Ok(true);
    }
    let pools: Vec<String> = db.flow_state().await?.pools.into_iter().map(|p| p.name).collect();
    for flow in named {
        // The same check (and message) as a config file's, against the stored pools.
        if let Err(e) = Flow::parse(&flow.to_json(), Some(&pools)) {
            eprintln!("error: --flow-json: {e}");
            return Ok(false);
        }
    }
    Ok(true)
}

/// Parses `--handler-mode`, reporting an unknown mode on stderr.
fn parse_mode(mode: &str) -> Option<HandlerMode> {
    mode.parse().map_err(|e| eprintln!("error: --handler-mode: {e}")).ok()
}

/// The routing change `set` or `rule-set` asks for, validated before any database is
/// opened so a typo never creates files; `Err` is the exit code of a refusal.
fn requested_change(s: &Settings, cmd: &MappingCommand) -> Result<Option<RoutingChanges>, ExitCode> {
    let refuse = || ExitCode::from(2);
    match cmd {
        MappingCommand::Set {
            provider,
            action,
            handler_mode,
            handler_target,
            disabled,
            budget_json,
            flow_json,
            check,
        } => {
            let budgets = budget_of(action, budget_json.as_deref()).ok_or_else(refuse)?;
            let flow = flow_of(flow_json.as_deref()).ok_or_else(refuse)?;
            let handler_mode = parse_mode(handler_mode).ok_or_else(refuse)?;
            if !check_target(s, handler_mode, handler_target.as_deref(), check.strict) {
                return Err(refuse());
            }
            Ok(Some(RoutingChanges {
                mappings: vec![Mapping {
                    provider: provider.trim().to_lowercase(),
                    action: action.trim().to_string(),
                    handler_mode,
                    handler_target: target(handler_target.clone()),
                    enabled: !disabled,
                    flow,
                }],
                budgets,
                ..RoutingChanges::default()
            }))
        }
        MappingCommand::RuleSet {
            provider,
            name,
            priority,
            conditions_json,
            action,
            handler_mode,
            handler_target,
            disabled,
            continue_after_match,
            budget_json,
            flow_json,
            check,
        } => {
            let budgets = budget_of(action, budget_json.as_deref()).ok_or_else(refuse)?;
            let flow = flow_of(flow_json.as_deref()).ok_or_else(refuse)?;
            // Store the canonical (compact) form of what was validated.
            let canonical = match Condition::parse_str(conditions_json) {
                Ok(_) => serde_json::from_str::<serde_json::Value>(conditions_json).map_err(|_| refuse())?,
                Err(e) => {
                    eprintln!("error: --conditions-json: {e}");
                    return Err(refuse());
                }
            };
            let handler_mode = parse_mode(handler_mode).ok_or_else(refuse)?;
            if !check_target(s, handler_mode, handler_target.as_deref(), check.strict) {
                return Err(refuse());
            }
            Ok(Some(RoutingChanges {
                rules: vec![RuleUpsert {
                    provider: provider.trim().to_lowercase(),
                    name: name.trim().to_string(),
                    priority: *priority,
                    conditions_json: canonical.to_string(),
                    action: action.trim().to_string(),
                    handler_mode,
                    handler_target: target(handler_target.clone()),
                    enabled: !disabled,
                    continue_after_match: *continue_after_match,
                    flow,
                }],
                budgets,
                ..RoutingChanges::default()
            }))
        }
        MappingCommand::ApplyConfig { check, .. } => {
            let Some(path) = &s.config_path else {
                eprintln!("error: apply-config needs --config FILE (or APP_CONFIG_PATH)");
                return Err(refuse());
            };
            // Refuse a bad file before touching the database.
            match crate::config_file::load(path) {
                Err(e) => {
                    eprintln!("error: {e}");
                    Err(refuse())
                }
                Ok(changes) if !check_file_targets(s, &changes, check.strict) => Err(refuse()),
                Ok(_) => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// Runs a `mapping` subcommand.
pub async fn run(s: &Settings, cmd: MappingCommand) -> anyhow::Result<ExitCode> {
    let changes = match requested_change(s, &cmd) {
        Ok(changes) => changes,
        Err(code) => return Ok(code),
    };
    // Looking never creates a database: a wrong directory or URL is an error naming it.
    let db = match cmd {
        MappingCommand::Get { .. } | MappingCommand::RuleList { .. } => {
            crate::store::open_existing(&s.store_config()).await
        }
        _ => crate::store::open_initialised(&s.store_config()).await,
    }
    .context("opening the database")?;
    match cmd {
        MappingCommand::Set { .. } | MappingCommand::RuleSet { .. } => {
            let changes = changes.unwrap_or_default();
            if !pools_known(&db, &changes).await? {
                return Ok(ExitCode::from(2));
            }
            db.apply(changes).await?;
            println!("ok");
        }
        MappingCommand::Get { provider } => match db.mapping(&provider.trim().to_lowercase()).await? {
            Some(m) => {
                let shown = ShownMapping {
                    flow: m.flow.as_ref().map(Flow::to_json),
                    mapping: &m,
                };
                println!("{}", serde_json::to_string(&shown)?);
            }
            None => {
                println!("not found");
                return Ok(ExitCode::FAILURE);
            }
        },
        MappingCommand::RuleList { provider } => rule_list(&db, provider).await?,
        MappingCommand::RuleDelete { provider, name } => {
            if db.delete_rule(&provider.trim().to_lowercase(), name.trim()).await? {
                println!("ok");
            } else {
                println!("not found");
                return Ok(ExitCode::FAILURE);
            }
        }
        MappingCommand::ApplyConfig { .. } => {
            let path = s.config_path.as_deref().unwrap_or(std::path::Path::new(""));
            let applied = crate::config_file::apply_file(&db, path).await?;
            println!("ok: applied {applied} from {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
