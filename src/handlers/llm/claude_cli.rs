//! The Claude Code CLI (`claude -p --output-format json …`), shared by the `agent`
//! handler, the `llm` handler's `claude-cli` back-end and `LLM_MODE=claude`.
//!
//! The CLI prints one result object: `{"type":"result","is_error",…,"result": "<text>",
//! "structured_output"?, "total_cost_usd", "usage", "session_id", "num_turns"}`. The
//! answer is `structured_output` when present, else `result` parsed as JSON (a fenced
//! ```json block is tolerated), else `{"raw_result": <text>}`. Run metadata goes under
//! the reserved `_agent` key of the returned object. A CLI that exits 0 without printing
//! a JSON result gives `{"raw_result": <stdout>}` (CONTRACT §5).
//!
//! Agent runs ask for `--output-format stream-json --verbose` instead: stdout is then one
//! JSON message per line (`system` init, `assistant`, `user` tool results, …) ending with
//! the same result object; those lines are the run's transcript ([`super::super::transcript`]).
//! A run whose result has `is_error`, an `error_*` subtype or `permission_denials` fails
//! even when the CLI exits 0 (`super::cli_result`).
//!
//! The argv is `claude -p <instruction> --output-format json --system-prompt <prompt>
//! --max-turns N --permission-mode M --strict-mcp-config [--model X] [--json-schema S]
//! [--max-budget-usd U] [--tools a,b [--allowedTools a,b]]`. `--system-prompt` *replaces* Claude Code's own system prompt,
//! which is what a sub-agent file means (its body is the whole prompt). `--json-schema`
//! asks for a `structured_output` (Claude Code 2.x delivers it through a tool of its own,
//! `StructuredOutput`, which it adds whatever `--tools` says).
//!
//! Safe by default (CONTRACT §11): `--tools` limits the built-in tools the model is offered
//! to exactly the given list (`""`: none); the same list goes to `--allowedTools`, because
//! the default permission mode `dontAsk` denies every tool not pre-approved. Plain LLM
//! calls (the `llm` handler, the classifier, `LLM_MODE=claude`) get no tools at all. The
//! CLI runs in a fresh scratch directory (removed afterwards), not the service's, with the
//! allowlisted environment of an LLM runner ([`crate::handlers::child_env`]), plus
//! `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`: without it the CLI sends a second request
//! per run to title the session, which every run pays for and nobody reads.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use serde_json::{Map, Value};

use super::answer::{parse_json_answer, scrub};
use super::cli_result;
use crate::handlers::child_env::ChildKind;
use crate::handlers::process::{self, EnvPolicy, ProcessSpec};
use crate::handlers::{HandlerConfig, HandlerError, RunReport, transcript};

/// The `-p` prompt: the event itself arrives on stdin.
pub const INSTRUCTION: &str = "Read the JSON event on stdin (an object with `action`, \
`router` and `payload`) and handle it as your instructions say. Answer with exactly one \
JSON object and nothing else.";

/// Reserved key of the output object holding the run's metadata.
pub const META_KEY: &str = "_agent";

/// The `--json-schema` of agent and `llm` runs: any JSON object.
pub static ANY_OBJECT: LazyLock<Value> = LazyLock::new(|| serde_json::json!({"type": "object"}));

/// Metadata fields of the CLI result copied under [`META_KEY`].
const META_FIELDS: &[&str] = &["total_cost_usd", "usage", "session_id", "num_turns"];

/// How much of an unexpected stdout goes into an error message.
const STDOUT_START_CHARS: usize = 500;

/// Which built-in tools an agent is offered when its file lists none
/// (`CLAUDE_AGENT_DEFAULT_TOOLS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultTools {
    /// Every built-in tool of the CLI (`all`): no `--tools` flag.
    All,
    /// Exactly these (empty: none).
    List(Vec<String>),
}

impl DefaultTools {
    /// Parses the setting: `all`, or a comma-separated list of tool names.
    pub fn parse(value: &str) -> Self {
        if value.trim().eq_ignore_ascii_case("all") {
            return Self::All;
        }
        Self::List(
            value
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }
}

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
    /// Tools of an agent whose file lists none (`CLAUDE_AGENT_DEFAULT_TOOLS`).
    pub default_tools: DefaultTools,
    /// Limit of an `agent` run (`CLAUDE_AGENT_TIMEOUT_SECONDS`, else `ACTION_AGENT_TIMEOUT_SECONDS`).
    pub timeout: Duration,
    /// Directory agent files are looked up in; `None` = the current one. (The CLI itself
    /// always runs in a fresh scratch directory.)
    pub work_dir: Option<PathBuf>,
}

/// One CLI call.
#[derive(Debug, Clone)]
pub struct CliCall<'a> {
    /// `--system-prompt`.
    pub system_prompt: &'a str,
    /// `--model`, when set.
    pub model: Option<&'a str>,
    /// The built-in tools offered (`--tools`, and `--allowedTools` when not empty);
    /// `None` offers every tool the CLI has.
    pub tools: Option<&'a [String]>,
    /// `--json-schema`: the shape of the `structured_output` asked for.
    pub json_schema: Option<&'a Value>,
    /// Bytes written to stdin.
    pub stdin: Vec<u8>,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Ask for `stream-json` and keep the lines as the run's transcript (agent runs).
    pub transcript: bool,
    /// `--max-budget-usd`: the CLI stops the run when it has cost this much.
    pub max_budget_usd: Option<f64>,
}

impl<'a> CliCall<'a> {
    /// A plain structured call on untrusted input: no tools at all, the answer shaped by
    /// `json_schema` (the `llm` back-end, the AI classifier, `LLM_MODE=claude`).
    ///
    /// A schema that allows any object ([`ANY_OBJECT`]) is not passed: the answer is parsed
    /// from the text just as well, while `--json-schema` makes the CLI ask a model that
    /// answered in text once more to call its `StructuredOutput` tool — measured with CLI
    /// 2.1.197, 2 requests and twice the tokens instead of 1 (`tests/it/claude_usage.rs`).
    pub fn plain(
        system_prompt: &'a str,
        model: Option<&'a str>,
        json_schema: &'a Value,
        stdin: Vec<u8>,
        timeout: Duration,
    ) -> CliCall<'a> {
        CliCall {
            system_prompt,
            model,
            tools: Some(&[]),
            json_schema: Some(json_schema).filter(|s| **s != *ANY_OBJECT),
            stdin,
            timeout,
            transcript: false,
            max_budget_usd: None,
        }
    }
}

/// The argv of a call (program first).
pub fn argv(claude: &ClaudeConfig, call: &CliCall<'_>) -> Vec<String> {
    let mut argv = vec![
        claude.program.clone(),
        "-p".into(),
        INSTRUCTION.into(),
        "--output-format".into(),
        if call.transcript { "stream-json" } else { "json" }.into(),
        "--system-prompt".into(),
        call.system_prompt.into(),
        "--max-turns".into(),
        claude.max_turns.to_string(),
        "--permission-mode".into(),
        claude.permission_mode.clone(),
        // MCP servers from the user's Claude config would add tools beyond `--tools`.
        "--strict-mcp-config".into(),
    ];
    if let Some(model) = call.model.map(str::trim).filter(|m| !m.is_empty()) {
        argv.push("--model".into());
        argv.push(model.into());
    }
    if call.transcript {
        // stream-json refuses to run without it.
        argv.push("--verbose".into());
    }
    if let Some(schema) = call.json_schema {
        argv.push("--json-schema".into());
        argv.push(schema.to_string());
    }
    if let Some(usd) = call.max_budget_usd {
        argv.push("--max-budget-usd".into());
        argv.push(usd.to_string());
    }
    if let Some(tools) = call.tools {
        let list = tools.join(",");
        argv.push("--tools".into());
        argv.push(list.clone());
        if !tools.is_empty() {
            argv.push("--allowedTools".into());
            argv.push(list);
        }
    }
    argv
}

/// The environment of an LLM runner child (the CLI, `LLM_COMMAND`): the allowlist, plus
/// the API key when it was given as a flag rather than in our environment.
pub fn llm_runner_env(cfg: &HandlerConfig) -> EnvPolicy {
    let env = EnvPolicy::allowlisted(ChildKind::LlmRunner, &cfg.env_passthrough);
    match cfg.llm.anthropic_api_key.as_deref().filter(|k| !k.is_empty()) {
        Some(key) => env.with("ANTHROPIC_API_KEY", key),
        None => env,
    }
}

/// Runs the CLI and returns the answer object (with `_agent` metadata).
pub async fn run(cfg: &HandlerConfig, call: &CliCall<'_>) -> Result<Value, HandlerError> {
    run_reported(cfg, call).await.0
}

/// Runs the CLI: the answer object (with `_agent` metadata), and the run's usage and
/// (for a `transcript` call) its redacted, capped transcript — failed runs included.
///
/// Error messages are scrubbed of `ANTHROPIC_API_KEY`, which the CLI's environment holds.
pub async fn run_reported(cfg: &HandlerConfig, call: &CliCall<'_>) -> (Result<Value, HandlerError>, RunReport) {
    let mut report = RunReport::default();
    let answer = run_unscrubbed(cfg, call, &mut report).await.map_err(|mut e| {
        if let Some(key) = cfg.llm.anthropic_api_key.as_deref() {
            e.message = scrub(&e.message, key);
        }
        e
    });
    (answer, report)
}

async fn run_unscrubbed(
    cfg: &HandlerConfig,
    call: &CliCall<'_>,
    report: &mut RunReport,
) -> Result<Value, HandlerError> {
    let claude = &cfg.claude;
    // A fresh directory per run: the CLI's file tools start there, not among our files
    // (`.env`, the database). Removed when this function returns.
    let scratch = tempfile::Builder::new()
        .prefix("switchyard-claude-")
        .tempdir()
        .map_err(|e| {
            HandlerError::new(format!(
                "cannot create a scratch directory for the Claude Code CLI: {e}"
            ))
        })?;
    let spec = ProcessSpec {
        argv: argv(claude, call),
        stdin: call.stdin.clone(),
        timeout: call.timeout,
        max_output_bytes: cfg.max_output_bytes,
        env: llm_runner_env(cfg).with("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        cwd: Some(scratch.path().to_path_buf()),
    };
    let what = format!("Claude Code CLI '{}' (CLAUDE_CLI)", claude.program);
    let out = process::run(&spec).await.map_err(|e| match e {
        process::ProcessError::NotFound { program } => HandlerError::new(format!(
            "Claude Code CLI '{program}' not found: install it or set CLAUDE_CLI to its path"
        ))
        .with_kind("spawn"),
        other => crate::handlers::child::process_failure(&what, other),
    })?;
    if call.transcript {
        report.transcript = Some(transcript::from_output(&out, &cfg.secrets, cfg.transcript_max_bytes));
    }
    let result = result_object(&out);
    if let Some(result) = &result {
        report.usage = Some(cli_result::usage(result));
    }
    match result {
        Some(result) => {
            if !out.success() && result.get("is_error").and_then(Value::as_bool) != Some(true) {
                return Err(crate::handlers::child::exit_failure(&what, &out));
            }
            interpret(result)
        }
        None if !out.success() => Err(crate::handlers::child::exit_failure(&what, &out)),
        None if out.stdout_truncated => {
            let text = String::from_utf8_lossy(&out.stdout);
            let start: String = text.trim().chars().take(STDOUT_START_CHARS).collect();
            Err(HandlerError::new(format!(
                "{what} printed more than {} bytes and no complete JSON result; stdout starts: {start}",
                cfg.max_output_bytes
            ))
            .with_kind("invalid_response"))
        }
        // Exit 0 but no result object (an old CLI, a wrapper script): keep what it said.
        None => Ok(serde_json::json!({"raw_result": String::from_utf8_lossy(&out.stdout).trim()})),
    }
}

/// The CLI's result object: stdout is that object, or (`json` with `--verbose`) an array
/// of messages whose last `"type": "result"` entry is it, or (`stream-json`) one message
/// per line, the last `result` line being it (read from the kept tail when stdout was
/// longer than the capture).
fn result_object(out: &process::ProcessOutput) -> Option<Value> {
    let is_result = |m: &Value| m.get("type").and_then(Value::as_str) == Some("result");
    let bytes = if out.stdout_truncated {
        &out.stdout_tail
    } else {
        &out.stdout
    };
    if !out.stdout_truncated
        && let Ok(whole) = serde_json::from_slice::<Value>(bytes.trim_ascii())
    {
        return match whole {
            v @ Value::Object(_) => Some(v),
            Value::Array(items) => items.into_iter().rev().find(is_result),
            _ => None,
        };
    }
    bytes
        .split(|b| *b == b'\n')
        .rev()
        .filter_map(|line| serde_json::from_slice::<Value>(line.trim_ascii()).ok())
        .find(is_result)
}

/// Turns the CLI's result object into the handler output.
pub fn interpret(result: Value) -> Result<Value, HandlerError> {
    let text = result.get("result").and_then(Value::as_str).unwrap_or_default();
    if let Some(failure) = cli_result::failure(&result) {
        return Err(failure);
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    /// Writes an executable script through a child process, so no descriptor open for
    /// writing ever exists in this (multi-threaded, forking) test process: exec'ing a file
    /// that a concurrently forked child still holds open fails with ETXTBSY.
    pub(crate) fn install_script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::io::Write;
        let path = dir.join(name);
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(body.as_bytes())
            .expect("write script");
        assert!(child.wait().expect("wait").success(), "installing {}", path.display());
        path
    }

    #[test]
    fn argv_has_every_flag() {
        let claude = crate::handlers::test_config().claude;
        let tools = vec!["Read".to_owned(), "Bash".to_owned()];
        let call = CliCall {
            system_prompt: "be kind",
            model: Some("opus"),
            tools: Some(&tools),
            json_schema: Some(&ANY_OBJECT),
            stdin: Vec::new(),
            timeout: Duration::from_secs(1),
            transcript: false,
            max_budget_usd: None,
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
                "dontAsk",
                "--strict-mcp-config",
                "--model",
                "opus",
                "--json-schema",
                r#"{"type":"object"}"#,
                "--tools",
                "Read,Bash",
                "--allowedTools",
                "Read,Bash"
            ]
        );
        let call = CliCall {
            model: None,
            tools: Some(&[]),
            json_schema: None,
            ..call
        };
        let a = argv(&claude, &call);
        assert!(
            !a.iter()
                .any(|a| a == "--model" || a == "--allowedTools" || a == "--json-schema"),
            "{a:?}"
        );
        assert_eq!(a[a.len() - 2..], ["--tools", ""]);
        let a = argv(&claude, &CliCall { tools: None, ..call });
        assert!(!a.iter().any(|a| a == "--tools" || a == "--allowedTools"), "{a:?}");
    }

    #[test]
    fn default_tools_setting() {
        assert_eq!(DefaultTools::parse(" ALL "), DefaultTools::All);
        assert_eq!(
            DefaultTools::parse("Read, Grep,,"),
            DefaultTools::List(vec!["Read".into(), "Grep".into()])
        );
        assert_eq!(DefaultTools::parse(""), DefaultTools::List(Vec::new()));
    }

    fn output(stdout: &str, code: i32) -> process::ProcessOutput {
        process::ProcessOutput {
            status_code: Some(code),
            stdout: stdout.as_bytes().to_vec(),
            ..process::ProcessOutput::default()
        }
    }

    #[test]
    fn finds_the_result_object_in_plain_and_verbose_output() {
        let plain = output(r#"{"type":"result","result":"x"}"#, 0);
        assert_eq!(result_object(&plain), Some(json!({"type": "result", "result": "x"})));
        let verbose = output(
            r#"[{"type":"system"},{"type":"result","result":"y"},{"type":"assistant"}]"#,
            0,
        );
        assert_eq!(result_object(&verbose), Some(json!({"type": "result", "result": "y"})));
        assert_eq!(result_object(&output("Welcome!", 0)), None);
        assert_eq!(result_object(&output("[1, 2]", 0)), None);
    }

    #[tokio::test]
    async fn runs_the_cli_and_maps_its_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        // Answers according to the first word on stdin.
        let script = install_script(
            dir.path(),
            "claude",
            "#!/bin/sh\nread -r mode\ncase $mode in\n\
             ok) echo '{\"type\":\"result\",\"is_error\":false,\"result\":\"\",\"structured_output\":{\"k\":1},\"num_turns\":1}';;\n\
             text) echo 'Hello, not JSON';;\n\
             error) echo '{\"type\":\"result\",\"is_error\":true,\"subtype\":\"error_max_turns\"}'; exit 1;;\n\
             crash) echo 'boom' >&2; exit 2;;\n\
             esac\n",
        );
        let mut cfg = crate::handlers::test_config();
        cfg.claude.program = script.display().to_string();
        let run_with = |cfg: &HandlerConfig, stdin: &str| {
            let cfg = cfg.clone();
            let stdin = stdin.as_bytes().to_vec();
            async move {
                let call = CliCall {
                    system_prompt: "s",
                    model: None,
                    tools: Some(&[]),
                    json_schema: None,
                    stdin,
                    timeout: Duration::from_secs(30),
                    transcript: false,
                    max_budget_usd: None,
                };
                run(&cfg, &call).await
            }
        };
        assert_eq!(
            run_with(&cfg, "ok\n").await.unwrap(),
            json!({"k": 1, "_agent": {"num_turns": 1}})
        );
        assert_eq!(
            run_with(&cfg, "text\n").await.unwrap(),
            json!({"raw_result": "Hello, not JSON"})
        );
        let err = run_with(&cfg, "error\n").await.unwrap_err();
        assert!(err.message.contains("error_max_turns"), "{err}");
        assert_eq!(err.kind.as_deref(), Some("cli_error"));
        let err = run_with(&cfg, "crash\n").await.unwrap_err();
        assert!(
            err.message.contains("CLAUDE_CLI") && err.message.contains("boom"),
            "{err}"
        );
        assert_eq!(err.kind.as_deref(), Some("exit"));

        cfg.claude.program = dir.path().join("no-such-claude").display().to_string();
        let err = run_with(&cfg, "ok\n").await.unwrap_err();
        assert!(
            err.message.contains("CLAUDE_CLI") && err.message.contains("no-such-claude"),
            "{err}"
        );
        assert_eq!(err.kind.as_deref(), Some("spawn"));
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
}
