//! The `http` handler end to end: a signed POST to an in-process receiver, and the
//! outbound safety rules (CONTRACT §11): private addresses refused after DNS resolution
//! unless allowed, redirects never followed, replies capped at 1 MiB.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

pub(crate) type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// Receivers in these tests listen on 127.0.0.1, which the handler refuses by default.
const ALLOW_PRIVATE: (&str, &str) = ("HTTP_HANDLER_ALLOW_PRIVATE", "1");

/// A receiver answering with `status` (and Retry-After when given), capturing requests.
pub(crate) async fn receiver(status: u16, retry_after: Option<&'static str>) -> (String, Seen) {
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
    let app = App::spawn_in(dir.path(), "serve", &[("HTTP_HANDLER_SECRET", secret), ALLOW_PRIVATE]);
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
    // The whole envelope, as the API shows it, although the row stores it without its
    // defaults (store::stored_payload).
    assert_eq!(sent["payload"], ev["event"]["payload"]);
    assert_eq!(sent["payload"]["method"], "POST");
    assert_eq!(sent["payload"]["query"], json!({}));
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
    let app = App::spawn_in(dir.path(), "serve", &[("HTTP_HANDLER_SECRET", "s"), ALLOW_PRIVATE]);
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
    let app = App::spawn_in(dir.path(), "serve", &[ALLOW_PRIVATE]);
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

/// Spawns the service routing every unknown payload to `url`, posts one event and waits
/// for it to reach `status`; returns the event.
async fn deliver(url: &str, env: &[(&str, &str)], status: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    route_unknown(dir.path(), "forward", "http", url);
    let mut env = env.to_vec();
    env.extend([("HTTP_HANDLER_SECRET", "s"), ("WORKER_MAX_ATTEMPTS", "1")]);
    let app = App::spawn_in(dir.path(), "serve", &env);
    let (_, v) = app.post("/webhook", r#"{"k":"v"}"#, &[]).await;
    app.wait_status(v["row_id"].as_i64().unwrap(), status, Duration::from_secs(15))
        .await
}

#[tokio::test]
async fn private_destinations_are_refused_unless_allowed() {
    let (url, seen) = receiver(200, None).await;
    let ev = deliver(&url, &[], "error").await;
    let err = ev["event"]["last_error"].as_str().unwrap();
    assert!(
        err.contains("127.0.0.1") && err.contains("loopback") && err.contains("HTTP_HANDLER_ALLOW_PRIVATE=1"),
        "{err}"
    );
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");

    // A name that resolves to loopback is refused after resolution, the same way.
    let by_name = url.replace("127.0.0.1", "localhost");
    let ev = deliver(&by_name, &[], "error").await;
    let err = ev["event"]["last_error"].as_str().unwrap();
    assert!(
        err.contains("localhost resolves to") && err.contains("loopback"),
        "{err}"
    );
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");

    // Credentials and query strings of the target stay out of the message.
    let with_creds = url.replace("http://", "http://user:pa55word@") + "?token=t0k";
    let ev = deliver(&with_creds, &[], "error").await;
    let err = ev["event"]["last_error"].as_str().unwrap();
    assert!(!err.contains("pa55word") && !err.contains("t0k"), "{err}");

    let ev = deliver(&by_name, &[ALLOW_PRIVATE], "done").await;
    assert_eq!(ev["event"]["result"]["result"], json!({"received": true}));
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let followed: Arc<Mutex<u32>> = Arc::default();
    let hits = followed.clone();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(|| async { (StatusCode::FOUND, [("location", "/elsewhere")], "") }),
        )
        .route(
            "/elsewhere",
            axum::routing::any(move || {
                let hits = hits.clone();
                async move {
                    *hits.lock().unwrap() += 1;
                    "{}"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let ev = deliver(&format!("http://{addr}/hook"), &[ALLOW_PRIVATE], "error").await;
    let err = ev["event"]["last_error"].as_str().unwrap();
    assert!(
        err.contains("HTTP 302") && err.contains("redirects are not followed"),
        "{err}"
    );
    assert_eq!(*followed.lock().unwrap(), 0, "the redirect target was never requested");
}

/// A raw receiver answering every connection with `head` and then `total` bytes of body
/// in 64 KiB chunks (chunked when `head` says so), ignoring a client that hangs up.
async fn huge_replier(head: &'static str, total: usize, chunked: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(head.as_bytes()).await;
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..total / chunk.len() {
                    let framed = if chunked {
                        [
                            format!("{:x}\r\n", chunk.len()).into_bytes(),
                            chunk.clone(),
                            b"\r\n".to_vec(),
                        ]
                        .concat()
                    } else {
                        chunk.clone()
                    };
                    if sock.write_all(&framed).await.is_err() {
                        return;
                    }
                }
                let _ = sock.write_all(if chunked { b"0\r\n\r\n" } else { b"" }).await;
            });
        }
    });
    format!("http://{addr}/hook")
}

#[tokio::test]
async fn replies_over_one_mebibyte_fail_the_attempt_unstored() {
    const FIVE_MIB: usize = 5 << 20;
    let sized = huge_replier(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5242880\r\n\r\n",
        FIVE_MIB,
        false,
    )
    .await;
    let streamed = huge_replier(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n",
        FIVE_MIB,
        true,
    )
    .await;
    for url in [sized, streamed] {
        let ev = deliver(&url, &[ALLOW_PRIVATE], "error").await;
        let err = ev["event"]["last_error"].as_str().unwrap();
        assert!(err.contains("larger than 1048576 bytes"), "{err}");
        let stored = ev.to_string().len();
        assert!(stored < 64 * 1024, "the event and its runs hold {stored} bytes");
    }
}
