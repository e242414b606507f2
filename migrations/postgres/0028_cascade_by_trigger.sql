-- The action runs and attempts of deleted events go by one statement trigger instead of
-- two foreign keys (issue 26). A foreign key checks every inserted row on its own: each
-- action run and each attempt row a finish writes ran a `SELECT … FOR KEY SHARE` on its
-- event, a query with its own executor start, about 4.5 µs of PostgreSQL's CPU per row,
-- 9 of the ~55 µs a drained event cost (docs/PERFORMANCE.md). switchyard writes these
-- rows only for events it has just updated or claimed in the same transaction, so the
-- insert-time check guarded nothing; the cascade on delete is what the tables need, and
-- a trigger per statement does it for a whole batch at once.
ALTER TABLE action_runs DROP CONSTRAINT IF EXISTS action_runs_event_row_id_fkey;
ALTER TABLE event_attempts DROP CONSTRAINT IF EXISTS event_attempts_event_row_id_fkey;

-- Replaces migration 0020's trigger, which deleted the queue rows only. The rows are found
-- by `= ANY (ARRAY(…))`, a probe of each table's index on event_row_id per deleted id.
DROP TRIGGER IF EXISTS events_dequeue_deleted ON events;
DROP FUNCTION IF EXISTS switchyard_dequeue_deleted();

CREATE FUNCTION switchyard_events_deleted() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    DELETE FROM event_queue WHERE event_row_id = ANY (ARRAY(SELECT id FROM deleted));
    DELETE FROM action_runs WHERE event_row_id = ANY (ARRAY(SELECT id FROM deleted));
    DELETE FROM event_attempts WHERE event_row_id = ANY (ARRAY(SELECT id FROM deleted));
    RETURN NULL;
END
$$;

CREATE TRIGGER events_deleted
AFTER DELETE ON events
REFERENCING OLD TABLE AS deleted
FOR EACH STATEMENT EXECUTE FUNCTION switchyard_events_deleted();

-- TRUNCATE events used to be refused while the foreign keys pointed at it (unless
-- CASCADE); now it empties the tables that hang off it along with it. DELETE rather than
-- TRUNCATE: a TRUNCATE that names those tables too still has them open, and PostgreSQL
-- refuses to truncate them again from the trigger; it left them empty already.
CREATE FUNCTION switchyard_events_truncated() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    DELETE FROM event_queue;
    DELETE FROM action_runs;
    DELETE FROM event_attempts;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_truncated
AFTER TRUNCATE ON events
FOR EACH STATEMENT EXECUTE FUNCTION switchyard_events_truncated();
