//! The SQLite schema's migrations, embedded in the binary.

/// The schema, oldest first (embedded in the binary).
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "seed layout",
        include_str!("../../../migrations/sqlite/0001_seed_layout.sql"),
    ),
    (
        2,
        "leases and indexes",
        include_str!("../../../migrations/sqlite/0002_leases_and_indexes.sql"),
    ),
    (
        10,
        "schedules",
        include_str!("../../../migrations/sqlite/0010_schedules.sql"),
    ),
    (
        11,
        "operator api",
        include_str!("../../../migrations/sqlite/0011_operator_api.sql"),
    ),
    (
        12,
        "finished index without an IN list",
        include_str!("../../../migrations/sqlite/0012_finished_index_without_in_list.sql"),
    ),
    (
        13,
        "provider index for routed rows",
        include_str!("../../../migrations/sqlite/0013_provider_index_for_routed_rows.sql"),
    ),
    (
        14,
        "status index without done rows",
        include_str!("../../../migrations/sqlite/0014_status_index_without_done.sql"),
    ),
    (
        21,
        "rule continue",
        include_str!("../../../migrations/sqlite/0021_rule_continue.sql"),
    ),
    (
        22,
        "llm usage",
        include_str!("../../../migrations/sqlite/0022_llm_usage.sql"),
    ),
    (
        23,
        "event attempts",
        include_str!("../../../migrations/sqlite/0023_event_attempts.sql"),
    ),
    (
        24,
        "schedule active since",
        include_str!("../../../migrations/sqlite/0024_schedule_active_since.sql"),
    ),
    (
        25,
        "revoked dashboard sessions",
        include_str!("../../../migrations/sqlite/0025_revoked_sessions.sql"),
    ),
    (
        26,
        "action run attempts",
        include_str!("../../../migrations/sqlite/0026_action_run_attempts.sql"),
    ),
    (
        30,
        "flow control",
        include_str!("../../../migrations/sqlite/0030_flow_control.sql"),
    ),
    (
        31,
        "finished index with flow statuses",
        include_str!("../../../migrations/sqlite/0031_finished_index_flow_statuses.sql"),
    ),
    (
        32,
        "waiting index",
        include_str!("../../../migrations/sqlite/0032_waiting_index.sql"),
    ),
];
