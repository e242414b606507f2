//! Flow control's statements that both backends share (`$n` placeholders; SQLite's
//! `sql()` turns them into `?n`). What differs (claims, the PostgreSQL queue) is in each
//! backend.

pub const EVENT_ID: &str = "SELECT event_id FROM events WHERE id = $1";
pub const POOL: &str = "SELECT max_running, paused_until FROM flow_pools WHERE name = $1";
pub const WINDOW: &str =
    "SELECT holder_row_id, first_at, due_at FROM flow_debounce WHERE action = $1 AND flow_key = $2";
pub const SET_WINDOW: &str = "INSERT INTO flow_debounce (action, flow_key, holder_row_id, first_at, due_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (action, flow_key) DO UPDATE SET \
     holder_row_id = excluded.holder_row_id, first_at = excluded.first_at, due_at = excluded.due_at";
pub const WINDOW_EVENTS: &str = "SELECT event_row_id FROM flow_debounced WHERE action = $1 AND flow_key = $2 \
     ORDER BY event_row_id DESC LIMIT $3";
pub const DELETE_WINDOW_EVENTS: &str = "DELETE FROM flow_debounced WHERE action = $1 AND flow_key = $2";
pub const DELETE_WINDOW: &str = "DELETE FROM flow_debounce WHERE action = $1 AND flow_key = $2";
pub const ADD_TO_WINDOW: &str = "INSERT INTO flow_debounced (action, flow_key, event_row_id) VALUES ($1, $2, $3) \
     ON CONFLICT (action, flow_key, event_row_id) DO NOTHING";
pub const WAITING_ON: &str = "SELECT blocked_on FROM flow_waits WHERE event_row_id = $1 AND action = $2";
pub const KEY_RUNNERS: &str = "SELECT event_row_id, cancel_by FROM flow_slots \
     WHERE action = $1 AND flow_key = $2 AND event_row_id <> $3 ORDER BY event_row_id";
pub const KEY_WAITERS: &str = "SELECT event_row_id FROM flow_waits \
     WHERE action = $1 AND flow_key = $2 AND event_row_id <> $3 ORDER BY event_row_id";

/// In line before `$3` for a key: every waiting row but a debounce window's.
pub const KEY_BEFORE: &str = "SELECT event_row_id FROM flow_waits WHERE action = $1 AND flow_key = $2 \
     AND event_row_id < $3 AND blocked_on <> 'debounce' ORDER BY event_row_id LIMIT 1";
pub const LIMIT_BEFORE: &str = "SELECT event_row_id FROM flow_waits WHERE action = $1 AND blocked_on = 'limit' \
     AND event_row_id < $2 ORDER BY event_row_id LIMIT 1";
pub const POOL_BEFORE: &str = "SELECT event_row_id FROM flow_waits WHERE pool = $1 AND blocked_on = 'pool' \
     AND event_row_id < $2 ORDER BY event_row_id LIMIT 1";

/// To wake for a key's freed slot: the oldest event still `waiting` for a slot.
pub const KEY_WAKE: &str = "SELECT w.event_row_id FROM flow_waits w JOIN events ev ON ev.id = w.event_row_id \
     WHERE w.action = $1 AND w.flow_key = $2 AND w.blocked_on IN ('key', 'limit', 'pool') \
     AND ev.status = 'waiting' ORDER BY w.event_row_id LIMIT 1";
pub const LIMIT_WAKE: &str = "SELECT w.event_row_id FROM flow_waits w JOIN events ev ON ev.id = w.event_row_id \
     WHERE w.action = $1 AND w.blocked_on = 'limit' AND ev.status = 'waiting' ORDER BY w.event_row_id LIMIT 1";
pub const POOL_WAKE: &str = "SELECT w.event_row_id FROM flow_waits w JOIN events ev ON ev.id = w.event_row_id \
     WHERE w.pool = $1 AND w.blocked_on = 'pool' AND ev.status = 'waiting' ORDER BY w.event_row_id LIMIT 1";

pub const COUNT_KEY: &str =
    "SELECT count(*) FROM flow_slots WHERE action = $1 AND flow_key = $2 AND event_row_id <> $3";
pub const COUNT_ACTION: &str = "SELECT count(*) FROM flow_slots WHERE action = $1 AND event_row_id <> $2";
pub const COUNT_POOL: &str = "SELECT count(*) FROM flow_slots WHERE pool = $1 AND event_row_id <> $2";
pub const NTH_START: &str = "SELECT started_at FROM flow_starts WHERE action = $1 AND flow_key = $2 \
     AND started_at > $3 ORDER BY started_at DESC LIMIT 1 OFFSET $4";
pub const INSERT_SLOT: &str = "INSERT INTO flow_slots (event_row_id, action, flow_key, pool, started_at, limited) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_row_id, action) DO UPDATE SET \
     flow_key = excluded.flow_key, pool = excluded.pool, started_at = excluded.started_at, cancel_by = NULL, \
     limited = excluded.limited";
pub const INSERT_START: &str = "INSERT INTO flow_starts (action, flow_key, started_at) VALUES ($1, $2, $3)";
pub const DELETE_START: &str = "DELETE FROM flow_starts WHERE action = $1 AND flow_key = $2 AND started_at = $3";
pub const REQUEST_CANCEL: &str =
    "UPDATE flow_slots SET cancel_by = $3 WHERE event_row_id = $1 AND action = $2 AND cancel_by IS NULL";
pub const DELETE_SLOTS: &str = "DELETE FROM flow_slots WHERE event_row_id = $1 RETURNING action, flow_key, pool";
pub const DELETE_WAITS: &str = "DELETE FROM flow_waits WHERE event_row_id = $1";
pub const UPSERT_WAIT: &str = "INSERT INTO flow_waits (event_row_id, action, flow_key, pool, blocked_on, since) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_row_id, action) DO UPDATE SET \
     flow_key = excluded.flow_key, pool = excluded.pool, blocked_on = excluded.blocked_on";

/// Runs asked to stop (a small table: the caller keeps its own).
pub const CANCELS: &str = "SELECT event_row_id, cancel_by FROM flow_slots WHERE cancel_by IS NOT NULL";
pub const POOL_PAUSE_MS: &str = "SELECT pause_ms, paused_until FROM flow_pools WHERE name = $1";
pub const PAUSE_POOL: &str = "UPDATE flow_pools SET pause_ms = $2, paused_until = $3 WHERE name = $1";
pub const POOL_OK: &str = "UPDATE flow_pools SET pause_ms = 0 WHERE name = $1 AND pause_ms <> 0";
pub const UPSERT_POOL: &str = "INSERT INTO flow_pools (name, max_running, updated_at) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET max_running = excluded.max_running, updated_at = excluded.updated_at";

/// Housekeeping: rate starts older than the longest window allowed.
pub const PRUNE_STARTS: &str = "DELETE FROM flow_starts WHERE started_at < $1";
/// Windows whose holder ended another way (replayed into a new window, cancelled, purged).
pub const STALE_WINDOWS: &str = "DELETE FROM flow_debounce WHERE NOT EXISTS (SELECT 1 FROM events e \
     WHERE e.id = flow_debounce.holder_row_id AND e.status IN ('waiting', 'pending', 'retry', 'processing', 'held'))";
pub const STALE_WINDOW_EVENTS: &str = "DELETE FROM flow_debounced WHERE NOT EXISTS (SELECT 1 FROM flow_debounce d \
     WHERE d.action = flow_debounced.action AND d.flow_key = flow_debounced.flow_key)";
/// Waiting rows of events that ended (finished, cancelled, purged).
pub const STALE_WAITS: &str = "DELETE FROM flow_waits WHERE NOT EXISTS (SELECT 1 FROM events e \
     WHERE e.id = flow_waits.event_row_id AND e.status IN ('waiting', 'pending', 'retry', 'processing', 'held'))";

pub const STATE_RUNNING: &str = "SELECT action, count(*) FROM flow_slots GROUP BY action ORDER BY action";
pub const STATE_WAITING: &str = "SELECT w.action, count(*) FROM flow_waits w JOIN events e ON e.id = w.event_row_id \
     WHERE e.status = 'waiting' GROUP BY w.action ORDER BY w.action";
pub const STATE_POOLS: &str = "SELECT p.name, p.max_running, \
     (SELECT count(*) FROM flow_slots s WHERE s.pool = p.name), p.paused_until FROM flow_pools p ORDER BY p.name";
