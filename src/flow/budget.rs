//! LLM budgets (CONTRACT §14): an action's `budget` (`daily_usd`, `monthly_usd`) and the
//! global `LLM_DAILY_BUDGET_USD` / `LLM_MONTHLY_BUDGET_USD`, over UTC days and months.
//!
//! A budget is reached when the period's recorded spend (the `llm_spend` ledger) plus what
//! runs in flight may still cost (their actions' `per_run_usd`) is at least the budget.
//! Runs without a `per_run_usd` count only once they finish, so concurrent runs can pass a
//! budget by up to what they cost; `per_run_usd` bounds that (the CLI stops a run there).

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};

use super::FlowConfig;
use crate::store::{Db, StoreError};

/// The global budgets (settings).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GlobalBudgets {
    /// `LLM_DAILY_BUDGET_USD`.
    pub daily_usd: Option<f64>,
    /// `LLM_MONTHLY_BUDGET_USD`.
    pub monthly_usd: Option<f64>,
}

/// What the budgets say about one run.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Under every budget: run, with the action's per-run limit.
    Run {
        /// The action's `per_run_usd`.
        per_run_usd: Option<f64>,
    },
    /// A budget is reached until `period_end`.
    Over {
        /// `budget:daily: …` or `budget:monthly: …`, naming the budget and the spend.
        reason: String,
        /// When that period ends.
        period_end: DateTime<Utc>,
    },
}

/// A UTC day or month: its name in reasons, its start and its end.
struct Period {
    name: &'static str,
    words: &'static str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// The UTC day and the UTC month of `now`.
fn periods(now: DateTime<Utc>) -> [Period; 2] {
    let today = now.date_naive();
    let first = today.with_day(1).unwrap_or(today);
    [
        Period {
            name: "daily",
            words: "today (UTC)",
            start: midnight(today),
            end: midnight(today + Days::new(1)),
        },
        Period {
            name: "monthly",
            words: "this month (UTC)",
            start: midnight(first),
            end: midnight(first + Months::new(1)),
        },
    ]
}

/// Checks the action's budgets, then the global ones.
pub async fn check(
    db: &Db,
    cfg: &FlowConfig,
    event_row_id: i64,
    action: &str,
    now: DateTime<Utc>,
) -> Result<Verdict, StoreError> {
    let own = db.budget(action).await?.unwrap_or_default();
    let window = chrono::Duration::from_std(cfg.in_flight_window).unwrap_or(chrono::Duration::hours(1));
    let in_flight_since = crate::time::format(now - window);
    let [day, month] = periods(now);
    let limits = [
        (own.daily_usd, &day, Some(action)),
        (own.monthly_usd, &month, Some(action)),
        (cfg.budgets.daily_usd, &day, None),
        (cfg.budgets.monthly_usd, &month, None),
    ];
    for (limit, period, scope) in limits {
        let Some(limit) = limit else { continue };
        let scope_owned = scope.map(str::to_owned);
        let spent = db
            .spent_since(crate::time::format(period.start), scope_owned.clone())
            .await?;
        let reserved = db.reserved(in_flight_since.clone(), event_row_id, scope_owned).await?;
        if spent + reserved >= limit {
            let whose = match scope {
                Some(a) => format!("action '{a}'"),
                None => "all agent and llm runs".to_owned(),
            };
            let setting = match (scope, period.name) {
                (Some(_), n) => format!("its budget.{n}_usd"),
                (None, "daily") => "LLM_DAILY_BUDGET_USD".to_owned(),
                (None, _) => "LLM_MONTHLY_BUDGET_USD".to_owned(),
            };
            return Ok(Verdict::Over {
                reason: format!(
                    "budget:{}: {whose} spent ${spent:.4} {} (runs in flight ${reserved:.4}) of {setting} ${limit}; \
                     held until the period ends or the budget is raised",
                    period.name, period.words
                ),
                period_end: period.end,
            });
        }
    }
    Ok(Verdict::Run {
        per_run_usd: own.per_run_usd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_utc_days_and_months() {
        let now = DateTime::parse_from_rfc3339("2026-12-31T23:59:59Z").unwrap().to_utc();
        let [day, month] = periods(now);
        assert_eq!(day.start.to_rfc3339(), "2026-12-31T00:00:00+00:00");
        assert_eq!(day.end.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(month.start.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(month.end.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        let feb = DateTime::parse_from_rfc3339("2028-02-29T12:00:00Z").unwrap().to_utc();
        assert_eq!(periods(feb)[1].end.to_rfc3339(), "2028-03-01T00:00:00+00:00");
    }
}
