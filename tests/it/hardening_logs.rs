//! CONTRACT §11, second round (issue 32): logs an attacker can write, and event ids.

use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use serde_json::Value;

use crate::helpers::*;

/// Waits until the logs hold `needle` (the log writer batches lines for a few ms).
async fn logs_with(app: &App, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let logs = app.logs();
        if logs.contains(needle) {
            return logs;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no {needle:?} in:\n{logs}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST /webhook` with `{"a":1}` and an `X-Event-Id` of raw bytes.
async fn post_with_id(app: &App, id: &[u8]) -> (u16, Value) {
    let r = client()
        .post(format!("{}/webhook", app.base))
        .header("content-type", "application/json")
        .header("x-event-id", HeaderValue::from_bytes(id).unwrap())
        .body(r#"{"a":1}"#)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn a_path_hint_and_an_event_id_cannot_forge_log_lines() {
    let app = App::spawn("serve", &[]);
    let forged = "/webhook/okprov%0A2026-12-05T03:59:59Z%20%20INFO%20switchyard:%20FORGED%20line%1B%5B31m";
    let (code, v) = app.post(forged, r#"{"a":1}"#, &[]).await;
    assert_eq!(code, 200, "{v}");
    app.wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(20))
        .await;
    // A bidi override in an id would show `evt-exe.pdf` as `evt-fdp.exe`.
    let (code, v) = post_with_id(&app, "evt-\u{202e}fdp.exe".as_bytes()).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["event_id"], "evt-\u{202e}fdp.exe", "stored as sent, so it dedupes");
    let logs = logs_with(&app, r"event_id=evt-\u{202e}fdp.exe").await;
    // The hint is logged (lower-cased as the provider), escaped on its one line.
    assert!(logs.contains(r"provider=okprov\n2026-12-05t03:59:59z"), "{logs}");
    assert!(
        !logs
            .lines()
            .any(|l| l.to_lowercase().starts_with("2026-12-05t03:59:59z")),
        "a forged line:\n{logs}"
    );
    assert!(
        !logs.contains('\u{1b}') && !logs.contains('\u{202e}'),
        "raw ESC or bidi:\n{logs:?}"
    );
}

#[tokio::test]
async fn long_and_non_utf8_event_ids_are_refused() {
    let app = App::spawn("http", &[]);
    // Not UTF-8: refused, not silently replaced by the body hash (which would merge two
    // deliveries that differ only in their id).
    let (code, v) = post_with_id(&app, b"evt-\xff\xfe").await;
    assert_eq!(code, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("x-event-id"), "{v}");
    let (code, v) = post_with_id(&app, "x".repeat(513).as_bytes()).await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = post_with_id(&app, "x".repeat(512).as_bytes()).await;
    assert_eq!(code, 200, "{v}");
    // UTF-8 beyond ASCII is an id like any other (it used to fall back to the body hash).
    let (code, v) = post_with_id(&app, "évt-42".as_bytes()).await;
    assert_eq!((code, v["event_id"].as_str()), (200, Some("évt-42")), "{v}");
    // A JSON `id` of 1 MB is refused, not stored and logged on every attempt.
    let body = serde_json::json!({"id": "i".repeat(1 << 20)}).to_string();
    let (code, v) = app.post("/webhook", &body, &[]).await;
    assert_eq!(code, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("at most 512"), "{v}");
    let (_, list) = app.get("/events", &[]).await;
    assert_eq!(list["events"].as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn an_http_target_is_logged_without_credentials_or_query() {
    let dir = tempfile::tempdir().unwrap();
    // Refused (loopback), so the attempt fails at once; its log line still names the target.
    let target = "http://user:pw-s3cret@127.0.0.1:9/hook?token=tok-s3cret";
    route_unknown(dir.path(), "post_it", "http", target);
    let app = App::spawn_in(dir.path(), "serve", &[("WORKER_MAX_ATTEMPTS", "1")]);
    let (code, v) = app.post("/webhook", r#"{"a":1}"#, &[]).await;
    assert_eq!(code, 200, "{v}");
    app.wait_status(v["row_id"].as_i64().unwrap(), "error", Duration::from_secs(20))
        .await;
    let logs = logs_with(&app, "event attempt finished").await;
    assert!(logs.contains("target=http://127.0.0.1:9/hook?[redacted]"), "{logs}");
    assert!(!logs.contains("s3cret"), "a credential was logged:\n{logs}");
}
