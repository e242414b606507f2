//! Recording what an agent or `llm` attempt consumed (CONTRACT §14): the spend ledger, the
//! run's usage and transcript, and the `/metrics` counters.

use crate::domain::HandlerMode;
use crate::handlers::RunReport;
use crate::store::{ActionRunRecord, Db, UsageRecord};

/// Stores `report` of the attempt `run` describes (its `finished_at` set); a run with
/// nothing to report stores nothing. A store failure is logged: the attempt's outcome
/// does not depend on it.
pub(super) async fn record(db: &Db, run: &ActionRunRecord, report: RunReport) {
    if report.usage.is_none() && report.transcript.is_none() {
        return;
    }
    let usage = report.usage.unwrap_or_default();
    crate::llm_metrics::record(&run.action, run.handler_mode == HandlerMode::Agent, &usage);
    let record = UsageRecord {
        event_row_id: run.event_row_id,
        action: run.action.clone(),
        handler_mode: run.handler_mode,
        started_at: run.started_at.clone(),
        finished_at: run.finished_at.clone().unwrap_or_else(crate::time::now),
        usage,
        transcript: report.transcript,
    };
    if let Err(e) = db.record_usage(record).await {
        tracing::warn!(row_id = run.event_row_id, action = %run.action, error = %e, "could not record the usage of a run");
    }
}
