//! CONTRACT §2: replies, auth, limits, dedupe, signatures, hostile input.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

const SECRETS: &[(&str, &str)] = &[
    ("INGRESS_SECRET", "ingress"),
    ("CRON_SECRET", "cron"),
    ("ADMIN_SECRET", "admin"),
];

#[tokio::test]
async fn healthz_and_unknown_routes() {
    let app = App::spawn("http", SECRETS);
    assert_eq!(app.get("/healthz", &[]).await, (200, json!({"ok": true})));
    let (code, v) = app.get("/nope", &[]).await;
    assert_eq!((code, v["ok"].clone()), (404, json!(false)));
    let (code, v) = app.get("/webhook", &[]).await;
    assert_eq!((code, v["ok"].clone()), (405, json!(false)));
}

#[tokio::test]
async fn every_route_checks_its_secret() {
    let app = App::spawn("http", SECRETS);
    // The body names the header that must carry the secret (issue 31), never its value.
    let unauthorized = |header: &str| json!({"ok": false, "error": "unauthorized", "expected_header": header});
    let ingress = unauthorized("X-Ingress-Secret");
    assert_eq!(app.post("/webhook", "{}", &[]).await, (401, ingress.clone()));
    assert_eq!(
        app.post("/webhook/github", "{}", &[("x-ingress-secret", "wrong")])
            .await,
        (401, ingress.clone())
    );
    assert_eq!(
        app.post("/cron/enqueue?job=j", "", &[("x-ingress-secret", "ingress")])
            .await,
        (401, unauthorized("X-Cron-Secret"))
    );
    assert_eq!(
        app.post("/cron/enqueue?job=j", "", &[("x-cron-secret", "cron")]).await,
        (401, ingress)
    );
    let admin = unauthorized("X-Admin-Secret");
    assert_eq!(app.get("/events/1", &[]).await, (401, admin.clone()));
    assert_eq!(app.get("/events/1", &[("x-admin-secret", "nope")]).await, (401, admin));

    let (code, v) = app
        .post(
            "/webhook",
            r#"{"a":1}"#,
            &[("x-ingress-secret", "ingress"), ("x-event-id", "e1")],
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["status"], "queued");
    assert_eq!(v["event_id"], "e1");
    let row = v["row_id"].as_i64().unwrap();

    let (code, v) = app.get(&format!("/events/{row}"), &[ADMIN]).await;
    assert_eq!(code, 200);
    assert_eq!(v["ok"], true);
    let ev = &v["event"];
    for key in [
        "id",
        "source",
        "event_id",
        "received_at",
        "status",
        "attempt_count",
        "next_attempt_at",
        "processing_started_at",
        "processed_at",
        "payload_json",
        "result_json",
        "last_error",
        "payload",
        "result",
    ] {
        assert!(ev.get(key).is_some(), "event lacks {key}: {ev}");
    }
    assert_eq!(ev["source"], "webhook");
    assert!(ev["payload_json"].is_string());
    assert_eq!(ev["payload"]["json"], json!({"a": 1}));
    assert_eq!(ev["payload"]["source_hint"], json!(null));
    assert_eq!(ev["payload"]["path"], "/webhook");
    // The text for old scripts: the contract's envelope in its order, although the row
    // stores it without its defaults (store::stored_payload).
    let text = ev["payload_json"].as_str().unwrap();
    assert!(
        text.starts_with(r#"{"source_hint":null,"method":"POST","path":"/webhook","query":{},"content_type":"#),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<serde_json::Value>(text).unwrap(), ev["payload"]);
    assert!(ev["received_at"].as_str().unwrap().ends_with("+00:00"));
    assert!(v["action_runs"].is_array());

    assert_eq!(app.get("/events/abc", &[ADMIN]).await.0, 400);
    assert_eq!(app.get("/events/999999", &[ADMIN]).await.0, 404);

    let (code, v) = app
        .post(
            "/cron/enqueue?job=nightly",
            "",
            &[("x-ingress-secret", "ingress"), ("x-cron-secret", "cron")],
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert!(v["event_id"].as_str().unwrap().starts_with("cron:nightly:"));
    let (code, v) = app
        .post(
            "/cron/enqueue",
            "",
            &[("x-ingress-secret", "ingress"), ("x-cron-secret", "cron")],
        )
        .await;
    assert_eq!((code, v["ok"].clone()), (400, json!(false)));
}

#[tokio::test]
async fn dedupe_across_paths_and_under_concurrency() {
    let app = App::spawn("http", &[]);
    let (_, first) = app.post("/webhook", r#"{"x":1}"#, &[("x-event-id", "same")]).await;
    assert_eq!(first["status"], "queued");
    let (code, dup) = app.post("/webhook/x", r#"{"x":2}"#, &[("x-event-id", "same")]).await;
    assert_eq!(code, 200);
    assert_eq!(
        dup,
        json!({"ok": true, "status": "duplicate_ignored", "row_id": first["row_id"], "event_id": "same"})
    );

    // 40 concurrent identical requests: one row, everyone told the same row id.
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let base = app.base.clone();
        tasks.push(tokio::spawn(async move {
            let resp = client()
                .post(format!("{base}/webhook/github"))
                .header("content-type", "application/json")
                .header("x-github-delivery", "d-40")
                .body(r#"{"zen":"z"}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<serde_json::Value>().await.unwrap()
        }));
    }
    let mut queued = 0;
    let mut rows = std::collections::HashSet::new();
    for t in tasks {
        let v = t.await.unwrap();
        if v["status"] == "queued" {
            queued += 1;
        }
        rows.insert(v["row_id"].as_i64().unwrap());
    }
    assert_eq!(queued, 1);
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn json_id_and_body_hash_event_ids() {
    let app = App::spawn("http", &[]);
    let (_, v) = app.post("/webhook", r#"{"id":"evt_0123456789"}"#, &[]).await;
    assert_eq!(v["event_id"], "evt_0123456789");
    let (_, v) = app.post("/webhook", r#"{"id":"short"}"#, &[]).await;
    assert!(v["event_id"].as_str().unwrap().starts_with("sha256:"));
    let (_, again) = app.post("/webhook/other", r#"{"id":"short"}"#, &[]).await;
    assert_eq!(again["status"], "duplicate_ignored");
}

#[tokio::test]
async fn signature_required_when_secret_set() {
    let app = App::spawn("http", &[("WEBHOOK_SECRET", "s3cret"), ("ADMIN_SECRET", "admin")]);
    let body = r#"{"hello":"world"}"#;
    let invalid = json!({"ok": false, "error": "invalid signature"});
    assert_eq!(app.post("/webhook", body, &[]).await, (401, invalid.clone()));
    assert_eq!(
        app.post("/webhook", body, &[("x-signature", "sha256=00")]).await,
        (401, invalid.clone())
    );
    let sig = sign("s3cret", body);
    assert_eq!(
        app.post("/webhook", r#"{"hello":"w0rld"}"#, &[("x-signature", &sig)])
            .await,
        (401, invalid)
    );
    let (code, v) = app
        .post("/webhook", body, &[("x-signature", &format!("sha256={sig}"))])
        .await;
    assert_eq!((code, v["status"].clone()), (200, json!("queued")));
    let (code, v) = app
        .post("/webhook/t", body, &[("x-signature", &sig), ("x-event-id", "bare")])
        .await;
    assert_eq!((code, v["status"].clone()), (200, json!("queued")), "bare hex accepted");
}

#[tokio::test]
async fn fireflies_signature_checked_when_present() {
    let app = App::spawn("http", &[("FIREFLIES_WEBHOOK_SECRET", "ff")]);
    let body = r#"{"meetingId":"m","eventType":"Transcription completed"}"#;
    assert_eq!(
        app.post("/webhook", body, &[("x-hub-signature", "sha256=bad")]).await.0,
        401
    );
    let sig = sign("ff", body);
    assert_eq!(app.post("/webhook", body, &[("x-hub-signature", &sig)]).await.0, 200);
    assert_eq!(
        app.post("/webhook", r#"{"other":1}"#, &[]).await.0,
        200,
        "requests without the header pass"
    );
}

#[tokio::test]
async fn empty_and_oversized_bodies_store_nothing() {
    // After a 413 the server reads (and discards) the refused upload until the body
    // timeout, so that the client can read its reply; a short timeout keeps this test quick.
    let app = App::spawn("http", &[("ADMIN_SECRET", "admin"), ("BODY_READ_TIMEOUT_SECONDS", "2")]);
    let (code, v) = app.post("/webhook", "", &[]).await;
    assert_eq!((code, v["ok"].clone()), (400, json!(false)));
    let big = format!("\"{}\"", "a".repeat(2 * 1024 * 1024 - 1)); // exactly 2 MiB + 1
    assert_eq!(big.len(), 2 * 1024 * 1024 + 1);
    // A declared length over the limit is answered at once, before any body is read.
    let addr = app.base.trim_start_matches("http://").to_string();
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains(r#""ok":false"#), "{reply}");
    // A client that sends the whole body anyway sees the 413, or the connection closed on
    // the upload it was refused (the server does not read what it will not store).
    let sent = client()
        .post(format!("{}/webhook", app.base))
        .body(big.clone())
        .send()
        .await;
    if let Ok(resp) = sent {
        assert_eq!(resp.status(), 413);
    }
    // Without Content-Length (chunked), the limit still holds.
    let addr = app.base.trim_start_matches("http://").to_string();
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let head =
            "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(format!("{:x}\r\n", big.len()).as_bytes());
        let _ = s.write_all(big.as_bytes());
        let _ = s.write_all(b"\r\n0\r\n\r\n");
        let mut out = vec![0u8; 4096];
        let n = s.read(&mut out).unwrap_or(0);
        String::from_utf8_lossy(&out[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    // Exactly at the limit is accepted: 2 MiB.
    let ok = format!("\"{}\"", "a".repeat(2 * 1024 * 1024 - 2));
    let (code, v) = app.post("/webhook", &ok, &[]).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["row_id"], 1, "nothing was stored for the refused requests");
}

#[tokio::test]
async fn payload_envelope_shapes() {
    let app = App::spawn("http", &[]);
    let cases = [("application/json", "[1,2]", json!({"_non_object_json": true}))];
    for (ct, body, expected) in cases {
        let resp = client()
            .post(format!("{}/webhook/Hint?k=v", app.base))
            .header("content-type", ct)
            .header("X-Custom", "Yes")
            .body(body)
            .send()
            .await
            .unwrap();
        let row = resp.json::<serde_json::Value>().await.unwrap()["row_id"]
            .as_i64()
            .unwrap();
        let (_, v) = app.get(&format!("/events/{row}"), &[]).await;
        let p = &v["event"]["payload"];
        assert_eq!(p["json"], expected);
        assert_eq!(p["source_hint"], "Hint");
        assert_eq!(p["query"], json!({"k": "v"}));
        assert_eq!(p["headers"]["x-custom"], "Yes");
        assert_eq!(p["method"], "POST");
    }
    let resp = client()
        .post(format!("{}/webhook", app.base))
        .header("content-type", "application/json")
        .body("{bad")
        .send()
        .await
        .unwrap();
    let row = resp.json::<serde_json::Value>().await.unwrap()["row_id"]
        .as_i64()
        .unwrap();
    let (_, v) = app.get(&format!("/events/{row}"), &[]).await;
    assert_eq!(v["event"]["payload"]["parse_error"], "invalid_json");
    assert_eq!(v["event"]["payload"]["raw_body_base64"], "e2JhZA==");
}

/// Random bytes, broken HTTP and odd paths: never a 5xx, never a crash.
#[tokio::test]
async fn hostile_input_never_breaks_the_server() {
    let app = App::spawn("http", &[]);
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let raw_requests: Vec<Vec<u8>> = (0..40)
        .map(|i| match i % 4 {
            0 => (0..(next() % 2000)).map(|_| next() as u8).collect(),
            1 => b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec(),
            2 => b"GET /%%%/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            _ => b"POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        })
        .collect();
    for req in raw_requests {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = s.write_all(&req);
                let _ = s.shutdown(std::net::Shutdown::Write);
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out);
                let text = String::from_utf8_lossy(&out);
                assert!(!text.starts_with("HTTP/1.1 5"), "5xx for hostile input: {text}");
            }
        })
        .await
        .unwrap();
    }
    for path in [
        "/webhook/a/b",
        "/webhook/%00",
        "/events/-1",
        "/events/99999999999999999999999",
        "/cron/enqueue?job=",
        "//webhook",
    ] {
        let resp = client()
            .post(format!("{}{}", app.base, path))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert!(resp.status().as_u16() < 500, "{path}: {}", resp.status());
        let resp = client().get(format!("{}{}", app.base, path)).send().await.unwrap();
        assert!(resp.status().as_u16() < 500, "{path}: {}", resp.status());
    }
    assert_eq!(app.get("/healthz", &[]).await.0, 200, "still serving");
}

/// A client that never finishes its headers is disconnected by the header-read timeout.
#[tokio::test]
async fn slow_headers_are_cut_off() {
    let app = App::spawn("http", &[("HEADER_READ_TIMEOUT_SECONDS", "0.5")]);
    let addr = app.base.trim_start_matches("http://").to_string();
    let started = Instant::now();
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\n").unwrap();
        let mut buf = [0u8; 512];
        // Returns Ok(0) (or a reset) when the server closes; a timeout would be Err(WouldBlock).
        match s.read(&mut buf) {
            Ok(_closed_or_408) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    })
    .await
    .unwrap();
    assert!(closed, "the server kept a slow client's connection");
    assert!(started.elapsed() < Duration::from_secs(8));
}
