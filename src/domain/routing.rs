//! The routing tables' records as stored: provider mappings, rules, and changes to them.

use serde::Serialize;

use super::HandlerMode;
use super::flow::Flow;

/// A provider-level mapping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mapping {
    /// Lower-case provider.
    pub provider: String,
    /// Action for every event of the provider no rule claimed.
    pub action: String,
    /// Handler mode.
    pub handler_mode: HandlerMode,
    /// Handler target.
    pub handler_target: Option<String>,
    /// A disabled mapping routes nothing.
    pub enabled: bool,
    /// Flow control of its runs (CONTRACT §13).
    #[serde(skip)]
    pub flow: Option<Flow>,
}

/// A routing rule as stored; the router compiles `conditions_json` (routing::rules).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Row id; breaks priority ties (lower first).
    pub id: i64,
    /// Lower-case provider the rule belongs to.
    pub provider: String,
    /// Rule name, unique per provider; reported as `matched_rule`.
    pub name: String,
    /// Lower runs first.
    pub priority: i64,
    /// When the rule applies: the condition language's JSON, as stored.
    pub conditions_json: String,
    /// Action chosen on a match.
    pub action: String,
    /// Handler mode chosen on a match.
    pub handler_mode: HandlerMode,
    /// Handler target chosen on a match.
    pub handler_target: Option<String>,
    /// Disabled rules are skipped.
    pub enabled: bool,
    /// `"continue": true`: after a match, later rules are evaluated too (fan-out, §12).
    pub continue_after_match: bool,
    /// Flow control of its runs (CONTRACT §13).
    pub flow: Option<Flow>,
}

/// A rule to upsert by `(provider, name)`; `conditions_json` is already validated.
#[derive(Debug, Clone)]
pub struct RuleUpsert {
    /// Provider (lower-case).
    pub provider: String,
    /// Rule name.
    pub name: String,
    /// Lower runs first.
    pub priority: i64,
    /// Validated condition JSON text.
    pub conditions_json: String,
    /// Action name.
    pub action: String,
    /// Handler mode.
    pub handler_mode: HandlerMode,
    /// Handler target.
    pub handler_target: Option<String>,
    /// Whether the rule is considered.
    pub enabled: bool,
    /// `"continue": true`: after a match, later rules are evaluated too (fan-out, §12).
    pub continue_after_match: bool,
    /// Flow control of its runs (CONTRACT §13).
    pub flow: Option<Flow>,
}

/// Mappings and rules to upsert together (all or nothing).
#[derive(Debug, Clone, Default)]
pub struct RoutingChanges {
    /// Mappings, upserted by provider.
    pub mappings: Vec<Mapping>,
    /// Rules, upserted by `(provider, name)`.
    pub rules: Vec<RuleUpsert>,
    /// Schedules, upserted by job.
    pub schedules: Vec<super::Schedule>,
    /// Budgets of the mappings' and rules' actions, upserted by action.
    pub budgets: Vec<super::ActionBudget>,
    /// The config's `"pools"`, upserted by name.
    pub pools: Vec<super::flow::Pool>,
}
