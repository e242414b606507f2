-- The built-in scheduler (CONTRACT §9): one row per job, upserted from the config file.
-- last_scheduled_at is the latest tick any instance enqueued (RFC 3339 UTC, seconds),
-- which is what the `missed` policy measures downtime against.
CREATE TABLE schedules (
    job TEXT PRIMARY KEY,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL DEFAULT 'UTC',
    payload_json TEXT NOT NULL DEFAULT '{}',
    enabled BIGINT NOT NULL DEFAULT 1,
    missed TEXT NOT NULL DEFAULT 'latest',
    last_scheduled_at TEXT COLLATE "C",
    updated_at TEXT COLLATE "C" NOT NULL
);

-- Bumped on every change of a definition (not of last_scheduled_at), by whoever makes
-- it, and announced on the channel switchyard_schedules (payload: the schema) so that
-- every running scheduler re-reads the table at once.
INSERT INTO switchyard_meta (key, value) VALUES ('schedules_version', 0);

CREATE FUNCTION switchyard_schedules_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    UPDATE switchyard_meta SET value = value + 1 WHERE key = 'schedules_version';
    PERFORM pg_notify('switchyard_schedules', current_schema());
    RETURN NULL;
END
$$;

CREATE TRIGGER schedules_changed
AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF job, cron, timezone, payload_json, enabled, missed
ON schedules
FOR EACH STATEMENT EXECUTE FUNCTION switchyard_schedules_changed();
