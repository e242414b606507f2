-- One index on event_attempts instead of two (issue 26). Every finished attempt adds a row,
-- and the primary key on `id` and the index on `(event_row_id, id)` each took an entry for
-- it: one WAL record and a B-tree insert per drained event for a key nothing looks rows up
-- by. Rows are read by event (`WHERE event_row_id = … ORDER BY id`), deleted by event (the
-- events_deleted trigger) and paged by `(event_row_id, id)` in `db copy`
-- (store/copy/tables.rs), so that pair becomes the primary key. `id` still comes from its
-- identity sequence, unique on its own; it orders an event's attempts.
ALTER TABLE event_attempts DROP CONSTRAINT IF EXISTS event_attempts_pkey;
ALTER TABLE event_attempts ADD CONSTRAINT event_attempts_pkey PRIMARY KEY (event_row_id, id);
DROP INDEX IF EXISTS event_attempts_event;
