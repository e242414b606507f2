-- events_provider_received again, without the rows that have no provider yet. An event gets
-- its provider when an attempt ends; indexing the NULL before that cost an index insert at
-- every ingest and a delete at every finish. A listing by provider compares `provider = ?`,
-- which SQLite knows implies `provider IS NOT NULL`, so it still uses this index.
DROP INDEX IF EXISTS events_provider_received;
CREATE INDEX events_provider_received ON events(provider, received_at, id)
WHERE provider IS NOT NULL;
