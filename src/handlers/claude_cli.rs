//! The Claude Code CLI (`claude -p --output-format json …`), shared by the `agent`
//! handler, the `llm` handler's `claude-cli` back-end and `LLM_MODE=claude`.
//!
//! The CLI prints one result object: `{"type":"result","is_error",…,"result": "<text>",
//! "structured_output"?, "total_cost_usd", "usage", "session_id", "num_turns"}`. The
//! answer is `structured_output` when present, else `result` parsed as JSON (a fenced
//! ```json block is tolerated), else `{"raw_result": <text>}`. Run metadata goes under
//! the reserved `_agent` key of the returned object.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use super::process::{self, EnvPolicy, ProcessSpec};
use super::{HandlerConfig, HandlerError};

/// The `-p` prompt: the event itself arrives on stdin.
pub const INSTRUCTION: &str = "Read the JSON event on stdin (an object with `action`, \
`router` and `payload`) and handle it as your instructions say. Answer with exactly one \
JSON object and nothing else.";

/// Reserved key of the output object holding the run's metadata.
pub const META_KEY: &str = "_agent";

/// Metadata fields of the CLI result copied under [`META_KEY`].
const META_FIELDS: &[&str] = &["total_cost_usd", "usage", "session_id", "num_turns"];

/// How much of an unexpected stdout goes into an error message.
const STDOUT_START_CHARS: usize = 500;

/// Settings of the Claude Code CLI.
#[derive(Debug, Clone)]
pub struct ClaudeConfig {
    /// The binary (`CLAUDE_CLI`).
    pub program: String,
    /// Default model (`CLAUDE_AGENT_MODEL`).
    pub model: Option<String>,
    /// `--max-turns` (`CLAUDE_AGENT_MAX_TURNS`).
    pub max_turns: u32,
    /// `--permission-mode` (`CLAUDE_AGENT_PERMISSION_MODE`).
    pub permission_mode: String,
    /// Limit of an `agent` run (`CLAUDE_AGENT_TIMEOUT_SECONDS`, else `ACTION_AGENT_TIMEOUT_SECONDS`).
    pub timeout: Duration,
    /// Directory agents are looked up in and the CLI runs in; `None` = the current one.
    pub work_dir: Option<PathBuf>,
}

impl Default for ClaudeConfig {
    /// `claude`, 6 turns, `bypassPermissions`, 90 s.
    fn default() -> Self {
        Self {
            program: "claude".into(),
            model: None,
            max_turns: 6,
            permission_mode: "bypassPermissions".into(),
            timeout: Duration::from_secs(90),
            work_dir: None,
        }
    }
}

/// One CLI call.
#[derive(Debug, Clone)]
pub struct CliCall<'a> {
    /// `--system-prompt`.
    pub system_prompt: &'a str,
    /// `--model`, when set.
    pub model: Option<&'a str>,
    /// `--allowedTools`, when not empty.
    pub tools: &'a [String],
    /// Bytes written to stdin.
    pub stdin: Vec<u8>,
    /// Wall-clock limit.
    pub timeout: Duration,
}

/// The argv of a call (program first).
pub fn argv(claude: &ClaudeConfig, call: &CliCall<'_>) -> Vec<String> {
    let mut argv = vec![
        claude.program.clone(),
        "-p".into(),
        INSTRUCTION.into(),
        "--output-format".into(),
        "json".into(),
        "--system-prompt".into(),
        call.system_prompt.into(),
        "--max-turns".into(),
        claude.max_turns.to_string(),
        "--permission-mode".into(),
        claude.permission_mode.clone(),
    ];
    if let Some(model) = call.model.map(str::trim).filter(|m| !m.is_empty()) {
        argv.push("--model".into());
        argv.push(model.into());
    }
    if !call.tools.is_empty() {
        argv.push("--allowedTools".into());
        argv.push(call.tools.join(","));
    }
    argv
}

/// Runs the CLI and returns the answer object (with `_agent` metadata).
///
/// Error messages are scrubbed of `ANTHROPIC_API_KEY`, which the CLI's environment holds.
pub async fn run(cfg: &HandlerConfig, call: &CliCall<'_>) -> Result<Value, HandlerError> {
    run_unscrubbed(cfg, call).await.map_err(|mut e| {
        if let Some(key) = cfg.llm.anthropic_api_key.as_deref() {
            e.message = super::llm::scrub(&e.message, key);
        }
        e
    })
}

async fn run_unscrubbed(cfg: &HandlerConfig, call: &CliCall<'_>) -> Result<Value, HandlerError> {
    let claude = &cfg.claude;
    // The CLI needs its API key; every other secret stays hidden.
    let remove = cfg
        .env_remove
        .iter()
        .filter(|n| n.as_str() != "ANTHROPIC_API_KEY")
        .cloned()
        .collect();
    let spec = ProcessSpec {
        argv: argv(claude, call),
        stdin: call.stdin.clone(),
        timeout: call.timeout,
        max_output_bytes: cfg.max_output_bytes,
        env: EnvPolicy {
            remove,
            set: Vec::new(),
        },
        cwd: claude.work_dir.clone(),
    };
    let what = format!("Claude Code CLI '{}' (CLAUDE_CLI)", claude.program);
    let out = process::run(&spec).await.map_err(|e| match e {
        process::ProcessError::NotFound { program } => HandlerError::new(format!(
            "Claude Code CLI '{program}' not found: install it or set CLAUDE_CLI to its path"
        )),
        other => super::process_failure(&what, other),
    })?;
    let parsed = super::stdout_json_object(&out);
    match parsed {
        Some(result) => {
            if !out.success() && result.get("is_error").and_then(Value::as_bool) != Some(true) {
                return Err(super::exit_failure(&what, &out));
            }
            interpret(result)
        }
        None if !out.success() => Err(super::exit_failure(&what, &out)),
        None => {
            let text = String::from_utf8_lossy(&out.stdout);
            let start: String = text.trim().chars().take(STDOUT_START_CHARS).collect();
            Err(HandlerError::new(format!(
                "{what} printed no JSON result; stdout starts: {start}"
            )))
        }
    }
}

/// Turns the CLI's result object into the handler output.
pub fn interpret(result: Value) -> Result<Value, HandlerError> {
    let text = result.get("result").and_then(Value::as_str).unwrap_or_default();
    if result.get("is_error").and_then(Value::as_bool) == Some(true) {
        let detail = if text.is_empty() {
            result.get("subtype").and_then(Value::as_str).unwrap_or("no message")
        } else {
            text
        };
        return Err(HandlerError::new(format!("Claude Code reported an error: {detail}")));
    }
    let mut output = match result.get("structured_output") {
        Some(v @ Value::Object(_)) => v.clone(),
        _ => match parse_json_answer(text) {
            Some(v) => v,
            None => serde_json::json!({"raw_result": text}),
        },
    };
    let meta: Map<String, Value> = META_FIELDS
        .iter()
        .filter_map(|k| result.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    if !meta.is_empty()
        && let Value::Object(obj) = &mut output
    {
        obj.insert(META_KEY.into(), Value::Object(meta));
    }
    Ok(output)
}

/// Parses a model's text answer as one JSON object, tolerating a fenced code block.
pub fn parse_json_answer(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(v @ Value::Object(_)) = serde_json::from_str(t) {
        return Some(v);
    }
    let start = t.find("```")?;
    let after = &t[start + 3..];
    let body_start = after.find('\n')? + 1;
    let body = &after[body_start..];
    let end = body.find("```")?;
    match serde_json::from_str(body[..end].trim()) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn argv_has_every_flag() {
        let claude = ClaudeConfig::default();
        let tools = vec!["Read".to_owned(), "Bash".to_owned()];
        let call = CliCall {
            system_prompt: "be kind",
            model: Some("opus"),
            tools: &tools,
            stdin: Vec::new(),
            timeout: Duration::from_secs(1),
        };
        let a = argv(&claude, &call);
        assert_eq!(
            a,
            [
                "claude",
                "-p",
                INSTRUCTION,
                "--output-format",
                "json",
                "--system-prompt",
                "be kind",
                "--max-turns",
                "6",
                "--permission-mode",
                "bypassPermissions",
                "--model",
                "opus",
                "--allowedTools",
                "Read,Bash"
            ]
        );
        let call = CliCall {
            model: None,
            tools: &[],
            ..call
        };
        assert!(
            !argv(&claude, &call)
                .iter()
                .any(|a| a == "--model" || a == "--allowedTools")
        );
    }

    #[test]
    fn interprets_results() {
        let out = interpret(json!({"is_error": false, "result": "x", "structured_output": {"a": 1},
            "total_cost_usd": 0.5, "session_id": "s", "num_turns": 2, "usage": {"input_tokens": 3}}))
        .unwrap();
        assert_eq!(out["a"], 1);
        assert_eq!(
            out["_agent"],
            json!({"total_cost_usd": 0.5, "session_id": "s", "num_turns": 2, "usage": {"input_tokens": 3}})
        );
        let out = interpret(json!({"result": "Here:\n```json\n{\"b\": 2}\n```\n"})).unwrap();
        assert_eq!(out, json!({"b": 2}));
        let out = interpret(json!({"result": "{\"c\": 3}"})).unwrap();
        assert_eq!(out, json!({"c": 3}));
        let out = interpret(json!({"result": "just words", "num_turns": 1})).unwrap();
        assert_eq!(out, json!({"raw_result": "just words", "_agent": {"num_turns": 1}}));
        let err = interpret(json!({"is_error": true, "result": "credit balance too low"})).unwrap_err();
        assert!(err.message.contains("credit balance too low"), "{err}");
        assert!(!err.permanent);
    }

    #[test]
    fn json_answers() {
        assert_eq!(parse_json_answer(" {\"a\":1} "), Some(json!({"a": 1})));
        assert_eq!(parse_json_answer("```\n{\"a\":1}\n```"), Some(json!({"a": 1})));
        assert_eq!(parse_json_answer("[1]"), None);
        assert_eq!(parse_json_answer("```json\nnope\n```"), None);
        assert_eq!(parse_json_answer("no fence"), None);
    }
}
