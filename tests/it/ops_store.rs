//! The operator queries of the `Store` (CONTRACT §10) on both backends: filters, keyset
//! pages, replay (forced or not), cancel, bulk replay, statistics and purges.

use std::collections::HashSet;
use std::time::Duration;

use switchyard::domain::{EventStatus, HandlerMode, RunStatus, Source};
use switchyard::store::{
    ActionRunRecord, Cursor, Db, Enqueued, EventFilter, Finish, NewEvent, Outcome, STATUSES, Transition,
};

use crate::store::{TestStore, store_tests};

const LEASE: Duration = Duration::from_secs(60);

store_tests!(
    ten_thousand_events_filter_exactly_and_page_once_in_order,
    replay_reuses_done_actions_unless_forced,
    cancel_only_pending_or_retry_and_never_claimed,
    bulk_replay_requeues_every_match_except_processing,
    purge_deletes_old_finished_events_with_their_runs,
    stats_and_queue_depth_count_by_status,
);

/// What the seeding SQL gives event number `n` (its 0-based position).
#[derive(Debug, Clone)]
struct Seeded {
    id: i64,
    event_id: String,
    source: &'static str,
    status: &'static str,
    provider: &'static str,
    action: String,
    received_at: String,
    last_error: Option<String>,
}

const PROVIDERS: [&str; 3] = ["github", "stripe", "slack"];

/// The seed's status of row `id`, by `id % 10`: every status.
const STATUS_BY_ID: [&str; 10] = [
    "pending",
    "processing",
    "retry",
    "done",
    "error",
    "cancelled",
    "held",
    "waiting",
    "skipped",
    "superseded",
];

/// Queues `n` events (every fifth from cron) and sets statuses, providers, actions, errors
/// and received_at (with many ties) by SQL, the same on both backends.
async fn seed(t: &TestStore, n: usize) -> Vec<Seeded> {
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..n {
        let db = t.db.clone();
        pending.spawn(async move {
            let source = if i % 5 == 0 { Source::Cron } else { Source::Webhook };
            let e = NewEvent {
                source,
                event_id: format!("ev-{i:05}"),
                payload_json: format!(r#"{{"i":{i}}}"#),
            };
            match db.enqueue(e).await.unwrap() {
                Enqueued::Queued(id) => (i, id),
                other => panic!("{other:?}"),
            }
        });
    }
    let mut rows = pending.join_all().await;
    rows.sort_unstable();
    // status by id % 10 (every status, flow control's too), provider by id % 3, action by
    // id % 2, received_at from id / 7 (ties); errors and waits have a last_error.
    let set = "UPDATE events SET \
        status = CASE id % 10 WHEN 0 THEN 'pending' WHEN 1 THEN 'processing' WHEN 2 THEN 'retry' \
                 WHEN 3 THEN 'done' WHEN 4 THEN 'error' WHEN 5 THEN 'cancelled' WHEN 6 THEN 'held' \
                 WHEN 7 THEN 'waiting' WHEN 8 THEN 'skipped' ELSE 'superseded' END, \
        provider = CASE id % 3 WHEN 0 THEN 'github' WHEN 1 THEN 'stripe' ELSE 'slack' END, \
        action = 'act' || (id % 2), \
        last_error = CASE id % 10 WHEN 4 THEN 'Boom ' || (id % 7) \
                     WHEN 7 THEN 'flow:concurrency: waiting behind event ' || (id - 10) END, received_at = ";
    let sqlite = format!("{set} printf('2024-01-01T%02d:%02d:00.000000+00:00', (id / 7) / 60 % 24, (id / 7) % 60)");
    let pg = format!(
        "{set} format('2024-01-01T%s:%s:00.000000+00:00', \
            lpad(((id / 7) / 60 % 24)::text, 2, '0'), lpad(((id / 7) % 60)::text, 2, '0'))"
    );
    t.exec(&sqlite, &pg).await;
    // PostgreSQL keeps queue state in `event_queue` (migration 0020): finished events have
    // no queue row, and a claimed event's row holds the lease while its events row keeps
    // the status it had before the claim.
    t.exec(
        "SELECT 1",
        "DELETE FROM event_queue q USING events e WHERE e.id = q.event_row_id \
           AND e.status NOT IN ('pending', 'retry', 'processing'); \
         UPDATE event_queue q SET leased_until = '9999-01-01T00:00:00.000000+00:00', claimed_at = e.received_at, \
           attempt = e.attempt_count + 1 FROM events e WHERE e.id = q.event_row_id AND e.status = 'processing'; \
         UPDATE events SET status = 'pending' WHERE status = 'processing'",
    )
    .await;
    rows.into_iter()
        .map(|(i, id)| Seeded {
            id,
            event_id: format!("ev-{i:05}"),
            source: if i % 5 == 0 { "cron" } else { "webhook" },
            status: STATUS_BY_ID[(id % 10) as usize],
            provider: PROVIDERS[(id % 3) as usize],
            action: format!("act{}", id % 2),
            received_at: format!(
                "2024-01-01T{:02}:{:02}:00.000000+00:00",
                (id / 7) / 60 % 24,
                (id / 7) % 60
            ),
            last_error: match id % 10 {
                4 => Some(format!("Boom {}", id % 7)),
                7 => Some(format!("flow:concurrency: waiting behind event {}", id - 10)),
                _ => None,
            },
        })
        .collect()
}

fn matches(e: &Seeded, f: &EventFilter) -> bool {
    let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    let q = f.q.as_deref().is_none_or(|q| {
        let q = q.to_ascii_lowercase();
        e.event_id.to_ascii_lowercase().contains(&q)
            || e.last_error
                .as_deref()
                .is_some_and(|l| l.to_ascii_lowercase().contains(&q))
    });
    eq(&f.status, e.status)
        && eq(&f.provider, e.provider)
        && eq(&f.action, &e.action)
        && eq(&f.source, e.source)
        && f.since.as_deref().is_none_or(|s| e.received_at.as_str() >= s)
        && f.until.as_deref().is_none_or(|u| e.received_at.as_str() < u)
        && q
}

/// Every row of `filter`, page by page; asserts the pages are newest first.
async fn walk(db: &Db, filter: &EventFilter, limit: u32) -> Vec<i64> {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = db.list_page(filter.clone(), cursor.clone(), limit).await.unwrap();
        assert!(page.events.len() <= limit as usize);
        out.extend(page.events.iter().map(|e| e.id));
        match page.next {
            Some(next) => {
                assert_eq!(page.events.len(), limit as usize, "only a full page has a next page");
                // The cursor survives its opaque form.
                cursor = Some(Cursor::decode(&next.encode()).unwrap());
            }
            None => return out,
        }
    }
}

/// Ids of `rows` matching `filter`, newest first (received_at, then id, descending).
fn expected(rows: &[Seeded], filter: &EventFilter) -> Vec<i64> {
    let mut m: Vec<&Seeded> = rows.iter().filter(|e| matches(e, filter)).collect();
    m.sort_by(|a, b| (&b.received_at, b.id).cmp(&(&a.received_at, a.id)));
    m.iter().map(|e| e.id).collect()
}

/// One seeding of 10,000 events serves both halves (it is the slow part).
async fn ten_thousand_events_filter_exactly_and_page_once_in_order(t: TestStore) {
    let rows = seed(&t, 10_000).await;
    every_filter_combination_returns_exactly_the_matching_rows(&t, &rows).await;
    pages_walk_every_row_once_in_order_while_events_arrive(&t, &rows).await;
}

async fn every_filter_combination_returns_exactly_the_matching_rows(t: &TestStore, rows: &[Seeded]) {
    let opt = |v: &str| Some(v.to_string());
    let statuses: Vec<Option<String>> = std::iter::once(None).chain(STATUSES.iter().map(|s| opt(s))).collect();
    let providers: Vec<Option<String>> = std::iter::once(None).chain(PROVIDERS.iter().map(|p| opt(p))).collect();
    let sources = [None, opt("webhook"), opt("cron")];
    let windows = [
        (None, None),
        (
            opt("2024-01-01T01:00:00.000000+00:00"),
            opt("2024-01-01T02:30:00.000000+00:00"),
        ),
    ];
    let queries = [None, opt("BOOM 3"), opt("ev-001")];
    let mut combinations = 0;
    for status in &statuses {
        for provider in &providers {
            for source in &sources {
                for (since, until) in &windows {
                    for q in &queries {
                        let f = EventFilter {
                            status: status.clone(),
                            provider: provider.clone(),
                            action: None,
                            source: source.clone(),
                            since: since.clone(),
                            until: until.clone(),
                            q: q.clone(),
                        };
                        assert_eq!(walk(&t.db, &f, 5000).await, expected(rows, &f), "{f:?}");
                        combinations += 1;
                    }
                }
            }
        }
    }
    assert_eq!(combinations, (STATUSES.len() + 1) * 4 * 3 * 2 * 3);
    // Every status is seeded and filtered: none of the walks above was vacuous.
    assert_eq!(STATUSES.len(), STATUS_BY_ID.len());
    assert!(STATUSES.iter().all(|s| STATUS_BY_ID.contains(s)));
    for action in ["act0", "act1"] {
        let f = EventFilter {
            action: opt(action),
            provider: opt("stripe"),
            ..EventFilter::default()
        };
        let want = expected(rows, &f);
        assert!(!want.is_empty());
        assert_eq!(walk(&t.db, &f, 5000).await, want, "{f:?}");
    }
    // A waiting event's reason is its last_error: q finds it.
    let f = EventFilter {
        q: opt("FLOW:concurrency"),
        ..EventFilter::default()
    };
    let want = expected(rows, &f);
    assert!(!want.is_empty());
    assert_eq!(walk(&t.db, &f, 5000).await, want, "{f:?}");
    // A LIKE wildcard in q is a literal character.
    let f = EventFilter {
        q: opt("ev-%"),
        ..EventFilter::default()
    };
    assert!(walk(&t.db, &f, 100).await.is_empty());
}

async fn pages_walk_every_row_once_in_order_while_events_arrive(t: &TestStore, rows: &[Seeded]) {
    let all = EventFilter::default();
    let want = expected(rows, &all);
    let mut got = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut arrivals = 0;
    loop {
        let page = t.db.list_page(all.clone(), cursor, 97).await.unwrap();
        got.extend(page.events.iter().map(|e| e.id));
        // New events arrive between pages: they are newer than the walk and never show up in it.
        t.db.enqueue(NewEvent {
            source: Source::Webhook,
            event_id: format!("late-{arrivals}"),
            payload_json: "{}".into(),
        })
        .await
        .unwrap();
        arrivals += 1;
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(got.len(), want.len());
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len(), "no row twice");
    assert_eq!(got, want, "in order, newest first");
    assert_eq!(arrivals, 10_000usize.div_ceil(97));
    // A fresh walk sees the late arrivals first.
    let page = t.db.list_page(all, None, 3).await.unwrap();
    assert!(
        page.events
            .iter()
            .all(|e| e.event_id.as_deref().unwrap().starts_with("late-"))
    );
}

fn run(event_row_id: i64, action: &str, output: &str) -> ActionRunRecord {
    ActionRunRecord {
        event_row_id,
        started_at: switchyard::time::now(),
        finished_at: Some(switchyard::time::now()),
        status: RunStatus::Done,
        provider: "github".into(),
        action: action.into(),
        handler_mode: HandlerMode::Noop,
        handler_target: None,
        input_json: "{}".into(),
        output_json: Some(output.into()),
        error: None,
    }
}

/// Claims everything due and finishes it `done` with one action run each.
async fn finish_all_done(db: &Db, output: &str) -> Vec<switchyard::store::ClaimedEvent> {
    let claimed = db.claim(1000, LEASE).await.unwrap();
    for c in &claimed {
        let f = Finish {
            claim: c.claim_ref(),
            outcome: Outcome::Done {
                result_json: "{}".into(),
            },
            action_run: Some(run(c.id, "act", output)),
            provider: Some("github".into()),
            action: Some("act".into()),
            other_runs_read_event: true,
            fan_out: None,
        };
        assert!(db.finish(f).await.unwrap());
    }
    claimed
}

async fn enqueue(db: &Db, id: &str) -> i64 {
    let e = NewEvent {
        source: Source::Webhook,
        event_id: id.into(),
        payload_json: "{}".into(),
    };
    db.enqueue(e).await.unwrap().row_id()
}

async fn replay_reuses_done_actions_unless_forced(t: TestStore) {
    let db = &t.db;
    let id = enqueue(db, "r1").await;
    let first = finish_all_done(db, r#"{"n":1}"#).await;
    assert!(first[0].done_runs.is_empty());
    let listed = db.list_page(EventFilter::default(), None, 10).await.unwrap().events;
    assert_eq!(
        listed[0].provider.as_deref(),
        Some("github"),
        "the finish stores the route"
    );
    assert_eq!(listed[0].action.as_deref(), Some("act"));

    // A plain replay hands the done run over: the worker reuses its output.
    assert_eq!(db.replay(id, false).await.unwrap(), Transition::Applied);
    let again = finish_all_done(db, r#"{"n":2}"#).await;
    assert_eq!(again[0].done_runs.len(), 1);
    assert_eq!(again[0].attempt_count, 1, "a fresh attempt budget");

    // A forced replay hides it, once: the next attempt runs the action again.
    assert_eq!(db.replay(id, true).await.unwrap(), Transition::Applied);
    let forced = finish_all_done(db, r#"{"n":3}"#).await;
    assert!(forced[0].done_runs.is_empty(), "force reruns done actions");
    assert_eq!(db.replay(id, false).await.unwrap(), Transition::Applied);
    let after = db.claim(10, LEASE).await.unwrap();
    assert_eq!(after[0].done_runs.len(), 1, "the force applied to one replay only");
    assert_eq!(
        db.replay(id, true).await.unwrap(),
        Transition::Conflict("processing".into())
    );
    assert_eq!(db.replay(id + 99, false).await.unwrap(), Transition::NotFound);
}

async fn cancel_only_pending_or_retry_and_never_claimed(t: TestStore) {
    let db = &t.db;
    let pending = enqueue(db, "c1").await;
    let retried = enqueue(db, "c2").await;
    let claimed = db.claim(10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let c2 = claimed.iter().find(|c| c.id == retried).unwrap().claim_ref();
    let c1 = claimed.iter().find(|c| c.id == pending).unwrap().claim_ref();
    assert_eq!(
        db.cancel(pending).await.unwrap(),
        Transition::Conflict("processing".into())
    );
    db.release(vec![c1]).await.unwrap();
    let retry = Finish {
        claim: c2,
        outcome: Outcome::Retry {
            error: "x".into(),
            next_attempt_at: switchyard::time::timestamp_after(Duration::ZERO),
        },
        action_run: None,
        provider: None,
        action: None,
        other_runs_read_event: true,
        fan_out: None,
    };
    assert!(db.finish(retry).await.unwrap());
    assert_eq!(db.cancel(retried).await.unwrap(), Transition::Applied);
    assert_eq!(db.cancel(pending).await.unwrap(), Transition::Applied);
    assert_eq!(
        db.cancel(pending).await.unwrap(),
        Transition::Conflict("cancelled".into())
    );
    assert_eq!(db.cancel(pending + 99).await.unwrap(), Transition::NotFound);
    assert!(
        db.claim(10, LEASE).await.unwrap().is_empty(),
        "cancelled events are never claimed"
    );
    let e = db.event(retried).await.unwrap().unwrap();
    assert_eq!(e.status, Some(EventStatus::Cancelled));
    assert!(e.processed_at.is_some());
    // A cancelled event can still be replayed on purpose.
    assert_eq!(db.replay(retried, false).await.unwrap(), Transition::Applied);
    assert_eq!(db.claim(10, LEASE).await.unwrap().len(), 1);
}

async fn bulk_replay_requeues_every_match_except_processing(t: TestStore) {
    let rows = seed(&t, 600).await;
    let errors = |p: &str| rows.iter().filter(|r| r.status == "error" && r.provider == p).count() as u64;
    let f = |status: &str, provider: Option<&str>| EventFilter {
        status: Some(status.into()),
        provider: provider.map(str::to_string),
        ..EventFilter::default()
    };
    let n = t.db.replay_matching(f("error", Some("stripe"))).await.unwrap();
    assert_eq!(n, errors("stripe"));
    let left = rows.iter().filter(|r| r.status == "error").count() as u64 - n;
    assert_eq!(t.db.replay_matching(f("error", None)).await.unwrap(), left);
    assert_eq!(t.db.replay_matching(f("error", None)).await.unwrap(), 0);
    assert_eq!(t.db.replay_matching(f("processing", None)).await.unwrap(), 0);
    let page = t.db.list_page(f("pending", None), None, 1000).await.unwrap();
    let pending = rows
        .iter()
        .filter(|r| r.status == "pending" || r.status == "error")
        .count();
    assert_eq!(page.events.len(), pending);
    assert!(
        page.events
            .iter()
            .all(|e| e.attempt_count == 0 && e.last_error.is_none())
    );
}

async fn purge_deletes_old_finished_events_with_their_runs(t: TestStore) {
    let db = &t.db;
    for i in 0..7 {
        enqueue(db, &format!("p{i}")).await;
    }
    let claimed = finish_all_done(db, "{}").await;
    let ids: Vec<i64> = claimed.iter().map(|c| c.id).collect();
    let keep = enqueue(db, "still-pending").await;
    // Five of them finished long ago.
    let old = format!("{},{},{},{},{}", ids[0], ids[1], ids[2], ids[3], ids[4]);
    let sql = format!("UPDATE events SET processed_at = '2020-01-01T00:00:00.000000+00:00' WHERE id IN ({old})");
    t.exec(&sql, &sql).await;
    let before = switchyard::retention::cutoff(Duration::from_secs(86_400));
    assert_eq!(db.purge_batch(EventStatus::Error, &before, 2).await.unwrap(), 0);
    assert_eq!(
        db.purge_batch(EventStatus::Done, &before, 2).await.unwrap(),
        2,
        "a batch is bounded"
    );
    assert_eq!(
        switchyard::retention::purge(db, EventStatus::Done, &before)
            .await
            .unwrap(),
        3
    );
    for id in &ids[..5] {
        assert!(db.event(*id).await.unwrap().is_none());
        assert!(
            db.action_runs(*id).await.unwrap().is_empty(),
            "runs go with their event"
        );
    }
    for id in &ids[5..] {
        assert!(db.event(*id).await.unwrap().is_some());
        assert_eq!(db.action_runs(*id).await.unwrap().len(), 1);
    }
    assert!(db.event(keep).await.unwrap().is_some());
}

async fn stats_and_queue_depth_count_by_status(t: TestStore) {
    let rows = seed(&t, 120).await;
    let count = |s: &str| rows.iter().filter(|r| r.status == s).count() as i64;
    // The seed's finished rows have no processed_at: finish some now for the rates.
    let sql = "UPDATE events SET processed_at = received_at WHERE status IN ('done', 'error')";
    t.exec(sql, sql).await;
    let stats = t.db.stats().await.unwrap();
    for s in STATUSES {
        assert_eq!(stats.by_status[*s], count(s), "{s}");
    }
    assert_eq!(stats.done_last_hour, 0, "the seed's events finished in 2024");
    let oldest = rows
        .iter()
        .filter(|r| r.status == "pending" || r.status == "retry")
        .count();
    assert!(oldest > 0);
    // next_attempt_at was set at enqueue: due now, so the oldest due age is small but known.
    assert!(stats.oldest_due_age_seconds.is_some_and(|a| a < 600.0), "{stats:?}");
    let depth = t.db.queue_depth().await.unwrap();
    assert_eq!(
        (depth.pending, depth.retry, depth.processing, depth.held, depth.waiting),
        (
            count("pending"),
            count("retry"),
            count("processing"),
            count("held"),
            count("waiting")
        )
    );
    for s in ["held", "waiting", "skipped", "superseded"] {
        assert!(count(s) > 0, "the seed has {s} events");
    }

    let id = enqueue(&t.db, "fresh").await;
    let claimed = t.db.claim(1000, LEASE).await.unwrap();
    assert!(claimed.iter().any(|c| c.id == id));
    for c in &claimed {
        let f = Finish {
            claim: c.claim_ref(),
            outcome: if c.id == id {
                Outcome::Done {
                    result_json: "{}".into(),
                }
            } else {
                Outcome::Failed { error: "no".into() }
            },
            action_run: None,
            provider: None,
            action: None,
            other_runs_read_event: true,
            fan_out: None,
        };
        assert!(t.db.finish(f).await.unwrap());
    }
    let stats = t.db.stats().await.unwrap();
    assert_eq!((stats.done_last_minute, stats.done_last_hour), (1, 1));
    let failed = claimed.len() as i64 - 1;
    assert_eq!((stats.failed_last_minute, stats.failed_last_hour), (failed, failed));
    assert_eq!(stats.oldest_due_age_seconds, None, "nothing is due");
}
