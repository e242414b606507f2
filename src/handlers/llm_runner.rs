//! The generic LLM runner (`LLM_MODE`) for events that matched no route.
//!
//! `noop` answers `{"note":"no mapping"}`; `echo` shows what would be sent; `command`
//! runs `LLM_COMMAND` (split like a shell line, but never run by a shell) with
//! `{"prompt","input"}` on stdin; `claude` runs the Claude Code CLI (no tools, `CLAUDE_*`
//! settings) with the prompt as system prompt and the same `{"prompt","input"}` on stdin.

use std::fmt;
use std::str::FromStr;

use serde_json::{Value, json};

use super::process::{self, EnvPolicy, ProcessSpec};
use super::{HandlerConfig, HandlerError};

/// The built-in system prompt used when `LLM_SYSTEM_PROMPT` is unset.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You handle events for a webhook and cron trigger \
service. The input is a JSON object with `router` (how the event was classified: provider, \
confidence, reasons) and `payload` (the received event). No route matched this event. \
Decide what, if anything, should be done and reply with one JSON object only, e.g. \
{\"summary\": \"...\", \"suggested_action\": \"...\"}.";

/// Which generic runner handles unrouted events (`LLM_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LlmMode {
    /// Do nothing: `{"note":"no mapping"}`.
    #[default]
    Noop,
    /// Return what would be sent, without calling anything.
    Echo,
    /// Run `LLM_COMMAND`.
    Command,
    /// The Claude Code CLI (`CLAUDE_CLI`).
    Claude,
}

impl LlmMode {
    /// The values `LLM_MODE` accepts.
    pub const ALLOWED: &'static [&'static str] = &["noop", "echo", "command", "claude"];

    /// The setting's spelling of this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Noop => "noop",
            Self::Echo => "echo",
            Self::Command => "command",
            Self::Claude => "claude",
        }
    }
}

impl fmt::Display for LlmMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `LLM_MODE` value that is not one of [`LlmMode::ALLOWED`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LLM_MODE '{0}': expected one of noop, echo, command, claude")]
pub struct ParseLlmModeError(pub String);

impl FromStr for LlmMode {
    type Err = ParseLlmModeError;

    /// Case-insensitive, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "noop" => Ok(Self::Noop),
            "echo" => Ok(Self::Echo),
            "command" => Ok(Self::Command),
            "claude" => Ok(Self::Claude),
            _ => Err(ParseLlmModeError(s.to_owned())),
        }
    }
}

/// Why a command line could not be split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A `'` was opened and never closed.
    #[error("unterminated single quote")]
    UnterminatedSingleQuote,
    /// A `"` was opened and never closed.
    #[error("unterminated double quote")]
    UnterminatedDoubleQuote,
    /// The line ends with an unescaped backslash.
    #[error("trailing backslash with nothing to escape")]
    TrailingBackslash,
}

/// Splits a command line into words the way a POSIX shell would, without expanding anything.
///
/// Whitespace separates words; `'…'` is literal; inside `"…"` a backslash escapes only
/// `\ " $ `` ` and newline (otherwise it stays); outside quotes a backslash escapes the
/// next character and backslash-newline is a line continuation. `$`, `~`, globs, `|`,
/// `;`, `>` and `#` have no special meaning: no shell ever sees the result.
pub fn split_command_line(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Distinguishes "no word yet" from an empty quoted word such as `''`.
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedSingleQuote),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('\\' | '"' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(SplitError::UnterminatedDoubleQuote),
                        },
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedDoubleQuote),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err(SplitError::TrailingBackslash),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Runs the generic runner for an unrouted event according to `cfg.llm_mode`.
pub async fn run(cfg: &HandlerConfig, payload: &Value, router: &Value) -> Result<Value, HandlerError> {
    let prompt = cfg
        .llm_system_prompt
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .unwrap_or(DEFAULT_SYSTEM_PROMPT);
    let input = json!({"router": router, "payload": payload});
    match cfg.llm_mode {
        LlmMode::Noop => Ok(json!({"note": "no mapping"})),
        LlmMode::Echo => Ok(json!({"mode": "echo", "prompt": prompt, "input": input})),
        LlmMode::Command => run_command(cfg, prompt, &input).await,
        LlmMode::Claude => {
            // Same stdin as `command` mode, so switching modes changes nothing for the prompt.
            let stdin = serde_json::to_vec(&json!({"prompt": prompt, "input": input}))
                .map_err(|e| HandlerError::new(format!("cannot encode LLM input: {e}")))?;
            let call = super::claude_cli::CliCall {
                system_prompt: prompt,
                // CLAUDE_AGENT_MODEL: LLM_MODEL names a model of LLM_PROVIDER, maybe another API's.
                model: cfg.claude.model.as_deref(),
                tools: &[],
                json_schema: Some(&super::claude_cli::ANY_OBJECT),
                // Unrouted events are anyone's payloads: no tools for them to steer.
                no_tools: true,
                stdin,
                timeout: cfg.claude.timeout,
            };
            super::claude_cli::run(cfg, &call).await
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
    let stdin = serde_json::to_vec(&json!({"prompt": prompt, "input": input}))
        .map_err(|e| HandlerError::new(format!("cannot encode LLM input: {e}")))?;
    let spec = ProcessSpec {
        argv,
        stdin,
        timeout: cfg.command_timeout,
        max_output_bytes: cfg.max_output_bytes,
        env: EnvPolicy {
            remove: cfg.env_remove.clone(),
            set: Vec::new(),
        },
        cwd: None,
    };
    let what = "LLM_COMMAND";
    let out = process::run(&spec).await.map_err(|e| super::process_failure(what, e))?;
    if !out.success() {
        return Err(super::exit_failure(what, &out));
    }
    Ok(super::stdout_json_object(&out).unwrap_or_else(|| super::raw_output(&out, "raw_")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn words(line: &str) -> Vec<String> {
        split_command_line(line).unwrap()
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(words("claude -p -"), ["claude", "-p", "-"]);
        assert_eq!(words("  a \t b\n c  "), ["a", "b", "c"]);
        assert_eq!(words("a 'b c' d"), ["a", "b c", "d"]);
        assert_eq!(words(r#"a "b c" d"#), ["a", "b c", "d"]);
        assert_eq!(words(r#""say \"hi\" \\ \$x \n""#), [r#"say "hi" \ $x \n"#]);
        assert_eq!(words(r"a\ b c\'d"), ["a b", "c'd"]);
        assert_eq!(words("x'y'\"z\"w"), ["xyzw"]);
        assert_eq!(words("'' \"\""), ["", ""]);
        assert_eq!(words("'it\\s' literal"), ["it\\s", "literal"]);
        assert_eq!(words("a \\\nb"), ["a", "b"]);
        assert_eq!(
            words("echo $HOME | wc > f; #x"),
            ["echo", "$HOME", "|", "wc", ">", "f;", "#x"]
        );
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(words("   "), Vec::<String>::new());
    }

    #[test]
    fn split_errors() {
        assert_eq!(split_command_line("a 'b"), Err(SplitError::UnterminatedSingleQuote));
        assert_eq!(split_command_line("a \"b"), Err(SplitError::UnterminatedDoubleQuote));
        assert_eq!(split_command_line("a \"b\\"), Err(SplitError::UnterminatedDoubleQuote));
        assert_eq!(split_command_line("a\\"), Err(SplitError::TrailingBackslash));
    }

    #[test]
    fn parses_llm_mode() {
        assert_eq!("noop".parse(), Ok(LlmMode::Noop));
        assert_eq!(" Echo ".parse(), Ok(LlmMode::Echo));
        assert_eq!("COMMAND".parse(), Ok(LlmMode::Command));
        assert_eq!("claude".parse(), Ok(LlmMode::Claude));
        let err = "gpt".parse::<LlmMode>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("LLM_MODE") && msg.contains("'gpt'"), "{msg}");
        for allowed in LlmMode::ALLOWED {
            assert!(msg.contains(allowed), "{msg}");
            assert_eq!(allowed.parse::<LlmMode>().unwrap().to_string(), *allowed);
        }
        assert!("".parse::<LlmMode>().is_err());
    }

    fn cfg(mode: LlmMode, command: Option<String>) -> HandlerConfig {
        HandlerConfig {
            llm_mode: mode,
            llm_command: command,
            command_timeout: Duration::from_secs(60),
            ..HandlerConfig::default()
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
        assert_eq!(out, json!({"raw_stdout": "not json\n", "raw_stderr": "note\n"}));
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
        let path = crate::handlers::claude_cli::tests::install_script(
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
        assert!(argv.contains("--json-schema\n{\"type\":\"object\"}\n"), "{argv}");
        let stdin: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("stdin")).unwrap()).unwrap();
        assert_eq!(
            stdin,
            json!({"prompt": "triage it", "input": {"router": {"provider": "p"}, "payload": {"k": 1}}})
        );
    }
}
