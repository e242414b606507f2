//! Handlers: what runs for a routed action (`noop`, `command`, …) and the generic LLM
//! runner for events with no route.

pub mod agent;
pub mod claude_cli;
pub mod command;
pub mod http;
pub mod llm;
pub mod llm_runner;
pub mod process;

use std::path::PathBuf;
use std::time::Duration;

pub use llm_runner::LlmMode;

/// Environment variables holding the service's secrets; never passed to children.
pub const SECRET_ENV_VARS: &[&str] = &[
    "INGRESS_SECRET",
    "CRON_SECRET",
    "ADMIN_SECRET",
    "WEBHOOK_SECRET",
    "FIREFLIES_WEBHOOK_SECRET",
    "DATABASE_URL",
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "HTTP_HANDLER_SECRET",
];

/// Default cap on the bytes kept from each of a child's stdout and stderr (1 MiB).
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;

/// Handler modes accepted by routes, for error messages.
const KNOWN_MODES: &str = "noop, command, agent, llm, http";

/// The JSON the handler receives.
#[derive(Debug, serde::Serialize)]
pub struct HandlerInput<'a> {
    /// The routed action name.
    pub action: &'a str,
    /// The routing decision, as stored in the result.
    pub router: &'a serde_json::Value,
    /// The stored event payload.
    pub payload: &'a serde_json::Value,
}

/// Why an attempt failed; `retry_after` lets an upstream's Retry-After push the next attempt back.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    /// What went wrong, for `last_error` and the action run.
    pub message: String,
    /// Earliest time to retry, when the upstream said so.
    pub retry_after: Option<Duration>,
    /// True when retrying cannot help.
    pub permanent: bool,
    /// Short machine-readable cause (`timeout`, `http_429`, `missing_key`, …) where one is
    /// known; the AI classifier reports it as `ai:error:<kind>`.
    pub kind: Option<String>,
}

impl HandlerError {
    /// A retryable failure.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry_after: None,
            permanent: false,
            kind: None,
        }
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            ..Self::new(message)
        }
    }

    /// Sets the earliest retry time.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Sets the machine-readable cause.
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }
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
    /// Environment variables removed from every child's environment.
    pub env_remove: Vec<String>,
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
}

impl Default for HandlerConfig {
    /// The documented defaults: `commands.json`, 90 s, 1 MiB, the service's secrets removed.
    fn default() -> Self {
        Self {
            commands_path: PathBuf::from("commands.json"),
            command_timeout: Duration::from_secs(90),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            env_remove: SECRET_ENV_VARS.iter().map(|s| (*s).to_owned()).collect(),
            llm_mode: LlmMode::Noop,
            llm_command: None,
            llm_system_prompt: None,
            http: http::HttpHandlerConfig {
                secret: None,
                timeout: Duration::from_secs(30),
            },
            client: reqwest::Client::new(),
            claude: claude_cli::ClaudeConfig::default(),
            llm: llm::LlmConfig::default(),
        }
    }
}

/// Runs the handler for a routed action.
pub async fn run(
    cfg: &HandlerConfig,
    mode: &str,
    target: Option<&str>,
    input: &HandlerInput<'_>,
) -> Result<serde_json::Value, HandlerError> {
    match mode {
        "noop" => Ok(serde_json::json!({"mode": "noop", "action": input.action})),
        "command" => command::run(cfg, target, input).await,
        "http" => http::run(&cfg.client, &cfg.http, target, input).await,
        "agent" => agent::run(cfg, target, input).await,
        "llm" => llm::run(cfg, target, input).await,
        other => Err(HandlerError::new(format!(
            "unknown handler mode '{other}' (expected one of: {KNOWN_MODES})"
        ))),
    }
}

/// The generic runner for events with no route.
pub async fn run_unrouted(
    cfg: &HandlerConfig,
    input_payload: &serde_json::Value,
    router: &serde_json::Value,
) -> Result<serde_json::Value, HandlerError> {
    llm_runner::run(cfg, input_payload, router).await
}

/// Keeps at most the last `max_chars` characters of `s`, marking the cut.
pub(crate) fn tail(s: &str, max_chars: usize) -> String {
    let s = s.trim_end();
    let count = s.chars().count();
    if count <= max_chars {
        return s.to_owned();
    }
    let skip = count - max_chars;
    let kept: String = s.chars().skip(skip).collect();
    format!("…{kept}")
}

/// How much of stderr goes into a failure message.
const STDERR_TAIL_CHARS: usize = 2000;

/// Parses stdout as a JSON object, or `None` when it is anything else.
pub(crate) fn stdout_json_object(out: &process::ProcessOutput) -> Option<serde_json::Value> {
    if out.stdout_truncated {
        // A cut-off document is not the object the child meant to send.
        return None;
    }
    match serde_json::from_slice::<serde_json::Value>(out.stdout.trim_ascii()) {
        Ok(v @ serde_json::Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// Builds `{<prefix>stdout, <prefix>stderr}` (+ truncation flags) from raw output.
pub(crate) fn raw_output(out: &process::ProcessOutput, prefix: &str) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    obj.insert(
        format!("{prefix}stdout"),
        String::from_utf8_lossy(&out.stdout).into_owned().into(),
    );
    obj.insert(
        format!("{prefix}stderr"),
        String::from_utf8_lossy(&out.stderr).into_owned().into(),
    );
    if out.stdout_truncated {
        obj.insert("stdout_truncated".into(), true.into());
    }
    if out.stderr_truncated {
        obj.insert("stderr_truncated".into(), true.into());
    }
    serde_json::Value::Object(obj)
}

/// The failure for a child that ran but did not exit 0: exit code (or signal) and stderr tail.
pub(crate) fn exit_failure(what: &str, out: &process::ProcessOutput) -> HandlerError {
    let how = match (out.status_code, out.signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => "exited abnormally".to_owned(),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let detail = if !stderr.trim().is_empty() {
        format!("; stderr: {}", tail(&stderr, STDERR_TAIL_CHARS))
    } else if !stdout.trim().is_empty() {
        // Some tools report errors on stdout; better than saying nothing.
        format!("; no stderr; stdout: {}", tail(&stdout, STDERR_TAIL_CHARS))
    } else {
        "; no output".to_owned()
    };
    HandlerError::new(format!("{what} {how}{detail}")).with_kind("exit")
}

/// The failure for a child that could not be run to completion.
pub(crate) fn process_failure(what: &str, err: process::ProcessError) -> HandlerError {
    match err {
        process::ProcessError::Timeout { after, .. } => {
            HandlerError::new(format!("{what} timed out after {}", process::fmt_duration(after))).with_kind("timeout")
        }
        other => HandlerError::new(format!("{what}: {other}")).with_kind("spawn"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn noop_returns_mode_and_action() {
        let (router, payload) = (json!({}), json!({}));
        let input = HandlerInput {
            action: "handle_push",
            router: &router,
            payload: &payload,
        };
        let out = run(&HandlerConfig::default(), "noop", None, &input).await.unwrap();
        assert_eq!(out, json!({"mode": "noop", "action": "handle_push"}));
    }

    #[tokio::test]
    async fn unknown_modes_fail_clearly() {
        let (router, payload) = (json!({}), json!({}));
        let input = HandlerInput {
            action: "a",
            router: &router,
            payload: &payload,
        };
        let cfg = HandlerConfig::default();
        let err = run(&cfg, "bogus", None, &input).await.unwrap_err();
        assert!(err.message.contains("'bogus'"), "{err}");
        assert!(err.message.contains("noop"), "{err}");
    }

    #[tokio::test]
    async fn unrouted_defaults_to_no_mapping() {
        let out = run_unrouted(&HandlerConfig::default(), &json!({"a": 1}), &json!({}))
            .await
            .unwrap();
        assert_eq!(out, json!({"note": "no mapping"}));
    }

    #[test]
    fn default_config_removes_every_secret() {
        let cfg = HandlerConfig::default();
        for name in SECRET_ENV_VARS {
            assert!(cfg.env_remove.iter().any(|n| n == name), "{name}");
        }
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
