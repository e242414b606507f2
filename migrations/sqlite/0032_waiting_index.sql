-- Waiting events (flow control, CONTRACT §13) by when they are looked at again. Flow
-- housekeeping makes those whose time came due once a second on every worker
-- (`status = 'waiting' AND next_attempt_at <= ?`, the same WHERE verbatim): without this
-- index that statement scanned the whole events table on the writer each time. Like
-- events_held (migration 0022), it holds only the few rows in that status. PostgreSQL needs
-- no such index: its planner reads `status = 'waiting'` off events_status_received.
CREATE INDEX events_waiting ON events (next_attempt_at) WHERE status = 'waiting';
