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

/// Splits a target `provider[:model]` (split at the first `:`, so `openai:llama3:8b`
/// works) over the configured defaults.
///
/// `LLM_MODEL` belongs to `LLM_PROVIDER`: a target naming another provider without a
/// model gets that back-end's default, never a model name meant for another API.
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
        ))
        .with_kind("config"));
    }
    let configured = (provider == cfg.provider).then_some(cfg.model.as_deref()).flatten();
    Ok((provider, model.or(configured)))
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
    complete(cfg, provider, model, prompt, &input, &claude_cli::ANY_OBJECT).await
}

/// One structured-JSON call to `provider`: `system` prompt, `input` as the user message,
/// the answer shaped by `schema` where the back-end can enforce it (Anthropic's tool
/// `input_schema`, the CLI's `--json-schema`; OpenAI gets `json_object` mode).
///
/// Errors carry a [`HandlerError::kind`]: `missing_key`, `timeout`, `request`,
/// `http_<status>`, `invalid_response`, or the CLI's `spawn` / `exit` / `cli_error`.
pub async fn complete(
    cfg: &HandlerConfig,
    provider: &str,
    model: Option<&str>,
    system: &str,
    input: &Value,
    schema: &Value,
) -> Result<Value, HandlerError> {
    match provider {
        "anthropic" => anthropic(cfg, model, system, input, schema).await,
        "openai" => openai(cfg, model, system, input).await,
        _ => {
            let stdin =
                serde_json::to_vec(input).map_err(|e| HandlerError::new(format!("cannot encode input: {e}")))?;
            let call = CliCall {
                system_prompt: system,
                model,
                tools: &[],
                json_schema: Some(schema),
                no_tools: true,
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
    let failed = |what: &str, e: reqwest::Error| {
        let (how, kind) = if e.is_timeout() {
            ("timed out", "timeout")
        } else {
            ("failed", "request")
        };
        HandlerError::new(scrubbed(format!("{what} {how}: {}", e.without_url()))).with_kind(kind)
    };
    let response = request
        .send()
        .await
        .map_err(|e| failed(&format!("{name} request"), e))?;
    let status = response.status();
    let wait = super::http::retry_after(response.headers());
    let bytes = response
        .bytes()
        .await
        .map_err(|e| failed(&format!("reading the {name} reply"), e))?;
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
        )))
        .with_kind(format!("http_{}", status.as_u16()));
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
        .with_kind("invalid_response")
    })
}

async fn anthropic(
    cfg: &HandlerConfig,
    model: Option<&str>,
    system: &str,
    input: &Value,
    schema: &Value,
) -> Result<Value, HandlerError> {
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
        "model": model.unwrap_or(DEFAULT_ANTHROPIC_MODEL),
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
    let reply = send("anthropic", key, request).await?;
    let malformed = |why: &str| {
        HandlerError::new(scrub(&format!("malformed reply from anthropic: {why}"), key)).with_kind("invalid_response")
    };
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
        .with_kind("invalid_response")
    })
}

async fn openai(cfg: &HandlerConfig, model: Option<&str>, system: &str, input: &Value) -> Result<Value, HandlerError> {
    let llm = &cfg.llm;
    let key = llm.openai_api_key.as_deref().filter(|k| !k.is_empty()).ok_or_else(|| {
        HandlerError::permanent("LLM provider 'openai' needs OPENAI_API_KEY to be set").with_kind("missing_key")
    })?;
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
    claude_cli::parse_json_answer(text).ok_or_else(|| {
        HandlerError::new(scrub(
            &format!("openai answered text that is not a JSON object: {}", start_of(text)),
            key,
        ))
        .with_kind("invalid_response")
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
        // LLM_MODEL goes with LLM_PROVIDER only.
        assert_eq!(choose(&cfg, Some("claude-cli")).unwrap(), ("claude-cli", Some("m0")));
        assert_eq!(choose(&cfg, Some("openai")).unwrap(), ("openai", None));
        assert_eq!(
            choose(&cfg, Some("anthropic:claude-x")).unwrap(),
            ("anthropic", Some("claude-x"))
        );
        assert_eq!(
            choose(&cfg, Some("openai:llama3:8b")).unwrap(),
            ("openai", Some("llama3:8b"))
        );
        assert_eq!(choose(&cfg, Some(" ")).unwrap(), ("claude-cli", Some("m0")));
        let err = choose(&cfg, Some("gemini:x")).unwrap_err();
        assert!(err.permanent && err.message.contains("gemini"), "{err}");
        assert_eq!(err.kind.as_deref(), Some("config"));
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
    async fn claude_cli_backend_runs_without_tools_and_with_a_schema() {
        let dir = tempfile::tempdir().unwrap();
        let script = claude_cli::tests::install_script(
            dir.path(),
            "claude",
            "#!/bin/sh\nd=$(dirname \"$0\")\nprintf '%s\\0' \"$@\" > \"$d/argv\"\ncat > \"$d/stdin\"\n\
             echo '{\"type\":\"result\",\"is_error\":false,\"result\":\"\",\"structured_output\":{\"ok\":1}}'\n",
        );
        let mut cfg = HandlerConfig {
            llm_system_prompt: Some("SYS-PROMPT".into()),
            ..HandlerConfig::default()
        };
        cfg.claude.program = script.display().to_string();
        cfg.llm.model = Some("haiku".into());
        let (r, p) = (json!({"provider": "x"}), json!({"json": {"n": 1}}));
        let input = HandlerInput {
            action: "a",
            router: &r,
            payload: &p,
        };
        assert_eq!(run(&cfg, None, &input).await.unwrap(), json!({"ok": 1}));
        let raw = std::fs::read(dir.path().join("argv")).unwrap();
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let after = |flag: &str| {
            let i = argv
                .iter()
                .position(|a| a == flag)
                .unwrap_or_else(|| panic!("{flag}: {argv:?}"));
            argv[i + 1].clone()
        };
        assert_eq!(after("--system-prompt"), "SYS-PROMPT");
        assert_eq!(after("--model"), "haiku");
        assert_eq!(after("--tools"), "");
        assert_eq!(after("--json-schema"), r#"{"type":"object"}"#);
        assert!(!argv.iter().any(|a| a == "--allowedTools"), "{argv:?}");
        let stdin: Value = serde_json::from_slice(&std::fs::read(dir.path().join("stdin")).unwrap()).unwrap();
        assert_eq!(stdin, json!({"action": "a", "router": r, "payload": p}));
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
            assert_eq!(err.kind.as_deref(), Some("missing_key"));
        }
    }
}
