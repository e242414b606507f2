-- A narrow queue (issue 26): what claims, lease renewals and reclaims touch lives in
-- event_queue, one short row per queued or running event, apart from the wide events row.
-- A claim locks and updates that short row only; the events row is written once more,
-- when the attempt finishes (or is released or reclaimed). Before, every claim wrote a new
-- version of the wide row and re-indexed it in every index whose WHERE names `status`,
-- and that was most of PostgreSQL's work per event (docs/PERFORMANCE.md).
--
-- Invariants (kept by every statement of store/postgres):
-- * an event has a queue row exactly while it is pending, retry or processing;
-- * leased_until IS NULL: waiting; then run_at = events.next_attempt_at and
--   attempt = events.attempt_count;
-- * leased_until IS NOT NULL: claimed (the API says `processing`); attempt is the claim's
--   attempt (events.attempt_count + 1, the fencing token) and claimed_at its start.
-- events.status keeps `pending` or `retry` while the event is claimed; reads that show a
-- status (GET /events/{id}, listings, /stats, /metrics) put `processing` over it from here.
CREATE TABLE event_queue (
    event_row_id BIGINT PRIMARY KEY,
    run_at TEXT COLLATE "C" NOT NULL,
    attempt BIGINT NOT NULL,
    claimed_at TEXT COLLATE "C",
    leased_until TEXT COLLATE "C"
);

-- Rows are claimed, renewed and deleted at the rate of the traffic: vacuum early.
ALTER TABLE event_queue SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);

-- The claim's index: waiting rows by due time.
CREATE INDEX event_queue_due ON event_queue (run_at, event_row_id) WHERE leased_until IS NULL;
-- The reclaimer's: claimed rows by lease end.
CREATE INDEX event_queue_leased ON event_queue (leased_until) WHERE leased_until IS NOT NULL;

-- Existing queued and running events. A claimed row's event goes back to the status it
-- had before its claim; a lease that was NULL ('' here) has expired.
INSERT INTO event_queue (event_row_id, run_at, attempt, claimed_at, leased_until)
SELECT id, COALESCE(next_attempt_at, received_at), attempt_count,
       CASE WHEN status = 'processing' THEN processing_started_at END,
       CASE WHEN status = 'processing' THEN COALESCE(lease_until, '') END
FROM events WHERE status IN ('pending', 'retry', 'processing');
UPDATE events SET status = CASE WHEN attempt_count > 1 THEN 'retry' ELSE 'pending' END,
    attempt_count = GREATEST(attempt_count - 1, 0), lease_until = NULL
WHERE status = 'processing';

-- The events indexes only the old claim and reclaimer used (one fewer index entry per
-- enqueue, and none moved by a finish).
DROP INDEX IF EXISTS events_due;
DROP INDEX IF EXISTS events_leased;

-- Deleting events by hand (switchyard's own purges only delete finished events, which
-- have no queue row) takes their queue rows along. Per statement, from the deleted rows:
-- nothing to do for inserts and updates, no foreign-key check on every enqueue.
CREATE FUNCTION switchyard_dequeue_deleted() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    DELETE FROM event_queue q USING deleted d WHERE q.event_row_id = d.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_dequeue_deleted
AFTER DELETE ON events
REFERENCING OLD TABLE AS deleted
FOR EACH STATEMENT EXECUTE FUNCTION switchyard_dequeue_deleted();
