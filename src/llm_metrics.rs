//! The cost, token and run counters of agent and `llm` runs (CONTRACT §14), rendered after
//! the exporter's text at `GET /metrics`. They are kept here rather than in the `metrics`
//! facade because a cost is a fraction of a dollar and facade counters count integers.
//!
//! Labels are bounded: at most [`MAX_SERIES`] series per metric (later label sets count
//! under `other`), and `stop` is one of the CLI's and APIs' known stop reasons or `other`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, PoisonError};

use crate::domain::Usage;

/// `switchyard_llm_cost_usd_total{action,model}`.
pub const COST: &str = "switchyard_llm_cost_usd_total";
/// `switchyard_llm_tokens_total{action,kind}`.
pub const TOKENS: &str = "switchyard_llm_tokens_total";
/// `switchyard_agent_runs_total{action,stop}`.
pub const RUNS: &str = "switchyard_agent_runs_total";

/// Most label sets kept per metric.
pub const MAX_SERIES: usize = 500;

/// Stop reasons kept as labels; any other is `other`.
const KNOWN_STOPS: &[&str] = &[
    "success",
    "error_max_turns",
    "error_during_execution",
    "error_max_budget_usd",
    "error_max_structured_output_retries",
    "end_turn",
    "tool_use",
    "max_tokens",
    "stop_sequence",
    "refusal",
    "stop",
    "length",
    "content_filter",
    "tool_calls",
];

/// Series of one metric: label values → value.
type Series = BTreeMap<(String, String), f64>;

#[derive(Default)]
struct Counters {
    cost: Series,
    tokens: Series,
    runs: Series,
}

static COUNTERS: Mutex<Option<Counters>> = Mutex::new(None);

/// Adds `by` to the series of `labels`, or of `(other, other)` once the metric is full.
fn add(series: &mut Series, labels: (&str, &str), by: f64) {
    let key = (labels.0.to_owned(), labels.1.to_owned());
    if let Some(v) = series.get_mut(&key) {
        *v += by;
        return;
    }
    let key = if series.len() < MAX_SERIES {
        key
    } else {
        ("other".to_owned(), "other".to_owned())
    };
    *series.entry(key).or_default() += by;
}

/// Counts one finished agent or `llm` attempt of `action` (`agent` says whether it counts
/// in `switchyard_agent_runs_total`).
pub fn record(action: &str, agent: bool, usage: &Usage) {
    let mut guard = COUNTERS.lock().unwrap_or_else(PoisonError::into_inner);
    let c = guard.get_or_insert_with(Counters::default);
    if let Some(cost) = usage.cost_usd.filter(|c| c.is_finite() && *c >= 0.0) {
        add(&mut c.cost, (action, usage.model.as_deref().unwrap_or("unknown")), cost);
    }
    for (kind, n) in usage.tokens() {
        add(&mut c.tokens, (action, kind), n as f64);
    }
    if agent {
        let stop = usage.stop.as_deref().unwrap_or("unknown");
        let stop = if KNOWN_STOPS.contains(&stop) || stop == "unknown" {
            stop
        } else {
            "other"
        };
        add(&mut c.runs, (action, stop), 1.0);
    }
}

/// The counters in Prometheus text format (label values escaped).
pub fn render() -> String {
    let guard = COUNTERS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = String::new();
    let Some(c) = guard.as_ref() else {
        return out;
    };
    let metrics: [(&str, &str, &str, &Series); 3] = [
        (COST, "model", "Cost of agent and llm runs in US dollars.", &c.cost),
        (TOKENS, "kind", "Tokens of agent and llm runs, by kind.", &c.tokens),
        (RUNS, "stop", "Agent runs, by how they stopped.", &c.runs),
    ];
    for (name, second, help, series) in metrics {
        if series.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for ((action, other), value) in series {
            let _ = writeln!(
                out,
                "{name}{{action=\"{}\",{second}=\"{}\"}} {value}",
                escape(action),
                escape(other)
            );
        }
    }
    out
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_bounded() {
        let mut s = Series::new();
        for i in 0..MAX_SERIES + 10 {
            add(&mut s, (&format!("a{i}"), "m"), 1.0);
        }
        assert_eq!(s.len(), MAX_SERIES + 1);
        assert_eq!(s[&("other".to_owned(), "other".to_owned())], 10.0);
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
