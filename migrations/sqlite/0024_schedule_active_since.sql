-- When a schedule was added, last enabled, or its cron or zone last changed (RFC 3339 UTC):
-- a schedule counts its ticks from the later of this and last_scheduled_at, so the
-- `missed` policy applies to its first tick too (CONTRACT §9, issue 30). Rows from before
-- this column: a schedule that never fired counts from its last upsert, the best guess.
ALTER TABLE schedules ADD COLUMN active_since TEXT;
UPDATE schedules SET active_since = updated_at WHERE last_scheduled_at IS NULL;
