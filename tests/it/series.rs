//! The dashboard's per-minute series (`Store::per_minute`) on both backends: events fall
//! into the minute of their timestamp, the window's edges are exact, minutes without
//! events are zeros, and only `done` and `error` count as finished.

use chrono::{DateTime, Utc};
use switchyard::store::MinuteCounts;

use crate::store::{TestStore, event, store_tests};

store_tests!(per_minute_buckets_by_minute_with_empty_minutes);

/// event_id, received_at, status, processed_at (`NULL` for none).
const ROWS: &[(&str, &str, &str, &str)] = &[
    (
        "first",
        "2026-01-02T03:00:10.000000+00:00",
        "done",
        "'2026-01-02T03:01:59.999999+00:00'",
    ),
    (
        "edge",
        "2026-01-02T03:00:59.999999+00:00",
        "error",
        "'2026-01-02T03:04:00.000000+00:00'",
    ),
    (
        "before",
        "2026-01-02T02:59:59.999999+00:00",
        "done",
        "'2026-01-02T03:05:00.000000+00:00'",
    ),
    ("waiting", "2026-01-02T03:02:00.000000+00:00", "pending", "NULL"),
    // Seconds precision, as the seed wrote it.
    ("seed", "2026-01-02T03:02:30+00:00", "retry", "NULL"),
    (
        "cancelled",
        "2026-01-01T00:00:00.000000+00:00",
        "cancelled",
        "'2026-01-02T03:03:00.000000+00:00'",
    ),
];

async fn per_minute_buckets_by_minute_with_empty_minutes(t: TestStore) {
    for (id, ..) in ROWS {
        t.db.enqueue(event(id)).await.unwrap();
    }
    let case = |pick: fn(&(&str, &str, &str, &str)) -> String| {
        let arms: String = ROWS
            .iter()
            .map(|r| format!(" WHEN '{}' THEN {}", r.0, pick(r)))
            .collect();
        format!("CASE event_id{arms} END")
    };
    let sql = format!(
        "UPDATE events SET received_at = {}, status = {}, processed_at = {}",
        case(|r| format!("'{}'", r.1)),
        case(|r| format!("'{}'", r.2)),
        case(|r| r.3.to_string()),
    );
    t.exec(&sql, &sql).await;

    let now: DateTime<Utc> = "2026-01-02T03:04:30Z".parse().unwrap();
    let series = t.db.per_minute(now, 5).await.unwrap();
    let got: Vec<_> = series
        .iter()
        .map(|m: &MinuteCounts| (m.minute.as_str(), m.received, m.done, m.failed))
        .collect();
    assert_eq!(
        got,
        [
            ("2026-01-02T03:00:00+00:00", 2, 0, 0),
            ("2026-01-02T03:01:00+00:00", 0, 1, 0),
            ("2026-01-02T03:02:00+00:00", 2, 0, 0),
            ("2026-01-02T03:03:00+00:00", 0, 0, 0),
            ("2026-01-02T03:04:00+00:00", 0, 0, 1),
        ]
    );

    // A window with no events at all is all zeros, one entry per minute.
    let empty =
        t.db.per_minute("2030-01-01T00:00:00Z".parse().unwrap(), 60)
            .await
            .unwrap();
    assert_eq!(empty.len(), 60);
    assert!(empty.iter().all(|m| m.received == 0 && m.done == 0 && m.failed == 0));
    assert_eq!(empty[59].minute, "2030-01-01T00:00:00+00:00");
}
