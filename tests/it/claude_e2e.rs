//! The `agent` handler with the **real** Claude Code CLI against an in-process fake of the
//! Anthropic Messages API (CONTRACT §11, issue 12 acceptance 3b).
//!
//! This guards the argv we build against changes of the CLI, which fakes of the CLI cannot:
//! default settings, run as whatever user CI is (root), must end `done`, and the request
//! the CLI sends must offer the model only the agent file's tools.
//!
//! The CLI comes from `CLAUDE_E2E_CLI`, else `.ci/node/node_modules/.bin/claude` (where
//! `.ci/run` installs the pinned npm package). Without it the test is skipped with a
//! printed reason — unless `CI` is set, where a missing CLI is a failure.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::helpers::*;

/// The tool Claude Code adds for `--json-schema` (its structured output channel).
const STRUCTURED_OUTPUT_TOOL: &str = "StructuredOutput";

/// Finds the CLI, or `None` (after saying why) when this run may skip the test.
pub(crate) fn claude_cli() -> Option<PathBuf> {
    let path = match std::env::var_os("CLAUDE_E2E_CLI") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/.ci/node/node_modules/.bin/claude"
        )),
    };
    if path.is_file() {
        return Some(path);
    }
    let reason = format!(
        "the Claude Code CLI is not at {} (run .ci/run, or set CLAUDE_E2E_CLI)",
        path.display()
    );
    assert!(std::env::var_os("CI").is_none(), "CI is set and {reason}");
    eprintln!("skipping the real Claude Code CLI test: {reason}");
    None
}

/// One request the fake API received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Value,
}

/// What the fake model answers.
fn answer() -> Value {
    json!({"verdict": "looks fine", "checked": 2})
}

/// A fake Anthropic API on 127.0.0.1: `POST /v1/messages` streams one assistant message.
async fn fake_anthropic() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let sink = seen.clone();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: String| {
        let sink = sink.clone();
        async move {
            let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let path = uri.path().to_owned();
            sink.lock().unwrap().push(Seen {
                method: method.clone(),
                path: path.clone(),
                headers,
                body: body.clone(),
            });
            match (method, path.as_str()) {
                (Method::POST, "/v1/messages") => stream_reply(&body),
                // The CLI checks that the base URL answers before it starts.
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

/// The answer as Messages API server-sent events: through the structured-output tool when
/// the CLI offers it, else as JSON text.
fn stream_reply(request: &Value) -> Response {
    let offers_structured = tool_names(request).iter().any(|t| t == STRUCTURED_OUTPUT_TOOL);
    let text = answer().to_string();
    let (block, delta, stop) = if offers_structured {
        (
            json!({"type": "tool_use", "id": "toolu_e2e_1", "name": STRUCTURED_OUTPUT_TOOL, "input": {}}),
            json!({"type": "input_json_delta", "partial_json": text}),
            "tool_use",
        )
    } else {
        (
            json!({"type": "text", "text": ""}),
            json!({"type": "text_delta", "text": text}),
            "end_turn",
        )
    };
    let usage = json!({"input_tokens": 12, "output_tokens": 1});
    sse_message(request, block, delta, stop, usage, 9)
}

/// One assistant message as Messages API server-sent events: one content block (`block`
/// filled by `delta`), `stop` as its stop reason; `usage` opens it and `output_tokens`
/// closes it.
pub(crate) fn sse_message(
    request: &Value,
    block: Value,
    delta: Value,
    stop: &str,
    mut usage: Value,
    output_tokens: u64,
) -> Response {
    let model = request["model"].as_str().unwrap_or("claude-test");
    usage["output_tokens"] = json!(1);
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_e2e", "type": "message",
                "role": "assistant", "model": model, "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": usage}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": block}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": output_tokens}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let body: String = events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect();
    ([("content-type", "text/event-stream")], body).into_response()
}

/// Names of the tools a Messages request offers.
fn tool_names(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The tools offered to the model, without the CLI's own structured-output channel.
fn offered_tools(request: &Value) -> Vec<String> {
    let mut tools: Vec<String> = tool_names(request)
        .into_iter()
        .filter(|t| t != STRUCTURED_OUTPUT_TOOL)
        .collect();
    tools.sort();
    tools
}

#[tokio::test]
async fn real_claude_cli_runs_an_agent_with_only_its_tools() {
    let Some(cli) = claude_cli() else { return };
    let (base_url, seen) = fake_anthropic().await;
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("agents")).unwrap();
    std::fs::write(
        dir.path().join("agents/triage.md"),
        "---\nname: triage\ntools: Read, Grep\n---\nYou triage webhook events. Answer with one JSON object.\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("agents/plain.md"),
        "---\nname: plain\n---\nYou summarise webhook events. Answer with one JSON object.\n",
    )
    .unwrap();
    route_unknown(dir.path(), "triage_it", "agent", "triage");
    let cli = cli.display().to_string();
    let home_dir = home.path().display().to_string();
    // Default agent settings (permission mode, tools): only what the CLI needs is set.
    let app = App::spawn_in(
        dir.path(),
        "serve",
        &[
            ("CLAUDE_CLI", cli.as_str()),
            ("ANTHROPIC_API_KEY", "sk-ant-e2e-test"),
            ("ANTHROPIC_BASE_URL", base_url.as_str()),
            ("HOME", home_dir.as_str()),
            // No telemetry, update checks or other calls beyond the fake API.
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            ("ADMIN_SECRET", "admin"),
        ],
    );

    let (code, v) = app.post("/webhook", r#"{"ticket": "E2E-1"}"#, &[]).await;
    assert_eq!(code, 200, "{v}");
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(120))
        .await;
    let result = &ev["event"]["result"]["result"];
    assert_eq!(result["verdict"], "looks fine", "{ev}");
    assert_eq!(result["checked"], 2, "{ev}");

    let first = last_messages_request(&seen);
    assert_eq!(
        offered_tools(&first.body),
        ["Grep", "Read"],
        "{:?}",
        tool_names(&first.body)
    );
    assert_eq!(first.headers["x-api-key"], "sk-ant-e2e-test");
    assert!(
        first.body.to_string().contains("You triage webhook events"),
        "system prompt sent"
    );
    assert!(first.body.to_string().contains("E2E-1"), "the event reached the model");

    // An agent file with no `tools` gets none at all.
    route_unknown(dir.path(), "plain_it", "agent", "plain");
    let (_, v) = app.post("/webhook", r#"{"ticket": "E2E-2"}"#, &[]).await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(120))
        .await;
    assert_eq!(ev["event"]["result"]["result"]["verdict"], "looks fine", "{ev}");
    let second = last_messages_request(&seen);
    assert!(second.body.to_string().contains("E2E-2"));
    assert_eq!(
        offered_tools(&second.body),
        Vec::<String>::new(),
        "{:?}",
        tool_names(&second.body)
    );
}

/// The latest `POST /v1/messages` the fake received.
fn last_messages_request(seen: &Mutex<Vec<Seen>>) -> Seen {
    let seen = seen.lock().unwrap();
    seen.iter()
        .rev()
        .find(|s| s.method == Method::POST && s.path == "/v1/messages")
        .cloned()
        .unwrap_or_else(|| panic!("the CLI sent no Messages request; it sent: {seen:?}"))
}
