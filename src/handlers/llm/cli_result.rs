//! The Claude CLI's result object: the run's usage, and whether the run failed although
//! the CLI may have exited 0 (CONTRACT §14).
//!
//! Seen with CLI 2.1.197: a denied tool call ends `subtype: "success"`, `is_error: false`,
//! exit 0, with the call listed in `permission_denials`; running out of turns ends
//! `subtype: "error_max_turns"`, exit 0.

use serde_json::Value;

use crate::domain::Usage;
use crate::handlers::HandlerError;

/// Denied tools named in a failure message, at most.
const MAX_NAMED_TOOLS: usize = 10;

/// The usage a result reports. Tokens are summed over `modelUsage` (every model the run
/// used, as its `total_cost_usd` counts them), else read from `usage` (the main model's).
pub fn usage(result: &Value) -> Usage {
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    let text = |k: &str| result.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut usage = Usage {
        cost_usd: result.get("total_cost_usd").and_then(Value::as_f64),
        num_turns: num(result, "num_turns"),
        duration_ms: num(result, "duration_ms"),
        duration_api_ms: num(result, "duration_api_ms"),
        session_id: text("session_id"),
        stop: text("subtype"),
        ..Usage::default()
    };
    match result
        .get("modelUsage")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
    {
        Some(models) => {
            let sum = |k: &str| models.values().filter_map(|m| num(m, k)).reduce(|a, b| a + b);
            usage.input_tokens = sum("inputTokens");
            usage.output_tokens = sum("outputTokens");
            usage.cache_read_tokens = sum("cacheReadInputTokens");
            usage.cache_creation_tokens = sum("cacheCreationInputTokens");
            let cost = |m: &Value| m.get("costUSD").and_then(Value::as_f64).unwrap_or(0.0);
            usage.model = models
                .iter()
                .max_by(|a, b| cost(a.1).total_cmp(&cost(b.1)))
                .map(|(name, _)| name.clone());
        }
        None => {
            let u = result.get("usage").unwrap_or(&Value::Null);
            usage.input_tokens = num(u, "input_tokens");
            usage.output_tokens = num(u, "output_tokens");
            usage.cache_read_tokens = num(u, "cache_read_input_tokens");
            usage.cache_creation_tokens = num(u, "cache_creation_input_tokens");
        }
    }
    usage
}

/// Why a run failed although the CLI may have exited 0: `is_error`, an `error_*` subtype,
/// or tools the permission mode denied. `None` for a clean success.
pub fn failure(result: &Value) -> Option<HandlerError> {
    let subtype = result.get("subtype").and_then(Value::as_str).unwrap_or_default();
    let text = result.get("result").and_then(Value::as_str).unwrap_or_default();
    if result.get("is_error").and_then(Value::as_bool) == Some(true) {
        let detail = match (subtype, text) {
            ("", "") => "no message".to_owned(),
            (s, "") => s.to_owned(),
            ("", t) => t.to_owned(),
            (s, t) => format!("{s}: {t}"),
        };
        // The CLI reports the API's rate limit or overload in its result text
        // ("API Error: 429 …", "… 529 … overloaded_error"): that pauses a flow pool.
        let lower = detail.to_ascii_lowercase();
        let kind = if ["429", "529", "rate_limit", "rate limit", "overloaded"]
            .iter()
            .any(|w| lower.contains(w))
        {
            "rate_limited"
        } else {
            "cli_error"
        };
        return Some(HandlerError::new(format!("Claude Code reported an error: {detail}")).with_kind(kind));
    }
    if subtype.starts_with("error") {
        return Some(
            HandlerError::new(format!("Claude Code ended with {subtype} (exit 0 is not success)"))
                .with_kind("cli_error"),
        );
    }
    let denials = result.get("permission_denials").and_then(Value::as_array)?;
    if denials.is_empty() {
        return None;
    }
    let mut tools: Vec<&str> = denials
        .iter()
        .map(|d| d.get("tool_name").and_then(Value::as_str).unwrap_or("(unnamed)"))
        .collect();
    tools.dedup();
    tools.sort_unstable();
    tools.dedup();
    let more = tools.len().saturating_sub(MAX_NAMED_TOOLS);
    tools.truncate(MAX_NAMED_TOOLS);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Some(
        HandlerError::new(format!(
            "Claude Code denied {} tool call(s) of the agent: {}{more} (permission_denials; offer the tools in the agent file's `tools`, or change the prompt)",
            denials.len(),
            tools.join(", ")
        ))
        .with_kind("permission_denied"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_sums_model_usage_else_reads_usage() {
        let result = json!({"type": "result", "subtype": "success", "total_cost_usd": 0.25,
            "num_turns": 3, "duration_ms": 1200, "duration_api_ms": 900, "session_id": "s-1",
            "usage": {"input_tokens": 10, "output_tokens": 5},
            "modelUsage": {
                "claude-haiku": {"inputTokens": 4, "outputTokens": 2, "costUSD": 0.01},
                "claude-sonnet": {"inputTokens": 10, "outputTokens": 5, "cacheReadInputTokens": 7,
                                  "cacheCreationInputTokens": 1, "costUSD": 0.24}}});
        assert_eq!(
            usage(&result),
            Usage {
                cost_usd: Some(0.25),
                input_tokens: Some(14),
                output_tokens: Some(7),
                cache_read_tokens: Some(7),
                cache_creation_tokens: Some(1),
                num_turns: Some(3),
                duration_ms: Some(1200),
                duration_api_ms: Some(900),
                model: Some("claude-sonnet".into()),
                session_id: Some("s-1".into()),
                stop: Some("success".into()),
            }
        );
        let plain = usage(&json!({"usage": {"input_tokens": 3, "cache_read_input_tokens": 2}}));
        assert_eq!(
            (plain.input_tokens, plain.cache_read_tokens, plain.output_tokens),
            (Some(3), Some(2), None)
        );
        assert_eq!(plain.model, None);
    }

    #[test]
    fn exit_zero_is_not_success() {
        assert!(failure(&json!({"subtype": "success", "is_error": false, "permission_denials": []})).is_none());
        let e = failure(&json!({"subtype": "error_max_turns", "is_error": false})).unwrap();
        assert!(e.message.contains("error_max_turns"), "{e}");
        assert_eq!(e.kind.as_deref(), Some("cli_error"));
        let e = failure(&json!({"subtype": "success", "is_error": false, "permission_denials": [
            {"tool_name": "Bash", "tool_use_id": "t1", "tool_input": {"command": "rm -rf /"}},
            {"tool_name": "Write", "tool_use_id": "t2"}, {"tool_name": "Bash", "tool_use_id": "t3"}]}))
        .unwrap();
        assert!(
            e.message.contains("denied 3 tool call(s)") && e.message.contains("Bash, Write"),
            "{e}"
        );
        assert_eq!(e.kind.as_deref(), Some("permission_denied"));
        let e = failure(&json!({"is_error": true, "subtype": "success", "result": "credit too low"})).unwrap();
        assert!(e.message.contains("credit too low"), "{e}");
    }
}
