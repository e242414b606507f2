//! Issue 19: the logs tell the story — one line per finished event, one per refused
//! request (never a secret), a start-up line naming the database; text and JSON.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const INGRESS: &str = "ingress-s3cret-value";
const WRONG: &str = "wrong-s3cret-value";

/// Runs `serve` with `format`, processes one succeeding and one failing event and sends
/// one request with a wrong secret; returns the logs after a clean stop.
async fn story(format: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let script = "if grep -q boom; then echo broke >&2; exit 3; fi; echo '{\"fine\":1}'";
    std::fs::write(
        dir.path().join("commands.json"),
        json!({"maybe": ["sh", "-c", script]}).to_string(),
    )
    .unwrap();
    route_unknown(dir.path(), "act", "command", "maybe");
    let env = [
        ("LOG_FORMAT", format),
        ("INGRESS_SECRET", INGRESS),
        ("ADMIN_SECRET", "admin"),
        ("WORKER_MAX_ATTEMPTS", "1"),
        // Empty means unset: the default filter, as a user gets it.
        ("RUST_LOG", ""),
    ];
    let mut app = App::spawn_in(dir.path(), "serve", &env);
    for (id, body) in [("ev-ok", r#"{"fine":true}"#), ("ev-fail", r#"{"boom":true}"#)] {
        let (code, v) = app
            .post("/webhook", body, &[("x-ingress-secret", INGRESS), ("x-event-id", id)])
            .await;
        assert_eq!(code, 200, "{v}");
        let status = if id == "ev-ok" { "done" } else { "error" };
        app.wait_status(v["row_id"].as_i64().unwrap(), status, Duration::from_secs(20))
            .await;
    }
    let (code, _) = app.post("/webhook", "{}", &[("x-ingress-secret", WRONG)]).await;
    assert_eq!(code, 401);
    assert_eq!(app.terminate(), Some(0));
    let db = dir.path().join("data/events.sqlite3").display().to_string();
    (app.logs(), db)
}

fn assert_no_secret(logs: &str) {
    assert!(
        !logs.contains(INGRESS) && !logs.contains(WRONG),
        "a secret was logged:\n{logs}"
    );
}

#[tokio::test]
async fn text_logs_tell_what_happened_to_each_event() {
    let (logs, db) = story("text").await;
    assert_no_secret(&logs);
    let finished: Vec<&str> = logs.lines().filter(|l| l.contains("event attempt finished")).collect();
    assert_eq!(finished.len(), 2, "{logs}");
    for (id, outcome) in [("ev-ok", "done"), ("ev-fail", "error")] {
        let mine: Vec<&&str> = finished
            .iter()
            .filter(|l| l.contains(&format!("event_id={id} ")))
            .collect();
        assert_eq!(mine.len(), 1, "{id}: {logs}");
        let line = mine[0];
        assert!(line.contains(" INFO "), "{line}");
        for field in [
            "row_id=",
            "source=webhook",
            "provider=unknown",
            "action=act",
            "handler=command",
            "attempt=1",
            "duration_ms=",
        ] {
            assert!(line.contains(field), "{field} missing: {line}");
        }
        assert!(line.contains(&format!("outcome={outcome}")), "{line}");
    }
    let refused: Vec<&str> = logs.lines().filter(|l| l.contains("request refused")).collect();
    assert_eq!(refused.len(), 1, "{logs}");
    for field in [
        "INFO",
        "status=401",
        "x-ingress-secret missing or wrong",
        "path=/webhook",
        "remote=127.0.0.1:",
    ] {
        assert!(refused[0].contains(field), "{field} missing: {}", refused[0]);
    }
    let start = logs
        .lines()
        .find(|l| l.contains("switchyard starting"))
        .expect("start-up line");
    let database = format!("database={db}");
    for field in [
        database.as_str(),
        "backend=\"sqlite\"",
        "ingress_secret=\"set\"",
        "concurrency=16",
    ] {
        assert!(start.contains(field), "{field} missing: {start}");
    }
}

#[tokio::test]
async fn json_logs_carry_the_same_fields() {
    let (logs, db) = story("json").await;
    assert_no_secret(&logs);
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let message = |v: &Value| v["fields"]["message"].as_str().unwrap_or("").to_string();
    let finished: Vec<&Value> = lines
        .iter()
        .filter(|v| message(v) == "event attempt finished")
        .collect();
    assert_eq!(finished.len(), 2, "{logs}");
    for (id, outcome) in [("ev-ok", "done"), ("ev-fail", "error")] {
        let mine: Vec<&&Value> = finished.iter().filter(|v| v["fields"]["event_id"] == id).collect();
        assert_eq!(mine.len(), 1, "{id}: {logs}");
        let f = &mine[0]["fields"];
        assert_eq!(mine[0]["level"], "INFO");
        assert!(f["row_id"].is_i64() && f["duration_ms"].is_u64(), "{f}");
        assert_eq!(
            (&f["source"], &f["provider"], &f["action"]),
            (&json!("webhook"), &json!("unknown"), &json!("act"))
        );
        assert_eq!(
            (&f["handler"], &f["outcome"], &f["attempt"]),
            (&json!("command"), &json!(outcome), &json!(1))
        );
    }
    let refused: Vec<&Value> = lines.iter().filter(|v| message(v) == "request refused").collect();
    assert_eq!(refused.len(), 1, "{logs}");
    let f = &refused[0]["fields"];
    assert_eq!((&f["status"], &f["path"]), (&json!(401), &json!("/webhook")));
    assert!(f["remote"].as_str().unwrap().starts_with("127.0.0.1:"), "{f}");
    let start = lines
        .iter()
        .find(|v| message(v) == "switchyard starting")
        .expect("start-up line");
    assert_eq!(start["fields"]["database"], db.as_str());
    // sqlx's per-statement and idle-ping lines stay below the default filter.
    assert!(
        !lines
            .iter()
            .any(|v| v["target"].as_str().unwrap_or("").starts_with("sqlx")),
        "{logs}"
    );
}

/// Puts every event back to `processing` with no lease, as a worker that died leaves them.
fn orphan_every_event(db: &std::path::Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "UPDATE events SET status = 'processing', attempt_count = 1, lease_until = NULL",
        [],
    )
    .unwrap();
}

#[test]
fn a_reclaim_names_its_events_up_to_twenty() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/events.sqlite3");
    let json_logs = [("LOG_FORMAT", "json")];
    init_db(dir.path());
    for i in 0..23 {
        let out = run_cli(dir.path(), &["cron", "enqueue", "--job", &format!("job{i:02}")], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    orphan_every_event(&db);
    let out = run_cli(dir.path(), &["worker", "--run-once"], &json_logs);
    assert!(out.status.success(), "{}", stderr(&out));
    let line: Value = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "reclaimed events whose lease expired")
        .unwrap_or_else(|| panic!("no reclaim line in {}", stderr(&out)));
    let f = &line["fields"];
    assert_eq!(
        (&f["count"], &f["exhausted"], &f["unnamed"]),
        (&json!(23), &json!(0), &json!(3))
    );
    let named = f["events"].as_str().unwrap();
    assert!(named.starts_with("1:cron:job00:"), "{named}");
    assert!(named.contains(" 20:cron:job19:") && !named.contains("job20"), "{named}");

    // An event out of attempts is named and counted as exhausted (text format).
    let dir = tempfile::tempdir().unwrap();
    init_db(dir.path());
    let out = run_cli(dir.path(), &["cron", "enqueue", "--job", "last"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    orphan_every_event(&dir.path().join("data/events.sqlite3"));
    let env = [("WORKER_MAX_ATTEMPTS", "1")];
    let out = run_cli(dir.path(), &["worker", "--run-once"], &env);
    let text = stderr(&out);
    let line = text
        .lines()
        .find(|l| l.contains("reclaimed events whose lease expired"))
        .unwrap_or_else(|| panic!("no reclaim line in {text}"));
    assert!(line.contains("count=1 exhausted=1"), "{line}");
    assert!(line.contains("events=1:cron:last:"), "{line}");
}
