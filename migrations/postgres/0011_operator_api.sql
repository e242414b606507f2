-- The operator API (CONTRACT §10): filters, keyset pages, forced replays, retention.

-- Provider and action of the last attempt, so listings filter on them without reading
-- payloads; replay_force = 1 makes the next attempt rerun actions that already ran to done.
ALTER TABLE events ADD COLUMN provider TEXT;
ALTER TABLE events ADD COLUMN action TEXT;
ALTER TABLE events ADD COLUMN replay_force BIGINT NOT NULL DEFAULT 0;

-- Rows written before this migration: the newest action run says where they went.
UPDATE events e SET provider = ar.provider, action = ar.action
FROM (SELECT DISTINCT ON (event_row_id) event_row_id, provider, action
      FROM action_runs ORDER BY event_row_id, id DESC) ar
WHERE ar.event_row_id = e.id;

-- Keyset pages newest first: each filter that narrows much has its own ordered index, so a
-- page reads about `limit` index entries whatever the table holds.
CREATE INDEX events_received ON events (received_at, id);
CREATE INDEX events_status_received ON events (status, received_at, id);
CREATE INDEX events_provider_received ON events (provider, received_at, id);

-- Finished rows by when they finished: retention purges and the /stats rates read ranges.
CREATE INDEX events_finished ON events (status, processed_at)
WHERE status IN ('done', 'error', 'cancelled');
