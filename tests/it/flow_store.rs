//! Flow admission in the store (CONTRACT §13), on both backends: slots, waits and wake-ups,
//! conflicts, debounce and rate, driven through `Store::flow_admit` / `flow_release` with
//! real claims. End-to-end behaviour with handlers is in `flow.rs`.

use std::time::Duration;

use serde_json::{Value, json};
use switchyard::domain::EventStatus;
use switchyard::domain::flow::Flow;
use switchyard::store::flow::{FlowAsk, FlowRun, FlowVerdict};
use switchyard::store::{ClaimedEvent, Db};

use crate::store::{TestStore, enqueue, store_tests};

const LEASE: Duration = Duration::from_secs(60);

fn flow(v: Value) -> Flow {
    Flow::parse(&v, None).expect("valid flow")
}

fn ask(c: &ClaimedEvent, action: &str, key: &str, f: &Flow) -> FlowAsk {
    FlowAsk {
        claim: c.claim_ref(),
        provider: "test".into(),
        runs: vec![FlowRun {
            action: action.into(),
            key: key.into(),
            flow: f.clone(),
        }],
    }
}

/// Claims every due event, in row id order.
async fn claim_all(db: &Db) -> Vec<ClaimedEvent> {
    let mut c = db.claim(100, LEASE).await.unwrap();
    c.sort_by_key(|e| e.id);
    c
}

async fn status(db: &Db, id: i64) -> String {
    db.event(id)
        .await
        .unwrap()
        .unwrap()
        .status
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default()
}

async fn admit(db: &Db, c: &ClaimedEvent, action: &str, key: &str, f: &Flow) -> FlowVerdict {
    db.flow_admit(ask(c, action, key, f)).await.unwrap()
}

store_tests!(
    per_key_and_limit_hold_and_a_release_wakes_the_oldest_waiter,
    skip_and_supersede_end_events_naming_who_holds_the_key,
    cancel_running_marks_the_running_slot_and_supersedes_its_event,
    debounce_runs_the_latest_event_with_the_whole_window,
    rate_limits_starts_per_key_in_a_sliding_window,
    a_slot_of_an_event_no_longer_claimed_is_freed_by_the_sweep,
);

async fn per_key_and_limit_hold_and_a_release_wakes_the_oldest_waiter(t: TestStore) {
    let db = &t.db;
    let f = flow(json!({"concurrency": {"limit": 2, "per_key": 1}}));
    let ids = [
        enqueue(db, "a1").await,
        enqueue(db, "a2").await,
        enqueue(db, "b1").await,
        enqueue(db, "c1").await,
    ];
    let c = claim_all(db).await;
    let keys = ["a", "a", "b", "c"];
    let mut verdicts = Vec::new();
    for (e, k) in c.iter().zip(keys) {
        verdicts.push(admit(db, e, "review", k, &f).await);
    }
    assert_eq!(verdicts[0], FlowVerdict::Run { debounced: vec![] });
    assert!(
        matches!(&verdicts[1], FlowVerdict::Wait { reason } if reason.contains("per_key 1")),
        "{:?}",
        verdicts[1]
    );
    assert_eq!(verdicts[2], FlowVerdict::Run { debounced: vec![] });
    assert!(
        matches!(&verdicts[3], FlowVerdict::Wait { reason } if reason.contains("limit 2")),
        "{:?}",
        verdicts[3]
    );
    assert_eq!(status(db, ids[1]).await, "waiting");
    let row = db.event(ids[1]).await.unwrap().unwrap();
    assert_eq!(row.attempt_count, 0, "a wait is not an attempt");
    assert!(
        row.last_error
            .unwrap()
            .starts_with("flow:concurrency: action 'review' key 'a'")
    );

    // Freeing a1's slot wakes a2 (its key) and c1 (the action's limit); both are due now.
    assert_eq!(db.flow_release(ids[0]).await.unwrap(), 2);
    assert_eq!(status(db, ids[1]).await, "pending");
    assert_eq!(status(db, ids[3]).await, "pending");
    let again = claim_all(db).await;
    assert_eq!(again.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[1], ids[3]]);
    assert_eq!(
        admit(db, &again[0], "review", "a", &f).await,
        FlowVerdict::Run { debounced: vec![] }
    );
    // b1 and a2 run: c1 is over the limit again and waits, keeping its place.
    assert!(matches!(
        admit(db, &again[1], "review", "c", &f).await,
        FlowVerdict::Wait { .. }
    ));
    let state = db.flow_state().await.unwrap();
    assert_eq!(state.running, vec![("review".to_string(), 2)]);
    assert_eq!(state.waiting, vec![("review".to_string(), 1)]);
}

async fn skip_and_supersede_end_events_naming_who_holds_the_key(t: TestStore) {
    let db = &t.db;
    let skip = flow(json!({"on_conflict": "skip", "concurrency": {"per_key": 1}}));
    let first = enqueue(db, "s1").await;
    let c = claim_all(db).await;
    assert_eq!(
        admit(db, &c[0], "triage", "k", &skip).await,
        FlowVerdict::Run { debounced: vec![] }
    );
    let second = enqueue(db, "s2").await;
    let c = claim_all(db).await;
    assert_eq!(
        admit(db, &c[0], "triage", "k", &skip).await,
        FlowVerdict::Ended {
            status: EventStatus::Skipped,
            by: first
        }
    );
    let row = db.event(second).await.unwrap().unwrap();
    assert_eq!(row.status, Some(EventStatus::Skipped));
    let result: Value = serde_json::from_str(row.result_json.as_deref().unwrap()).unwrap();
    assert_eq!(result["flow"]["by"], json!({"row_id": first, "event_id": "s1"}));

    // supersede: the waiting older events end, the running one is left alone.
    let sup = flow(json!({"on_conflict": "supersede", "concurrency": {"per_key": 1}}));
    let ids = [
        enqueue(db, "p1").await,
        enqueue(db, "p2").await,
        enqueue(db, "p3").await,
    ];
    let c = claim_all(db).await;
    assert_eq!(
        admit(db, &c[0], "review", "pr", &sup).await,
        FlowVerdict::Run { debounced: vec![] }
    );
    assert!(matches!(
        admit(db, &c[1], "review", "pr", &sup).await,
        FlowVerdict::Wait { .. }
    ));
    assert!(matches!(
        admit(db, &c[2], "review", "pr", &sup).await,
        FlowVerdict::Wait { .. }
    ));
    assert_eq!(status(db, ids[0]).await, "processing");
    assert_eq!(status(db, ids[1]).await, "superseded");
    assert_eq!(status(db, ids[2]).await, "waiting");
    let result: Value =
        serde_json::from_str(db.event(ids[1]).await.unwrap().unwrap().result_json.as_deref().unwrap()).unwrap();
    assert_eq!(result["flow"]["by"]["row_id"], json!(ids[2]));
    assert_eq!(result["flow"]["status"], json!("superseded"));
}

async fn cancel_running_marks_the_running_slot_and_supersedes_its_event(t: TestStore) {
    let db = &t.db;
    let f = flow(json!({"on_conflict": "cancel_running", "concurrency": {"per_key": 1}}));
    let old = enqueue(db, "c1").await;
    let c = claim_all(db).await;
    assert_eq!(
        admit(db, &c[0], "review", "pr", &f).await,
        FlowVerdict::Run { debounced: vec![] }
    );
    let running = c[0].clone();
    let new = enqueue(db, "c2").await;
    let c = claim_all(db).await;
    assert!(matches!(
        admit(db, &c[0], "review", "pr", &f).await,
        FlowVerdict::Wait { .. }
    ));
    assert_eq!(db.flow_cancels(vec![old, new]).await.unwrap(), vec![(old, new)]);
    // The worker that ran it stops the run, then ends the event and frees the slot.
    assert!(
        db.flow_supersede_running(running.claim_ref(), "review".into(), new)
            .await
            .unwrap()
    );
    assert_eq!(status(db, old).await, "superseded");
    assert_eq!(db.flow_release(old).await.unwrap(), 1);
    assert_eq!(status(db, new).await, "pending");
}

async fn debounce_runs_the_latest_event_with_the_whole_window(t: TestStore) {
    let db = &t.db;
    let f = flow(json!({"debounce": {"quiet": "1s", "deliver": "all"}}));
    let ids = [
        enqueue(db, "d1").await,
        enqueue(db, "d2").await,
        enqueue(db, "d3").await,
    ];
    for e in claim_all(db).await {
        assert!(matches!(
            admit(db, &e, "triage", "issue-1", &f).await,
            FlowVerdict::Wait { .. }
        ));
    }
    assert_eq!(status(db, ids[0]).await, "superseded");
    assert_eq!(status(db, ids[1]).await, "superseded");
    assert_eq!(status(db, ids[2]).await, "waiting");
    // Before the quiet period ends nothing is due; after it, the sweep makes d3 due.
    assert!(db.claim(10, LEASE).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(db.flow_sweep(true).await.unwrap(), 1);
    let c = claim_all(db).await;
    assert_eq!(c.len(), 1);
    assert_eq!(
        admit(db, &c[0], "triage", "issue-1", &f).await,
        FlowVerdict::Run {
            debounced: ids.to_vec()
        }
    );
}

async fn rate_limits_starts_per_key_in_a_sliding_window(t: TestStore) {
    let db = &t.db;
    let f = flow(json!({"rate": {"limit": 2, "per": "1h"}}));
    let ids = [
        enqueue(db, "r1").await,
        enqueue(db, "r2").await,
        enqueue(db, "r3").await,
        enqueue(db, "o1").await,
    ];
    let c = claim_all(db).await;
    assert_eq!(
        admit(db, &c[0], "notify", "k", &f).await,
        FlowVerdict::Run { debounced: vec![] }
    );
    assert_eq!(
        admit(db, &c[1], "notify", "k", &f).await,
        FlowVerdict::Run { debounced: vec![] }
    );
    match admit(db, &c[2], "notify", "k", &f).await {
        FlowVerdict::Wait { reason } => assert!(reason.contains("2 starts in the last 1h"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Another key has its own window; finishing runs does not give starts back.
    assert_eq!(
        admit(db, &c[3], "notify", "other", &f).await,
        FlowVerdict::Run { debounced: vec![] }
    );
    db.flow_release(ids[0]).await.unwrap();
    let row = db.event(ids[2]).await.unwrap().unwrap();
    assert_eq!(row.status, Some(EventStatus::Waiting));
    let due = row.next_attempt_at.unwrap();
    let in_an_hour = switchyard::time::after(Duration::from_secs(3500));
    assert!(due > in_an_hour, "the wait lasts until the window moves: {due}");
}

async fn a_slot_of_an_event_no_longer_claimed_is_freed_by_the_sweep(t: TestStore) {
    let db = &t.db;
    let f = flow(json!({"concurrency": {"per_key": 1}}));
    let ids = [enqueue(db, "x1").await, enqueue(db, "x2").await];
    let c = db.claim(10, Duration::from_millis(300)).await.unwrap();
    let mut c = c;
    c.sort_by_key(|e| e.id);
    assert_eq!(
        admit(db, &c[0], "job", "k", &f).await,
        FlowVerdict::Run { debounced: vec![] }
    );
    assert!(matches!(
        admit(db, &c[1], "job", "k", &f).await,
        FlowVerdict::Wait { .. }
    ));
    // x1's process dies: its lease expires, the reclaimer takes the claim back, and the
    // sweep frees the slot and wakes x2.
    tokio::time::sleep(Duration::from_millis(400)).await;
    db.reclaim_expired(5).await.unwrap();
    assert!(db.flow_sweep(true).await.unwrap() >= 1);
    assert_eq!(status(db, ids[1]).await, "pending");
}
