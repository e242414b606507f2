//! Flow control's statuses (CONTRACT §13) where an operator meets them, on both backends:
//! the store (cancel of `held` and `waiting` events, which leave their flow lines; purges
//! of `skipped` and `superseded` ones), the operator API (filters, `/stats`, `/metrics`,
//! cancel, replay), the CLI (`events list --status`, what `events show` says) and the
//! dashboard (badges, the event page's reason and link). The statuses are set in SQL here:
//! what produces them (admission) is tested on its own.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use switchyard::domain::{EventStatus, Source};
use switchyard::store::{Db, NewEvent, Transition};

use crate::helpers::*;
use crate::store::{PgSchema, TestStore, store_tests};
use crate::ui::open_page;

const LEASE: Duration = Duration::from_secs(60);
/// A time no test reaches: a waiting or held event stays so.
const FAR: &str = "9999-01-01T00:00:00.000000+00:00";
/// Long finished.
const OLD: &str = "2020-01-01T00:00:00.000000+00:00";

store_tests!(
    cancel_takes_held_and_waiting_events_and_moves_their_flow_line,
    purges_find_skipped_and_superseded_events,
);

async fn enqueue(db: &Db, id: &str) -> i64 {
    let e = NewEvent {
        source: Source::Webhook,
        event_id: id.into(),
        payload_json: "{}".into(),
    };
    db.enqueue(e).await.unwrap().row_id()
}

/// `sql` on both backends; on PostgreSQL the events `ids` also lose their queue row (a
/// waiting, held or finished event has none).
async fn set(t: &TestStore, sql: &str, ids: &[i64]) {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    let pg = format!(
        "{sql}; DELETE FROM event_queue WHERE event_row_id IN ({})",
        list.join(", ")
    );
    t.exec(sql, &pg).await;
}

async fn count(t: &TestStore, sql: &str) -> i64 {
    t.sql_text(&format!("SELECT CAST(({sql}) AS TEXT)"))
        .await
        .parse()
        .unwrap()
}

async fn cancel_takes_held_and_waiting_events_and_moves_their_flow_line(t: TestStore) {
    let db = &t.db;
    let head = enqueue(db, "head").await;
    let behind = enqueue(db, "behind").await;
    let held = enqueue(db, "held").await;
    let debounced = enqueue(db, "debounced").await;
    let ended = enqueue(db, "ended").await;
    // `head` and `behind` wait in the line of key k of `review` (behind waits for head, so
    // nothing but head's start or end lets it go); `debounced` holds a debounce window.
    let sql = format!(
        "UPDATE events SET status = 'waiting', next_attempt_at = '{FAR}', \
           last_error = 'flow:concurrency: action ''review'' key ''k'': waiting' WHERE id IN ({head}, {behind}, {debounced}); \
         UPDATE events SET status = 'held', next_attempt_at = '{FAR}', last_error = 'budget:daily' WHERE id = {held}; \
         UPDATE events SET status = 'superseded', processed_at = '{OLD}' WHERE id = {ended}; \
         INSERT INTO flow_waits (event_row_id, action, flow_key, pool, blocked_on, since) VALUES \
           ({head}, 'review', 'k', NULL, 'key', '{OLD}'), ({behind}, 'review', 'k', NULL, 'key', '{OLD}'), \
           ({debounced}, 'triage', 'x', NULL, 'debounce', '{OLD}'); \
         INSERT INTO flow_debounce (action, flow_key, holder_row_id, first_at, due_at) \
           VALUES ('triage', 'x', {debounced}, '{OLD}', '{FAR}'); \
         INSERT INTO flow_debounced (action, flow_key, event_row_id) VALUES ('triage', 'x', {debounced}), ('triage', 'x', {ended})"
    );
    set(&t, &sql, &[head, behind, held, debounced, ended]).await;
    assert!(db.claim(10, LEASE).await.unwrap().is_empty(), "nothing is due");

    assert_eq!(
        db.cancel(ended).await.unwrap(),
        Transition::Conflict("superseded".into())
    );
    assert_eq!(db.cancel(head).await.unwrap(), Transition::Applied);
    assert_eq!(
        count(
            &t,
            &format!("SELECT COUNT(*) FROM flow_waits WHERE event_row_id = {head}")
        )
        .await,
        0,
        "the cancelled event left its line"
    );
    // The event behind it is looked at again now, not when its wait would have ended.
    let claimed: Vec<i64> = db.claim(10, LEASE).await.unwrap().iter().map(|c| c.id).collect();
    assert_eq!(claimed, [behind]);

    assert_eq!(db.cancel(held).await.unwrap(), Transition::Applied);
    assert_eq!(db.cancel(debounced).await.unwrap(), Transition::Applied);
    assert_eq!(
        count(&t, "SELECT COUNT(*) FROM flow_debounce").await,
        0,
        "its window went"
    );
    assert_eq!(count(&t, "SELECT COUNT(*) FROM flow_debounced").await, 0);
    assert_eq!(db.cancel(head).await.unwrap(), Transition::Conflict("cancelled".into()));
    for id in [head, held, debounced] {
        let e = db.event(id).await.unwrap().unwrap();
        assert_eq!(e.status, Some(EventStatus::Cancelled), "{id}");
        assert!(e.processed_at.is_some());
    }
    assert!(
        db.claim(10, LEASE).await.unwrap().is_empty(),
        "cancelled events are never claimed"
    );
}

async fn purges_find_skipped_and_superseded_events(t: TestStore) {
    let db = &t.db;
    let skipped = enqueue(db, "skipped").await;
    let superseded = enqueue(db, "superseded").await;
    let recent = enqueue(db, "recent").await;
    let now = switchyard::time::now();
    let sql = format!(
        "UPDATE events SET status = 'skipped', processed_at = '{OLD}' WHERE id = {skipped}; \
         UPDATE events SET status = 'superseded', processed_at = '{OLD}' WHERE id = {superseded}; \
         UPDATE events SET status = 'superseded', processed_at = '{now}' WHERE id = {recent}"
    );
    set(&t, &sql, &[skipped, superseded, recent]).await;
    let before = switchyard::retention::cutoff(Duration::from_secs(86_400));
    assert_eq!(
        switchyard::retention::purge(db, EventStatus::Skipped, &before)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        switchyard::retention::purge(db, EventStatus::Superseded, &before)
            .await
            .unwrap(),
        1
    );
    assert!(db.event(skipped).await.unwrap().is_none());
    assert!(db.event(superseded).await.unwrap().is_none());
    assert!(db.event(recent).await.unwrap().is_some(), "finished too recently");
}

/// Where a scenario's database is: the app's SQLite file, or a PostgreSQL schema.
enum Database {
    Sqlite(std::path::PathBuf),
    Postgres(PgSchema),
}

impl Database {
    async fn exec(&self, sql: &str) {
        match self {
            Database::Sqlite(path) => {
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                c.execute(sqlx::AssertSqlSafe(sql.to_string())).await.unwrap();
                c.close().await.unwrap();
            }
            Database::Postgres(pg) => {
                let mut c = pg.connect().await;
                c.execute(sqlx::AssertSqlSafe(sql.to_string())).await.unwrap();
                c.close().await.unwrap();
            }
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        match self {
            Database::Sqlite(_) => Vec::new(),
            Database::Postgres(pg) => vec![("DATABASE_URL", pg.url.as_str())],
        }
    }
}

#[tokio::test]
async fn api_cli_and_dashboard_know_the_flow_statuses_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::Sqlite(tmp.path().join("data/events.sqlite3"));
    operator_scenario(tmp.path(), db).await;
}

#[tokio::test]
async fn api_cli_and_dashboard_know_the_flow_statuses_on_postgres() {
    let Some(pg) = PgSchema::create("flow_surfaces::operator_scenario").await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    operator_scenario(tmp.path(), Database::Postgres(pg)).await;
}

/// Ids of a listing.
async fn listed(app: &App, query: &str) -> Vec<i64> {
    let (code, v) = app.get(&format!("/events?{query}"), &[]).await;
    assert_eq!(code, 200, "{query}: {v}");
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

async fn operator_scenario(dir: &std::path::Path, db: Database) {
    let env = db.env();
    // `http`: no worker claims the pending events this test leaves pending.
    let app = App::spawn_in(dir, "http", &env);
    let mut ids = Vec::new();
    for i in 0..6 {
        let (code, v) = app
            .post("/webhook/github", "{}", &[("x-event-id", &format!("e{i}"))])
            .await;
        assert_eq!(code, 200, "{v}");
        ids.push(v["row_id"].as_i64().unwrap());
    }
    let [waiting, superseded, skipped, waiting2, pending, replayed] = ids[..] else {
        unreachable!()
    };
    let reason =
        format!("flow:concurrency: action 'review' key 'o/r#1': 1 of per_key 1 running (event {superseded} runs) <b>");
    let ended = |status, by: i64| {
        switchyard::store::flow::ended_result(status, "review", "o/r#1", by, Some(&format!("e{}", by - ids[0])))
    };
    let quote = |s: &str| s.replace('\'', "''");
    let sql = format!(
        "UPDATE events SET status = 'waiting', next_attempt_at = '{FAR}', last_error = '{}' WHERE id IN ({waiting}, {waiting2}); \
         UPDATE events SET status = 'superseded', processed_at = '{OLD}', result_json = '{}' WHERE id IN ({superseded}, {replayed}); \
         UPDATE events SET status = 'skipped', processed_at = '{OLD}', result_json = '{}' WHERE id = {skipped}; \
         INSERT INTO action_runs (event_row_id, started_at, finished_at, status, provider, action, handler_mode, error) \
           VALUES ({superseded}, '{OLD}', '{OLD}', 'cancelled', 'github', 'review', 'command', 'stopped: a newer event')",
        quote(&reason),
        quote(&ended(EventStatus::Superseded, skipped)),
        quote(&ended(EventStatus::Skipped, waiting2)),
    );
    let pg_queue = format!("; DELETE FROM event_queue WHERE event_row_id <> {pending}");
    match &db {
        Database::Sqlite(_) => db.exec(&sql).await,
        Database::Postgres(_) => db.exec(&format!("{sql}{pg_queue}")).await,
    }

    // Filters, stats and the queue-depth gauge.
    assert_eq!(listed(&app, "status=waiting").await, [waiting2, waiting]);
    assert_eq!(listed(&app, "status=superseded").await, [replayed, superseded]);
    assert_eq!(listed(&app, "status=skipped").await, [skipped]);
    assert_eq!(listed(&app, "status=pending").await, [pending]);
    let (_, stats) = app.get("/stats", &[]).await;
    for (status, n) in [("waiting", 2), ("superseded", 2), ("skipped", 1), ("pending", 1)] {
        assert_eq!(stats["by_status"][status], n, "{status}: {stats}");
    }
    wait_gauge(&app, "waiting", 2.0).await;

    // Cancel takes a waiting event; replay takes a superseded one like any finished event.
    let cancelled = app.post(&format!("/events/{waiting2}/cancel"), "", &[]).await;
    assert_eq!(
        cancelled,
        (200, json!({"ok": true, "status": "cancelled", "row_id": waiting2}))
    );
    let (code, v) = app.post(&format!("/events/{superseded}/cancel"), "", &[]).await;
    assert_eq!(code, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("waiting"), "{v}");
    let queued = app.post(&format!("/events/{replayed}/replay"), "", &[]).await;
    assert_eq!(queued.0, 200, "{queued:?}");
    assert_eq!(listed(&app, "status=pending").await, [replayed, pending]);
    wait_gauge(&app, "waiting", 1.0).await;

    // The CLI: a status filter, and what `events show` says beside its JSON.
    let cli = |args: &[&str]| run_cli(dir, args, &env);
    let out = cli(&["events", "list", "--status", "waiting"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["id"].as_i64(), rows[0]["status"].as_str()),
        (Some(waiting), Some("waiting"))
    );
    let show = |id: i64| {
        let out = cli(&["events", "show", &id.to_string()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_str(&stdout(&out)).expect("stdout stays JSON");
        (v, stderr(&out))
    };
    let (v, note) = show(waiting);
    assert_eq!(v["event"]["last_error"], reason.as_str());
    assert!(
        note.contains(&format!("event {waiting} is waiting: {reason}")),
        "{note}"
    );
    let (v, note) = show(superseded);
    assert_eq!(v["event"]["result"]["flow"]["by"]["row_id"], skipped);
    assert_eq!(v["action_runs"][0]["status"], "cancelled");
    assert!(
        note.contains(&format!(
            "event {superseded} is superseded by event {skipped} (event_id e2, action 'review', key 'o/r#1')"
        )),
        "{note}"
    );
    let (_, note) = show(skipped);
    assert!(
        note.contains(&format!(
            "event {skipped} is skipped: event {waiting2} (event_id e3, action 'review', key 'o/r#1') holds its key"
        )),
        "{note}"
    );
    let (_, note) = show(pending);
    assert!(!note.contains("is pending"), "{note}");

    // The dashboard.
    let page = open_page(&app, &format!("/ui/events/{waiting}")).await;
    assert!(page.contains(r#"class="badge waiting""#), "{page}");
    assert!(page.contains("Waiting for"), "{page}");
    assert!(
        page.contains(&format!("(event {superseded} runs) &lt;b&gt;</pre>")),
        "the reason, escaped: {page}"
    );
    assert!(!page.contains("<b>") && !page.contains("Last error"), "{page}");
    assert!(
        page.contains(&format!(r#"action="/ui/events/{waiting}/cancel""#)),
        "a waiting event can be cancelled"
    );
    let page = open_page(&app, &format!("/ui/events/{superseded}")).await;
    assert!(
        page.contains(&format!(
            r#"Superseded by <a href="/ui/events/{skipped}">event {skipped}</a>"#
        )),
        "{page}"
    );
    assert!(page.contains(r#"class="badge superseded""#));
    assert!(page.contains(r#"class="badge cancelled""#), "its cancelled run: {page}");
    assert!(!page.contains("/cancel\""), "a superseded event cannot be cancelled");
    let page = open_page(&app, &format!("/ui/events/{skipped}")).await;
    assert!(
        page.contains(&format!(
            r#"Skipped: <a href="/ui/events/{waiting2}">event {waiting2}</a> holds its key"#
        )),
        "{page}"
    );
    let list = open_page(&app, "/ui/events?status=waiting").await;
    assert!(list.contains(r#"<option value="waiting" selected>"#), "{list}");
    assert!(
        list.contains(&format!(r#"data-id="{waiting}""#)) && list.contains(r#"class="reason""#),
        "{list}"
    );
    let overview = open_page(&app, "/ui/overview").await;
    for s in ["waiting", "skipped", "superseded"] {
        assert!(overview.contains(&format!(r#"href="/ui/events?status={s}""#)), "{s}");
    }
}

/// Waits for `switchyard_queue_depth{status}` to read `want` (sampled every 2 s).
async fn wait_gauge(app: &App, status: &str, want: f64) {
    let line = format!("switchyard_queue_depth{{status=\"{status}\"}} {want}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = metrics_text(app).await;
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(Instant::now() < deadline, "no `{line}` in:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
