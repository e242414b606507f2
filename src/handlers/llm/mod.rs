//! The `llm` handler: one structured-JSON call to an LLM back-end.
//!
//! Back-ends (`LLM_PROVIDER`, or the target `provider[:model]`): `claude-cli` (the Claude
//! Code CLI), `anthropic` (Messages API, answer forced through a `respond` tool) and
//! `openai` (any OpenAI-compatible chat completions API, `response_format: json_object`).
//! 429 and 5xx are retryable and honour `Retry-After`. API keys are sent only in headers
//! and scrubbed from every error message.

mod answer;
mod anthropic;
mod api;
pub mod claude_cli;
mod cli_result;
mod openai;

use std::fmt;
use std::time::Duration;

use serde_json::Value;

pub use answer::{parse_json_answer, scrub};
pub use anthropic::{ANTHROPIC_VERSION, DEFAULT_ANTHROPIC_MODEL};
pub use cli_result::usage as cli_usage;
pub use openai::DEFAULT_OPENAI_MODEL;

use super::{HandlerConfig, HandlerError, HandlerInput, Ran, RunReport};
use crate::domain::{LlmProvider, Prices, Usage};
use claude_cli::CliCall;

/// The built-in system prompt of the `llm` handler when `LLM_SYSTEM_PROMPT` is unset.
pub const DEFAULT_PROMPT: &str = "You handle events for a webhook and cron trigger service. \
The input is a JSON object with `action` (what this event was routed to), `router` (how it \
was classified) and `payload` (the received event). Carry out the action as far as you can \
from the data given and reply with one JSON object only, e.g. {\"summary\": \"...\", \
\"result\": ...}.";

/// Settings of the `llm` handler (keys are redacted from `Debug`).
#[derive(Clone)]
pub struct LlmConfig {
    /// `LLM_PROVIDER`.
    pub provider: LlmProvider,
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
    /// The config file's `"prices"`: what the API back-ends' tokens cost.
    pub prices: Prices,
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
            .field("prices", &self.prices)
            .finish()
    }
}

/// Splits a target `provider[:model]` (split at the first `:`, so `openai:llama3:8b`
/// works) over the configured defaults.
///
/// `LLM_MODEL` belongs to `LLM_PROVIDER`: a target naming another provider without a
/// model gets that back-end's default, never a model name meant for another API.
pub fn choose<'a>(cfg: &'a LlmConfig, target: Option<&'a str>) -> Result<(LlmProvider, Option<&'a str>), HandlerError> {
    let (provider, model) = match target.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => {
            let (name, model) = match t.split_once(':') {
                Some((p, m)) => (p.trim(), Some(m.trim()).filter(|m| !m.is_empty())),
                None => (t, None),
            };
            let provider = name
                .parse::<LlmProvider>()
                .map_err(|e| HandlerError::permanent(e.to_string()).with_kind("config"))?;
            (provider, model)
        }
        None => (cfg.provider, None),
    };
    let configured = (provider == cfg.provider).then_some(cfg.model.as_deref()).flatten();
    Ok((provider, model.or(configured)))
}

/// Runs the `llm` handler: its answer and usage.
pub async fn run(cfg: &HandlerConfig, target: Option<&str>, input: &HandlerInput<'_>) -> Ran {
    let prompt = cfg.system_prompt_or(DEFAULT_PROMPT);
    let input = match serde_json::to_value(input) {
        Ok(v) => v,
        Err(e) => return Ran::failed(HandlerError::new(format!("cannot encode handler input: {e}"))),
    };
    let (provider, model) = match choose(&cfg.llm, target) {
        Ok(chosen) => chosen,
        Err(e) => return Ran::failed(e),
    };
    complete_reported(cfg, provider, model, prompt, &input, &claude_cli::ANY_OBJECT).await
}

/// The cost of an API call's tokens from `prices` (the model as asked for, else as
/// answered), or `None` when neither is priced.
fn priced(prices: &Prices, asked: &str, mut usage: Usage) -> Usage {
    let price = prices
        .get(asked)
        .or_else(|| usage.model.as_deref().and_then(|m| prices.get(m)));
    usage.cost_usd = price.map(|p| p.cost(&usage));
    usage
}

/// One structured-JSON call to `provider`: `system` prompt, `input` as the user message,
/// the answer shaped by `schema` where the back-end can enforce it (Anthropic's tool
/// `input_schema`, the CLI's `--json-schema`; OpenAI gets `json_object` mode).
///
/// Errors carry a [`HandlerError::kind`]: `missing_key`, `timeout`, `request`,
/// `http_<status>`, `invalid_response`, or the CLI's `spawn` / `exit` / `cli_error`.
pub async fn complete(
    cfg: &HandlerConfig,
    provider: LlmProvider,
    model: Option<&str>,
    system: &str,
    input: &Value,
    schema: &Value,
) -> Result<Value, HandlerError> {
    complete_reported(cfg, provider, model, system, input, schema)
        .await
        .answer
}

/// [`complete`], with the call's usage (cost from `prices` for the APIs).
pub async fn complete_reported(
    cfg: &HandlerConfig,
    provider: LlmProvider,
    model: Option<&str>,
    system: &str,
    input: &Value,
    schema: &Value,
) -> Ran {
    let started = std::time::Instant::now();
    let (answer, asked) = match provider {
        LlmProvider::Anthropic => {
            let asked = model.unwrap_or(DEFAULT_ANTHROPIC_MODEL);
            (anthropic::complete(cfg, asked, system, input, schema).await, asked)
        }
        LlmProvider::Openai => {
            let asked = model.unwrap_or(DEFAULT_OPENAI_MODEL);
            (openai::complete(cfg, asked, system, input).await, asked)
        }
        LlmProvider::ClaudeCli => {
            let stdin = match super::encode_json("input", input) {
                Ok(s) => s,
                Err(e) => return Ran::failed(e),
            };
            let call = CliCall::plain(system, model, schema, stdin, cfg.llm.timeout);
            let (answer, report) = claude_cli::run_reported(cfg, &call).await;
            return Ran { answer, report };
        }
    };
    match answer {
        Ok((value, mut usage)) => {
            usage.duration_ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
            usage.model = usage.model.or_else(|| Some(asked.to_owned()));
            Ran {
                answer: Ok(value),
                report: RunReport {
                    usage: Some(priced(&cfg.llm.prices, asked, usage)),
                    transcript: None,
                },
            }
        }
        Err(e) => Ran::failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chooses_provider_and_model() {
        let mut cfg = crate::handlers::test_config().llm;
        assert_eq!(choose(&cfg, None).unwrap(), (LlmProvider::ClaudeCli, None));
        cfg.model = Some("m0".into());
        // LLM_MODEL goes with LLM_PROVIDER only.
        assert_eq!(
            choose(&cfg, Some("claude-cli")).unwrap(),
            (LlmProvider::ClaudeCli, Some("m0"))
        );
        assert_eq!(choose(&cfg, Some("openai")).unwrap(), (LlmProvider::Openai, None));
        assert_eq!(
            choose(&cfg, Some("anthropic:claude-x")).unwrap(),
            (LlmProvider::Anthropic, Some("claude-x"))
        );
        assert_eq!(
            choose(&cfg, Some("openai:llama3:8b")).unwrap(),
            (LlmProvider::Openai, Some("llama3:8b"))
        );
        assert_eq!(choose(&cfg, Some(" ")).unwrap(), (LlmProvider::ClaudeCli, Some("m0")));
        let err = choose(&cfg, Some("gemini:x")).unwrap_err();
        assert!(err.permanent && err.message.contains("gemini"), "{err}");
        assert_eq!(err.kind.as_deref(), Some("config"));
    }

    #[test]
    fn scrubs_and_redacts() {
        assert_eq!(scrub("bad key sk-123456", "sk-123456"), "bad key [redacted]");
        let cfg = LlmConfig {
            openai_api_key: Some("sk-secret-xyz".into()),
            ..crate::handlers::test_config().llm
        };
        assert!(!format!("{cfg:?}").contains("sk-secret-xyz"));
    }

    #[tokio::test]
    async fn claude_cli_backend_runs_without_tools_or_schema() {
        let dir = tempfile::tempdir().unwrap();
        let script = claude_cli::tests::install_script(
            dir.path(),
            "claude",
            "#!/bin/sh\nd=$(dirname \"$0\")\nprintf '%s\\0' \"$@\" > \"$d/argv\"\ncat > \"$d/stdin\"\n\
             echo '{\"type\":\"result\",\"is_error\":false,\"result\":\"\",\"structured_output\":{\"ok\":1}}'\n",
        );
        let mut cfg = HandlerConfig {
            llm_system_prompt: Some("SYS-PROMPT".into()),
            ..crate::handlers::test_config()
        };
        cfg.claude.program = script.display().to_string();
        cfg.llm.model = Some("haiku".into());
        let (r, p) = (json!({"provider": "x"}), json!({"json": {"n": 1}}));
        let input = HandlerInput {
            action: "a",
            router: &r,
            payload: &p,
            debounced: None,
        };
        assert_eq!(run(&cfg, None, &input).await.answer.unwrap(), json!({"ok": 1}));
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
        // "Any object" needs no schema: the answer is parsed from the text.
        assert!(
            !argv.iter().any(|a| a == "--allowedTools" || a == "--json-schema"),
            "{argv:?}"
        );
        let stdin: Value = serde_json::from_slice(&std::fs::read(dir.path().join("stdin")).unwrap()).unwrap();
        assert_eq!(stdin, json!({"action": "a", "router": r, "payload": p}));
    }

    #[tokio::test]
    async fn missing_keys_are_named() {
        let cfg = crate::handlers::test_config();
        let (r, p) = (json!({}), json!({}));
        let input = HandlerInput {
            action: "a",
            router: &r,
            payload: &p,
            debounced: None,
        };
        for (target, key) in [("anthropic", "ANTHROPIC_API_KEY"), ("openai", "OPENAI_API_KEY")] {
            let err = run(&cfg, Some(target), &input).await.answer.unwrap_err();
            assert!(err.message.contains(key), "{err}");
            assert_eq!(err.kind.as_deref(), Some("missing_key"));
        }
    }
}
