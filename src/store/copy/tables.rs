//! The tables `db copy` moves, and each one's columns: the one list to extend when a
//! migration adds a table or a column (a test fails while the list and the migrated schema
//! of either backend disagree, and a copy refuses a source column it does not know).

/// How a column's values travel (read with a cast to this type, bound as this type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 64-bit integer (SQLite INTEGER, PostgreSQL BIGINT).
    Int,
    /// Double-precision number (SQLite REAL, PostgreSQL DOUBLE PRECISION).
    Real,
    /// Text (timestamps and JSON included).
    Text,
}

/// One column of a copied table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Its name.
    pub name: &'static str,
    /// How its values travel.
    pub kind: Kind,
}

const fn int(name: &'static str) -> Column {
    Column { name, kind: Kind::Int }
}

const fn real(name: &'static str) -> Column {
    Column { name, kind: Kind::Real }
}

const fn text(name: &'static str) -> Column {
    Column { name, kind: Kind::Text }
}

/// One table switchyard owns.
#[derive(Debug)]
pub struct Table {
    /// Its name.
    pub name: &'static str,
    /// A unique key (the primary key, or one an index serves on both backends): pages are
    /// read in its order, and `--resume` skips rows the target already holds under this key
    /// (or any other unique key).
    pub key: &'static [&'static str],
    /// A PostgreSQL identity column to move past the copied ids afterwards.
    pub identity: Option<&'static str>,
    /// Every column.
    pub columns: &'static [Column],
}

/// Every table switchyard owns, parents before children (action runs after their events).
/// Not copied: `_sqlx_migrations` (each side migrates itself) and SQLite's own tables.
pub const TABLES: &[Table] = &[
    Table {
        name: "events",
        key: &["id"],
        identity: Some("id"),
        columns: &[
            int("id"),
            text("source"),
            text("event_id"),
            text("received_at"),
            text("status"),
            int("attempt_count"),
            text("next_attempt_at"),
            text("processing_started_at"),
            text("processed_at"),
            text("payload_json"),
            text("result_json"),
            text("last_error"),
            text("lease_until"),
            text("provider"),
            text("action"),
            int("replay_force"),
        ],
    },
    Table {
        name: "action_runs",
        key: &["id"],
        identity: Some("id"),
        columns: &[
            int("id"),
            int("event_row_id"),
            text("started_at"),
            text("finished_at"),
            text("status"),
            text("provider"),
            text("action"),
            text("handler_mode"),
            text("handler_target"),
            text("input_json"),
            text("output_json"),
            text("error"),
            text("usage_json"),
            text("transcript"),
            int("attempts"),
        ],
    },
    Table {
        name: "event_attempts",
        // PostgreSQL's primary key (migration 0034); SQLite has an index on the pair.
        key: &["event_row_id", "id"],
        identity: Some("id"),
        columns: &[
            int("id"),
            int("event_row_id"),
            int("attempt"),
            text("started_at"),
            text("finished_at"),
            text("outcome"),
            text("error"),
            int("duration_ms"),
        ],
    },
    Table {
        name: "provider_mappings",
        key: &["provider"],
        identity: None,
        columns: &[
            text("provider"),
            text("action"),
            text("handler_mode"),
            text("handler_target"),
            int("enabled"),
            text("updated_at"),
            text("flow_json"),
        ],
    },
    Table {
        name: "routing_rules",
        key: &["id"],
        identity: Some("id"),
        columns: &[
            int("id"),
            text("provider"),
            text("name"),
            int("priority"),
            text("conditions_json"),
            text("action"),
            text("handler_mode"),
            text("handler_target"),
            int("enabled"),
            text("updated_at"),
            int("continue_after_match"),
            text("flow_json"),
        ],
    },
    Table {
        name: "schedules",
        key: &["job"],
        identity: None,
        columns: &[
            text("job"),
            text("cron"),
            text("timezone"),
            text("payload_json"),
            int("enabled"),
            text("missed"),
            text("last_scheduled_at"),
            text("updated_at"),
            text("active_since"),
        ],
    },
    // The spend ledger outlives retention (a month's budget still sees purged events'
    // spend), so it is copied whole.
    Table {
        name: "llm_spend",
        key: &["id"],
        identity: Some("id"),
        columns: &[
            int("id"),
            int("event_row_id"),
            text("action"),
            text("handler_mode"),
            text("model"),
            text("started_at"),
            text("finished_at"),
            real("cost_usd"),
            int("input_tokens"),
            int("output_tokens"),
            int("cache_read_tokens"),
            int("cache_creation_tokens"),
            text("stop"),
        ],
    },
    Table {
        name: "llm_budgets",
        key: &["action"],
        identity: None,
        columns: &[
            text("action"),
            real("per_run_usd"),
            real("daily_usd"),
            real("monthly_usd"),
            text("updated_at"),
        ],
    },
    // The config's flow pools (CONTRACT §13), with a pause that may still be running: the
    // moved service keeps off a provider that asked it to slow down.
    Table {
        name: "flow_pools",
        key: &["name"],
        identity: None,
        columns: &[
            text("name"),
            int("max_running"),
            text("paused_until"),
            int("pause_ms"),
            text("updated_at"),
        ],
    },
    // Dashboard sessions ended by a logout: a cookie revoked before the move stays revoked
    // after it (the cookie's key is ADMIN_SECRET's, the same on both sides).
    Table {
        name: "ui_revoked_sessions",
        key: &["nonce"],
        identity: None,
        columns: &[text("nonce"), int("expires_at")],
    },
    // Change counters: the target's own rows (created by its migrations) stay; the triggers
    // bump them as the copied routing rows and schedules land.
    Table {
        name: "switchyard_meta",
        key: &["key"],
        identity: None,
        columns: &[text("key"), int("value")],
    },
];

/// Tables of a migrated database that are not copied on purpose. PostgreSQL's narrow
/// queue (`event_queue`) is rebuilt from the copied events instead (`super::sql::QUEUE_COPIED`),
/// and read from PostgreSQL, a claimed event's row carries its claim. Flow control's live
/// state (`flow_*` but pools: slots held by running handlers, waits, rate-window starts,
/// open debounce windows) belongs to the processes of the source, which are stopped for a
/// copy. The target starts without it: its flow sweep makes the copied `waiting` events
/// pending again when their recheck time comes, and they are admitted anew (CONTRACT §13).
pub const NOT_COPIED: &[&str] = &[
    "_sqlx_migrations",
    "sqlite_sequence",
    "sqlite_stat1",
    "event_queue",
    "flow_slots",
    "flow_waits",
    "flow_starts",
    "flow_debounce",
    "flow_debounced",
];
