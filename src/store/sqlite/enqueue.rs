//! Enqueues in the SQLite writer's transaction: a run of webhooks goes in as multi-row
//! inserts, and each event is answered with its row, new or the one stored before.

use std::collections::HashSet;
use std::sync::OnceLock;

use rusqlite::{Transaction, params};

use super::*;

/// Rows per multi-row insert, largest first: a run of enqueues is split into as few
/// statements of these sizes as it takes, and each size is prepared once and cached.
const INSERT_ROWS: [usize; 4] = [64, 16, 4, 1];

/// Inserts each event unless its `(source, event_id)` exists, in multi-row statements: one
/// statement keeps its cursors open from row to row, so each index insert that lands at
/// the end of its index skips the descent from the root (issue 18).
pub(super) fn enqueue(tx: &Transaction<'_>, events: &[&NewEvent], now: &str) -> rusqlite::Result<Vec<Enqueued>> {
    let mut out = Vec::with_capacity(events.len());
    // Every id this transaction gives out is above it (the writer holds the write lock).
    let mut newest: i64 = tx
        .prepare_cached("SELECT coalesce(max(id), 0) FROM events")?
        .query_row([], |r| r.get(0))?;
    let mut rest = events;
    while !rest.is_empty() {
        let rows = INSERT_ROWS.into_iter().find(|&n| n <= rest.len()).unwrap_or(1);
        let (chunk, tail) = rest.split_at(rows);
        enqueue_rows(tx, chunk, now, newest, &mut out)?;
        newest = newest.max(tx.last_insert_rowid());
        rest = tail;
    }
    Ok(out)
}

/// The insert of `rows` events: `?1` is the time, then source, event id and payload per row.
fn insert_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        INSERT_ROWS
            .iter()
            .map(|&n| {
                let values: Vec<String> = (0..n)
                    .map(|k| {
                        let p = 2 + 3 * k;
                        format!("(?{}, ?{}, ?1, 'pending', 0, ?1, ?{})", p, p + 1, p + 2)
                    })
                    .collect();
                format!(
                    "INSERT INTO events (source, event_id, received_at, status, attempt_count, next_attempt_at, payload_json) \
                     VALUES {} ON CONFLICT DO NOTHING",
                    values.join(", ")
                )
            })
            .collect()
    });
    let at = INSERT_ROWS
        .iter()
        .position(|&n| n == rows)
        .unwrap_or(INSERT_ROWS.len() - 1);
    &all[at]
}

/// One multi-row insert; `newest` is the highest id stored before it. When every row went
/// in, their ids are the consecutive ones ending at `last_insert_rowid` (this connection
/// is the only writer, inside its transaction). Otherwise each event is looked up: a
/// skipped row still used up an id, so the new rows are those above `newest`, and of
/// identical events in the chunk only the first was queued, the others are its duplicates.
///
/// No `RETURNING`: SQLite runs it as a trigger, which makes the insert a "multi-write"
/// statement with its own statement journal (a copy of every page it touches) and an
/// ephemeral table per execution, measured at ~12 % of ingest CPU (docs/PERFORMANCE.md).
fn enqueue_rows(
    tx: &Transaction<'_>,
    rows: &[&NewEvent],
    now: &str,
    newest: i64,
    out: &mut Vec<Enqueued>,
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(insert_sql(rows.len()))?;
    insert.raw_bind_parameter(1, now)?;
    for (k, e) in rows.iter().enumerate() {
        let p = 2 + 3 * k;
        insert.raw_bind_parameter(p, e.source.as_str())?;
        insert.raw_bind_parameter(p + 1, &e.event_id)?;
        insert.raw_bind_parameter(p + 2, &e.payload_json)?;
    }
    let inserted = insert.raw_execute()? as i64;
    let last = tx.last_insert_rowid();
    if inserted == rows.len() as i64 {
        out.extend((last - inserted + 1..=last).map(Enqueued::Queued));
        return Ok(());
    }
    let mut seen = HashSet::new();
    let mut find = tx.prepare_cached("SELECT id FROM events WHERE source = ?1 AND event_id = ?2")?;
    for e in rows {
        let id: i64 = find.query_row(params![e.source.as_str(), e.event_id], |r| r.get(0))?;
        out.push(if id > newest && seen.insert(id) {
            Enqueued::Queued(id)
        } else {
            Enqueued::Duplicate(id)
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Source;
    use rusqlite::{Connection, TransactionBehavior};

    fn event(id: &str) -> NewEvent {
        NewEvent {
            source: Source::Webhook,
            event_id: id.into(),
            payload_json: format!(r#"{{"id":"{id}"}}"#),
        }
    }

    /// One multi-row insert holding new events, one stored before and one twice: the
    /// skipped rows use up ids, and each answer still names the right row.
    #[tokio::test]
    async fn a_chunk_with_duplicates_answers_each_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("writer.sqlite3");
        SqliteStore::open(&path, crate::domain::SqliteSynchronous::Normal)
            .await
            .unwrap();
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
        let stored = enqueue(&tx, &[&event("old-1"), &event("old-2")], "t0").unwrap();
        assert_eq!(stored, [Enqueued::Queued(1), Enqueued::Queued(2)]);

        let batch = ["a", "old-2", "b", "a", "old-1", "c"].map(event);
        let refs: Vec<&NewEvent> = batch.iter().collect();
        // Four rows: one 4-row statement and two single ones, duplicates in each.
        let got = enqueue(&tx, &refs, "t1").unwrap();
        let ids: Vec<(String, i64)> = tx
            .prepare("SELECT event_id, id FROM events ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let id = |e: &str| ids.iter().find(|(k, _)| k == e).unwrap().1;
        assert_eq!(ids.len(), 5, "{ids:?}");
        assert_eq!(
            got,
            [
                Enqueued::Queued(id("a")),
                Enqueued::Duplicate(2),
                Enqueued::Queued(id("b")),
                Enqueued::Duplicate(id("a")),
                Enqueued::Duplicate(1),
                Enqueued::Queued(id("c")),
            ]
        );
        // All in one chunk too (a run of 16 or more).
        let many: Vec<NewEvent> = (0..16).map(|i| event(if i % 5 == 0 { "a" } else { "x" })).collect();
        let refs: Vec<&NewEvent> = many.iter().collect();
        let got = enqueue(&tx, &refs, "t2").unwrap();
        let x = got[1].row_id();
        assert!(x > id("c"));
        for (i, o) in got.iter().enumerate() {
            let want = match i {
                1 => Enqueued::Queued(x),
                _ if i % 5 == 0 => Enqueued::Duplicate(id("a")),
                _ => Enqueued::Duplicate(x),
            };
            assert_eq!(*o, want, "row {i}");
        }
    }
}
