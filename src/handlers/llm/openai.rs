//! The `openai` back-end: any OpenAI-compatible chat completions API (`json_object` mode).

use serde_json::{Value, json};

use super::answer::{parse_json_answer, scrub, start_of};
use super::api::send;
use crate::domain::{LlmProvider, Usage};
use crate::handlers::{HandlerConfig, HandlerError};

/// Model used with `openai` when neither the target nor `LLM_MODEL` names one.
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-4o-mini";

/// One call: `system` prompt, `input` as the user message, a JSON object asked for.
/// Returns the answer and the reply's usage (tokens, model, stop reason; no cost).
pub(super) async fn complete(
    cfg: &HandlerConfig,
    model: &str,
    system: &str,
    input: &Value,
) -> Result<(Value, Usage), HandlerError> {
    let llm = &cfg.llm;
    let key = llm.openai_api_key.as_deref().filter(|k| !k.is_empty()).ok_or_else(|| {
        HandlerError::permanent("LLM provider 'openai' needs OPENAI_API_KEY to be set").with_kind("missing_key")
    })?;
    let body = json!({
        "model": model,
        "response_format": {"type": "json_object"},
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": input.to_string()},
        ],
    });
    let request = cfg
        .client
        .post(format!("{}/chat/completions", llm.openai_base_url))
        .timeout(llm.timeout)
        .bearer_auth(key)
        .json(&body);
    let reply = send(LlmProvider::Openai, key, request).await?;
    let malformed = |why: &str| {
        HandlerError::new(scrub(&format!("malformed reply from openai: {why}"), key)).with_kind("invalid_response")
    };
    let message = reply
        .pointer("/choices/0/message")
        .ok_or_else(|| malformed("no choices[0].message"))?;
    let text = match message.get("content").and_then(Value::as_str) {
        Some(t) if !t.trim().is_empty() => t,
        _ => message
            .pointer("/tool_calls/0/function/arguments")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("neither content nor tool_calls in choices[0].message"))?,
    };
    let answer = parse_json_answer(text).ok_or_else(|| {
        HandlerError::new(scrub(
            &format!("openai answered text that is not a JSON object: {}", start_of(text)),
            key,
        ))
        .with_kind("invalid_response")
    })?;
    Ok((answer, usage(&reply)))
}

/// The tokens, model and stop reason of a chat completion; cached prompt tokens are
/// counted as cache reads, not as input.
fn usage(reply: &Value) -> Usage {
    let u = reply.get("usage").unwrap_or(&Value::Null);
    let prompt = u.get("prompt_tokens").and_then(Value::as_u64);
    let cached = u
        .pointer("/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_u64);
    Usage {
        input_tokens: prompt.map(|p| p.saturating_sub(cached.unwrap_or(0))),
        output_tokens: u.get("completion_tokens").and_then(Value::as_u64),
        cache_read_tokens: cached,
        num_turns: Some(1),
        model: reply.get("model").and_then(Value::as_str).map(str::to_owned),
        stop: reply
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..Usage::default()
    }
}
