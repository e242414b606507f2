-- The operator API (CONTRACT §10): filters, keyset pages, forced replays, retention.

-- Provider and action of the last attempt, so listings filter on them without reading
-- payloads; replay_force = 1 makes the next attempt rerun actions that already ran to done.
ALTER TABLE events ADD COLUMN provider TEXT;
ALTER TABLE events ADD COLUMN action TEXT;
ALTER TABLE events ADD COLUMN replay_force INTEGER NOT NULL DEFAULT 0;

-- Rows written before this migration: the newest action run says where they went; an
-- event without one (no route) keeps the provider its stored result names.
UPDATE events SET
    provider = COALESCE(
        (SELECT ar.provider FROM action_runs ar WHERE ar.event_row_id = events.id ORDER BY ar.id DESC LIMIT 1),
        CASE WHEN json_valid(result_json) THEN json_extract(result_json, '$.router.provider') END),
    action = (SELECT ar.action FROM action_runs ar WHERE ar.event_row_id = events.id ORDER BY ar.id DESC LIMIT 1)
WHERE result_json IS NOT NULL OR EXISTS (SELECT 1 FROM action_runs ar WHERE ar.event_row_id = events.id);

-- Keyset pages newest first: each filter that narrows much has its own ordered index, so a
-- page reads about `limit` index entries whatever the table holds.
CREATE INDEX IF NOT EXISTS events_received ON events(received_at, id);
CREATE INDEX IF NOT EXISTS events_status_received ON events(status, received_at, id);
CREATE INDEX IF NOT EXISTS events_provider_received ON events(provider, received_at, id);

-- Finished rows by when they finished: retention purges and the /stats rates read ranges
-- of it. Queries repeat the IN term verbatim so that SQLite sees the index applies.
CREATE INDEX IF NOT EXISTS events_finished ON events(status, processed_at)
WHERE status IN ('done', 'error', 'cancelled');
