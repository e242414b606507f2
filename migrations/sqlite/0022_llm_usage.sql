-- Agent and LLM runs: what they cost and did (CONTRACT §14).
-- The latest attempt's usage and transcript, shown with the run (purged with it).
ALTER TABLE action_runs ADD COLUMN usage_json TEXT;
ALTER TABLE action_runs ADD COLUMN transcript TEXT;

-- One row per agent or llm attempt: the spend ledger that /spend, the Spend page and the
-- budgets read. Small rows, kept when retention purges the events (a month's budget must
-- still see them).
CREATE TABLE llm_spend (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_row_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    handler_mode TEXT NOT NULL,
    model TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    cost_usd REAL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cache_read_tokens INTEGER,
    cache_creation_tokens INTEGER,
    stop TEXT
);
CREATE INDEX llm_spend_started ON llm_spend (started_at);
CREATE INDEX llm_spend_cost ON llm_spend (cost_usd);

-- Budgets of actions (a mapping's or rule's "budget", upserted by action).
CREATE TABLE llm_budgets (
    action TEXT PRIMARY KEY,
    per_run_usd DOUBLE PRECISION,
    daily_usd DOUBLE PRECISION,
    monthly_usd DOUBLE PRECISION,
    updated_at TEXT NOT NULL
);
-- Agent and llm runs in flight, which count against a budget before they have a cost.
CREATE INDEX action_runs_running ON action_runs (action) WHERE status = 'running';
-- Events held by a budget, looked at again when their next_attempt_at comes.
CREATE INDEX events_held ON events (next_attempt_at) WHERE status = 'held';
