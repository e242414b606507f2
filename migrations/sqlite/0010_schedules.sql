-- The built-in scheduler (CONTRACT §9): one row per job, upserted from the config file.
-- last_scheduled_at is the latest tick any instance enqueued (RFC 3339 UTC, seconds),
-- which is what the `missed` policy measures downtime against.
CREATE TABLE IF NOT EXISTS schedules (
    job TEXT PRIMARY KEY,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL DEFAULT 'UTC',
    payload_json TEXT NOT NULL DEFAULT '{}',
    enabled INTEGER NOT NULL DEFAULT 1,
    missed TEXT NOT NULL DEFAULT 'latest',
    last_scheduled_at TEXT,
    updated_at TEXT NOT NULL
);

-- Bumped by triggers on every change of a definition (not of last_scheduled_at), by
-- whoever makes it: a running scheduler re-reads the table when it moved.
INSERT OR IGNORE INTO switchyard_meta (key, value) VALUES ('schedules_version', 0);

CREATE TRIGGER IF NOT EXISTS schedules_ai AFTER INSERT ON schedules
BEGIN UPDATE switchyard_meta SET value = value + 1 WHERE key = 'schedules_version'; END;
CREATE TRIGGER IF NOT EXISTS schedules_au
AFTER UPDATE OF job, cron, timezone, payload_json, enabled, missed ON schedules
BEGIN UPDATE switchyard_meta SET value = value + 1 WHERE key = 'schedules_version'; END;
CREATE TRIGGER IF NOT EXISTS schedules_ad AFTER DELETE ON schedules
BEGIN UPDATE switchyard_meta SET value = value + 1 WHERE key = 'schedules_version'; END;
