//! Handlers: what runs for a routed action, one module per [`HandlerMode`], and the
//! generic runner for events with no route (`unrouted`).

pub mod agent;
mod child;
pub mod child_env;
pub mod command;
mod error;
pub mod http;
pub mod llm;
pub mod noop;
pub mod outbound;
pub mod process;
pub mod shell_words;
pub mod transcript;
pub mod unrouted;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::domain::{HandlerMode, LlmMode};
pub(crate) use child::{encode_json, run_json_child};
pub use error::HandlerError;
pub use llm::claude_cli;

/// Default cap on the bytes kept from each of a child's stdout and stderr (1 MiB).
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;

/// The JSON the handler receives.
#[derive(Debug, serde::Serialize)]
pub struct HandlerInput<'a> {
    /// The routed action name.
    pub action: &'a str,
    /// The routing decision, as stored in the result.
    pub router: &'a serde_json::Value,
    /// The stored event payload.
    pub payload: &'a serde_json::Value,
    /// `deliver: "all"` of a debounce window (CONTRACT §13): every event of the window,
    /// oldest first, this one last; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debounced: Option<&'a serde_json::Value>,
}

/// What a run consumed and did, besides its answer (CONTRACT §14; `agent` and `llm` runs).
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Cost, tokens, turns, durations, model, session, stop reason.
    pub usage: Option<crate::domain::Usage>,
    /// The agent's JSONL transcript, secrets redacted and capped.
    pub transcript: Option<String>,
}

/// A handler run: its answer (or why the attempt failed) and its report.
#[derive(Debug)]
pub struct Ran {
    /// The output object, or the failure.
    pub answer: Result<serde_json::Value, HandlerError>,
    /// Usage and transcript, when the handler reports them (failed runs too).
    pub report: RunReport,
}

impl Ran {
    /// A run with nothing to report.
    pub fn plain(answer: Result<serde_json::Value, HandlerError>) -> Ran {
        Ran {
            answer,
            report: RunReport::default(),
        }
    }

    /// A run that failed before anything ran.
    pub fn failed(error: HandlerError) -> Ran {
        Ran::plain(Err(error))
    }
}

/// Per-route limits of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunOptions {
    /// The route's `budget.per_run_usd`: the Claude CLI's `--max-budget-usd`.
    pub max_budget_usd: Option<f64>,
}

/// Handler settings taken from the service settings.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// `commands.json` (`APP_COMMANDS_PATH`).
    pub commands_path: PathBuf,
    /// Limit for a `command` handler run and for `LLM_MODE=command`
    /// (`ACTION_COMMAND_TIMEOUT_SECONDS`).
    pub command_timeout: Duration,
    /// Bytes kept from each of a child's stdout and stderr.
    pub max_output_bytes: usize,
    /// Variables children may see beyond the allowlist (`COMMAND_ENV_PASSTHROUGH`; see
    /// [`child_env`]).
    pub env_passthrough: Vec<String>,
    /// Generic LLM runner mode (`LLM_MODE`).
    pub llm_mode: LlmMode,
    /// Command line for `LLM_MODE=command` (`LLM_COMMAND`).
    pub llm_command: Option<String>,
    /// System prompt for the generic runner (`LLM_SYSTEM_PROMPT`); a built-in one when unset.
    pub llm_system_prompt: Option<String>,
    /// Settings of the `http` handler.
    pub http: http::HttpHandlerConfig,
    /// One HTTP client for every outbound call (connection reuse); each request sets its timeout.
    pub client: reqwest::Client,
    /// Settings of the Claude Code CLI (`agent` handler, `llm` with `claude-cli`, `LLM_MODE=claude`).
    pub claude: claude_cli::ClaudeConfig,
    /// Settings of the `llm` handler and the AI classifier.
    pub llm: llm::LlmConfig,
    /// Every configured secret's value, replaced by `[redacted]` in transcripts.
    pub secrets: Arc<[String]>,
    /// Largest stored transcript (`AGENT_TRANSCRIPT_MAX_BYTES`).
    pub transcript_max_bytes: usize,
}

impl HandlerConfig {
    /// `LLM_SYSTEM_PROMPT` (trimmed) when set and not blank, else `default`.
    pub fn system_prompt_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.llm_system_prompt
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .unwrap_or(default)
    }
}

/// The handler settings of `Settings::defaults()`, for tests.
#[cfg(test)]
pub(crate) fn test_config() -> HandlerConfig {
    crate::handler_config(&crate::settings::Settings::defaults())
}

/// Runs the handler for a routed action.
pub async fn run(
    cfg: &HandlerConfig,
    mode: HandlerMode,
    target: Option<&str>,
    input: &HandlerInput<'_>,
    options: &RunOptions,
) -> Ran {
    // The handlers that wait on a child or a server run boxed: their futures are large (kilobytes),
    // and inline they made every attempt's task that large, which tokio copies on spawn and
    // on every move, noop or not (a tenth of a no-op drain's worker CPU was that memcpy).
    match mode {
        HandlerMode::Noop => Ran::plain(Ok(noop::run(input))),
        HandlerMode::Command => Ran::plain(Box::pin(command::run(cfg, target, input)).await),
        HandlerMode::Http => Ran::plain(Box::pin(http::run(&cfg.http, target, input)).await),
        HandlerMode::Agent => Box::pin(agent::run(cfg, target, input, options)).await,
        HandlerMode::Llm => Box::pin(llm::run(cfg, target, input)).await,
    }
}

/// The generic runner for events with no route.
pub async fn run_unrouted(
    cfg: &HandlerConfig,
    input_payload: &serde_json::Value,
    router: &serde_json::Value,
) -> Result<serde_json::Value, HandlerError> {
    Box::pin(unrouted::run(cfg, input_payload, router)).await
}

#[cfg(test)]
mod tests {
    use super::child::tail;
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn noop_returns_mode_and_action() {
        let (router, payload) = (json!({}), json!({}));
        let input = HandlerInput {
            action: "handle_push",
            router: &router,
            payload: &payload,
            debounced: None,
        };
        let out = run(
            &crate::handlers::test_config(),
            HandlerMode::Noop,
            None,
            &input,
            &RunOptions::default(),
        )
        .await
        .answer
        .unwrap();
        assert_eq!(out, json!({"mode": "noop", "action": "handle_push"}));
    }

    #[tokio::test]
    async fn unrouted_defaults_to_no_mapping() {
        let out = run_unrouted(&crate::handlers::test_config(), &json!({"a": 1}), &json!({}))
            .await
            .unwrap();
        assert_eq!(out, json!({"note": "no mapping"}));
    }

    #[test]
    fn default_config_passes_nothing_extra() {
        let cfg = crate::handlers::test_config();
        assert!(cfg.env_passthrough.is_empty());
        assert_eq!(cfg.llm_mode, LlmMode::Noop);
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("short\n", 10), "short");
        assert_eq!(tail("abcdef", 3), "…def");
        assert_eq!(tail("ééééé", 2), "…éé");
    }

    #[test]
    fn handler_error_builders() {
        let e = HandlerError::permanent("nope").with_retry_after(Duration::from_secs(5));
        assert!(e.permanent);
        assert_eq!(e.retry_after, Some(Duration::from_secs(5)));
        assert_eq!(e.to_string(), "nope");
    }
}
