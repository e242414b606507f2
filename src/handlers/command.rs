//! The `command` handler: runs a whitelisted argv from `commands.json`, no shell.
//!
//! The file is re-read on every run: it is small, and edits then apply to the next event
//! without a restart (and without mtime-granularity surprises a cache would bring).

use std::collections::HashMap;
use std::io;
use std::path::Path;

use serde_json::Value;

use super::child_env::ChildKind;
use super::process::EnvPolicy;
use super::{HandlerConfig, HandlerError, HandlerInput};

/// Loads and validates `commands.json`: `{"name": ["argv0", "arg", …]}`.
pub fn load_commands(path: &Path) -> Result<HashMap<String, Vec<String>>, HandlerError> {
    let bytes = std::fs::read(path).map_err(|e| read_error(path, &e))?;
    parse_commands(&bytes, path)
}

/// Async twin of [`load_commands`], used on the worker path so the read does not block
/// the runtime.
async fn load_commands_async(path: &Path) -> Result<HashMap<String, Vec<String>>, HandlerError> {
    let bytes = tokio::fs::read(path).await.map_err(|e| read_error(path, &e))?;
    parse_commands(&bytes, path)
}

fn read_error(path: &Path, e: &io::Error) -> HandlerError {
    if e.kind() == io::ErrorKind::NotFound {
        HandlerError::new(format!(
            "commands file {} not found (set APP_COMMANDS_PATH to your commands.json)",
            path.display()
        ))
    } else {
        HandlerError::new(format!(
            "cannot read commands file {} (APP_COMMANDS_PATH): {e}",
            path.display()
        ))
    }
}

/// Validates the contents of `commands.json`; `path` is only used in messages.
fn parse_commands(bytes: &[u8], path: &Path) -> Result<HashMap<String, Vec<String>>, HandlerError> {
    let file = path.display();
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| HandlerError::new(format!("{file}: invalid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(HandlerError::new(format!(
            "{file}: expected a JSON object mapping names to argv arrays, got {}",
            type_name(&value)
        )));
    };
    let mut commands = HashMap::with_capacity(map.len());
    for (name, argv) in map {
        let Value::Array(items) = argv else {
            return Err(HandlerError::new(format!(
                "{file}: command '{name}' must be an array of strings (argv), got {}",
                type_name(&argv)
            )));
        };
        if items.is_empty() {
            return Err(HandlerError::new(format!("{file}: command '{name}' has an empty argv")));
        }
        let mut args = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Value::String(s) => args.push(s),
                other => {
                    return Err(HandlerError::new(format!(
                        "{file}: command '{name}': argv[{i}] must be a string, got {}",
                        type_name(&other)
                    )));
                }
            }
        }
        if args[0].is_empty() {
            return Err(HandlerError::new(format!(
                "{file}: command '{name}': argv[0] (the program) is empty"
            )));
        }
        commands.insert(name, args);
    }
    Ok(commands)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Runs the `commands.json` entry `target` with the handler input on stdin.
pub async fn run(cfg: &HandlerConfig, target: Option<&str>, input: &HandlerInput<'_>) -> Result<Value, HandlerError> {
    let Some(target) = target.map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(HandlerError::new(format!(
            "handler mode 'command' needs a handler_target (a key in {})",
            cfg.commands_path.display()
        )));
    };
    let commands = load_commands_async(&cfg.commands_path).await?;
    let Some(argv) = commands.get(target) else {
        return Err(HandlerError::new(format!(
            "unknown command target '{target}' (not in {})",
            cfg.commands_path.display()
        )));
    };
    let stdin = super::encode_json("handler input", input)?;
    let env = EnvPolicy::allowlisted(ChildKind::Command, &cfg.env_passthrough);
    super::run_json_child(cfg, &format!("command '{target}'"), argv.clone(), stdin, env, "").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// A tempdir holding `commands.json` and scripts, plus a config pointing at it.
    struct Fixture {
        dir: tempfile::TempDir,
        cfg: HandlerConfig,
    }

    impl Fixture {
        /// `scripts`: (name, shell script body); each runs as `/bin/sh <file>`
        /// (not exec'd directly, which avoids ETXTBSY races with parallel forks).
        fn new(scripts: &[(&str, &str)]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut commands = serde_json::Map::new();
            for (name, body) in scripts {
                let path = dir.path().join(format!("{name}.sh"));
                std::fs::write(&path, body).unwrap();
                commands.insert((*name).to_owned(), json!(["/bin/sh", path.to_str().unwrap()]));
            }
            let commands_path = dir.path().join("commands.json");
            std::fs::write(&commands_path, Value::Object(commands).to_string()).unwrap();
            let cfg = HandlerConfig {
                commands_path,
                command_timeout: Duration::from_secs(60),
                ..crate::handlers::test_config()
            };
            Self { dir, cfg }
        }

        async fn run(&self, target: &str) -> Result<Value, HandlerError> {
            let router = json!({"provider": "github"});
            let payload = json!({"json": {"n": 1}});
            let input = HandlerInput {
                action: "act",
                router: &router,
                payload: &payload,
                debounced: None,
            };
            run(&self.cfg, Some(target), &input).await
        }
    }

    fn write(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("commands.json");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    #[test]
    fn loads_a_valid_file() {
        let (_d, path) = write(r#"{"a": ["echo", "hi"], "b": ["/bin/true"]}"#);
        let cmds = load_commands(&path).unwrap();
        assert_eq!(cmds["a"], vec!["echo", "hi"]);
        assert_eq!(cmds["b"], vec!["/bin/true"]);
    }

    #[test]
    fn refuses_malformed_files_naming_key_and_file() {
        let cases = [
            (r#"["echo"]"#, "expected a JSON object"),
            (r#"{"deploy": "echo hi"}"#, "command 'deploy' must be an array"),
            (r#"{"deploy": []}"#, "command 'deploy' has an empty argv"),
            (
                r#"{"deploy": ["echo", 3]}"#,
                "command 'deploy': argv[1] must be a string",
            ),
            (r#"{"deploy": [""]}"#, "command 'deploy': argv[0]"),
            ("{not json", "invalid JSON"),
        ];
        for (content, expected) in cases {
            let (_d, path) = write(content);
            let err = load_commands(&path).unwrap_err();
            assert!(err.message.contains(expected), "{content}: {err}");
            assert!(err.message.contains(&path.display().to_string()), "{content}: {err}");
        }
    }

    #[test]
    fn missing_file_names_path_and_setting() {
        let err = load_commands(Path::new("/nonexistent/commands.json")).unwrap_err();
        assert!(err.message.contains("/nonexistent/commands.json"), "{err}");
        assert!(err.message.contains("APP_COMMANDS_PATH"), "{err}");
    }

    #[tokio::test]
    async fn json_stdout_becomes_the_output_and_stdin_carries_the_input() {
        // `cat` echoes the handler input, which is itself a JSON object.
        let fx = Fixture::new(&[("echo_input", "cat")]);
        let out = fx.run("echo_input").await.unwrap();
        assert_eq!(
            out,
            json!({"action": "act", "router": {"provider": "github"}, "payload": {"json": {"n": 1}}})
        );
    }

    #[tokio::test]
    async fn plain_stdout_is_wrapped() {
        let fx = Fixture::new(&[("plain", "echo hello; echo warn >&2")]);
        let out = fx.run("plain").await.unwrap();
        assert_eq!(out, json!({"stdout": "hello", "stderr": "warn"}));
        // A JSON value that is not an object is not "a JSON object" either.
        let fx = Fixture::new(&[("array", "echo '[1,2]'")]);
        let out = fx.run("array").await.unwrap();
        assert_eq!(out, json!({"stdout": "[1,2]", "stderr": ""}));
    }

    #[tokio::test]
    async fn truncation_is_noted() {
        let mut fx = Fixture::new(&[("big", "head -c 5000 /dev/zero | tr '\\0' a")]);
        fx.cfg.max_output_bytes = 100;
        let out = fx.run("big").await.unwrap();
        assert_eq!(out["stdout"], json!("a".repeat(100)));
        assert_eq!(out["stdout_truncated"], json!(true));
        assert!(out.get("stderr_truncated").is_none());
    }

    #[tokio::test]
    async fn nonzero_exit_fails_with_code_and_stderr() {
        let fx = Fixture::new(&[("fail", "echo 'disk on fire' >&2; exit 7")]);
        let err = fx.run("fail").await.unwrap_err();
        assert!(err.message.contains("command 'fail'"), "{err}");
        assert!(err.message.contains("code 7"), "{err}");
        assert!(err.message.contains("disk on fire"), "{err}");
        assert!(!err.permanent);
    }

    #[tokio::test]
    async fn stderr_in_failure_is_bounded_to_its_tail() {
        let fx = Fixture::new(&[(
            "noisy",
            "head -c 100000 /dev/zero | tr '\\0' x >&2; echo THE-END >&2; exit 1",
        )]);
        let err = fx.run("noisy").await.unwrap_err();
        assert!(err.message.ends_with("THE-END"), "{}", &err.message[..80]);
        assert!(err.message.len() < 2200, "{}", err.message.len());
    }

    #[tokio::test]
    async fn timeout_fails_with_the_contract_message() {
        let mut fx = Fixture::new(&[("slow", "sleep 30")]);
        fx.cfg.command_timeout = Duration::from_secs(1);
        let started = Instant::now();
        let err = fx.run("slow").await.unwrap_err();
        assert_eq!(err.message, "command 'slow' timed out after 1s");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn unknown_and_missing_targets_fail() {
        let fx = Fixture::new(&[("known", "true")]);
        let err = fx.run("nope").await.unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "unknown command target 'nope' (not in {})",
                fx.cfg.commands_path.display()
            )
        );
        let (router, payload) = (json!({}), json!({}));
        let input = HandlerInput {
            action: "a",
            router: &router,
            payload: &payload,
            debounced: None,
        };
        let err = run(&fx.cfg, None, &input).await.unwrap_err();
        assert!(err.message.contains("needs a handler_target"), "{err}");
        assert!(fx.dir.path().exists());
    }

    #[tokio::test]
    async fn missing_program_names_it() {
        let (_d, path) = write(r#"{"ghost": ["switchyard-ghost-binary"]}"#);
        let cfg = HandlerConfig {
            commands_path: path,
            ..crate::handlers::test_config()
        };
        let (router, payload) = (json!({}), json!({}));
        let input = HandlerInput {
            action: "a",
            router: &router,
            payload: &payload,
            debounced: None,
        };
        let err = run(&cfg, Some("ghost"), &input).await.unwrap_err();
        assert!(err.message.contains("command 'ghost'"), "{err}");
        assert!(err.message.contains("switchyard-ghost-binary"), "{err}");
    }

    #[tokio::test]
    async fn only_allowlisted_variables_reach_the_command() {
        const NAME: &str = "SWITCHYARD_TEST_CMD_SECRET_91B2";
        const PASSED: &str = "SWITCHYARD_TEST_CMD_PASSED_91B2";
        // SAFETY: the names are unique to this test and std serialises env access.
        unsafe {
            std::env::set_var(NAME, "s3cr3t");
            std::env::set_var(PASSED, "visible");
        }
        let mut fx = Fixture::new(&[("env", "env")]);
        fx.cfg.env_passthrough = vec![PASSED.to_owned()];
        let out = fx.run("env").await.unwrap();
        let env = out["stdout"].as_str().unwrap();
        assert!(!env.contains("s3cr3t"), "{env}");
        assert!(env.contains("PATH="), "{env}");
        assert!(env.contains(&format!("{PASSED}=visible")), "{env}");
    }

    #[tokio::test]
    async fn edits_apply_without_restart() {
        let fx = Fixture::new(&[("v", "echo one")]);
        assert_eq!(fx.run("v").await.unwrap()["stdout"], json!("one"));
        let script = fx.dir.path().join("v2.sh");
        std::fs::write(&script, "echo two").unwrap();
        std::fs::write(
            &fx.cfg.commands_path,
            json!({"v": ["/bin/sh", script.to_str().unwrap()]}).to_string(),
        )
        .unwrap();
        assert_eq!(fx.run("v").await.unwrap()["stdout"], json!("two"));
    }
}
