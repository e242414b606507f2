//! The `agent` and `llm` handlers: a fake Claude Code CLI through the real binary, and
//! in-process fake Anthropic / OpenAI servers.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};
use switchyard::handlers::child_env::{self, ChildKind};
use switchyard::handlers::{HandlerConfig, HandlerInput, llm};

use crate::helpers::*;

/// A fake `claude`: picks its behaviour from a `MODE_<x>` marker in the event on stdin,
/// records argv (NUL-separated) and stdin as `argv.<x>` / `stdin.<x>` next to itself.
const FAKE_CLAUDE: &str = r#"#!/bin/sh
d=$(dirname "$0")
input=$(cat)
case "$input" in
  *MODE_structured*) m=structured;;
  *MODE_inherit*) m=inherit;;
  *MODE_error*) m=error;;
  *MODE_garbage*) m=garbage;;
  *MODE_sleep*) m=sleep;;
  *MODE_notools*) m=notools;;
  *) m=other;;
esac
printf '%s\0' "$@" > "$d/argv.$m"
printf '%s' "$input" > "$d/stdin.$m"
env > "$d/env.$m"
pwd > "$d/cwd.$m"
case $m in
  structured|inherit) printf '%s' '{"type":"result","is_error":false,"result":"ok","structured_output":{"echoed":true},"total_cost_usd":0.01,"session_id":"sess-1","num_turns":2}';;
  error) printf '%s' '{"type":"result","is_error":true,"result":"rate limit reached"}'; exit 1;;
  garbage) echo "Welcome to Claude! this is not json";;
  sleep) sleep 30 & echo $! > "$d/sleeper.pid"; wait;;
  *) printf '%s' '{"result":"plain words"}';;
esac
"#;

const ECHO_AGENT: &str = "---\nname: echo\ndescription: echoes\nmodel: fake-model-1\ntools: Read, Grep\n---\nYou are the ECHO-PROMPT agent.\n";

/// An agent file that lists no tools: it gets none.
const BARE_AGENT: &str = "---\nname: bare\n---\nYou have no tools.\n";

/// What Claude Code's `/agents` writes for "same model as the main conversation".
const INHERIT_AGENT: &str =
    "---\nname: inherit\ndescription: inherits\ntools:\n  - Read\nmodel: inherit\ncolor: blue\n---\nInherit.\n";

pub(crate) fn write_fake_claude(dir: &Path) -> String {
    let path = dir.join("claude");
    std::fs::write(&path, FAKE_CLAUDE).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.display().to_string()
}

pub(crate) fn map(dir: &Path, provider: &str, mode: &str, target: &str) {
    let out = run_cli(
        dir,
        &[
            "mapping",
            "set",
            "--provider",
            provider,
            "--action",
            "act",
            "--handler-mode",
            mode,
            "--handler-target",
            target,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

async fn post(app: &App, path: &str, body: Value) -> i64 {
    let (code, v) = app.post(path, &body.to_string(), &[]).await;
    assert_eq!(code, 200, "{v}");
    v["row_id"].as_i64().unwrap()
}

fn argv_of(fake: &Path, mode: &str) -> Vec<String> {
    let raw = std::fs::read(fake.join(format!("argv.{mode}"))).unwrap();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

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
    assert_eq!(argv[pos("--output-format") + 1], "json");
    assert_eq!(argv[pos("--system-prompt") + 1], "You are the ECHO-PROMPT agent.");
    assert_eq!(argv[pos("--model") + 1], "fake-model-1");
    // Exactly the file's tools are offered, and pre-approved for `dontAsk`.
    assert_eq!(argv[pos("--tools") + 1], "Read,Grep");
    assert_eq!(argv[pos("--allowedTools") + 1], "Read,Grep");
    assert_eq!(argv[pos("--json-schema") + 1], r#"{"type":"object"}"#);
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
        &["mapping", "apply-config", "--config", config.to_str().unwrap()],
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

#[derive(Clone)]
struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
    body: String,
    delay: Duration,
    /// Appends the request's credentials to the body (for the key-leak test).
    echo_key: bool,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            retry_after: None,
            body: body.to_string(),
            delay: Duration::ZERO,
            echo_key: false,
        }
    }
}

type Seen = Arc<Mutex<Vec<(String, HeaderMap, Value)>>>;

async fn fake_server(reply: Reply) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
        let (sink, reply) = (sink.clone(), reply.clone());
        async move {
            let json = serde_json::from_str(&body).unwrap_or(Value::Null);
            let mut text = reply.body.clone();
            if reply.echo_key {
                for h in ["x-api-key", "authorization"] {
                    if let Some(v) = headers.get(h) {
                        text = json!({"error": {"message": format!("invalid key {}", v.to_str().unwrap_or(""))}})
                            .to_string();
                    }
                }
            }
            sink.lock().unwrap().push((uri.path().to_owned(), headers, json));
            tokio::time::sleep(reply.delay).await;
            let mut h = HeaderMap::new();
            if let Some(r) = reply.retry_after {
                h.insert("retry-after", r.parse().unwrap());
            }
            (StatusCode::from_u16(reply.status).unwrap(), h, text)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn config(base: &str) -> HandlerConfig {
    let mut cfg = HandlerConfig {
        llm_system_prompt: Some("SYSTEM-PROMPT-X".into()),
        ..HandlerConfig::default()
    };
    cfg.llm.anthropic_base_url = base.to_owned();
    cfg.llm.openai_base_url = format!("{base}/v1");
    cfg.llm.anthropic_api_key = Some("ak-test-123".into());
    cfg.llm.openai_api_key = Some("sk-test-456".into());
    cfg.llm.timeout = Duration::from_secs(5);
    cfg
}

async fn call(cfg: &HandlerConfig, target: &str) -> Result<Value, switchyard::handlers::HandlerError> {
    let (router, payload) = (json!({"provider": "github"}), json!({"json": {"n": 7}}));
    let input = HandlerInput {
        action: "triage",
        router: &router,
        payload: &payload,
    };
    tokio::time::timeout(Duration::from_secs(20), llm::run(cfg, Some(target), &input))
        .await
        .expect("bounded")
}

#[tokio::test]
async fn anthropic_tool_and_text_answers() {
    let tool = json!({"content": [{"type": "tool_use", "name": "respond", "input": {"a": 1}}]});
    let (base, seen) = fake_server(Reply::ok(tool)).await;
    let out = call(&config(&base), "anthropic:claude-test").await.unwrap();
    assert_eq!(out, json!({"a": 1}));
    {
        let seen = seen.lock().unwrap();
        let (path, headers, body) = &seen[0];
        assert_eq!(path, "/v1/messages");
        assert_eq!(headers["x-api-key"], "ak-test-123");
        assert_eq!(headers["anthropic-version"], "2023-06-01");
        assert_eq!(body["model"], "claude-test");
        assert_eq!(body["system"], "SYSTEM-PROMPT-X");
        assert_eq!(body["tools"][0]["name"], "respond");
        assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
        assert_eq!(body["tool_choice"], json!({"type": "tool", "name": "respond"}));
        assert!(body["max_tokens"].as_u64().unwrap() > 0);
        let user: Value = serde_json::from_str(body["messages"][0]["content"].as_str().unwrap()).unwrap();
        assert_eq!(user["action"], "triage");
        assert_eq!(user["payload"]["json"]["n"], 7);
    }

    let text = json!({"content": [{"type": "text", "text": "Sure:\n```json\n{\"b\": 2}\n```"}]});
    let (base, _) = fake_server(Reply::ok(text)).await;
    assert_eq!(call(&config(&base), "anthropic").await.unwrap(), json!({"b": 2}));

    let prose = json!({"content": [{"type": "text", "text": "I cannot do that"}]});
    let (base, _) = fake_server(Reply::ok(prose)).await;
    let err = call(&config(&base), "anthropic").await.unwrap_err();
    assert!(err.message.contains("not a JSON object"), "{err}");
}

#[tokio::test]
async fn openai_content_and_tool_calls() {
    let reply = json!({"choices": [{"message": {"content": "{\"c\": 3}"}}]});
    let (base, seen) = fake_server(Reply::ok(reply)).await;
    let mut cfg = config(&base);
    // LLM_MODEL applies to LLM_PROVIDER's back-end.
    cfg.llm.provider = switchyard::domain::LlmProvider::Openai;
    cfg.llm.model = Some("gpt-test".into());
    assert_eq!(call(&cfg, "openai").await.unwrap(), json!({"c": 3}));
    {
        let seen = seen.lock().unwrap();
        let (path, headers, body) = &seen[0];
        assert_eq!(path, "/v1/chat/completions");
        assert_eq!(headers["authorization"], "Bearer sk-test-456");
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "SYSTEM-PROMPT-X"})
        );
        assert_eq!(body["messages"][1]["role"], "user");
    }
    let reply = json!({"choices": [{"message": {"content": null,
        "tool_calls": [{"function": {"name": "respond", "arguments": "{\"d\": 4}"}}]}}]});
    let (base, _) = fake_server(Reply::ok(reply)).await;
    assert_eq!(call(&config(&base), "openai").await.unwrap(), json!({"d": 4}));
}

#[tokio::test]
async fn provider_errors_retries_and_timeouts() {
    for target in ["anthropic", "openai"] {
        let (base, _) = fake_server(Reply {
            status: 429,
            retry_after: Some("7"),
            ..Reply::ok(json!({"error": {"message": "slow down"}}))
        })
        .await;
        let err = call(&config(&base), target).await.unwrap_err();
        assert_eq!(err.retry_after, Some(Duration::from_secs(7)), "{target}: {err}");
        assert!(!err.permanent && err.message.contains("429") && err.message.contains("slow down"));
        assert_eq!(err.kind.as_deref(), Some("http_429"));

        let (base, _) = fake_server(Reply {
            status: 500,
            ..Reply::ok(json!({"error": {"message": "overloaded"}}))
        })
        .await;
        let err = call(&config(&base), target).await.unwrap_err();
        assert!(!err.permanent && err.message.contains("500"), "{target}: {err}");
        assert_eq!(err.kind.as_deref(), Some("http_500"));

        let (base, _) = fake_server(Reply {
            status: 400,
            ..Reply::ok(json!({"type": "error", "error": {"type": "invalid_request_error", "message": "bad model"}}))
        })
        .await;
        let err = call(&config(&base), target).await.unwrap_err();
        assert!(err.message.contains("bad model"), "{target}: {err}");
        assert!(!err.permanent && err.retry_after.is_none(), "{target}: {err}");

        let (base, _) = fake_server(Reply {
            body: "<html>oops".into(),
            ..Reply::ok(Value::Null)
        })
        .await;
        let err = call(&config(&base), target).await.unwrap_err();
        assert!(
            err.message.contains("malformed") && err.message.contains(target),
            "{err}"
        );
        assert_eq!(err.kind.as_deref(), Some("invalid_response"));

        let (base, _) = fake_server(Reply {
            delay: Duration::from_secs(5),
            ..Reply::ok(json!({}))
        })
        .await;
        let mut cfg = config(&base);
        cfg.llm.timeout = Duration::from_millis(300);
        let started = Instant::now();
        let err = call(&cfg, target).await.unwrap_err();
        assert!(err.message.contains("timed out"), "{target}: {err}");
        assert_eq!(err.kind.as_deref(), Some("timeout"));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

#[tokio::test]
async fn keys_never_leak_and_retry_after_is_honoured() {
    let openai_key = "sk-LEAKCANARY-9f8e7d6c5b4a";
    let anthropic_key = "sk-ant-LEAKCANARY-1a2b3c4d5e";
    // OpenAI: rate limited, echoing the bearer token in its error body.
    let (openai, openai_seen) = fake_server(Reply {
        status: 429,
        retry_after: Some("7"),
        echo_key: true,
        ..Reply::ok(json!({}))
    })
    .await;
    // Anthropic: refuses the key and quotes it back, as some gateways do.
    let (anthropic, anthropic_seen) = fake_server(Reply {
        status: 401,
        echo_key: true,
        ..Reply::ok(json!({}))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    map(dir.path(), "unknown", "llm", "openai:gpt-test");
    map(dir.path(), "anth", "llm", "anthropic:claude-test");
    let openai_base = format!("{openai}/v1");
    let app = App::spawn_in(
        dir.path(),
        "serve",
        &[
            ("OPENAI_API_KEY", openai_key),
            ("OPENAI_BASE_URL", &openai_base),
            ("ANTHROPIC_API_KEY", anthropic_key),
            ("ANTHROPIC_BASE_URL", &anthropic),
            ("ADMIN_SECRET", "admin"),
            ("RUST_LOG", "debug"),
        ],
    );
    let id = post(&app, "/webhook", json!({"k": "v"})).await;
    let ev = app.wait_status(id, "retry", Duration::from_secs(15)).await;
    {
        let seen = openai_seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1["authorization"], format!("Bearer {openai_key}").as_str());
    }
    let e = &ev["event"];
    let err = e["last_error"].as_str().unwrap();
    assert!(err.contains("429") && err.contains("[redacted]"), "{err}");
    let started = chrono::DateTime::parse_from_rfc3339(e["processing_started_at"].as_str().unwrap()).unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(e["next_attempt_at"].as_str().unwrap()).unwrap();
    assert!((next - started).num_milliseconds() >= 7000, "Retry-After honoured: {e}");
    assert!(!ev["action_runs"].as_array().unwrap().is_empty(), "{ev}");

    let id2 = post(&app, "/webhook/anth", json!({"k": "w"})).await;
    let ev2 = app.wait_status(id2, "retry", Duration::from_secs(15)).await;
    assert_eq!(anthropic_seen.lock().unwrap()[0].1["x-api-key"], anthropic_key);
    let err = ev2["event"]["last_error"].as_str().unwrap();
    assert!(err.contains("401") && err.contains("[redacted]"), "{err}");

    for key in [openai_key, anthropic_key] {
        for stored in [&ev, &ev2] {
            assert!(
                !stored.to_string().contains(key),
                "stored event or action runs: {stored}"
            );
        }
        assert!(!app.logs().contains(key), "logs leak the key");
        for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(key),
                "{} leaks the key",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn ai_classifier_overrides_low_confidence_and_survives_failures() {
    let answer = json!({"provider": "acme", "confidence": 0.9, "event_type": null,
        "event_type_path": "meta.kind", "event_id": null, "event_id_path": null, "notes": "acme shape"});
    let reply = json!({"choices": [{"message": {"content": answer.to_string()}}]});
    let (base, seen) = fake_server(Reply::ok(reply)).await;
    let dir = tempfile::tempdir().unwrap();
    map(dir.path(), "acme", "noop", "");
    let openai_base = format!("{base}/v1");
    let env = [
        ("MAPPER_USE_AI", "1"),
        ("LLM_PROVIDER", "openai"),
        ("OPENAI_API_KEY", "sk-classifier-1"),
        ("OPENAI_BASE_URL", openai_base.as_str()),
        ("ADMIN_SECRET", "admin"),
    ];
    let app = App::spawn_in(dir.path(), "serve", &env);
    let within = Duration::from_secs(15);
    let (code, v) = app
        .post(
            "/webhook",
            r#"{"meta":{"kind":"order.created"},"n":1}"#,
            &[("x-acme-signature", "topsecret"), ("user-agent", "acme-hooks/1")],
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let ev = app.wait_status(v["row_id"].as_i64().unwrap(), "done", within).await;
    let router = &ev["event"]["result"]["router"];
    assert_eq!(router["provider"], "acme", "{router}");
    assert_eq!(router["confidence"], 0.9);
    assert_eq!(router["event_type"], "order.created");
    assert_eq!(router["ai_detection"]["notes"], "acme shape");
    assert!(
        router["reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("ai:provider_override"))
    );
    assert_eq!(router["mapped_action"], "act");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let user = seen[0].2["messages"][1]["content"].as_str().unwrap().to_owned();
        let summary: Value = serde_json::from_str(&user).unwrap();
        assert_eq!(summary["top_level_keys"], json!(["meta", "n"]));
        assert_eq!(summary["headers"]["user-agent"], "acme-hooks/1");
        assert!(!user.contains("topsecret"), "{user}");
    }
    // Confident detections never ask.
    let (_, v) = app
        .post("/webhook", r#"{"ref":"x"}"#, &[("x-github-event", "push")])
        .await;
    app.wait_status(v["row_id"].as_i64().unwrap(), "done", within).await;
    assert_eq!(seen.lock().unwrap().len(), 1);

    // A failing back-end, or an answer that is not a classification, only adds a reason.
    let failing = Reply {
        status: 500,
        ..Reply::ok(json!({"error": {"message": "down"}}))
    };
    assert_classifier_failure(&env, failing, "ai:error:http_500").await;
    let reply = json!({"choices": [{"message": {"content": "{\"guess\": \"stripe?\"}"}}]});
    assert_classifier_failure(&env, Reply::ok(reply), "ai:error:invalid_response").await;
}

/// Runs one low-confidence event against a classifier answering `reply`: the event is
/// routed by heuristics, with `reason` added and no `ai_detection`.
async fn assert_classifier_failure(env: &[(&str, &str)], reply: Reply, reason: &str) {
    let (base, _) = fake_server(reply).await;
    let dir = tempfile::tempdir().unwrap();
    let openai_base = format!("{base}/v1");
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|&(k, v)| {
            if k == "OPENAI_BASE_URL" {
                (k, openai_base.as_str())
            } else {
                (k, v)
            }
        })
        .collect();
    let app = App::spawn_in(dir.path(), "serve", &env);
    let (_, v) = app.post("/webhook", r#"{"n":2}"#, &[]).await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(15))
        .await;
    let router = &ev["event"]["result"]["router"];
    assert_eq!(router["provider"], "unknown");
    assert!(
        router["reasons"].as_array().unwrap().contains(&json!(reason)),
        "{router}"
    );
    assert_eq!(router["ai_detection"], Value::Null);
}
