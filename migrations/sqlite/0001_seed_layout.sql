-- The seed's (Python prototype's) layout. IF NOT EXISTS: a database written by the seed
-- already has these tables and keeps them as they are.
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    event_id TEXT,
    received_at TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    processing_started_at TEXT,
    processed_at TEXT,
    payload_json TEXT NOT NULL,
    result_json TEXT,
    last_error TEXT,
    UNIQUE(source, event_id)
);

CREATE TABLE IF NOT EXISTS provider_mappings (
    provider TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    handler_mode TEXT NOT NULL DEFAULT 'noop',
    handler_target TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS routing_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    name TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 100,
    conditions_json TEXT NOT NULL,
    action TEXT NOT NULL,
    handler_mode TEXT NOT NULL DEFAULT 'noop',
    handler_target TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT NOT NULL,
    UNIQUE(provider, name)
);

CREATE TABLE IF NOT EXISTS action_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_row_id INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    provider TEXT,
    action TEXT,
    handler_mode TEXT,
    handler_target TEXT,
    input_json TEXT,
    output_json TEXT,
    error TEXT,
    UNIQUE(event_row_id, action),
    FOREIGN KEY(event_row_id) REFERENCES events(id)
);
