//! What agent and `llm` runs cost (CONTRACT §14): the values the worker records per
//! attempt, and the spend read back for `/spend`, the CLI and the dashboard. The SQL is the
//! same on both backends (timestamps are RFC 3339 text; a day is its first 10 characters)
//! but for the placeholders.

use serde::Serialize;
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::domain::{ActionBudget, Budget, HandlerMode, Usage};

/// One agent or `llm` attempt's usage and transcript, as the worker records it: a row of
/// the `llm_spend` ledger, and the run's `usage_json` and `transcript`.
#[derive(Debug, Clone)]
pub struct UsageRecord {
    /// The event's row id.
    pub event_row_id: i64,
    /// The action run's action.
    pub action: String,
    /// `agent` or `llm`.
    pub handler_mode: HandlerMode,
    /// When the attempt's handler started.
    pub started_at: String,
    /// When it finished.
    pub finished_at: String,
    /// What it consumed.
    pub usage: Usage,
    /// The redacted, capped transcript (agent runs).
    pub transcript: Option<String>,
}

/// An action run's latest usage, for `action_runs[].usage`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunUsage {
    /// The action run's id.
    pub run_id: i64,
    /// Its usage, when one was recorded.
    pub usage: Option<Usage>,
    /// Bytes of its stored transcript, when it has one.
    pub transcript_bytes: Option<i64>,
}

/// Spend of one (UTC day, action, model) cell since a time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendCell {
    /// `YYYY-MM-DD` (UTC) of the attempts' start.
    pub day: String,
    /// The action.
    pub action: String,
    /// The model (empty when unknown).
    pub model: String,
    /// Summed cost in US dollars (unpriced attempts count 0).
    pub cost_usd: f64,
    /// Attempts.
    pub runs: i64,
    /// Summed input tokens.
    pub input_tokens: i64,
    /// Summed output tokens.
    pub output_tokens: i64,
    /// Summed cache-read tokens.
    pub cache_read_tokens: i64,
    /// Summed cache-creation tokens.
    pub cache_creation_tokens: i64,
}

/// One costly attempt, for the "most expensive runs" list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopRun {
    /// The event's row id.
    pub event_row_id: i64,
    /// The action.
    pub action: String,
    /// The model, if known.
    pub model: Option<String>,
    /// Cost in US dollars.
    pub cost_usd: f64,
    /// When it started.
    pub started_at: String,
    /// How it stopped.
    pub stop: Option<String>,
}

/// Spend cells since `$1`, grouped by day, action and model (PostgreSQL sums integers
/// as `numeric`, hence the casts).
pub(crate) const CELLS: &str = "SELECT substr(started_at, 1, 10), action, COALESCE(model, ''), \
     COALESCE(SUM(cost_usd), 0.0), COUNT(*), CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT), \
     CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT), CAST(COALESCE(SUM(cache_read_tokens), 0) AS BIGINT), \
     CAST(COALESCE(SUM(cache_creation_tokens), 0) AS BIGINT) \
     FROM llm_spend WHERE started_at >= $1 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";

/// The costliest attempts since `$1`, at most `$2`.
pub(crate) const TOP: &str = "SELECT event_row_id, action, model, cost_usd, started_at, stop FROM llm_spend \
     WHERE started_at >= $1 AND cost_usd IS NOT NULL ORDER BY cost_usd DESC, id DESC LIMIT $2";

/// Usage of an event's runs.
pub(crate) const RUN_USAGE: &str = "SELECT id, usage_json, CAST(length(transcript) AS BIGINT) FROM action_runs WHERE event_row_id = $1 ORDER BY id DESC";

/// One run's transcript (`NULL` when it has none; no row when the run is not the event's).
pub(crate) const TRANSCRIPT: &str = "SELECT transcript FROM action_runs WHERE event_row_id = $1 AND id = $2";

/// Ledger insert (`$1`…`$12`).
pub(crate) const INSERT_LEDGER: &str = "INSERT INTO llm_spend (event_row_id, action, handler_mode, model, \
     started_at, finished_at, cost_usd, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, stop) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// The run's latest usage and transcript (`$1` usage, `$2` transcript, `$3` event, `$4` action).
pub(crate) const UPDATE_RUN: &str =
    "UPDATE action_runs SET usage_json = $1, transcript = $2 WHERE event_row_id = $3 AND action = $4";

/// The budget of one action.
pub(crate) const BUDGET: &str = "SELECT per_run_usd, daily_usd, monthly_usd FROM llm_budgets WHERE action = $1";

/// Every action's budget.
pub(crate) const BUDGETS: &str = "SELECT action, per_run_usd, daily_usd, monthly_usd FROM llm_budgets ORDER BY action";

/// Sets an action's budget (`$1` action, `$2`…`$4` amounts, `$5` now).
pub(crate) const UPSERT_BUDGET: &str = "INSERT INTO llm_budgets (action, per_run_usd, daily_usd, monthly_usd, \
     updated_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (action) DO UPDATE SET per_run_usd = excluded.per_run_usd, \
     daily_usd = excluded.daily_usd, monthly_usd = excluded.monthly_usd, updated_at = excluded.updated_at";

/// Recorded spend since `$1`, of every action.
pub(crate) const SPENT: &str = "SELECT COALESCE(SUM(cost_usd), 0.0) FROM llm_spend WHERE started_at >= $1";

/// Recorded spend since `$1` of action `$2`.
pub(crate) const SPENT_BY_ACTION: &str =
    "SELECT COALESCE(SUM(cost_usd), 0.0) FROM llm_spend WHERE started_at >= $1 AND action = $2";

/// What runs in flight (started since `$1`, of events other than `$2`) may cost: their
/// actions' `per_run_usd`.
pub(crate) const RESERVED: &str = "SELECT COALESCE(SUM(b.per_run_usd), 0.0) FROM action_runs r \
     JOIN llm_budgets b ON b.action = r.action WHERE r.status = 'running' AND r.started_at >= $1 \
     AND r.event_row_id <> $2";

/// [`RESERVED`] of action `$3` only.
pub(crate) const RESERVED_BY_ACTION: &str = "SELECT COALESCE(SUM(b.per_run_usd), 0.0) FROM action_runs r \
     JOIN llm_budgets b ON b.action = r.action WHERE r.status = 'running' AND r.started_at >= $1 \
     AND r.event_row_id <> $2 AND r.action = $3";

/// A budget row's amounts, columns `first..first + 3`.
pub(crate) fn budget_at<R>(row: &R, first: usize) -> Result<Budget, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'a> Option<f64>: Decode<'a, R::Database> + Type<R::Database>,
{
    Ok(Budget {
        per_run_usd: row.try_get(first)?,
        daily_usd: row.try_get(first + 1)?,
        monthly_usd: row.try_get(first + 2)?,
    })
}

/// A `BUDGETS` row.
pub(crate) fn action_budget<R>(row: &R) -> Result<ActionBudget, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'a> String: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<f64>: Decode<'a, R::Database> + Type<R::Database>,
{
    Ok(ActionBudget {
        action: row.try_get(0)?,
        budget: budget_at(row, 1)?,
    })
}

/// A token count as stored (counts beyond `i64` are clamped, never wrapped).
pub(crate) fn count(n: Option<u64>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// A `RUN_USAGE` row. Unreadable usage JSON is no usage: the column is ours, but a hand
/// edit must not fail the whole event view.
pub(crate) fn run_usage<R>(row: &R) -> Result<RunUsage, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> i64: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<i64>: Decode<'a, R::Database> + Type<R::Database>,
{
    let usage: Option<String> = row.try_get(1)?;
    Ok(RunUsage {
        run_id: row.try_get(0)?,
        usage: usage.and_then(|t| serde_json::from_str(&t).ok()),
        transcript_bytes: row.try_get(2)?,
    })
}

/// A `CELLS` row.
pub(crate) fn cell<R>(row: &R) -> Result<SpendCell, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'a> String: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> f64: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> i64: Decode<'a, R::Database> + Type<R::Database>,
{
    Ok(SpendCell {
        day: row.try_get(0)?,
        action: row.try_get(1)?,
        model: row.try_get(2)?,
        cost_usd: row.try_get(3)?,
        runs: row.try_get(4)?,
        input_tokens: row.try_get(5)?,
        output_tokens: row.try_get(6)?,
        cache_read_tokens: row.try_get(7)?,
        cache_creation_tokens: row.try_get(8)?,
    })
}

/// A `TOP` row.
pub(crate) fn top_run<R>(row: &R) -> Result<TopRun, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'a> String: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> f64: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> i64: Decode<'a, R::Database> + Type<R::Database>,
{
    Ok(TopRun {
        event_row_id: row.try_get(0)?,
        action: row.try_get(1)?,
        model: row.try_get(2)?,
        cost_usd: row.try_get(3)?,
        started_at: row.try_get(4)?,
        stop: row.try_get(5)?,
    })
}

/// Spend of the cells summed by a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendBy {
    /// Per action.
    Action,
    /// Per model.
    Model,
    /// Per UTC day.
    Day,
}

impl std::str::FromStr for SpendBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "action" => Ok(SpendBy::Action),
            "model" => Ok(SpendBy::Model),
            "day" => Ok(SpendBy::Day),
            other => Err(format!("by must be action, model or day (got '{other}')")),
        }
    }
}

/// One group of a spend report: an action, a model or a UTC day.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SpendGroup {
    /// The action, model or day.
    pub key: String,
    /// Cost in US dollars.
    pub cost_usd: f64,
    /// Attempts.
    pub runs: i64,
    /// Tokens by kind (`input`, `output`, `cache_read`, `cache_creation`).
    pub tokens: std::collections::BTreeMap<String, i64>,
}

/// Sums `cells` by `by`, largest cost first (days: oldest first).
pub fn group(cells: &[SpendCell], by: SpendBy) -> Vec<SpendGroup> {
    let mut groups: std::collections::BTreeMap<&str, SpendGroup> = std::collections::BTreeMap::new();
    for c in cells {
        let key = match by {
            SpendBy::Action => c.action.as_str(),
            SpendBy::Model => c.model.as_str(),
            SpendBy::Day => c.day.as_str(),
        };
        let g = groups.entry(key).or_insert_with(|| SpendGroup {
            key: key.to_owned(),
            cost_usd: 0.0,
            runs: 0,
            tokens: crate::domain::TOKEN_KINDS
                .iter()
                .map(|k| ((*k).to_owned(), 0))
                .collect(),
        });
        g.cost_usd += c.cost_usd;
        g.runs += c.runs;
        let counts = [
            c.input_tokens,
            c.output_tokens,
            c.cache_read_tokens,
            c.cache_creation_tokens,
        ];
        for (kind, n) in crate::domain::TOKEN_KINDS.iter().zip(counts) {
            *g.tokens.entry((*kind).to_owned()).or_default() += n;
        }
    }
    let mut out: Vec<SpendGroup> = groups.into_values().collect();
    if by != SpendBy::Day {
        out.sort_by(|a, b| b.cost_usd.total_cmp(&a.cost_usd).then_with(|| a.key.cmp(&b.key)));
    }
    out
}
