-- events_finished again, now also holding the finished statuses of flow control (CONTRACT
-- §13): `skipped` and `superseded` events are purged by retention like the others, and a
-- purge batch finds them by this index's (status, processed_at) order. The WHERE stays a
-- chain of ORs (migration 0012: no IN list, which SQLite builds as a table per statement),
-- and queries repeat it verbatim (`finished_rows!`) so that SQLite sees the index applies.
DROP INDEX IF EXISTS events_finished;
CREATE INDEX events_finished ON events(status, processed_at)
WHERE status = 'done' OR status = 'error' OR status = 'cancelled' OR status = 'skipped' OR status = 'superseded';
