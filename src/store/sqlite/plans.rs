//! The query plans that keep operator queries cheap at any table size: each must walk the
//! index meant for it (migrations 0011–0013), checked with `EXPLAIN QUERY PLAN` on a
//! migrated database. SQLite keeps no statistics, so a changed index `WHERE` or query term
//! silently turns a page read into a table scan; these tests make that loud.

use super::read::{COUNT_DONE, FINISHED_SINCE};
use super::*;
use crate::store::counts::{COUNT_NOT_DONE, COUNT_QUEUED};

/// The `detail` column of `EXPLAIN QUERY PLAN` for `sql`, every parameter NULL.
fn plan(path: &Path, sql: &str) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
    let rows = stmt
        .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    rows.join("; ")
}

async fn migrated() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.sqlite3");
    SqliteStore::open(&path, crate::domain::SqliteSynchronous::Normal)
        .await
        .unwrap();
    (dir, path)
}

fn page(pairs: &[(&str, &str)], cursor: bool) -> String {
    let filter = EventFilter::from_pairs(pairs.iter().copied()).unwrap();
    let cursor = cursor.then(|| Cursor {
        received_at: "2026-01-01T00:00:00.000000+00:00".into(),
        id: 7,
    });
    query::page_sql(Dialect::Sqlite, &filter, cursor.as_ref()).0
}

#[tokio::test]
async fn listing_pages_walk_their_index() {
    let (_dir, path) = migrated().await;
    for cursor in [false, true] {
        let by_provider = plan(&path, &page(&[("provider", "github")], cursor));
        assert!(by_provider.contains("events_provider_received"), "{by_provider}");
        let by_status = plan(&path, &page(&[("status", "error")], cursor));
        assert!(by_status.contains("events_status_received"), "{by_status}");
        let all = plan(&path, &page(&[], cursor));
        assert!(all.contains("events_received"), "{all}");
        // The status index holds no `done` rows: a done page walks the received index.
        let done = plan(&path, &page(&[("status", "done")], cursor));
        assert!(done.contains("events_received"), "{done}");
        for p in [&by_provider, &by_status, &all, &done] {
            assert!(!p.contains("TEMP B-TREE"), "a page must not sort: {p}");
        }
    }
}

#[tokio::test]
async fn purges_and_rates_walk_the_finished_index() {
    let (_dir, path) = migrated().await;
    for sql in [admin::PURGE_BATCH, FINISHED_SINCE, admin::PER_MINUTE_FINISHED] {
        let p = plan(&path, sql);
        assert!(p.contains("INDEX events_finished"), "{sql}: {p}");
    }
}

#[tokio::test]
async fn status_counts_read_indexes_not_the_table() {
    let (_dir, path) = migrated().await;
    for (sql, index) in [
        (COUNT_NOT_DONE, "events_status_received"),
        (COUNT_QUEUED, "events_status_received"),
        (COUNT_DONE, "events_finished"),
    ] {
        let p = plan(&path, sql);
        assert!(p.contains(&format!("COVERING INDEX {index}")), "{sql}: {p}");
    }
}

#[tokio::test]
async fn flow_statements_on_events_read_an_index() {
    let (_dir, path) = migrated().await;
    // Flow housekeeping's release of timed waits (`sweep` in sqlite/flow.rs), once a second
    // on every worker: it must not scan the events table (migration 0032).
    let sweep = "UPDATE events SET status = 'pending' WHERE status = 'waiting' AND next_attempt_at <= ?1";
    let p = plan(&path, sweep);
    assert!(p.contains("INDEX events_waiting"), "{p}");
    assert!(!p.contains("SCAN events"), "{p}");
}

#[tokio::test]
async fn a_pages_action_states_are_looked_up_by_event() {
    let (_dir, path) = migrated().await;
    let p = plan(&path, action_states::SQLITE_SQL);
    assert!(p.contains("USING INDEX") && p.contains("event_row_id=?"), "{p}");
    assert!(!p.contains("SCAN action_runs"), "{p}");
}
