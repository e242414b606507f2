-- events_finished again, now also holding the finished statuses of flow control (CONTRACT
-- §13): `skipped` and `superseded` events are purged by retention like the others, and a
-- purge batch finds them by this index's (status, processed_at) order. Queries repeat this
-- IN list (`FINISHED_ROWS`) so that the planner sees the index applies to a bound status.
DROP INDEX IF EXISTS events_finished;
CREATE INDEX events_finished ON events (status, processed_at)
WHERE status IN ('done', 'error', 'cancelled', 'skipped', 'superseded');
