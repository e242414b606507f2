//! Each action run counts its attempts (CONTRACT §12): the times its handler really ran,
//! on SQLite and on PostgreSQL — once per run whether it finished or crashed, not for a
//! replayed output, once more for each forced replay; shown by `GET /events/{id}`,
//! `events show` and the OpenAPI document. (The fan-out scenario in `fan_out.rs` holds the
//! per-action counts of a several-action event.)

use std::time::Duration;

use serde_json::{Value, json};
use switchyard::store::{ActionRunRecord, FanOutFinish, Finish};

use crate::helpers::*;
use crate::store::{PgSchema, TestStore, done, enqueue, run, store_tests};

store_tests!(a_run_counts_each_handler_run_once);

/// A run's start row and its finish are one attempt; a start left by a crash is one too;
/// a run written only at its finish (noop) counts there.
async fn a_run_counts_each_handler_run_once(t: TestStore) {
    let db = &t.db;
    let row = enqueue(db, "counted").await;
    let claimed = db.claim(1, Duration::from_secs(30)).await.unwrap();
    let count = |action: &'static str| async move { db.action_run(row, action).await.unwrap().unwrap().attempts };

    // The first run crashed after its start was written.
    db.start_action_run(run(row, "a", "running")).await.unwrap();
    assert_eq!(count("a").await, 1);
    // The next run starts (a second attempt) and finishes (still the second).
    let started = run(row, "a", "running");
    db.start_action_run(started.clone()).await.unwrap();
    assert_eq!(count("a").await, 2);
    let finished = ActionRunRecord {
        finished_at: Some(switchyard::time::now()),
        status: "done".parse().unwrap(),
        output_json: Some(r#"{"out":1}"#.into()),
        ..started
    };
    let finish = Finish {
        action_run: Some(finished),
        fan_out: Some(Box::new(FanOutFinish {
            more_runs: vec![run(row, "b", "done")],
            unfinished_result_json: None,
        })),
        ..done(claimed[0].claim_ref())
    };
    assert!(db.finish(finish).await.unwrap());
    assert_eq!((count("a").await, count("b").await), (2, 1));
}

/// A one-action event whose command fails twice, then succeeds; replayed, then forced.
async fn one_action_scenario(env: &[(&str, &str)]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("check.log");
    let script = format!(
        "echo run >> '{0}'; [ $(wc -l < '{0}') -ge 3 ] || {{ echo not yet >&2; exit 3; }}; echo '{{\"ok\": 1}}'",
        log.display()
    );
    std::fs::write(
        dir.join("commands.json"),
        json!({"check": ["sh", "-c", script]}).to_string(),
    )
    .unwrap();
    let config = json!({"version": 1, "mappings": [{"provider": "shop", "action": "check",
        "handler_mode": "command", "handler_target": "check"}],
        "rules": [{"provider": "shop", "name": "all", "priority": 1, "conditions": {"all": []},
                   "action": "check", "handler_mode": "command", "handler_target": "check"}]});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let out = run_cli(
        dir,
        &["mapping", "apply-config", "--create-db", "--config", "config.json"],
        env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let app = App::spawn_in(dir, "serve", &[env, &[("WORKER_MAX_ATTEMPTS", "5")]].concat());
    let (code, v) = app.post("/webhook/shop", r#"{"n": 1}"#, &[]).await;
    assert_eq!(code, 200, "{v}");
    let row = v["row_id"].as_i64().unwrap();
    let run_count = |v: &Value| {
        let runs = v["action_runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "{v}");
        runs[0]["attempts"].as_i64().unwrap()
    };

    // Back-off after the two failures is about 2 s, then 4 s.
    let v = app.wait_status(row, "done", Duration::from_secs(60)).await;
    assert_eq!(v["event"]["attempt_count"], 3, "{v}");
    assert_eq!(v["attempts"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(run_count(&v), 3, "the run's attempts are the event's: {v}");

    // A plain replay replays the stored output: no attempt of the handler.
    let (code, r) = app.post(&format!("/events/{row}/replay"), "", &[]).await;
    assert_eq!(code, 200, "{r}");
    let v = app.wait_status(row, "done", Duration::from_secs(20)).await;
    assert_eq!(v["event"]["result"]["idempotent_replay"], true, "{v}");
    assert_eq!(run_count(&v), 3, "{v}");

    // A forced replay runs it again.
    let (code, r) = app.post(&format!("/events/{row}/replay?force=1"), "", &[]).await;
    assert_eq!(code, 200, "{r}");
    let v = app.wait_status(row, "done", Duration::from_secs(20)).await;
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 4);
    assert_eq!(run_count(&v), 4, "{v}");

    let out = run_cli(dir, &["events", "show", &row.to_string()], env);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["action_runs"][0]["attempts"], 4, "{shown}");
}

#[tokio::test]
async fn a_one_action_run_counts_the_attempts_of_its_event_on_sqlite() {
    one_action_scenario(&[]).await;
}

#[tokio::test]
async fn a_one_action_run_counts_the_attempts_of_its_event_on_postgres() {
    let Some(pg) = PgSchema::create("run_attempts::one_action").await else {
        return;
    };
    one_action_scenario(&[("DATABASE_URL", &pg.url)]).await;
}

/// The OpenAPI document describes each action run's `attempts`.
#[tokio::test]
async fn openapi_describes_the_attempts_of_an_action_run() {
    let app = App::spawn("http", &[]);
    let (code, doc) = app.get("/openapi.json", &[]).await;
    assert_eq!(code, 200);
    let attempts = &doc["components"]["schemas"]["ActionRunRow"]["properties"]["attempts"];
    assert_eq!(attempts["type"], "integer", "{attempts}");
    assert!(
        attempts["description"]
            .as_str()
            .is_some_and(|d| d.contains("handler ran")),
        "{attempts}"
    );
    let required = &doc["components"]["schemas"]["ActionRunRow"]["required"];
    assert!(required.as_array().unwrap().contains(&json!("attempts")), "{required}");
}
