-- Two listing indexes without the rows they never serve. Every claim and finish writes a
-- new row version that is indexed again in each index whose WHERE it matches (status is
-- in the partial indexes' WHERE, so these updates are never HOT):
-- * events_status_received leaves out `done` rows, nearly every row: a `status=done` page
--   walks events_received newest first and reads about `limit` rows; queries of other
--   statuses repeat this WHERE so that the planner sees the index applies, and the `done`
--   count reads events_finished (issue 18, as on SQLite: migration 0014 there).
-- * events_provider_received leaves out rows that have no provider yet (queued and
--   claimed ones); `provider = $1` implies `provider IS NOT NULL`, so listings still use it.
DROP INDEX IF EXISTS events_status_received;
CREATE INDEX events_status_received ON events (status, received_at, id) WHERE status <> 'done';
DROP INDEX IF EXISTS events_provider_received;
CREATE INDEX events_provider_received ON events (provider, received_at, id) WHERE provider IS NOT NULL;
