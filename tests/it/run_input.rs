//! An action run's input stored once (issue 18): a `done` run's input is rebuilt from its
//! event on read, and survives a later outcome that rewrites the event's result.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard::handlers::HandlerInput;
use switchyard::store::{Db, Enqueued, Finish, Outcome, run_input};

use crate::store::{TestStore, done, event, run, store_tests};

const LEASE: Duration = Duration::from_secs(60);

store_tests!(
    done_run_input_is_rebuilt_from_the_event,
    marked_input_is_kept_when_a_later_result_replaces_the_router,
    full_inputs_read_as_stored,
);

fn router(action: &str, confidence: f64) -> Value {
    json!({"provider": "github", "mapped_action": action, "confidence": confidence,
           "matched_rule": null, "reasons": ["mapping:github"]})
}

/// A `done` finish of the event's current claim, with `router` in its result and, when
/// `run_action` is set, a done run of that action whose input is the event's.
async fn finish_done(db: &Db, row: i64, router: &Value, run_action: Option<&str>) {
    let claimed = db.claim(1, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1, "event {row} is due");
    let mut f: Finish = done(claimed[0].claim_ref());
    f.outcome = Outcome::Done {
        result_json: json!({"ok": true, "router": router, "result": {"mode": "noop"}}).to_string(),
    };
    f.action_run = run_action.map(|a| {
        let mut r = run(row, a, "done");
        r.input_json = run_input::FROM_EVENT.into();
        r
    });
    assert!(db.finish(f).await.unwrap(), "the claim held");
}

async fn queued(db: &Db, id: &str) -> (i64, Value) {
    let row = match db.enqueue(event(id)).await.unwrap() {
        Enqueued::Queued(row) => row,
        other => panic!("{id} should be new, got {other:?}"),
    };
    let payload = serde_json::from_str(&event(id).payload_json).unwrap();
    (row, payload)
}

/// Exactly the text the worker would have stored before (serde, same field order).
fn expected(action: &str, router: &Value, payload: &Value) -> String {
    serde_json::to_string(&HandlerInput {
        action,
        router,
        payload,
    })
    .unwrap()
}

async fn done_run_input_is_rebuilt_from_the_event(t: TestStore) {
    let db = &t.db;
    let (row, payload) = queued(db, "ri-1").await;
    let r = router("act", 0.2);
    finish_done(db, row, &r, Some("act")).await;
    let want = expected("act", &r, &payload);
    let runs = db.action_runs(row).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].input_json.as_deref(), Some(want.as_str()));
    let one = db.action_run(row, "act").await.unwrap().expect("the run");
    assert_eq!(one.input_json.as_deref(), Some(want.as_str()));
    // What is stored is the marker, not a second copy of the payload.
    let stored = t.sql_text("SELECT input_json FROM action_runs").await;
    assert_eq!(stored, run_input::FROM_EVENT);
}

async fn marked_input_is_kept_when_a_later_result_replaces_the_router(t: TestStore) {
    let db = &t.db;
    let (row, payload) = queued(db, "ri-2").await;
    let first = router("act", 0.2);
    finish_done(db, row, &first, Some("act")).await;
    // Replayed, then done again with another router: once with no run (the done run is
    // replayed), once with a run of another action.
    let second = router("act", 0.9);
    db.replay(row, false).await.unwrap();
    finish_done(db, row, &second, None).await;
    let third = router("other", 0.5);
    db.replay(row, false).await.unwrap();
    finish_done(db, row, &third, Some("other")).await;

    let runs = db.action_runs(row).await.unwrap();
    let input = |action: &str| -> Value {
        let r = runs.iter().find(|r| r.action.as_deref() == Some(action)).expect("run");
        serde_json::from_str(r.input_json.as_deref().unwrap()).unwrap()
    };
    assert_eq!(
        input("act"),
        json!({"action": "act", "router": first, "payload": payload})
    );
    assert_eq!(
        input("other"),
        json!({"action": "other", "router": third, "payload": payload})
    );
}

async fn full_inputs_read_as_stored(t: TestStore) {
    let db = &t.db;
    let (row, _) = queued(db, "ri-3").await;
    let claimed = db.claim(1, LEASE).await.unwrap();
    let mut f = done(claimed[0].claim_ref());
    f.action_run = Some(run(row, "act", "done"));
    assert!(db.finish(f).await.unwrap());
    let runs = db.action_runs(row).await.unwrap();
    assert_eq!(runs[0].input_json.as_deref(), Some(r#"{"in":1}"#));
}
