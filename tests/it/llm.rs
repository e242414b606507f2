//! The `llm` handler and the AI classifier against in-process fake Anthropic / OpenAI
//! servers, and the fake Claude Code CLI the `agent` tests (`crate::agent`) share.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};
use switchyard::handlers::{HandlerConfig, HandlerInput, llm};

use crate::helpers::*;

/// A fake `claude`: picks its behaviour from a `MODE_<x>` marker in the event on stdin,
/// records argv (NUL-separated), stdin, environment and working directory as `argv.<x>`,
/// `stdin.<x>`, `env.<x>` and `cwd.<x>` next to itself.
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

/// Installs [`FAKE_CLAUDE`] in `dir` and returns its path.
pub(crate) fn write_fake_claude(dir: &Path) -> String {
    let path = dir.join("claude");
    std::fs::write(&path, FAKE_CLAUDE).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// Maps `provider` to action `act` with handler `mode` and `target`, via the CLI.
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
            "--create-db",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Posts `body` to `path` and returns the new row id.
pub(crate) async fn post(app: &App, path: &str, body: Value) -> i64 {
    let (code, v) = app.post(path, &body.to_string(), &[]).await;
    assert_eq!(code, 200, "{v}");
    v["row_id"].as_i64().unwrap()
}

/// The argv the fake CLI recorded for `mode`, without empty arguments.
pub(crate) fn argv_of(fake: &Path, mode: &str) -> Vec<String> {
    let raw = std::fs::read(fake.join(format!("argv.{mode}"))).unwrap();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

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
        ..switchyard::handler_config(&switchyard::settings::Settings::defaults())
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
        debounced: None,
    };
    tokio::time::timeout(Duration::from_secs(20), llm::run(cfg, Some(target), &input))
        .await
        .expect("bounded")
        .answer
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
