//! The `agent` handler through the real binary with a fake Claude Code CLI (see
//! [`crate::llm`]): argv, input, environment, working directory and failures.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard::handlers::child_env::{self, ChildKind};

use crate::helpers::*;
use crate::llm::{argv_of, map, post, write_fake_claude};

const ECHO_AGENT: &str = "---\nname: echo\ndescription: echoes\nmodel: fake-model-1\ntools: Read, Grep\n---\nYou are the ECHO-PROMPT agent.\n";

/// An agent file that lists no tools: it gets none.
const BARE_AGENT: &str = "---\nname: bare\n---\nYou have no tools.\n";

/// What Claude Code's `/agents` writes for "same model as the main conversation".
const INHERIT_AGENT: &str =
    "---\nname: inherit\ndescription: inherits\ntools:\n  - Read\nmodel: inherit\ncolor: blue\n---\nInherit.\n";

/// Like [`argv_of`], keeping empty arguments (`--tools ""`).
fn argv_of_all(fake: &Path, mode: &str) -> Vec<String> {
    let raw = std::fs::read(fake.join(format!("argv.{mode}"))).unwrap();
    let mut args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    args.pop(); // after the last NUL
    args
}

/// Fails when `env` output names a variable outside the allowlist of `kind` (the shell
/// running the fake adds `PWD`, `SHLVL`, `OLDPWD` and `_` itself).
fn assert_env_allowlisted(env: &str, kind: ChildKind) {
    for name in env.lines().filter_map(|l| l.split_once('=').map(|(n, _)| n)) {
        assert!(
            child_env::allowed(name, kind, &[]) || ["PWD", "SHLVL", "OLDPWD", "_"].contains(&name),
            "{name} is not allowlisted:\n{env}"
        );
    }
}

#[tokio::test]
async fn agent_end_to_end_with_a_fake_cli() {
    let fake = tempfile::tempdir().unwrap();
    let cli = write_fake_claude(fake.path());
    let app_dir = tempfile::tempdir().unwrap();
    let dir = app_dir.path().join("app");
    std::fs::create_dir_all(dir.join("agents")).unwrap();
    std::fs::write(dir.join("agents/echo.md"), ECHO_AGENT).unwrap();
    std::fs::create_dir_all(dir.join(".claude/agents")).unwrap();
    std::fs::write(dir.join(".claude/agents/inherit.md"), INHERIT_AGENT).unwrap();
    std::fs::write(app_dir.path().join("outside.md"), "---\n---\nescaped").unwrap();
    map(&dir, "unknown", "agent", "echo");
    map(&dir, "escape", "agent", "../outside.md");
    map(&dir, "inh", "agent", "inherit");
    std::fs::write(dir.join("agents/bare.md"), BARE_AGENT).unwrap();
    map(&dir, "bare", "agent", "bare");
    std::fs::write(dir.join(".env"), "SOMETHING=secret-in-dotenv\n").unwrap();
    map(&dir, "dotenv", "agent", "./.env");
    let app = App::spawn_in(
        &dir,
        "serve",
        &[
            ("CLAUDE_CLI", &cli),
            ("SWITCHYARD_SENTINEL_E2E", "sentinel-value"),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            ("CLAUDE_AGENT_TIMEOUT_SECONDS", "1.5"),
            ("CLAUDE_AGENT_MODEL", "fallback-model"),
            ("ADMIN_SECRET", "admin"),
            ("ANTHROPIC_API_KEY", "ak-for-the-cli"),
            ("FIREFLIES_WEBHOOK_SECRET", "hidden-from-children"),
        ],
    );
    let within = Duration::from_secs(15);

    // structured_output becomes the result, with the run's metadata under _agent.
    let id = post(&app, "/webhook", json!({"mode": "MODE_structured", "n": 1})).await;
    let ev = app.wait_status(id, "done", within).await;
    let result = &ev["event"]["result"]["result"];
    assert_eq!(result["echoed"], true, "{ev}");
    assert_eq!(result["_agent"]["session_id"], "sess-1");
    assert_eq!(result["_agent"]["num_turns"], 2);
    let argv = argv_of(fake.path(), "structured");
    let pos = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} in {argv:?}"))
    };
    // Agent runs keep a transcript: stream-json, which needs --verbose.
    assert_eq!(argv[pos("--output-format") + 1], "stream-json");
    assert!(argv.iter().any(|a| a == "--verbose"), "{argv:?}");
    assert_eq!(argv[pos("--system-prompt") + 1], "You are the ECHO-PROMPT agent.");
    assert_eq!(argv[pos("--model") + 1], "fake-model-1");
    // Exactly the file's tools are offered, and pre-approved for `dontAsk`.
    assert_eq!(argv[pos("--tools") + 1], "Read,Grep");
    assert_eq!(argv[pos("--allowedTools") + 1], "Read,Grep");
    // No schema: it would double the tokens of a model answering in text (issue 29).
    assert!(!argv.iter().any(|a| a == "--json-schema"), "{argv:?}");
    assert_eq!(argv[pos("--max-turns") + 1], "6");
    assert_eq!(argv[pos("--permission-mode") + 1], "dontAsk");
    assert!(argv[pos("-p") + 1].contains("stdin"), "{argv:?}");
    let stdin: Value =
        serde_json::from_str(&std::fs::read_to_string(fake.path().join("stdin.structured")).unwrap()).unwrap();
    assert_eq!(stdin["action"], "act");
    assert_eq!(stdin["payload"]["json"]["n"], 1);
    assert_eq!(stdin["router"]["provider"], "unknown");
    // The CLI gets its API key and none of the service's other secrets.
    let env = std::fs::read_to_string(fake.path().join("env.structured")).unwrap();
    assert!(env.contains("ANTHROPIC_API_KEY=ak-for-the-cli"), "{env}");
    assert!(
        !env.contains("hidden-from-children") && !env.contains("ADMIN_SECRET"),
        "{env}"
    );
    assert!(!env.contains("sentinel-value"), "{env}");
    assert!(env.contains("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"), "{env}");
    assert_env_allowlisted(&env, ChildKind::LlmRunner);
    // It runs in a fresh scratch directory, not the service's (where .env lives).
    let cwd = std::fs::read_to_string(fake.path().join("cwd.structured")).unwrap();
    let cwd = Path::new(cwd.trim());
    assert!(
        !cwd.starts_with(&dir) && !cwd.starts_with(dir.canonicalize().unwrap()),
        "{cwd:?}"
    );
    assert!(!cwd.exists(), "the scratch directory {cwd:?} is removed after the run");

    // A file without `tools` gets none: `--tools ""`, nothing pre-approved.
    let id = post(&app, "/webhook/bare", json!({"mode": "MODE_notools"})).await;
    app.wait_status(id, "done", within).await;
    let argv = argv_of_all(fake.path(), "notools");
    let at = argv.iter().position(|a| a == "--tools").expect("--tools");
    assert_eq!(argv[at + 1], "", "{argv:?}");
    assert!(!argv.iter().any(|a| a == "--allowedTools"), "{argv:?}");

    // A target that is not a .md file never becomes a system prompt.
    let id = post(&app, "/webhook/dotenv", json!({"mode": "MODE_structured"})).await;
    let ev = app.wait_status(id, "error", within).await;
    let err = ev["event"]["last_error"].as_str().unwrap();
    assert!(err.contains("not an agent file") && err.contains(".md"), "{err}");

    // is_error → a retry carrying the CLI's message.
    let id = post(&app, "/webhook", json!({"mode": "MODE_error"})).await;
    let ev = app.wait_status(id, "retry", within).await;
    let err = ev["event"]["last_error"].as_str().unwrap();
    assert!(err.contains("rate limit reached"), "{err}");

    // Non-JSON stdout from a CLI that exited 0 is kept as raw_result.
    let id = post(&app, "/webhook", json!({"mode": "MODE_garbage"})).await;
    let ev = app.wait_status(id, "done", within).await;
    assert_eq!(
        ev["event"]["result"]["result"],
        json!({"raw_result": "Welcome to Claude! this is not json"})
    );

    // `model: inherit` names no model: CLAUDE_AGENT_MODEL applies.
    let id = post(&app, "/webhook/inh", json!({"mode": "MODE_inherit"})).await;
    app.wait_status(id, "done", within).await;
    let argv = argv_of(fake.path(), "inherit");
    let at = argv.iter().position(|a| a == "--model").expect("--model");
    assert_eq!(argv[at + 1], "fallback-model");
    assert!(argv.iter().any(|a| a == "Inherit."), "{argv:?}");

    // A plain-text result is kept as raw_result.
    let id = post(&app, "/webhook", json!({"mode": "MODE_plain"})).await;
    let ev = app.wait_status(id, "done", within).await;
    assert_eq!(ev["event"]["result"]["result"]["raw_result"], "plain words");

    // Timeout kills the process group, grandchildren included.
    let started = Instant::now();
    let id = post(&app, "/webhook", json!({"mode": "MODE_sleep"})).await;
    let ev = app.wait_status(id, "retry", within).await;
    assert!(started.elapsed() < Duration::from_secs(12));
    let err = ev["event"]["last_error"].as_str().unwrap();
    assert!(err.contains("timed out after 1.5s"), "{err}");
    let pid = std::fs::read_to_string(fake.path().join("sleeper.pid")).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let gone = async {
        loop {
            match std::fs::read_to_string(&stat) {
                Err(_) => return,
                Ok(s) if s.contains(") Z ") => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), gone)
        .await
        .expect("the CLI's grandchild was killed");

    // A target outside the working directory is refused for good.
    let id = post(&app, "/webhook/escape", json!({"mode": "MODE_structured", "n": 2})).await;
    let ev = app.wait_status(id, "error", within).await;
    let err = ev["event"]["last_error"].as_str().unwrap();
    assert!(err.contains("outside the working directory"), "{err}");
}

#[tokio::test]
async fn example_config_routes_the_echo_hint_to_the_tool_less_echo_agent() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fake = tempfile::tempdir().unwrap();
    let cli = write_fake_claude(fake.path());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("agents")).unwrap();
    let echo = std::fs::read_to_string(root.join("agents/echo.md")).unwrap();
    std::fs::write(dir.path().join("agents/echo.md"), &echo).unwrap();
    let config = root.join("examples/config.agent.json");
    let out = run_cli(
        dir.path(),
        &[
            "mapping",
            "apply-config",
            "--config",
            config.to_str().unwrap(),
            "--create-db",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let app = App::spawn_in(dir.path(), "serve", &[("CLAUDE_CLI", &cli), ("ADMIN_SECRET", "admin")]);
    let id = post(
        &app,
        "/webhook/echo",
        json!({"any": "payload", "mode": "MODE_structured"}),
    )
    .await;
    let ev = app.wait_status(id, "done", Duration::from_secs(15)).await;
    let result = &ev["event"]["result"];
    assert_eq!(result["router"]["mapped_action"], "echo_action");
    assert_eq!(result["router"]["handler_mode"], "agent");
    assert_eq!(result["result"]["echoed"], true, "{result}");
    let argv = argv_of(fake.path(), "structured");
    let body = echo.split("\n---\n").nth(1).expect("echo.md has front matter").trim();
    let at = argv
        .iter()
        .position(|a| a == "--system-prompt")
        .expect("--system-prompt");
    assert_eq!(argv[at + 1], body);
    assert!(!argv.iter().any(|a| a == "--model"), "echo.md names no model: {argv:?}");
    let at = argv.iter().position(|a| a == "--tools").expect("--tools");
    assert_eq!(
        argv.get(at + 1).map(String::as_str).unwrap_or(""),
        "",
        "echo.md has no tools: {argv:?}"
    );
    assert_eq!(
        argv[argv.iter().position(|a| a == "--permission-mode").unwrap() + 1],
        "dontAsk"
    );

    // Other payloads are not sent to the agent.
    let id = post(&app, "/webhook", json!({"other": "payload"})).await;
    let ev = app.wait_status(id, "done", Duration::from_secs(15)).await;
    assert_eq!(ev["event"]["result"]["result"], json!({"note": "no mapping"}));
}

#[tokio::test]
async fn agent_missing_cli_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".claude/agents")).unwrap();
    std::fs::write(dir.path().join(".claude/agents/echo.md"), ECHO_AGENT).unwrap();
    map(dir.path(), "unknown", "agent", "echo");
    let app = App::spawn_in(
        dir.path(),
        "serve",
        &[("CLAUDE_CLI", "/nonexistent/claude-xyz"), ("ADMIN_SECRET", "admin")],
    );
    let id = post(&app, "/webhook", json!({"k": 1})).await;
    let ev = app.wait_status(id, "retry", Duration::from_secs(15)).await;
    let err = ev["event"]["last_error"].as_str().unwrap();
    assert!(err.contains("CLAUDE_CLI") && err.contains("claude-xyz"), "{err}");
}

// ---- in-process fake LLM servers ----
