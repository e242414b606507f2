-- switchyard additions (additive only).

-- Claims hold a lease; an expired one is reclaimed by any worker.
ALTER TABLE events ADD COLUMN lease_until TEXT;

-- Seed rows may have no next_attempt_at; the due index orders by it.
UPDATE events SET next_attempt_at = COALESCE(next_attempt_at, received_at)
WHERE status IN ('pending', 'retry') AND next_attempt_at IS NULL;

-- Only due-able rows are indexed, so a claim is an index range scan however deep the
-- table of finished events grows.
CREATE INDEX IF NOT EXISTS events_due ON events(next_attempt_at, id)
WHERE status IN ('pending', 'retry');

CREATE INDEX IF NOT EXISTS events_leased ON events(lease_until)
WHERE status = 'processing';

CREATE INDEX IF NOT EXISTS routing_rules_order ON routing_rules(provider, priority, id);

-- A counter bumped by triggers on every routing change, made by this program, another
-- instance or a hand-written SQL statement alike; workers cache the tables until it moves.
CREATE TABLE IF NOT EXISTS switchyard_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO switchyard_meta (key, value) VALUES ('routing_version', 0);

CREATE TRIGGER IF NOT EXISTS provider_mappings_ai AFTER INSERT ON provider_mappings
BEGIN UPDATE switchyard_meta SET value = value + 1 WHERE key = 'routing_version'; END;
CREATE TRIGGER IF NOT EXISTS provider_mappings_au AFTER UPDATE ON provider_mappings
BEGIN UPDATE switchyard_meta SET value = value + 1 WHERE key = 'routing_version'; END;
CREATE TRIGGER IF NOT EXISTS provider_mappings_ad AFTER DELETE ON provider_mappings
BEGIN UPDATE switchyard_meta SET value = value + 1 WHERE key = 'routing_version'; END;
CREATE TRIGGER IF NOT EXISTS routing_rules_ai AFTER INSERT ON routing_rules
BEGIN UPDATE switchyard_meta SET value = value + 1 WHERE key = 'routing_version'; END;
CREATE TRIGGER IF NOT EXISTS routing_rules_au AFTER UPDATE ON routing_rules
BEGIN UPDATE switchyard_meta SET value = value + 1 WHERE key = 'routing_version'; END;
CREATE TRIGGER IF NOT EXISTS routing_rules_ad AFTER DELETE ON routing_rules
BEGIN UPDATE switchyard_meta SET value = value + 1 WHERE key = 'routing_version'; END;
