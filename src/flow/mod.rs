//! Admission: between routing and the handlers, whether a routed action runs now or waits
//! (DESIGN.md, `flow::admit`). Its state is in the store, so every process sees it. Today
//! it holds agent and `llm` runs over an LLM budget ([`budget`], CONTRACT §14). Flow
//! control (CONTRACT §13: slots, debounce, rate, pools) must count across processes in one
//! transaction, so it lives in the store (`store::flow`), called by the worker.

pub mod budget;

use std::time::Duration;

use crate::domain::HandlerMode;
use crate::handlers::RunOptions;
use crate::store::Db;

/// Settings of admission.
#[derive(Debug, Clone, Default)]
pub struct FlowConfig {
    /// `LLM_DAILY_BUDGET_USD` and `LLM_MONTHLY_BUDGET_USD`.
    pub budgets: budget::GlobalBudgets,
    /// How long a held event waits before it is looked at again (`LLM_BUDGET_RECHECK_SECONDS`),
    /// so a raised budget lets it run without a restart.
    pub recheck: Duration,
    /// How long after its start a run still counts as in flight (the longest handler
    /// limit): a run whose process died stops counting after it.
    pub in_flight_window: Duration,
}

/// What admission decided for one action of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Run now, with these per-run limits.
    Run(RunOptions),
    /// Wait: hold the event (status `held`, `last_error` the reason) until `until`.
    Held {
        /// Why, starting with `budget:daily`, `budget:monthly` or `budget:unavailable`.
        reason: String,
        /// When to look again (stored timestamp text).
        until: String,
    },
}

/// Decides whether `action` of event `event_row_id` (handled by `mode`) runs now.
pub async fn admit(db: &Db, cfg: &FlowConfig, event_row_id: i64, action: &str, mode: HandlerMode) -> Admission {
    if !matches!(mode, HandlerMode::Agent | HandlerMode::Llm) {
        return Admission::Run(RunOptions::default());
    }
    let now = chrono::Utc::now();
    match budget::check(db, cfg, event_row_id, action, now).await {
        Ok(budget::Verdict::Run { per_run_usd }) => Admission::Run(RunOptions {
            max_budget_usd: per_run_usd,
        }),
        Ok(budget::Verdict::Over { reason, period_end }) => Admission::Held {
            reason,
            until: crate::time::format(period_end.min(now + recheck(cfg))),
        },
        Err(e) => {
            // Not knowing the spend must not let runs spend without limit: wait and look again.
            tracing::warn!(action, error = %e, "cannot read the LLM budget; holding the run");
            Admission::Held {
                reason: format!("budget:unavailable: the spend could not be read ({e})"),
                until: crate::time::format(now + recheck(cfg)),
            }
        }
    }
}

fn recheck(cfg: &FlowConfig) -> chrono::Duration {
    chrono::Duration::from_std(cfg.recheck).unwrap_or(chrono::Duration::seconds(30))
}
