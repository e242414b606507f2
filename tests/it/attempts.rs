//! Issue 31: every attempt kept — started, finished, outcome, error and duration per
//! attempt, written with each finish and each reclaim, kept across replays, purged with
//! the event; shown by `GET /events/{id}` and `events show`.

use std::time::Duration;

use switchyard::domain::EventStatus;
use switchyard::store::{AttemptRow, ClaimRef, Db, Enqueued, Finish, Outcome};

use crate::helpers::*;
use crate::store::{TestStore, done, enqueue, event, store_tests};

store_tests!(
    every_attempt_is_kept_across_reclaims_and_replays,
    attempts_are_purged_with_their_event,
    an_attempt_starts_at_its_claim_whichever_instance_finishes_it,
    a_batch_of_finishes_records_each_attempt_on_its_own_event,
);

async fn claim_one(db: &Db, lease: Duration) -> ClaimRef {
    let mut claimed = db.claim(1, lease).await.unwrap();
    assert_eq!(claimed.len(), 1, "one event due");
    claimed.remove(0).claim_ref()
}

fn failed(claim: ClaimRef, error: &str) -> Finish {
    Finish {
        outcome: Outcome::Failed { error: error.into() },
        ..done(claim)
    }
}

fn retry(claim: ClaimRef, error: &str) -> Finish {
    Finish {
        outcome: Outcome::Retry {
            error: error.into(),
            next_attempt_at: switchyard::time::timestamp_after(Duration::ZERO),
        },
        ..done(claim)
    }
}

fn summary(attempts: &[AttemptRow]) -> Vec<(i64, &str, Option<&str>)> {
    attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str(), a.error.as_deref()))
        .collect()
}

async fn every_attempt_is_kept_across_reclaims_and_replays(t: TestStore) {
    let db = &t.db;
    let Enqueued::Queued(row) = db.enqueue(event("hist")).await.unwrap() else {
        panic!("new event expected")
    };
    assert!(db.attempts(row).await.unwrap().is_empty(), "not attempted yet");

    // 1: fails and is retried; 2: its worker dies (the lease expires); 3: fails for good.
    let c = claim_one(db, Duration::from_secs(60)).await;
    assert!(db.finish(retry(c, "exit 1: first")).await.unwrap());
    claim_one(db, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(db.reclaim_expired(8).await.unwrap().len(), 1);
    let c = claim_one(db, Duration::from_secs(60)).await;
    assert!(db.finish(failed(c, "exit 1: third")).await.unwrap());
    // A finish whose claim was lost records nothing.
    assert!(!db.finish(failed(c, "stale")).await.unwrap());

    // A replay starts a fresh budget; its attempt succeeds.
    db.replay(row, false).await.unwrap();
    let c = claim_one(db, Duration::from_secs(60)).await;
    assert!(db.finish(done(c)).await.unwrap());

    let attempts = db.attempts(row).await.unwrap();
    let lease = "lease expired: the worker holding this event stopped or stalled";
    assert_eq!(
        summary(&attempts),
        [
            (1, "retry", Some("exit 1: first")),
            (2, "retry", Some(lease)),
            (3, "error", Some("exit 1: third")),
            (1, "done", None),
        ]
    );
    for a in &attempts {
        let (started, finished) = (a.started_at.as_deref().unwrap(), a.finished_at.as_deref().unwrap());
        assert!(started <= finished, "{a:?}");
        assert!(a.duration_ms.is_some_and(|d| d >= 0), "{a:?}");
    }
}

/// An attempt's row holds the event's claim time and outcome time, and the milliseconds
/// between them, both when the instance that claimed the event records the outcome and
/// when another one does (as after a restart).
async fn an_attempt_starts_at_its_claim_whichever_instance_finishes_it(t: TestStore) {
    let db = &t.db;
    let other = t.open_again().await;
    let rows = [enqueue(db, "here").await, enqueue(db, "there").await];
    let mut claimed = db.claim(2, Duration::from_secs(60)).await.unwrap();
    claimed.sort_by_key(|c| c.id);
    assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), rows);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(db.finish(done(claimed[0].claim_ref())).await.unwrap());
    assert!(other.finish(failed(claimed[1].claim_ref(), "exit 2")).await.unwrap());

    let ms = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp_micros() as f64 / 1000.0;
    for (row, outcome) in rows.into_iter().zip(["done", "error"]) {
        let ev = db.event(row).await.unwrap().unwrap();
        let attempts = db.attempts(row).await.unwrap();
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        let a = &attempts[0];
        assert_eq!((a.attempt, a.outcome.as_str()), (1, outcome));
        assert_eq!(a.started_at, ev.processing_started_at, "{a:?} {ev:?}");
        assert_eq!(a.finished_at, ev.processed_at, "{a:?} {ev:?}");
        let (started, finished) = (a.started_at.as_deref().unwrap(), a.finished_at.as_deref().unwrap());
        let elapsed = ms(finished) - ms(started);
        let duration = a.duration_ms.expect("a duration") as f64;
        // SQLite's julianday() counts whole milliseconds of each time: 1 ms either way.
        assert!(
            (duration - elapsed).abs() <= 1.0,
            "{duration} ms, {elapsed} ms between {a:?}"
        );
        assert!(duration >= 20.0, "{a:?}");
    }
}

/// One `finish_many` of 85 outcomes (SQLite inserts their attempts 64, 16, 4 and 1 rows
/// at a time): each event gets exactly its own attempt, outcome, error and claim time.
async fn a_batch_of_finishes_records_each_attempt_on_its_own_event(t: TestStore) {
    let db = &t.db;
    for i in 0..85 {
        enqueue(db, &format!("b{i}")).await;
    }
    let claimed = db.claim(85, Duration::from_secs(60)).await.unwrap();
    assert_eq!(claimed.len(), 85);
    let batch: Vec<Finish> = claimed
        .iter()
        .map(|c| match c.id % 3 {
            0 => done(c.claim_ref()),
            1 => retry(c.claim_ref(), &format!("retry {}", c.id)),
            _ => failed(c.claim_ref(), &format!("failed {}", c.id)),
        })
        .collect();
    assert!(db.finish_many(batch).await.unwrap().into_iter().all(|applied| applied));
    for c in &claimed {
        let ev = db.event(c.id).await.unwrap().unwrap();
        let attempts = db.attempts(c.id).await.unwrap();
        let want = match c.id % 3 {
            0 => ("done", None),
            1 => ("retry", Some(format!("retry {}", c.id))),
            _ => ("error", Some(format!("failed {}", c.id))),
        };
        assert_eq!(attempts.len(), 1, "event {}: {attempts:?}", c.id);
        let a = &attempts[0];
        assert_eq!((a.attempt, a.outcome.as_str(), a.error.clone()), (1, want.0, want.1));
        assert_eq!(a.started_at, ev.processing_started_at, "event {}", c.id);
        assert!(
            a.finished_at.is_some() && a.duration_ms.is_some_and(|d| d >= 0),
            "{a:?}"
        );
    }
}

async fn attempts_are_purged_with_their_event(t: TestStore) {
    let db = &t.db;
    let Enqueued::Queued(row) = db.enqueue(event("purged")).await.unwrap() else {
        panic!("new event expected")
    };
    let Enqueued::Queued(kept) = db.enqueue(event("kept")).await.unwrap() else {
        panic!("new event expected")
    };
    for _ in 0..2 {
        let c = claim_one(db, Duration::from_secs(60)).await;
        assert!(db.finish(done(c)).await.unwrap());
    }
    let sql = format!("UPDATE events SET processed_at = '2020-01-01T00:00:00.000000+00:00' WHERE id = {row}");
    t.exec(&sql, &sql).await;
    let before = switchyard::retention::cutoff(Duration::from_secs(86_400));
    assert_eq!(db.purge_batch(EventStatus::Done, &before, 10).await.unwrap(), 1);
    assert!(
        db.attempts(row).await.unwrap().is_empty(),
        "attempts go with their event"
    );
    let count = t
        .sql_text(&format!(
            "SELECT CAST(count(*) AS TEXT) FROM event_attempts WHERE event_row_id = {row}"
        ))
        .await;
    assert_eq!(count, "0");
    assert_eq!(db.attempts(kept).await.unwrap().len(), 1);
}

/// End to end: a command that fails until a file exists; the event runs out of attempts,
/// is replayed after the fix, and its page still shows the failures with their errors.
#[tokio::test]
async fn a_replayed_event_shows_every_earlier_attempt_with_its_error() {
    let app = App::spawn("serve", &[("WORKER_MAX_ATTEMPTS", "2"), ("ADMIN_SECRET", "admin")]);
    std::fs::write(
        app.dir.join("commands.json"),
        r#"{"check": ["sh", "-c", "test -e ready || { echo not ready >&2; exit 3; }"]}"#,
    )
    .unwrap();
    set_mapping(&app.dir, "unknown", "check", "command", "check");
    let (code, v) = app.post("/webhook", r#"{"n":1}"#, &[]).await;
    assert_eq!(code, 200, "{v}");
    let row = v["row_id"].as_i64().unwrap();
    // Back-off after the first failure is about 2 s.
    app.wait_status(row, "error", Duration::from_secs(30)).await;
    std::fs::write(app.dir.join("ready"), "").unwrap();
    let out = run_cli(&app.dir, &["events", "replay", &row.to_string()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ev = app.wait_status(row, "done", Duration::from_secs(30)).await;

    let attempts = ev["attempts"].as_array().expect("attempts in GET /events/{id}");
    let outcomes: Vec<(i64, &str)> = attempts
        .iter()
        .map(|a| (a["attempt"].as_i64().unwrap(), a["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, [(1, "retry"), (2, "error"), (1, "done")], "{ev}");
    for failed in &attempts[..2] {
        let error = failed["error"].as_str().unwrap();
        assert!(
            error.contains("exited with code 3") && error.contains("not ready"),
            "{error}"
        );
    }
    assert!(attempts[2]["error"].is_null());
    for a in attempts {
        for key in ["started_at", "finished_at", "duration_ms"] {
            assert!(!a[key].is_null(), "{key} in {a}");
        }
    }

    let out = run_cli(&app.dir, &["events", "show", &row.to_string()], &[]);
    let shown: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["attempts"], ev["attempts"], "events show prints the same history");
}

/// The OpenAPI document describes the attempt history of `GET /events/{id}` and the 401
/// body's `expected_header`.
#[tokio::test]
async fn openapi_describes_the_attempts_and_the_expected_header() {
    let app = App::spawn("http", &[]);
    let (code, doc) = app.get("/openapi.json", &[]).await;
    assert_eq!(code, 200);
    let schemas = &doc["components"]["schemas"];
    let attempts = &schemas["EventDetail"]["properties"]["attempts"];
    assert_eq!(
        attempts["items"]["$ref"], "#/components/schemas/AttemptRow",
        "{attempts}"
    );
    let row = schemas["AttemptRow"]["properties"].as_object().expect("AttemptRow");
    for key in [
        "attempt",
        "started_at",
        "finished_at",
        "outcome",
        "error",
        "duration_ms",
    ] {
        assert!(row.contains_key(key), "AttemptRow.{key}: {row:?}");
    }
    assert!(
        schemas["ErrorReply"]["properties"].get("expected_header").is_some(),
        "{}",
        schemas["ErrorReply"]
    );
}
