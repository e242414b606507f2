//! The generic runner (`LLM_MODE`) for events that matched no route.
//!
//! `noop` answers `{"note":"no mapping"}`; `echo` shows what would be sent; `command`
//! runs `LLM_COMMAND` (split like a shell line, but never run by a shell) with
//! `{"prompt","input"}` on stdin; `claude` runs the Claude Code CLI (no tools, `CLAUDE_*`
//! settings) with the prompt as system prompt and the same `{"prompt","input"}` on stdin.

use serde_json::{Value, json};

use super::claude_cli::{self, CliCall};
use super::shell_words::split_command_line;
use super::{HandlerConfig, HandlerError, LlmMode};

/// The built-in system prompt used when `LLM_SYSTEM_PROMPT` is unset.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You handle events for a webhook and cron trigger \
service. The input is a JSON object with `router` (how the event was classified: provider, \
confidence, reasons) and `payload` (the received event). No route matched this event. \
Decide what, if anything, should be done and reply with one JSON object only, e.g. \
{\"summary\": \"...\", \"suggested_action\": \"...\"}.";

/// Runs the generic runner for an unrouted event according to `cfg.llm_mode`.
pub async fn run(cfg: &HandlerConfig, payload: &Value, router: &Value) -> Result<Value, HandlerError> {
    let prompt = cfg.system_prompt_or(DEFAULT_SYSTEM_PROMPT);
    let input = json!({"router": router, "payload": payload});
    match cfg.llm_mode {
        LlmMode::Noop => Ok(json!({"note": "no mapping"})),
        LlmMode::Echo => Ok(json!({"mode": LlmMode::Echo.as_str(), "prompt": prompt, "input": input})),
        LlmMode::Command => run_command(cfg, prompt, &input).await,
        LlmMode::Claude => {
            // Same stdin as `command` mode, so switching modes changes nothing for the prompt.
            let stdin = super::encode_json("LLM input", &json!({"prompt": prompt, "input": input}))?;
            // CLAUDE_AGENT_MODEL: LLM_MODEL names a model of LLM_PROVIDER, maybe another API's.
            // Unrouted events are anyone's payloads: no tools for them to steer.
            let call = CliCall::plain(
                prompt,
                cfg.claude.model.as_deref(),
                &claude_cli::ANY_OBJECT,
                stdin,
                cfg.claude.timeout,
            );
            claude_cli::run(cfg, &call).await
        }
    }
}

/// `LLM_MODE=command`: `LLM_COMMAND` with `{"prompt","input"}` on stdin.
async fn run_command(cfg: &HandlerConfig, prompt: &str, input: &Value) -> Result<Value, HandlerError> {
    let line = cfg.llm_command.as_deref().unwrap_or_default();
    let argv =
        split_command_line(line).map_err(|e| HandlerError::new(format!("LLM_COMMAND could not be parsed: {e}")))?;
    if argv.is_empty() {
        return Err(HandlerError::new(
            "LLM_COMMAND is empty; LLM_MODE=command needs LLM_COMMAND set to the command to run",
        ));
    }
    let stdin = super::encode_json("LLM input", &json!({"prompt": prompt, "input": input}))?;
    // An LLM runner by purpose: the prototype's `LLM_COMMAND="claude -p -"` needs the key.
    let env = claude_cli::llm_runner_env(cfg);
    super::run_json_child(cfg, "LLM_COMMAND", argv, stdin, env, "raw_").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(mode: LlmMode, command: Option<String>) -> HandlerConfig {
        HandlerConfig {
            llm_mode: mode,
            llm_command: command,
            command_timeout: Duration::from_secs(60),
            ..crate::handlers::test_config()
        }
    }

    fn script(dir: &tempfile::TempDir, body: &str) -> String {
        let path = dir.path().join("llm.sh");
        std::fs::write(&path, body).unwrap();
        // Run through `sh`, quoted as a shell line would be.
        format!("/bin/sh '{}'", path.display())
    }

    #[tokio::test]
    async fn noop_and_echo() {
        let payload = json!({"json": {"x": 1}});
        let router = json!({"provider": "unknown"});
        let out = run(&cfg(LlmMode::Noop, None), &payload, &router).await.unwrap();
        assert_eq!(out, json!({"note": "no mapping"}));

        let out = run(&cfg(LlmMode::Echo, None), &payload, &router).await.unwrap();
        assert_eq!(out["mode"], json!("echo"));
        assert_eq!(out["prompt"], json!(DEFAULT_SYSTEM_PROMPT));
        assert_eq!(out["input"], json!({"router": router, "payload": payload}));

        let mut c = cfg(LlmMode::Echo, None);
        c.llm_system_prompt = Some("  be brief ".into());
        let out = run(&c, &payload, &router).await.unwrap();
        assert_eq!(out["prompt"], json!("be brief"));
    }

    #[tokio::test]
    async fn command_json_stdout_and_stdin_shape() {
        let dir = tempfile::tempdir().unwrap();
        // Echo stdin back: it is a JSON object, so it becomes the output.
        let mut c = cfg(LlmMode::Command, Some(script(&dir, "cat")));
        c.llm_system_prompt = Some("sys".into());
        let payload = json!({"k": "v"});
        let router = json!({"provider": "p"});
        let out = run(&c, &payload, &router).await.unwrap();
        assert_eq!(
            out,
            json!({"prompt": "sys", "input": {"router": router, "payload": payload}})
        );
    }

    #[tokio::test]
    async fn command_plain_stdout_is_raw() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(LlmMode::Command, Some(script(&dir, "echo 'not json'; echo note >&2")));
        let out = run(&c, &json!({}), &json!({})).await.unwrap();
        assert_eq!(out, json!({"raw_stdout": "not json", "raw_stderr": "note"}));
    }

    #[tokio::test]
    async fn command_failure_and_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(LlmMode::Command, Some(script(&dir, "echo 'rate limited' >&2; exit 2")));
        let err = run(&c, &json!({}), &json!({})).await.unwrap_err();
        assert!(err.message.contains("code 2"), "{err}");
        assert!(err.message.contains("rate limited"), "{err}");

        for line in [None, Some(""), Some("   ")] {
            let c = cfg(LlmMode::Command, line.map(str::to_owned));
            let err = run(&c, &json!({}), &json!({})).await.unwrap_err();
            assert!(err.message.contains("LLM_COMMAND"), "{err}");
        }
        let c = cfg(LlmMode::Command, Some("claude 'oops".into()));
        let err = run(&c, &json!({}), &json!({})).await.unwrap_err();
        assert!(
            err.message.contains("LLM_COMMAND") && err.message.contains("quote"),
            "{err}"
        );

        let c = cfg(LlmMode::Command, Some("switchyard-missing-llm -p".into()));
        let err = run(&c, &json!({}), &json!({})).await.unwrap_err();
        assert!(err.message.contains("switchyard-missing-llm"), "{err}");
    }

    #[tokio::test]
    async fn claude_mode_runs_the_cli() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::handlers::llm::claude_cli::tests::install_script(
            dir.path(),
            "claude",
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$(dirname \"$0\")/argv\"\ncat > \"$(dirname \"$0\")/stdin\"\necho '{\"result\":\"{\\\"seen\\\":true}\"}'\n",
        );
        let mut c = cfg(LlmMode::Claude, None);
        c.claude.program = path.display().to_string();
        c.claude.model = Some("agent-model".into());
        c.llm.model = Some("gpt-not-for-claude".into());
        c.llm_system_prompt = Some("triage it".into());
        let out = run(&c, &json!({"k": 1}), &json!({"provider": "p"})).await.unwrap();
        assert_eq!(out, json!({"seen": true}));
        let argv = std::fs::read_to_string(dir.path().join("argv")).unwrap();
        assert!(argv.contains("--system-prompt\ntriage it\n"), "{argv}");
        assert!(argv.contains("--model\nagent-model\n"), "{argv}");
        assert!(argv.contains("--tools\n\n"), "no tools for unrouted payloads: {argv}");
        assert!(!argv.contains("--json-schema"), "any object needs no schema: {argv}");
        let stdin: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("stdin")).unwrap()).unwrap();
        assert_eq!(
            stdin,
            json!({"prompt": "triage it", "input": {"router": {"provider": "p"}, "payload": {"k": 1}}})
        );
    }
}
