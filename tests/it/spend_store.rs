//! The spend ledger and run usage (CONTRACT §14) on both backends.

use std::time::Duration;

use switchyard::domain::{ActionBudget, Budget, HandlerMode, RunStatus, Usage};
use switchyard::store::{ActionRunRecord, Enqueued, RoutingChanges, SpendBy, UsageRecord, spend};

use crate::store::{TestStore, event, store_tests};

store_tests!(
    usage_is_stored_with_the_run_and_summed_in_the_ledger,
    budgets_reserve_runs_in_flight_and_hold_releases
);

fn usage(cost: Option<f64>, model: &str, input: u64) -> Usage {
    Usage {
        cost_usd: cost,
        input_tokens: Some(input),
        output_tokens: Some(2),
        cache_read_tokens: Some(3),
        cache_creation_tokens: None,
        model: Some(model.into()),
        stop: Some("success".into()),
        ..Usage::default()
    }
}

fn run(event_row_id: i64, action: &str) -> ActionRunRecord {
    ActionRunRecord {
        event_row_id,
        started_at: "2026-03-01T10:00:00+00:00".into(),
        finished_at: None,
        status: RunStatus::Running,
        provider: "github".into(),
        action: action.into(),
        handler_mode: HandlerMode::Agent,
        handler_target: Some("triage".into()),
        input_json: "{}".into(),
        output_json: None,
        error: None,
    }
}

fn record(event_row_id: i64, action: &str, started: &str, usage: Usage, transcript: Option<&str>) -> UsageRecord {
    UsageRecord {
        event_row_id,
        action: action.into(),
        handler_mode: HandlerMode::Agent,
        started_at: started.into(),
        finished_at: started.into(),
        usage,
        transcript: transcript.map(str::to_owned),
    }
}

async fn usage_is_stored_with_the_run_and_summed_in_the_ledger(t: TestStore) {
    let db = &t.db;
    let Enqueued::Queued(id) = db.enqueue(event("spend-1")).await.unwrap() else {
        panic!("new event")
    };
    db.start_action_run(run(id, "triage")).await.unwrap();
    // Two attempts of one run: the run shows the latest, the ledger holds both.
    let first = usage(Some(0.25), "sonnet", 10);
    db.record_usage(record(
        id,
        "triage",
        "2026-03-01T10:00:00+00:00",
        first,
        Some("{\"a\":1}\n"),
    ))
    .await
    .unwrap();
    let second = usage(Some(0.5), "sonnet", 20);
    db.record_usage(record(
        id,
        "triage",
        "2026-03-02T09:00:00+00:00",
        second.clone(),
        Some("{\"b\":22}\n"),
    ))
    .await
    .unwrap();
    db.record_usage(record(
        id,
        "other",
        "2026-03-02T11:00:00+00:00",
        usage(None, "haiku", 5),
        None,
    ))
    .await
    .unwrap();

    let runs = db.action_runs(id).await.unwrap();
    let usage_rows = db.run_usage(id).await.unwrap();
    assert_eq!(usage_rows.len(), 1, "{usage_rows:?}");
    assert_eq!(usage_rows[0].run_id, runs[0].id);
    assert_eq!(usage_rows[0].usage.as_ref(), Some(&second));
    assert_eq!(usage_rows[0].transcript_bytes, Some(9));
    assert_eq!(
        db.transcript(id, runs[0].id).await.unwrap(),
        Some(Some("{\"b\":22}\n".to_owned()))
    );
    assert_eq!(db.transcript(id, runs[0].id + 100).await.unwrap(), None);

    let cells = db.spend_cells("2026-03-01T00:00:00+00:00".into()).await.unwrap();
    assert_eq!(cells.len(), 3, "{cells:?}");
    let by_action = spend::group(&cells, SpendBy::Action);
    assert_eq!(by_action[0].key, "triage");
    assert_eq!(by_action[0].cost_usd, 0.75);
    assert_eq!(by_action[0].runs, 2);
    assert_eq!(by_action[0].tokens["input"], 30);
    assert_eq!(by_action[0].tokens["cache_creation"], 0);
    assert_eq!((by_action[1].key.as_str(), by_action[1].cost_usd), ("other", 0.0));
    let by_day = spend::group(&cells, SpendBy::Day);
    let days: Vec<(&str, f64)> = by_day.iter().map(|g| (g.key.as_str(), g.cost_usd)).collect();
    assert_eq!(days, [("2026-03-01", 0.25), ("2026-03-02", 0.5)]);
    let by_model = spend::group(&cells, SpendBy::Model);
    assert_eq!(by_model[0].key, "sonnet");
    // `since` cuts by start time.
    let later = db.spend_cells("2026-03-02T00:00:00+00:00".into()).await.unwrap();
    assert_eq!(later.iter().map(|c| c.runs).sum::<i64>(), 2);

    let top = db.top_runs("2026-03-01T00:00:00+00:00".into(), 10).await.unwrap();
    let costs: Vec<f64> = top.iter().map(|r| r.cost_usd).collect();
    assert_eq!(costs, [0.5, 0.25], "unpriced runs are not listed");
    assert_eq!(top[0].event_row_id, id);
}

async fn budgets_reserve_runs_in_flight_and_hold_releases(t: TestStore) {
    let db = &t.db;
    let budget = Budget {
        per_run_usd: Some(2.0),
        daily_usd: Some(5.0),
        monthly_usd: None,
    };
    let changes = RoutingChanges {
        budgets: vec![ActionBudget {
            action: "triage".into(),
            budget,
        }],
        ..Default::default()
    };
    db.apply(changes).await.unwrap();
    assert_eq!(db.budget("triage").await.unwrap(), Some(budget));
    assert_eq!(db.budget("other").await.unwrap(), None);
    assert_eq!(db.budgets().await.unwrap()[0].action, "triage");

    let Enqueued::Queued(a) = db.enqueue(event("budget-a")).await.unwrap() else {
        panic!("new event")
    };
    let Enqueued::Queued(b) = db.enqueue(event("budget-b")).await.unwrap() else {
        panic!("new event")
    };
    // A run in flight reserves its action's per_run_usd, for the other events.
    let mut running = run(a, "triage");
    running.started_at = switchyard::time::now();
    db.start_action_run(running).await.unwrap();
    let since = "2000-01-01T00:00:00+00:00".to_owned();
    assert_eq!(db.reserved(since.clone(), b, None).await.unwrap(), 2.0);
    assert_eq!(db.reserved(since.clone(), b, Some("triage".into())).await.unwrap(), 2.0);
    assert_eq!(db.reserved(since.clone(), b, Some("other".into())).await.unwrap(), 0.0);
    assert_eq!(db.reserved(since, a, None).await.unwrap(), 0.0, "not its own run");
    assert_eq!(
        db.spent_since("2000-01-01T00:00:00+00:00".into(), None).await.unwrap(),
        0.0
    );

    // Holding gives the attempt back; the event is due again once its time comes.
    let claimed = db.claim(10, Duration::from_secs(60)).await.unwrap();
    let claim = claimed.iter().find(|c| c.id == b).unwrap().claim_ref();
    let later = switchyard::time::format(chrono::Utc::now() + chrono::Duration::hours(1));
    assert!(db.hold(claim, "budget:daily: test".into(), later).await.unwrap());
    assert!(
        !db.hold(claim, "again".into(), switchyard::time::now()).await.unwrap(),
        "fenced"
    );
    let held = db.event(b).await.unwrap().unwrap();
    assert_eq!(held.status.map(|s| s.as_str()), Some("held"));
    assert_eq!(held.attempt_count, 0);
    assert_eq!(held.last_error.as_deref(), Some("budget:daily: test"));
    assert_eq!(db.queue_depth().await.unwrap().held, 1);
    assert_eq!(db.release_held().await.unwrap(), 0, "not yet");
    let claim = db.claim(10, Duration::from_secs(60)).await.unwrap();
    assert!(claim.is_empty(), "a held event is not claimed: {claim:?}");
    t.exec(
        &format!("UPDATE events SET next_attempt_at = '2000-01-01T00:00:00+00:00' WHERE id = {b}"),
        &format!("UPDATE events SET next_attempt_at = '2000-01-01T00:00:00+00:00' WHERE id = {b}"),
    )
    .await;
    assert_eq!(db.release_held().await.unwrap(), 1);
    let again = db.claim(10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        again.iter().map(|c| (c.id, c.attempt_count)).collect::<Vec<_>>(),
        [(b, 1)]
    );
}
