//! The enqueue collector: concurrent requests folded into one multi-row insert.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::CHANNEL;
use super::chunks::message_chunks;
use super::retry::{CONFLICT_TRIES, RECONNECT_TRIES, conflict_pause, connection_lost, lock_conflict, reconnect_pause};
use crate::store::{Enqueued, NewEvent, StoreError};
use crate::time;

/// Most enqueue requests folded into one transaction.
const MAX_BATCH: usize = 512;

/// One request waiting for the collector, and where to send its answer.
pub(super) struct EnqueueRequest {
    pub(super) event: NewEvent,
    pub(super) reply: oneshot::Sender<Result<Enqueued, StoreError>>,
}

/// Takes enqueue requests and runs them in batches: while `parallel` batches are in
/// flight, new requests queue up and go together into the next statement.
pub(super) async fn enqueue_loop(pool: PgPool, mut rx: mpsc::Receiver<EnqueueRequest>, parallel: usize) {
    let permits = Arc::new(Semaphore::new(parallel));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            run_enqueue_batch(&pool, batch).await;
            drop(permit);
        });
    }
}

/// Inserts a batch and answers every request; if the batch fails, each request is tried
/// alone so one bad request cannot fail the others.
async fn run_enqueue_batch(pool: &PgPool, batch: Vec<EnqueueRequest>) {
    let events: Vec<&NewEvent> = batch.iter().map(|r| &r.event).collect();
    match insert_with_retry(pool, &events).await {
        Ok(outcomes) => {
            for (req, outcome) in batch.into_iter().zip(outcomes) {
                let _ = req.reply.send(Ok(outcome));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some(req) = batch.into_iter().next() {
                let _ = req.reply.send(Err(e.into()));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, size = batch.len(), "batched enqueue failed; retrying one by one");
            for req in batch {
                let result = insert_with_retry(pool, &[&req.event]).await.map(|mut o| o.remove(0));
                let _ = req.reply.send(result.map_err(StoreError::from));
            }
        }
    }
}

/// [`insert_events`], again after a lock conflict (up to [`CONFLICT_TRIES`]) or a lost
/// connection (up to [`RECONNECT_TRIES`]). Every statement is `INSERT … ON CONFLICT DO NOTHING` in autocommit,
/// so repeating one that did commit before the connection broke stores nothing twice: its
/// rows are found and answered as duplicates, with their row ids.
async fn insert_with_retry(pool: &PgPool, events: &[&NewEvent]) -> Result<Vec<Enqueued>, sqlx::Error> {
    let (mut conflicts, mut reconnects) = (0u32, 0u32);
    loop {
        match insert_events(pool, events).await {
            Ok(v) => return Ok(v),
            Err(e) if lock_conflict(&e) && conflicts + 1 < CONFLICT_TRIES => {
                tokio::time::sleep(conflict_pause(conflicts)).await;
                conflicts += 1;
            }
            Err(e) if connection_lost(&e) && reconnects + 1 < RECONNECT_TRIES => {
                tracing::warn!(error = %e, "PostgreSQL connection lost during an enqueue; retrying on a fresh connection");
                if reconnects > 0 {
                    tokio::time::sleep(reconnect_pause(reconnects - 1)).await;
                }
                reconnects += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Inserts the new events and learns the row ids of the existing ones. Results are in
/// request order; the first of identical requests is the `Queued` one.
///
/// One round trip per chunk, not a transaction: each chunk is one autocommit statement
/// that inserts and, if it inserted anything, NOTIFYs. Every request is answered after the
/// statement that stored it has committed. As BEGIN, INSERT, NOTIFY, COMMIT this was four
/// round trips per batch (docs/PERFORMANCE.md, issue 17).
async fn insert_events(pool: &PgPool, events: &[&NewEvent]) -> Result<Vec<Enqueued>, sqlx::Error> {
    let rows = distinct_rows(events);
    let mut conn = pool.acquire().await?;
    let new_ids = insert_new(&mut conn, &rows).await?;
    let existing = if new_ids.len() < rows.len() {
        select_existing(&mut conn, &rows, &new_ids).await?
    } else {
        HashMap::new()
    };
    answers(events, &new_ids, &existing).ok_or(sqlx::Error::RowNotFound)
}

/// One `(source, event_id, payload)` per key, in key order, with the payload of the key's
/// first request: concurrent batches (other instances included) then take the
/// unique-index locks in the same order and cannot deadlock.
fn distinct_rows<'a>(events: &[&'a NewEvent]) -> Vec<(&'a str, &'a str, &'a str)> {
    let mut keys: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.source.as_str(), e.event_id.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let first_payload: HashMap<(&str, &str), &str> = events
        .iter()
        .rev()
        .map(|e| ((e.source.as_str(), e.event_id.as_str()), e.payload_json.as_str()))
        .collect();
    keys.iter()
        .map(|k| (k.0, k.1, first_payload.get(k).copied().unwrap_or_default()))
        .collect()
}

/// Inserts the rows whose key is new, chunk by chunk in key order (which keeps the lock
/// order); returns the ids of those inserted.
async fn insert_new(conn: &mut PgConnection, rows: &[(&str, &str, &str)]) -> Result<HashMap<Key, i64>, sqlx::Error> {
    let now = time::now();
    let mut new_ids = HashMap::with_capacity(rows.len());
    for chunk in message_chunks(rows, |r| r.0.len() + r.1.len() + r.2.len()) {
        let sources: Vec<&str> = chunk.iter().map(|r| r.0).collect();
        let event_ids: Vec<&str> = chunk.iter().map(|r| r.1).collect();
        let payloads: Vec<&str> = chunk.iter().map(|r| r.2).collect();
        // Each new event also gets its row in the narrow queue (`queued`, migration 0020),
        // in the same statement. `woke` is a CTE with a volatile function, so PostgreSQL evaluates it once (it is
        // never inlined), and only when a row was inserted; the notification is delivered
        // at the statement's commit, so listeners never see uncommitted rows.
        let inserted = sqlx::query(
            "WITH ins AS ( \
               INSERT INTO events (source, event_id, received_at, status, attempt_count, next_attempt_at, payload_json) \
               SELECT t.source, t.event_id, $4, 'pending', 0, $4, t.payload_json \
               FROM UNNEST($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(source, event_id, payload_json, n) \
               ORDER BY t.n \
               ON CONFLICT (source, event_id) DO NOTHING \
               RETURNING id, source, event_id), \
             queued AS (INSERT INTO event_queue (event_row_id, run_at, attempt) SELECT id, $4, 0 FROM ins), \
             woke AS (SELECT pg_notify($5, current_schema()) FROM (SELECT 1 FROM ins LIMIT 1) AS any_new) \
             SELECT ins.id, ins.source, ins.event_id FROM ins LEFT JOIN woke ON true",
        )
        .bind(&sources)
        .bind(&event_ids)
        .bind(&payloads)
        .bind(&now)
        .bind(CHANNEL)
        .fetch_all(&mut *conn)
        .await?;
        collect_ids(&inserted, &mut new_ids)?;
    }
    Ok(new_ids)
}

/// The ids of the rows that were not inserted. They exist: ON CONFLICT waited for any
/// concurrent inserter to commit, and this next statement sees what it committed.
async fn select_existing(
    conn: &mut PgConnection,
    rows: &[(&str, &str, &str)],
    new_ids: &HashMap<Key, i64>,
) -> Result<HashMap<Key, i64>, sqlx::Error> {
    let (src, ids): (Vec<&str>, Vec<&str>) = rows
        .iter()
        .filter(|r| !new_ids.contains_key(&(r.0.to_string(), r.1.to_string())))
        .map(|r| (r.0, r.1))
        .unzip();
    let found = sqlx::query(
        "SELECT e.id, e.source, e.event_id FROM events e \
         JOIN UNNEST($1::text[], $2::text[]) AS k(source, event_id) \
           ON e.source = k.source AND e.event_id = k.event_id",
    )
    .bind(&src)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut existing = HashMap::with_capacity(found.len());
    collect_ids(&found, &mut existing)?;
    Ok(existing)
}

/// The answer to each request, in request order: the first request of a new key is
/// `Queued`, every other one `Duplicate`. None if a key has neither id (deleted by someone
/// else between the two statements).
fn answers(events: &[&NewEvent], new_ids: &HashMap<Key, i64>, existing: &HashMap<Key, i64>) -> Option<Vec<Enqueued>> {
    let mut answered_new: HashSet<(&str, &str)> = HashSet::new();
    events
        .iter()
        .map(|e| {
            let key = (e.source.as_str().to_owned(), e.event_id.clone());
            let short = (e.source.as_str(), e.event_id.as_str());
            match (new_ids.get(&key), existing.get(&key)) {
                (Some(&id), _) if answered_new.insert(short) => Some(Enqueued::Queued(id)),
                (Some(&id), _) | (None, Some(&id)) => Some(Enqueued::Duplicate(id)),
                (None, None) => None,
            }
        })
        .collect()
}

/// An event's `(source, event_id)`.
type Key = (String, String);

/// Adds the `(source, event_id) → id` of each row.
fn collect_ids(rows: &[PgRow], into: &mut HashMap<Key, i64>) -> Result<(), sqlx::Error> {
    for row in rows {
        into.insert((row.try_get("source")?, row.try_get("event_id")?), row.try_get("id")?);
    }
    Ok(())
}
