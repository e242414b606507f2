//! The `llm` handler: one structured-JSON call to an LLM back-end.
//!
//! Back-ends (`LLM_PROVIDER`, or the target `provider[:model]`): `claude-cli` (the Claude
//! Code CLI), `anthropic` (Messages API, answer forced through a `respond` tool) and
//! `openai` (any OpenAI-compatible chat completions API, `response_format: json_object`).
//! 429 and 5xx are retryable and honour `Retry-After`. API keys are sent only in headers
//! and scrubbed from every error message.

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};

use super::claude_cli::{self, CliCall};
use super::{HandlerConfig, HandlerError, HandlerInput};

/// The built-in system prompt of the `llm` handler when `LLM_SYSTEM_PROMPT` is unset.
pub const DEFAULT_PROMPT: &str = "You handle events for a webhook and cron trigger service. \
The input is a JSON object with `action` (what this event was routed to), `router` (how it \
was classified) and `payload` (the received event). Carry out the action as far as you can \
from the data given and reply with one JSON object only, e.g. {\"summary\": \"...\", \
\"result\": ...}.";

/// Model used with `anthropic` when neither the target nor `LLM_MODEL` names one.
pub const DEFAULT_ANTHROPIC_MODEL: &str = "claude-sonnet-4-5";
/// Model used with `openai` when neither the target nor `LLM_MODEL` names one.
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-4o-mini";
/// `anthropic-version` header value.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` of an Anthropic request.
const MAX_TOKENS: u32 = 4096;
/// Characters of a provider's reply quoted in an error.
const REPLY_START_CHARS: usize = 500;
/// The known back-ends.
pub const PROVIDERS: &[&str] = &["claude-cli", "anthropic", "openai"];

/// Settings of the `llm` handler (keys are redacted from `Debug`).
#[derive(Clone)]
pub struct LlmConfig {
    /// `LLM_PROVIDER`.
    pub provider: String,
    /// `LLM_MODEL`.
    pub model: Option<String>,
    /// `LLM_TIMEOUT_SECONDS`: limit of each request or CLI run.
    pub timeout: Duration,
    /// `ANTHROPIC_API_KEY`.
    pub anthropic_api_key: Option<String>,
    /// `ANTHROPIC_BASE_URL`, without a trailing slash.
    pub anthropic_base_url: String,
    /// `OPENAI_API_KEY`.
    pub openai_api_key: Option<String>,
    /// `OPENAI_BASE_URL`, without a trailing slash.
    pub openai_base_url: String,
}

impl Default for LlmConfig {
    /// `claude-cli`, 60 s, the public API URLs, no keys.
    fn default() -> Self {
        Self {
            provider: "claude-cli".into(),
            model: None,
            timeout: Duration::from_secs(60),
            anthropic_api_key: None,
            anthropic_base_url: "https://api.anthropic.com".into(),
            openai_api_key: None,
            openai_base_url: "https://api.openai.com/v1".into(),
        }
    }
}

impl fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |k: &Option<String>| k.as_ref().map(|_| "[redacted]");
        f.debug_struct("LlmConfig")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("anthropic_api_key", &redact(&self.anthropic_api_key))
            .field("anthropic_base_url", &self.anthropic_base_url)
            .field("openai_api_key", &redact(&self.openai_api_key))
            .field("openai_base_url", &self.openai_base_url)
            .finish()
    }
}

/// Splits a target `provider[:model]` over the configured defaults.
pub fn choose<'a>(cfg: &'a LlmConfig, target: Option<&'a str>) -> Result<(&'a str, Option<&'a str>), HandlerError> {
    let (provider, model) = match target.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => match t.split_once(':') {
            Some((p, m)) => (p.trim(), Some(m.trim()).filter(|m| !m.is_empty())),
            None => (t, None),
        },
        None => (cfg.provider.as_str(), None),
    };
    if !PROVIDERS.contains(&provider) {
        return Err(HandlerError::permanent(format!(
            "unknown LLM provider '{provider}' (expected one of: {})",
            PROVIDERS.join(", ")
        )));
    }
    Ok((provider, model.or(cfg.model.as_deref())))
}

/// Runs the `llm` handler.
pub async fn run(cfg: &HandlerConfig, target: Option<&str>, input: &HandlerInput<'_>) -> Result<Value, HandlerError> {
    let prompt = cfg
        .llm_system_prompt
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .unwrap_or(DEFAULT_PROMPT);
    let input =
        serde_json::to_value(input).map_err(|e| HandlerError::new(format!("cannot encode handler input: {e}")))?;
    let (provider, model) = choose(&cfg.llm, target)?;
    complete(cfg, provider, model, prompt, &input).await
}

/// One structured-JSON call to `provider`: `system` prompt, `input` as the user message.
pub async fn complete(
    cfg: &HandlerConfig,
    provider: &str,
    model: Option<&str>,
    system: &str,
    input: &Value,
) -> Result<Value, HandlerError> {
    match provider {
        "anthropic" => anthropic(cfg, model, system, input).await,
        "openai" => openai(cfg, model, system, input).await,
        _ => {
            let stdin =
                serde_json::to_vec(input).map_err(|e| HandlerError::new(format!("cannot encode input: {e}")))?;
            let call = CliCall {
                system_prompt: system,
                model,
                tools: &[],
                stdin,
                timeout: cfg.llm.timeout,
            };
            claude_cli::run(cfg, &call).await
        }
    }
}

/// Replaces every occurrence of `key` in `text`.
pub fn scrub(text: &str, key: &str) -> String {
    if key.len() < 4 {
        return text.to_owned();
    }
    text.replace(key, "[redacted]")
}

fn start_of(text: &str) -> String {
    text.trim().chars().take(REPLY_START_CHARS).collect()
}

/// Sends `request`, returning the JSON body of a 2xx reply; errors are scrubbed of `key`.
async fn send(name: &str, key: &str, request: reqwest::RequestBuilder) -> Result<Value, HandlerError> {
    let scrubbed = |m: String| scrub(&m, key);
    let response = request.send().await.map_err(|e| {
        let kind = if e.is_timeout() { "timed out" } else { "failed" };
        HandlerError::new(scrubbed(format!("{name} request {kind}: {}", e.without_url())))
    })?;
    let status = response.status();
    let wait = super::http::retry_after(response.headers());
    let bytes = response.bytes().await.map_err(|e| {
        HandlerError::new(scrubbed(format!(
            "reading the {name} reply failed: {}",
            e.without_url()
        )))
    })?;
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    if !status.is_success() {
        let message = body
            .as_ref()
            .and_then(|b| {
                b.pointer("/error/message")
                    .or_else(|| b.get("message"))
                    .or_else(|| b.get("error"))
            })
            .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
            .unwrap_or_else(|| start_of(&String::from_utf8_lossy(&bytes)));
        let err = HandlerError::new(scrubbed(format!(
            "{name} answered HTTP {}: {}",
            status.as_u16(),
            start_of(&message)
        )));
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(match wait {
                Some(w) => err.with_retry_after(w),
                None => err,
            });
        }
        return Err(err);
    }
    body.ok_or_else(|| {
        HandlerError::new(scrubbed(format!(
            "malformed reply from {name} (not JSON): {}",
            start_of(&String::from_utf8_lossy(&bytes))
        )))
    })
}

async fn anthropic(
    cfg: &HandlerConfig,
    model: Option<&str>,
    system: &str,
    input: &Value,
) -> Result<Value, HandlerError> {
    let llm = &cfg.llm;
    let key = llm
        .anthropic_api_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| HandlerError::permanent("LLM provider 'anthropic' needs ANTHROPIC_API_KEY to be set"))?;
    let body = json!({
        "model": model.unwrap_or(DEFAULT_ANTHROPIC_MODEL),
        "max_tokens": MAX_TOKENS,
        "system": system,
        "messages": [{"role": "user", "content": input.to_string()}],
        "tools": [{
            "name": "respond",
            "description": "Give your answer as one JSON object.",
            "input_schema": {"type": "object"},
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
    let reply = send("anthropic", key, request).await?;
    let malformed = |why: &str| HandlerError::new(scrub(&format!("malformed reply from anthropic: {why}"), key));
    let content = reply
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no `content` array"))?;
    if let Some(tool) = content
        .iter()
        .find(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
    {
        return match tool.get("input") {
            Some(v @ Value::Object(_)) => Ok(v.clone()),
            _ => Err(malformed("the tool_use input is not an object")),
        };
    }
    let text: String = content
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    claude_cli::parse_json_answer(&text).ok_or_else(|| {
        HandlerError::new(scrub(
            &format!("anthropic answered text that is not a JSON object: {}", start_of(&text)),
            key,
        ))
    })
}

async fn openai(cfg: &HandlerConfig, model: Option<&str>, system: &str, input: &Value) -> Result<Value, HandlerError> {
    let llm = &cfg.llm;
    let key = llm
        .openai_api_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| HandlerError::permanent("LLM provider 'openai' needs OPENAI_API_KEY to be set"))?;
    let body = json!({
        "model": model.unwrap_or(DEFAULT_OPENAI_MODEL),
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
    let reply = send("openai", key, request).await?;
    let malformed = |why: &str| HandlerError::new(scrub(&format!("malformed reply from openai: {why}"), key));
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
    claude_cli::parse_json_answer(text).ok_or_else(|| {
        HandlerError::new(scrub(
            &format!("openai answered text that is not a JSON object: {}", start_of(text)),
            key,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_provider_and_model() {
        let mut cfg = LlmConfig::default();
        assert_eq!(choose(&cfg, None).unwrap(), ("claude-cli", None));
        cfg.model = Some("m0".into());
        assert_eq!(choose(&cfg, Some("openai")).unwrap(), ("openai", Some("m0")));
        assert_eq!(
            choose(&cfg, Some("anthropic:claude-x")).unwrap(),
            ("anthropic", Some("claude-x"))
        );
        assert_eq!(choose(&cfg, Some(" ")).unwrap(), ("claude-cli", Some("m0")));
        let err = choose(&cfg, Some("gemini:x")).unwrap_err();
        assert!(err.permanent && err.message.contains("gemini"), "{err}");
    }

    #[test]
    fn scrubs_and_redacts() {
        assert_eq!(scrub("bad key sk-123456", "sk-123456"), "bad key [redacted]");
        let cfg = LlmConfig {
            openai_api_key: Some("sk-secret-xyz".into()),
            ..LlmConfig::default()
        };
        assert!(!format!("{cfg:?}").contains("sk-secret-xyz"));
    }

    #[tokio::test]
    async fn missing_keys_are_named() {
        let cfg = HandlerConfig::default();
        let (r, p) = (json!({}), json!({}));
        let input = HandlerInput {
            action: "a",
            router: &r,
            payload: &p,
        };
        for (target, key) in [("anthropic", "ANTHROPIC_API_KEY"), ("openai", "OPENAI_API_KEY")] {
            let err = run(&cfg, Some(target), &input).await.unwrap_err();
            assert!(err.message.contains(key), "{err}");
        }
    }
}
