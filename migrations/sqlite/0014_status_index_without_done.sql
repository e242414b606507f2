-- events_status_received again, without `done` rows. Nearly every event ends `done`, so the
-- index held an entry per event (~57 bytes of a noop event's ~1,200, issue 18) for the one
-- listing that needs it least: most rows qualify, so a `status=done` page walks
-- `events_received` newest first and reads about `limit` rows. Listings of the other
-- statuses, the /stats counts and the queue depth repeat this WHERE verbatim so that SQLite
-- sees the index applies; the `done` count reads `events_finished`.
DROP INDEX IF EXISTS events_status_received;
CREATE INDEX events_status_received ON events(status, received_at, id)
WHERE status <> 'done';
