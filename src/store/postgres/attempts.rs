//! Writes attempts to `event_attempts` (migration 0023), inside the transaction that
//! recorded their outcomes on the event rows.

use sqlx::postgres::PgConnection;

/// Records the attempts events `ids` just finished, read from their rows as the outcome
/// statement left them: attempt count, claim time, status (the outcome) and `last_error`.
/// `now` is when the outcomes were recorded.
pub(super) async fn record(tx: &mut PgConnection, ids: &[i64], now: &str) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    // A claim time this program did not write (a seed row) is not trusted to parse.
    sqlx::query(
        "INSERT INTO event_attempts (event_row_id, attempt, started_at, finished_at, outcome, error, duration_ms) \
         SELECT id, attempt_count, processing_started_at, $2, status, last_error, \
           CASE WHEN processing_started_at ~ '^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?(Z|[+-]\\d\\d:\\d\\d)$' \
             THEN round(extract(epoch FROM ($2::timestamptz - processing_started_at::timestamptz)) * 1000)::bigint END \
         FROM events WHERE id = ANY($1) ORDER BY id",
    )
    .bind(ids)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
