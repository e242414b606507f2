//! A database written by the seed's Python version is opened, migrated in place and served.

use std::time::Duration;

use serde_json::json;
use sqlx::Connection;

use crate::helpers::*;

/// The seed's DDL (CONTRACT §7) and a few rows in its timestamp format.
const SEED_SQL: &[&str] = &[
    "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, event_id TEXT,
       received_at TEXT NOT NULL, status TEXT NOT NULL, attempt_count INTEGER NOT NULL DEFAULT 0,
       next_attempt_at TEXT, processing_started_at TEXT, processed_at TEXT, payload_json TEXT NOT NULL,
       result_json TEXT, last_error TEXT, UNIQUE(source, event_id))",
    "CREATE TABLE provider_mappings (provider TEXT PRIMARY KEY, action TEXT NOT NULL,
       handler_mode TEXT NOT NULL DEFAULT 'noop', handler_target TEXT, enabled INTEGER NOT NULL DEFAULT 1,
       updated_at TEXT NOT NULL)",
    "CREATE TABLE routing_rules (id INTEGER PRIMARY KEY AUTOINCREMENT, provider TEXT NOT NULL, name TEXT NOT NULL,
       priority INTEGER NOT NULL DEFAULT 100, conditions_json TEXT NOT NULL, action TEXT NOT NULL,
       handler_mode TEXT NOT NULL DEFAULT 'noop', handler_target TEXT, enabled INTEGER NOT NULL DEFAULT 1,
       updated_at TEXT NOT NULL, UNIQUE(provider, name))",
    "CREATE TABLE action_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, event_row_id INTEGER NOT NULL,
       started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL, provider TEXT, action TEXT,
       handler_mode TEXT, handler_target TEXT, input_json TEXT, output_json TEXT, error TEXT,
       UNIQUE(event_row_id, action))",
    r#"INSERT INTO events (source, event_id, received_at, status, attempt_count, next_attempt_at, processed_at, payload_json, result_json)
       VALUES ('webhook', 'seed-done', '2025-01-01T10:00:00+00:00', 'done', 1, NULL, '2025-01-01T10:00:01+00:00',
               '{"source_hint":null,"headers":{},"json":{"old":true}}', '{"ok":true,"result":{"note":"no mapping"}}')"#,
    r#"INSERT INTO events (source, event_id, received_at, status, attempt_count, next_attempt_at, payload_json)
       VALUES ('webhook', 'seed-pending', '2025-01-01T10:00:02+00:00', 'pending', 0, NULL,
               '{"source_hint":"legacy","headers":{},"json":{"pending":true}}')"#,
    r#"INSERT INTO action_runs (event_row_id, started_at, finished_at, status, provider, action, handler_mode,
         input_json, output_json)
       VALUES (1, '2025-01-01T10:00:00+00:00', '2025-01-01T10:00:01+00:00', 'done', 'legacy', 'legacy_action',
               'noop', '{"action":"legacy_action"}', '{"mode":"noop"}')"#,
    "INSERT INTO provider_mappings (provider, action, handler_mode, handler_target, enabled, updated_at)
       VALUES ('legacy', 'legacy_action', 'noop', NULL, 1, '2025-01-01T09:00:00+00:00')",
];

#[tokio::test]
async fn seed_database_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let db = dir.path().join("data/events.sqlite3");
    {
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for stmt in SEED_SQL {
            sqlx::query(*stmt).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
    }

    // The seed's events finished in 2025: keep them (retention would purge them at start).
    let app = App::spawn_in(dir.path(), "serve", &[("RETENTION_DONE_DAYS", "0")]);
    let (code, v) = app.get("/events/1", &[]).await;
    assert_eq!(code, 200);
    assert_eq!(v["event"]["event_id"], "seed-done");
    assert_eq!(v["event"]["received_at"], "2025-01-01T10:00:00.000000+00:00");
    assert_eq!(v["event"]["payload"]["json"], json!({"old": true}));
    // The seed's run ran once: migration 0026 counts it as one attempt.
    assert_eq!(v["action_runs"][0]["attempts"], 1, "{v}");

    // Deduplicated against the seed's rows.
    let (_, dup) = app
        .post("/webhook/x", r#"{"n":1}"#, &[("x-event-id", "seed-done")])
        .await;
    assert_eq!(dup["status"], "duplicate_ignored");
    assert_eq!(dup["row_id"], 1);

    // The seed's pending event is processed with the seed's mapping.
    let ev = app.wait_status(2, "done", Duration::from_secs(10)).await;
    let result = &ev["event"]["result"];
    assert_eq!(result["router"]["provider"], "legacy");
    assert_eq!(result["router"]["mapped_action"], "legacy_action");
    assert_eq!(result["result"], json!({"mode": "noop", "action": "legacy_action"}));

    // New events continue after the seed's ids (gaps are allowed, collisions are not).
    let (_, v) = app.post("/webhook", r#"{"n":2}"#, &[]).await;
    assert!(v["row_id"].as_i64().unwrap() > 2, "{v}");
}
