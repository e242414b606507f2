//! Writes attempts to `event_attempts` (migration 0023), in the statement that records
//! their outcomes on the event rows.

/// A CTE `attempts` that records the attempts a statement's CTE `applied` just finished,
/// from the event rows as that statement's `UPDATE events … RETURNING` left them:
/// `id`, `attempt_count`, `processing_started_at` (the claim time), `status` (the
/// outcome) and `last_error`. `$now` names the parameter holding when the outcomes were
/// recorded.
///
/// Part of the outcome's statement rather than a statement after it: a second statement
/// cost a round trip per chunk and looked the events up again by id (docs/PERFORMANCE.md).
/// A claim time this program did not write (a seed row) is not trusted to parse, so the
/// duration is computed only from the form it writes. `$duration` is the duration when the
/// finish knows it ([`ClaimTimes`](crate::store::claim_times::ClaimTimes)): the regular
/// expression and the two timestamp parses cost PostgreSQL 1.8 µs per row (100,000-row
/// inserts in psql: 166 ms without, 345 ms with), and run only where it is NULL.
macro_rules! record_attempts {
    ($now:literal, $duration:literal) => {
        concat!(
            "attempts AS ( \
               INSERT INTO event_attempts (event_row_id, attempt, started_at, finished_at, outcome, error, duration_ms) \
               SELECT id, attempt_count, processing_started_at, ",
            $now,
            "::text, status, last_error, COALESCE(",
            $duration,
            ", CASE WHEN processing_started_at \
                   ~ '^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?(Z|[+-]\\d\\d:\\d\\d)$' \
                 THEN round(extract(epoch FROM (",
            $now,
            "::timestamptz - processing_started_at::timestamptz)) * 1000)::bigint END) \
               FROM applied ORDER BY id)"
        )
    };
}
pub(super) use record_attempts;
