//! CONTRACT §3: wake-up, durability under kill -9, leases, back-off, shutdown.

use std::time::{Duration, Instant};

use serde_json::json;

use switchyard::domain::{HandlerMode, Mapping};
use switchyard::store::RoutingChanges;

use crate::helpers::*;
use crate::store::{Backend, TestStore, enqueue};

fn write_commands(dir: &std::path::Path, commands: serde_json::Value) {
    std::fs::write(dir.join("commands.json"), commands.to_string()).unwrap();
}

#[tokio::test]
async fn new_event_wakes_the_worker_despite_a_long_poll() {
    let app = App::spawn("serve", &[("WORKER_POLL_INTERVAL", "30")]);
    // Let the worker go idle on its 30 s poll first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (_, v) = app.post("/webhook", r#"{"a":1}"#, &[]).await;
    let row = v["row_id"].as_i64().unwrap();
    let ev = app.wait_status(row, "done", Duration::from_secs(10)).await;
    // Far below the 30 s poll: the worker was woken, not polled.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let result = &ev["event"]["result"];
    assert_eq!(result["ok"], true);
    assert_eq!(result["source"], "webhook");
    assert_eq!(result["result"], json!({"note": "no mapping"}));
    assert_eq!(result["router"]["provider"], "unknown");
    assert_eq!(ev["event"]["attempt_count"], 1);
}

#[tokio::test]
async fn acknowledged_events_survive_kill_9_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::spawn_in(dir.path(), "serve", &[]);
    let base = app.base.clone();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(i64, String)>::new()));
    let mut senders = Vec::new();
    for t in 0..8 {
        let base = base.clone();
        let acked = acked.clone();
        senders.push(tokio::spawn(async move {
            let client = client();
            for i in 0.. {
                let id = format!("kill-{t}-{i}");
                let resp = client
                    .post(format!("{base}/webhook"))
                    .header("content-type", "application/json")
                    .header("x-event-id", &id)
                    .body(r#"{"load":true}"#)
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == 200 => {
                        if let Ok(v) = r.json::<serde_json::Value>().await {
                            acked.lock().unwrap().push((v["row_id"].as_i64().unwrap(), id));
                        }
                    }
                    _ => break,
                }
            }
        }));
    }
    // Kill once a fair number are acknowledged, mid-stream.
    let start = Instant::now();
    while acked.lock().unwrap().len() < 300 && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.child.kill().unwrap(); // SIGKILL
    app.child.wait().unwrap();
    for s in senders {
        let _ = s.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300, "only {} acknowledged", acked.len());

    let app = App::spawn_in(dir.path(), "http", &[]);
    for (row, id) in &acked {
        let (code, v) = app.get(&format!("/events/{row}"), &[]).await;
        assert_eq!(code, 200, "acknowledged event {id} (row {row}) lost after kill -9");
        assert_eq!(v["event"]["event_id"], id.as_str());
    }
}

#[tokio::test]
async fn expired_lease_is_reclaimed_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    write_commands(dir.path(), json!({"job": ["sleep", "60"]}));
    route_unknown(dir.path(), "act", "command", "job");
    let env = [("WORKER_LEASE_SECONDS", "1")];
    let mut app = App::spawn_in(dir.path(), "serve", &env);
    let (_, v) = app.post("/webhook", r#"{"a":1}"#, &[]).await;
    let row = v["row_id"].as_i64().unwrap();
    app.wait_status(row, "processing", Duration::from_secs(10)).await;
    app.child.kill().unwrap(); // the worker dies mid-run
    app.child.wait().unwrap();

    write_commands(dir.path(), json!({"job": ["echo", "{\"finished\": true}"]}));
    let app = App::spawn_in(dir.path(), "serve", &env);
    let ev = app.wait_status(row, "done", Duration::from_secs(20)).await;
    assert_eq!(ev["event"]["attempt_count"], 2);
    assert_eq!(ev["event"]["result"]["result"], json!({"finished": true}));
}

#[tokio::test]
async fn failures_back_off_then_error() {
    let dir = tempfile::tempdir().unwrap();
    write_commands(
        dir.path(),
        json!({"fail": ["sh", "-c", "echo boom-from-stderr >&2; exit 3"]}),
    );
    route_unknown(dir.path(), "act", "command", "fail");
    let app = App::spawn_in(dir.path(), "serve", &[("WORKER_MAX_ATTEMPTS", "2")]);
    let (_, v) = app.post("/webhook", r#"{"a":1}"#, &[]).await;
    let row = v["row_id"].as_i64().unwrap();

    let ev = app.wait_status(row, "retry", Duration::from_secs(10)).await;
    let e = &ev["event"];
    assert_eq!(e["attempt_count"], 1);
    assert!(e["last_error"].as_str().unwrap().contains("boom-from-stderr"), "{e}");
    let started = chrono::DateTime::parse_from_rfc3339(e["processing_started_at"].as_str().unwrap()).unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(e["next_attempt_at"].as_str().unwrap()).unwrap();
    let delay = (next - started).num_milliseconds();
    // Seed schedule after attempt 1: 2 s, plus up to 20% jitter (and the run itself).
    assert!((2000..=3000).contains(&delay), "back-off was {delay} ms");

    let ev = app.wait_status(row, "error", Duration::from_secs(15)).await;
    let e = &ev["event"];
    assert_eq!(e["attempt_count"], 2);
    assert!(e["last_error"].as_str().unwrap().contains("boom-from-stderr"));
    assert!(e["processed_at"].is_string());
    let runs = ev["action_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "one action run per (event, action)");
    assert_eq!(runs[0]["status"], "error");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_work() {
    let dir = tempfile::tempdir().unwrap();
    write_commands(
        dir.path(),
        json!({"job": ["sh", "-c", "sleep 1; echo '{\"slept\":1}'"]}),
    );
    route_unknown(dir.path(), "act", "command", "job");
    let mut app = App::spawn_in(dir.path(), "serve", &[("SHUTDOWN_GRACE_SECONDS", "20")]);
    let (_, v) = app.post("/webhook", r#"{"a":1}"#, &[]).await;
    let row = v["row_id"].as_i64().unwrap();
    app.wait_status(row, "processing", Duration::from_secs(10)).await;
    assert_eq!(app.terminate(), Some(0));

    let app = App::spawn_in(dir.path(), "http", &[]);
    let (_, v) = app.get(&format!("/events/{row}"), &[]).await;
    assert_eq!(v["event"]["status"], "done", "{v}");
    assert_eq!(v["event"]["result"]["result"], json!({"slept": 1}));
}

#[tokio::test]
async fn sigterm_releases_what_cannot_finish() {
    let dir = tempfile::tempdir().unwrap();
    write_commands(dir.path(), json!({"job": ["sleep", "60"]}));
    route_unknown(dir.path(), "act", "command", "job");
    let mut app = App::spawn_in(dir.path(), "serve", &[("SHUTDOWN_GRACE_SECONDS", "0.3")]);
    let (_, v) = app.post("/webhook", r#"{"a":1}"#, &[]).await;
    let row = v["row_id"].as_i64().unwrap();
    app.wait_status(row, "processing", Duration::from_secs(10)).await;
    assert_eq!(app.terminate(), Some(0));

    let app = App::spawn_in(dir.path(), "http", &[]);
    let (_, v) = app.get(&format!("/events/{row}"), &[]).await;
    assert_eq!(v["event"]["status"], "retry", "{v}");
    assert_eq!(
        v["event"]["attempt_count"], 0,
        "a released claim does not use up an attempt"
    );
}

/// Quick handlers let a worker claim a whole batch at a time (`Store::claim_batch`): up to
/// 256 events on SQLite, 512 on PostgreSQL, whose claims each cost a round trip and a WAL
/// flush. A claim stamps one claim time on every event it takes, so the largest group of
/// events sharing a `processing_started_at` is the largest claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_handlers_are_claimed_a_whole_batch_at_a_time() {
    let stores = [
        Some(TestStore::sqlite().await),
        TestStore::postgres("worker::quick_handlers_are_claimed_a_whole_batch_at_a_time").await,
    ];
    for t in stores.into_iter().flatten() {
        let batch = t.db.claim_batch();
        let n = 3 * batch;
        for i in 0..n {
            enqueue(&t.db, &format!("batch-{i}")).await;
        }
        t.db.apply(RoutingChanges {
            mappings: vec![Mapping {
                provider: "unknown".into(),
                action: "quick".into(),
                handler_mode: HandlerMode::Noop,
                handler_target: None,
                enabled: true,
                flow: None,
            }],
            ..Default::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let env = t.process_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut worker = App::spawn_in(dir.path(), "worker", &env);
        let done_sql = "SELECT CAST(count(*) AS TEXT) FROM events WHERE status = 'done'";
        let start = Instant::now();
        while t.sql_text(done_sql).await != n.to_string() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{:?}: {} of {n} done; logs:\n{}",
                t.backend,
                t.sql_text(done_sql).await,
                worker.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        worker.terminate();
        let largest: usize = t
            .sql_text(
                "SELECT CAST(max(n) AS TEXT) FROM \
                 (SELECT count(*) AS n FROM events GROUP BY processing_started_at) AS claims",
            )
            .await
            .parse()
            .unwrap();
        let expected = match t.backend {
            Backend::Sqlite => 256,
            Backend::Postgres => 512,
        };
        assert_eq!(batch, expected, "{:?}", t.backend);
        assert_eq!(
            largest, batch,
            "{:?}: the largest claim took {largest} events",
            t.backend
        );
    }
}
