-- Fan-out (CONTRACT §12): each action counts its own attempts, the times its handler
-- really ran (a `done` action replayed from its stored output does not count). Every
-- existing row has a started_at (NOT NULL since the seed), so its handler ran at least
-- once: 1 is honest for them, and a constant default adds the column without rewriting
-- the table. switchyard writes the column explicitly in its one action-run upsert.
ALTER TABLE action_runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
