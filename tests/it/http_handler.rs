//! The `http` handler end to end: a signed POST to an in-process receiver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A receiver answering with `status` (and Retry-After when given), capturing requests.
async fn receiver(status: u16, retry_after: Option<&'static str>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push((headers, body));
                let mut h = HeaderMap::new();
                if let Some(r) = retry_after {
                    h.insert("retry-after", r.parse().unwrap());
                }
                (StatusCode::from_u16(status).unwrap(), h, r#"{"received":true}"#)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

#[tokio::test]
async fn posts_signed_event_and_stores_the_reply() {
    let (url, seen) = receiver(200, None).await;
    let dir = tempfile::tempdir().unwrap();
    route_unknown(dir.path(), "forward", "http", &url);
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let app = App::spawn_in(dir.path(), "serve", &[("HTTP_HANDLER_SECRET", secret)]);
    let (_, v) = app.post("/webhook", r#"{"k":"v"}"#, &[]).await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(10))
        .await;
    assert_eq!(ev["event"]["result"]["result"], json!({"received": true}));

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    let sent: Value = serde_json::from_str(body).unwrap();
    assert_eq!(sent["action"], "forward");
    assert_eq!(sent["payload"]["json"], json!({"k": "v"}));
    let id = headers["webhook-id"].to_str().unwrap();
    let ts: u64 = headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
    let expected = switchyard::handlers::http::sign(
        &switchyard::handlers::http::secret_bytes(secret),
        id,
        ts,
        body.as_bytes(),
    );
    assert_eq!(headers["webhook-signature"].to_str().unwrap(), expected);
}

#[tokio::test]
async fn retryable_and_permanent_statuses() {
    let (url, _) = receiver(503, Some("7")).await;
    let dir = tempfile::tempdir().unwrap();
    route_unknown(dir.path(), "forward", "http", &url);
    let app = App::spawn_in(dir.path(), "serve", &[("HTTP_HANDLER_SECRET", "s")]);
    let (_, v) = app.post("/webhook", r#"{"k":1}"#, &[]).await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "retry", Duration::from_secs(10))
        .await;
    let e = &ev["event"];
    assert!(e["last_error"].as_str().unwrap().contains("503"), "{e}");
    let started = chrono::DateTime::parse_from_rfc3339(e["processing_started_at"].as_str().unwrap()).unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(e["next_attempt_at"].as_str().unwrap()).unwrap();
    assert!((next - started).num_milliseconds() >= 7000, "Retry-After honoured: {e}");

    // Without a signing key the handler refuses to send, naming the setting.
    let (url, seen) = receiver(200, None).await;
    let dir = tempfile::tempdir().unwrap();
    route_unknown(dir.path(), "forward", "http", &url);
    let app = App::spawn_in(dir.path(), "serve", &[]);
    let (_, v) = app.post("/webhook", r#"{"k":2}"#, &[]).await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "error", Duration::from_secs(10))
        .await;
    assert!(
        ev["event"]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP_HANDLER_SECRET")
    );
    assert!(seen.lock().unwrap().is_empty());
}
