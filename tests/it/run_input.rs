//! An action run's input and output stored once, and the event's result stored without
//! what its row holds (issue 18): a `done` run's texts and the contract's result are
//! rebuilt on read, byte for byte, and survive a later outcome that rewrites the result.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard::domain::Source;
use switchyard::handlers::HandlerInput;
use switchyard::store::{Db, DoneRun, Enqueued, Finish, NewEvent, Outcome, run_input, stored_result};

use crate::store::{TestStore, done, event, run, store_tests};

const LEASE: Duration = Duration::from_secs(60);

store_tests!(
    done_run_input_is_rebuilt_from_the_event,
    marked_input_is_kept_when_a_later_result_replaces_the_router,
    full_inputs_read_as_stored,
    worker_written_run_and_result_read_back_byte_for_byte,
    marked_outputs_are_kept_when_a_later_result_replaces_them,
    a_claim_reads_a_done_runs_output_from_its_event,
    a_result_edited_into_bad_json_does_not_break_claims,
    a_compact_envelope_reads_back_whole_in_the_event_and_in_kept_inputs,
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
        debounced: None,
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

/// A router as the worker serialises a decision: every key, unset ones null.
fn full_router(action: &str, confidence: f64) -> Value {
    json!({"provider": "github", "confidence": confidence, "event_type": null, "matched_rule": null,
           "mapped_action": action, "handler_mode": "command", "handler_target": "job",
           "reasons": ["mapping:github"], "ai_detection": null})
}

/// A `done` finish as the worker writes it: the compact result and, when `ran` names an
/// action, its done run holding the event's input and output.
async fn worker_done(db: &Db, row: i64, router: &Value, output: &Value, ran: Option<&str>, replay: bool) {
    let claimed = db.claim(1, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1, "event {row} is due");
    let mut f: Finish = done(claimed[0].claim_ref());
    f.outcome = Outcome::Done {
        result_json: stored_result::compact(router, output, replay),
    };
    f.action_run = ran.map(|a| {
        let mut r = run(row, a, "done");
        r.input_json = run_input::EVENT.into();
        r.output_json = Some(run_input::EVENT.into());
        r
    });
    assert!(db.finish(f).await.unwrap(), "the claim held");
}

async fn worker_written_run_and_result_read_back_byte_for_byte(t: TestStore) {
    let db = &t.db;
    let (row, payload) = queued(db, "ri-4").await;
    let r = full_router("act", 0.25);
    let output = json!({"stdout": "ok\n", "code": 0, "nested": {"b": [1.5, null], "a": "é"}});
    worker_done(db, row, &r, &output, Some("act"), false).await;

    // What the contract shows: the full result (as the worker stored it before results
    // were compact: sorted keys, `ok`, `source`, `event_id`, the router's nulls).
    let event = db.event(row).await.unwrap().expect("the event");
    let want_result = json!({"ok": true, "source": "webhook", "event_id": "ri-4", "router": r,
                             "result": output})
    .to_string();
    assert_eq!(event.result_json.as_deref(), Some(want_result.as_str()));
    let runs = db.action_runs(row).await.unwrap();
    assert_eq!(
        runs[0].input_json.as_deref(),
        Some(expected("act", &r, &payload).as_str())
    );
    assert_eq!(runs[0].output_json.as_deref(), Some(output.to_string().as_str()));
    let one = db.action_run(row, "act").await.unwrap().expect("the run");
    assert_eq!(one.output_json, runs[0].output_json);

    // What is stored: neither copy, and a result without what the row holds.
    assert_eq!(
        t.sql_text("SELECT input_json || '|' || output_json FROM action_runs")
            .await,
        "|"
    );
    let stored = t.sql_text("SELECT result_json FROM events").await;
    assert!(
        !stored.contains("ri-4") && !stored.contains("\"ok\"") && !stored.contains("ai_detection"),
        "{stored}"
    );
}

async fn marked_outputs_are_kept_when_a_later_result_replaces_them(t: TestStore) {
    let db = &t.db;
    let (row, payload) = queued(db, "ri-5").await;
    let (first, out1) = (full_router("act", 0.2), json!({"v": 1}));
    worker_done(db, row, &first, &out1, Some("act"), false).await;
    // Replayed: `act` is replayed (no run, same output); then routed to `other`.
    db.replay(row, false).await.unwrap();
    worker_done(db, row, &full_router("act", 0.9), &out1, None, true).await;
    let (third, out3) = (full_router("other", 0.5), json!({"v": 3}));
    db.replay(row, false).await.unwrap();
    worker_done(db, row, &third, &out3, Some("other"), false).await;

    let runs = db.action_runs(row).await.unwrap();
    let texts = |action: &str| {
        let r = runs.iter().find(|r| r.action.as_deref() == Some(action)).expect("run");
        (r.input_json.clone().unwrap(), r.output_json.clone().unwrap())
    };
    let (input, output) = texts("act");
    assert_eq!(
        serde_json::from_str::<Value>(&input).unwrap(),
        json!({"action": "act", "router": first, "payload": payload})
    );
    assert_eq!(output, out1.to_string());
    assert_eq!(texts("other"), (expected("other", &third, &payload), out3.to_string()));
}

async fn a_claim_reads_a_done_runs_output_from_its_event(t: TestStore) {
    let db = &t.db;
    let (row, _) = queued(db, "ri-6").await;
    let output = json!({"answer": [1, 2, 3], "text": "x"});
    worker_done(db, row, &full_router("act", 0.2), &output, Some("act"), false).await;
    db.replay(row, false).await.unwrap();
    let claimed = db.claim(1, LEASE).await.unwrap();
    assert_eq!(
        claimed[0].done_runs,
        vec![DoneRun {
            action: "act".into(),
            output_json: Some(output.to_string()),
        }]
    );
}

async fn a_compact_envelope_reads_back_whole_in_the_event_and_in_kept_inputs(t: TestStore) {
    let db = &t.db;
    // As ingest stores a POST to /webhook/github: no null hint, method, path, empty query
    // or content_type equal to its header (store::stored_payload).
    let stored = r#"{"source_hint":"github","headers":{"content-type":"application/json","x-github-event":"push"},"json":{"z":1, "a":[2]}}"#;
    let full = r#"{"source_hint":"github","method":"POST","path":"/webhook/github","query":{},"content_type":"application/json","headers":{"content-type":"application/json","x-github-event":"push"},"json":{"z":1, "a":[2]}}"#;
    let row = match db
        .enqueue(NewEvent {
            source: Source::Webhook,
            event_id: "ri-7".into(),
            payload_json: stored.into(),
        })
        .await
        .unwrap()
    {
        Enqueued::Queued(row) => row,
        other => panic!("ri-7 should be new, got {other:?}"),
    };
    let event = db.event(row).await.unwrap().expect("the event");
    assert_eq!(event.payload_json.as_deref(), Some(full));
    assert_eq!(t.sql_text("SELECT payload_json FROM events").await, stored);

    // Its done run's input, rebuilt on read and then written out by a later result.
    let payload: Value = serde_json::from_str(full).unwrap();
    let first = full_router("act", 0.2);
    worker_done(db, row, &first, &json!(1), Some("act"), false).await;
    let runs = db.action_runs(row).await.unwrap();
    assert_eq!(
        runs[0].input_json.as_deref(),
        Some(expected("act", &first, &payload).as_str())
    );
    db.replay(row, false).await.unwrap();
    worker_done(db, row, &full_router("other", 0.5), &json!(2), Some("other"), false).await;
    let kept = t
        .sql_text("SELECT input_json FROM action_runs WHERE action = 'act'")
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&kept).unwrap(),
        json!({"action": "act", "router": first, "payload": payload})
    );
}

async fn a_result_edited_into_bad_json_does_not_break_claims(t: TestStore) {
    let db = &t.db;
    let (row, _) = queued(db, "ri-8").await;
    worker_done(db, row, &full_router("act", 0.2), &json!({"v": 1}), Some("act"), false).await;
    db.replay(row, false).await.unwrap();
    let edit = "UPDATE events SET result_json = 'not json'";
    t.exec(edit, edit).await;
    // The run's output was the event's: it reads as null now, and the claim still works.
    let claimed = db.claim(1, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].done_runs,
        vec![DoneRun {
            action: "act".into(),
            output_json: Some("null".into()),
        }]
    );
}
