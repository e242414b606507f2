//! Usage, failed-on-denial and transcripts of agent runs with the **real** Claude Code CLI
//! against a scripted fake of the Anthropic Messages API (CONTRACT §14, issue 29
//! acceptance 1 and 2). The fake reports known token counts on every reply.
//!
//! Each event's payload names what the fake model does: `E2E-OK` answers with JSON text
//! (holding a configured secret), `E2E-DENY` first calls `Bash` (which the permission mode
//! denies) and then answers, `E2E-TURNS` calls `Read` forever (the run ends
//! `error_max_turns`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::claude_e2e::{claude_cli, sse_message};
use crate::helpers::*;

/// The admin secret, which the fake model puts in its answer.
const SECRET: &str = "admin-e2e-secret-9f2c";
/// Token counts of every fake reply.
const INPUT: u64 = 12;
const OUTPUT: u64 = 9;
const CACHE_READ: u64 = 5;
const CACHE_CREATION: u64 = 3;

/// A fake Anthropic API on 127.0.0.1 that follows the script in the request; returns its
/// base URL and the Messages requests it received.
async fn scripted_anthropic() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = seen.clone();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, body: String| {
        let sink = sink.clone();
        async move {
            match (method, uri.path()) {
                (Method::POST, "/v1/messages") => {
                    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    sink.lock().unwrap().push(body.clone());
                    reply(&body)
                }
                (Method::HEAD | Method::GET, "/") => StatusCode::OK.into_response(),
                _ => (StatusCode::NOT_FOUND, "{}").into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

/// The scripted reply to one Messages request, as server-sent events.
fn reply(request: &Value) -> Response {
    let text = request.to_string();
    let after_tool = text.contains("tool_result");
    let (block, delta, stop) = if text.contains("E2E-TURNS") || (text.contains("E2E-DENY") && !after_tool) {
        let (tool, input) = if text.contains("E2E-TURNS") {
            ("Read", json!({"file_path": "/nonexistent/e2e.txt"}))
        } else {
            ("Bash", json!({"command": "touch e2e-denied-marker"}))
        };
        (
            json!({"type": "tool_use", "id": format!("toolu_{}", fastrand::u32(..)), "name": tool, "input": {}}),
            json!({"type": "input_json_delta", "partial_json": input.to_string()}),
            "tool_use",
        )
    } else {
        let answer = json!({"verdict": "looks fine", "token": SECRET}).to_string();
        (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": answer}),
            "end_turn",
        )
    };
    let usage = json!({"input_tokens": INPUT, "cache_read_input_tokens": CACHE_READ,
        "cache_creation_input_tokens": CACHE_CREATION});
    sse_message(request, block, delta, stop, usage, OUTPUT)
}

/// The transcript of an event's first run, as text.
async fn transcript(app: &App, row_id: i64, run_id: i64) -> (u16, String) {
    let resp = client()
        .get(format!("{}/events/{row_id}/runs/{run_id}/transcript", app.base))
        .header("x-admin-secret", SECRET)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Waits for an event to reach `status` (the admin secret is not the helpers' default).
async fn wait(app: &App, row_id: i64, status: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (_, v) = app
            .get(&format!("/events/{row_id}"), &[("x-admin-secret", SECRET)])
            .await;
        if v["event"]["status"] == status {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "event {row_id} not {status}: {v}\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn real_claude_cli_runs_report_usage_transcripts_and_denials() {
    let Some(cli) = claude_cli() else { return };
    let (base_url, seen) = scripted_anthropic().await;
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("agents")).unwrap();
    std::fs::write(
        dir.path().join("agents/plain.md"),
        "---\nname: plain\n---\nYou summarise webhook events. Answer with one JSON object.\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("agents/reader.md"),
        "---\nname: reader\ntools: Read\n---\nYou read files. Answer with one JSON object.\n",
    )
    .unwrap();
    let cli = cli.display().to_string();
    let home_dir = home.path().display().to_string();
    // CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC is not set here: switchyard sets it.
    let app = App::spawn_in(
        dir.path(),
        "serve",
        &[
            ("CLAUDE_CLI", cli.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant-e2e-usage"),
            ("ANTHROPIC_BASE_URL", base_url.as_str()),
            ("HOME", home_dir.as_str()),
            ("ADMIN_SECRET", SECRET),
            ("CLAUDE_AGENT_MODEL", "claude-sonnet-4-5"),
            ("CLAUDE_AGENT_DEFAULT_TOOLS", "all"),
            ("WORKER_MAX_ATTEMPTS", "1"),
        ],
    );

    // 1. A plain run: usage as the fake reported it, a transcript, a redacted secret.
    route_unknown(dir.path(), "summarise", "agent", "plain");
    let (_, v) = app.post("/webhook", r#"{"ticket": "E2E-OK"}"#, &[]).await;
    let row_id = v["row_id"].as_i64().unwrap();
    let ev = wait(&app, row_id, "done").await;
    assert_eq!(ev["event"]["result"]["result"]["verdict"], "looks fine", "{ev}");
    let requests = seen.lock().unwrap().len();
    assert_eq!(requests, 1, "one Messages request: no session title, no schema retry");
    let run = &ev["action_runs"][0];
    let usage = &run["usage"];
    assert_eq!(usage["input_tokens"], INPUT, "{usage}");
    assert_eq!(usage["output_tokens"], OUTPUT, "{usage}");
    assert_eq!(usage["cache_read_tokens"], CACHE_READ, "{usage}");
    assert_eq!(usage["cache_creation_tokens"], CACHE_CREATION, "{usage}");
    assert_eq!(usage["num_turns"], 1, "{usage}");
    assert_eq!(usage["stop"], "success", "{usage}");
    assert_eq!(usage["model"], "claude-sonnet-4-5", "{usage}");
    assert!(usage["cost_usd"].as_f64().unwrap() > 0.0, "{usage}");
    assert!(usage["session_id"].as_str().is_some_and(|s| !s.is_empty()), "{usage}");
    assert!(usage["duration_ms"].as_u64().is_some(), "{usage}");

    let (code, text) = transcript(&app, row_id, run["id"].as_i64().unwrap()).await;
    assert_eq!(code, 200, "{text}");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["type"], "system", "{text}");
    assert_eq!(lines[0]["subtype"], "init", "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "assistant" && l.to_string().contains("looks fine")),
        "{text}"
    );
    assert_eq!(lines.last().unwrap()["type"], "result", "{text}");
    assert!(!text.contains(SECRET), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
    assert!(
        !text.contains("sk-ant-e2e-usage"),
        "the API key is never in a transcript"
    );
    let (code, _) = transcript(&app, row_id, 999_999).await;
    assert_eq!(code, 404);

    // 2. A denied tool call fails the attempt although the CLI exits 0.
    route_unknown(dir.path(), "denied", "agent", "plain");
    let (_, v) = app.post("/webhook", r#"{"ticket": "E2E-DENY"}"#, &[]).await;
    let ev = wait(&app, v["row_id"].as_i64().unwrap(), "error").await;
    let error = ev["event"]["last_error"].as_str().unwrap();
    assert!(error.contains("denied") && error.contains("Bash"), "{error}");
    assert_eq!(ev["action_runs"][0]["status"], "error", "{ev}");
    assert!(
        ev["action_runs"][0]["usage"]["cost_usd"].as_f64().unwrap() > 0.0,
        "{ev}"
    );

    // 3. Running out of turns fails the attempt (exit 0, subtype error_max_turns).
    route_unknown(dir.path(), "reads", "agent", "reader");
    let (_, v) = app.post("/webhook", r#"{"ticket": "E2E-TURNS"}"#, &[]).await;
    let ev = wait(&app, v["row_id"].as_i64().unwrap(), "error").await;
    let error = ev["event"]["last_error"].as_str().unwrap();
    assert!(error.contains("error_max_turns"), "{error}");
    assert_eq!(ev["action_runs"][0]["usage"]["stop"], "error_max_turns", "{ev}");

    // 4. An `llm` run through the CLI: one request too (no `--json-schema` for "any object").
    route_unknown(dir.path(), "llm_cli", "llm", "claude-cli");
    let before = seen.lock().unwrap().len();
    let (_, v) = app.post("/webhook", r#"{"ticket": "E2E-OK", "n": 4}"#, &[]).await;
    let ev = wait(&app, v["row_id"].as_i64().unwrap(), "done").await;
    assert_eq!(ev["event"]["result"]["result"]["verdict"], "looks fine", "{ev}");
    let usage = &ev["action_runs"][0]["usage"];
    assert_eq!(seen.lock().unwrap().len() - before, 1, "{usage}");
    assert_eq!(usage["input_tokens"], INPUT, "{usage}");
}
