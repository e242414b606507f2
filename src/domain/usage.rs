//! What an `agent` or `llm` run consumed (CONTRACT §14), and the per-model prices that
//! turn an API's token counts into a cost.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Usage of one run: cost, tokens by kind, turns, durations, model, session, stop reason.
/// Values the back-end did not report are `None` (null in JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// Cost in US dollars: the CLI's `total_cost_usd`, or tokens × `prices`.
    pub cost_usd: Option<f64>,
    /// Input tokens (not read from or written to the cache).
    pub input_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: Option<u64>,
    /// Input tokens written to the prompt cache.
    pub cache_creation_tokens: Option<u64>,
    /// Model turns.
    pub num_turns: Option<u64>,
    /// Wall-clock duration of the run in milliseconds.
    pub duration_ms: Option<u64>,
    /// Time spent waiting for the API in milliseconds.
    pub duration_api_ms: Option<u64>,
    /// The model that answered (the main one when several did).
    pub model: Option<String>,
    /// The Claude Code session id.
    pub session_id: Option<String>,
    /// Why the run stopped: the CLI's `subtype` (`success`, `error_max_turns`, …) or the
    /// API's stop reason (`end_turn`, `tool_use`, `stop`, …).
    pub stop: Option<String>,
}

/// The four token kinds, as the `kind` label of `switchyard_llm_tokens_total`.
pub const TOKEN_KINDS: [&str; 4] = ["input", "output", "cache_read", "cache_creation"];

impl Usage {
    /// `(kind, count)` of each token kind reported.
    pub fn tokens(&self) -> impl Iterator<Item = (&'static str, u64)> {
        let counts = [
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_creation_tokens,
        ];
        TOKEN_KINDS
            .into_iter()
            .zip(counts)
            .filter_map(|(kind, n)| n.map(|n| (kind, n)))
    }
}

/// The price of one model in US dollars per million tokens (the config's `"prices"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million input tokens.
    pub input_per_mtok: f64,
    /// Per million output tokens.
    pub output_per_mtok: f64,
    /// Per million cache-read tokens (default: the input price).
    #[serde(default)]
    pub cache_read_per_mtok: Option<f64>,
    /// Per million cache-write tokens (default: the input price).
    #[serde(default)]
    pub cache_creation_per_mtok: Option<f64>,
}

/// Prices by model name.
pub type Prices = BTreeMap<String, Price>;

impl Price {
    /// The cost of `usage`'s tokens; missing counts count as zero.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let per = |n: Option<u64>, price: f64| n.unwrap_or(0) as f64 * price;
        let micro = per(usage.input_tokens, self.input_per_mtok)
            + per(usage.output_tokens, self.output_per_mtok)
            + per(
                usage.cache_read_tokens,
                self.cache_read_per_mtok.unwrap_or(self.input_per_mtok),
            )
            + per(
                usage.cache_creation_tokens,
                self.cache_creation_per_mtok.unwrap_or(self.input_per_mtok),
            );
        micro / 1_000_000.0
    }

    /// Refuses negative or non-finite prices.
    pub fn check(&self) -> Result<(), String> {
        let all = [
            Some(self.input_per_mtok),
            Some(self.output_per_mtok),
            self.cache_read_per_mtok,
            self.cache_creation_per_mtok,
        ];
        if all.into_iter().flatten().all(|p| p.is_finite() && p >= 0.0) {
            Ok(())
        } else {
            Err("prices must be finite numbers ≥ 0".into())
        }
    }
}

/// A spend limit of an action (`"budget"` on a mapping or rule) or of all runs; US dollars,
/// UTC days and months.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// The Claude CLI's `--max-budget-usd` for each run.
    #[serde(default)]
    pub per_run_usd: Option<f64>,
    /// Spend allowed per UTC day.
    #[serde(default)]
    pub daily_usd: Option<f64>,
    /// Spend allowed per UTC month.
    #[serde(default)]
    pub monthly_usd: Option<f64>,
}

impl Budget {
    /// Parses and checks a `budget` object (every amount a finite number > 0).
    pub fn parse(value: &serde_json::Value) -> Result<Budget, String> {
        let budget: Budget = serde_json::from_value(value.clone())
            .map_err(|e| format!("budget: {e} (expected per_run_usd, daily_usd, monthly_usd numbers)"))?;
        let amounts = [budget.per_run_usd, budget.daily_usd, budget.monthly_usd];
        if amounts.iter().flatten().any(|a| !a.is_finite() || *a <= 0.0) {
            return Err("budget: amounts must be numbers > 0".into());
        }
        Ok(budget)
    }
}

/// The budget of an action, as a mapping or rule sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionBudget {
    /// The action the budget applies to.
    pub action: String,
    /// Its limits.
    pub budget: Budget,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_tokens_times_prices() {
        let price = Price {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
            cache_read_per_mtok: Some(0.3),
            cache_creation_per_mtok: None,
        };
        let usage = Usage {
            input_tokens: Some(1_000),
            output_tokens: Some(2_000),
            cache_read_tokens: Some(10_000),
            cache_creation_tokens: Some(100),
            ..Usage::default()
        };
        // 1000×3 + 2000×15 + 10000×0.3 + 100×3 = 36300 µ$ per Mtok.
        assert!((price.cost(&usage) - 0.0363).abs() < 1e-12);
        assert_eq!(
            usage.tokens().collect::<Vec<_>>(),
            [
                ("input", 1000),
                ("output", 2000),
                ("cache_read", 10000),
                ("cache_creation", 100)
            ]
        );
        assert!(
            Price {
                input_per_mtok: -1.0,
                ..price
            }
            .check()
            .is_err()
        );
    }
}
