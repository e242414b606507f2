-- Every attempt of every event, kept across replays (issue 31): the event row holds only
-- the latest attempt's error, and a replay resets its attempt count. Written in the
-- transaction that finishes the attempt (or reclaims its expired lease); purged with the
-- event.
CREATE TABLE IF NOT EXISTS event_attempts (
    id INTEGER PRIMARY KEY,
    event_row_id INTEGER NOT NULL,
    -- The event's attempt_count when it ran (as in the log line; 1 again after a replay).
    attempt INTEGER NOT NULL,
    started_at TEXT,
    finished_at TEXT NOT NULL,
    -- done, retry (failed, to be retried) or error (failed, no attempt left).
    outcome TEXT NOT NULL,
    error TEXT,
    duration_ms INTEGER
);
CREATE INDEX IF NOT EXISTS event_attempts_event ON event_attempts (event_row_id, id);
