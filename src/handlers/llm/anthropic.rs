//! The `anthropic` back-end: the Messages API, the answer forced through a `respond` tool.

use serde_json::{Value, json};

use super::answer::{parse_json_answer, scrub, start_of};
use super::api::send;
use crate::domain::{LlmProvider, Usage};
use crate::handlers::{HandlerConfig, HandlerError};

/// Model used with `anthropic` when neither the target nor `LLM_MODEL` names one.
pub const DEFAULT_ANTHROPIC_MODEL: &str = "claude-sonnet-4-5";
/// `anthropic-version` header value.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` of an Anthropic request.
const MAX_TOKENS: u32 = 4096;

/// One call: `system` prompt, `input` as the user message, the answer shaped by `schema`;
/// the answer and the reply's usage (tokens, model, stop reason; no cost).
pub(super) async fn complete(
    cfg: &HandlerConfig,
    model: &str,
    system: &str,
    input: &Value,
    schema: &Value,
) -> Result<(Value, Usage), HandlerError> {
    let llm = &cfg.llm;
    let key = llm
        .anthropic_api_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            HandlerError::permanent("LLM provider 'anthropic' needs ANTHROPIC_API_KEY to be set")
                .with_kind("missing_key")
        })?;
    let body = json!({
        "model": model,
        "max_tokens": MAX_TOKENS,
        "system": system,
        "messages": [{"role": "user", "content": input.to_string()}],
        "tools": [{
            "name": "respond",
            "description": "Give your answer as one JSON object.",
            "input_schema": schema,
        }],
        "tool_choice": {"type": "tool", "name": "respond"},
    });
    let request = cfg
        .client
        .post(format!("{}/v1/messages", llm.anthropic_base_url))
        .timeout(llm.timeout)
        .header("x-api-key", key)
        .header("anthropic-version", ANTHROPIC_VERSION)
        .json(&body);
    let reply = send(LlmProvider::Anthropic, key, request).await?;
    let malformed = |why: &str| {
        HandlerError::new(scrub(&format!("malformed reply from anthropic: {why}"), key)).with_kind("invalid_response")
    };
    let content = reply
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no `content` array"))?;
    let usage = usage(&reply);
    if let Some(tool) = content
        .iter()
        .find(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
    {
        return match tool.get("input") {
            Some(v @ Value::Object(_)) => Ok((v.clone(), usage)),
            _ => Err(malformed("the tool_use input is not an object")),
        };
    }
    let text: String = content
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let answer = parse_json_answer(&text).ok_or_else(|| {
        HandlerError::new(scrub(
            &format!("anthropic answered text that is not a JSON object: {}", start_of(&text)),
            key,
        ))
        .with_kind("invalid_response")
    })?;
    Ok((answer, usage))
}

/// The tokens, model and stop reason of a Messages reply.
fn usage(reply: &Value) -> Usage {
    let u = reply.get("usage").unwrap_or(&Value::Null);
    let num = |k: &str| u.get(k).and_then(Value::as_u64);
    Usage {
        input_tokens: num("input_tokens"),
        output_tokens: num("output_tokens"),
        cache_read_tokens: num("cache_read_input_tokens"),
        cache_creation_tokens: num("cache_creation_input_tokens"),
        num_turns: Some(1),
        model: reply.get("model").and_then(Value::as_str).map(str::to_owned),
        stop: reply.get("stop_reason").and_then(Value::as_str).map(str::to_owned),
        ..Usage::default()
    }
}
