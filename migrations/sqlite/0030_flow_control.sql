-- Flow control (CONTRACT §13). Its state lives in the database so that every process on
-- it sees the same slots, waits, rate windows, debounce windows and pool pauses.

-- A mapping's or rule's "flow", as Flow::to_json writes it (NULL: none).
ALTER TABLE provider_mappings ADD COLUMN flow_json TEXT;
ALTER TABLE routing_rules ADD COLUMN flow_json TEXT;

-- The config's "pools": a limit shared by every action naming the pool, and its pause
-- (set when a run in it meets a rate limit; pause_ms doubles while pauses repeat).
CREATE TABLE flow_pools (
    name TEXT PRIMARY KEY,
    max_running INTEGER NOT NULL,
    paused_until TEXT,
    pause_ms INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);

-- A run holding a slot: one row per running (event, action) with a flow. cancel_by is the
-- row id of the event that asked for it to stop (on_conflict: cancel_running); limited says
-- its flow has an action-wide limit (PostgreSQL then takes the action's lock to free it).
CREATE TABLE flow_slots (
    event_row_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    flow_key TEXT NOT NULL,
    pool TEXT,
    started_at TEXT NOT NULL,
    cancel_by INTEGER,
    limited INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (event_row_id, action)
);
CREATE INDEX flow_slots_key ON flow_slots (action, flow_key);
CREATE INDEX flow_slots_pool ON flow_slots (pool) WHERE pool IS NOT NULL;

-- An event waiting for a slot, a window or a pool, and what for (blocked_on: key, limit,
-- pool, rate, paused, debounce). It keeps its row, and so its place, until it starts or ends.
CREATE TABLE flow_waits (
    event_row_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    flow_key TEXT NOT NULL,
    pool TEXT,
    blocked_on TEXT NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (event_row_id, action)
);
CREATE INDEX flow_waits_key ON flow_waits (action, flow_key, event_row_id);
CREATE INDEX flow_waits_blocked ON flow_waits (action, blocked_on, event_row_id);
CREATE INDEX flow_waits_pool ON flow_waits (pool, blocked_on, event_row_id) WHERE pool IS NOT NULL;

-- Starts of runs with a rate limit, for its sliding window (pruned past the window).
CREATE TABLE flow_starts (
    action TEXT NOT NULL,
    flow_key TEXT NOT NULL,
    started_at TEXT NOT NULL
);
CREATE INDEX flow_starts_key ON flow_starts (action, flow_key, started_at);

-- An open debounce window: the event that will run (the latest), when the window opened
-- and when it is due.
CREATE TABLE flow_debounce (
    action TEXT NOT NULL,
    flow_key TEXT NOT NULL,
    holder_row_id INTEGER NOT NULL,
    first_at TEXT NOT NULL,
    due_at TEXT NOT NULL,
    PRIMARY KEY (action, flow_key)
);

-- The events of an open window (deliver: "all").
CREATE TABLE flow_debounced (
    action TEXT NOT NULL,
    flow_key TEXT NOT NULL,
    event_row_id INTEGER NOT NULL,
    PRIMARY KEY (action, flow_key, event_row_id)
);
