//! The routing tables: reading rules and mappings, applying changes in one transaction.

use sqlx::postgres::{PgPool, PgRow};

use crate::store::{RoutingChanges, Rule, rows};
use crate::time;

pub(super) async fn apply_changes(pool: &PgPool, changes: &RoutingChanges) -> Result<(), sqlx::Error> {
    let now = time::now();
    let mut tx = pool.begin().await?;
    for m in &changes.mappings {
        sqlx::query(
            "INSERT INTO provider_mappings (provider, action, handler_mode, handler_target, enabled, updated_at, \
             flow_json) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (provider) DO UPDATE SET \
             action = EXCLUDED.action, handler_mode = EXCLUDED.handler_mode, \
             handler_target = EXCLUDED.handler_target, enabled = EXCLUDED.enabled, \
             updated_at = EXCLUDED.updated_at, flow_json = EXCLUDED.flow_json",
        )
        .bind(&m.provider)
        .bind(&m.action)
        .bind(m.handler_mode.as_str())
        .bind(&m.handler_target)
        .bind(i64::from(m.enabled))
        .bind(&now)
        .bind(rows::flow_json(m.flow.as_ref()))
        .execute(&mut *tx)
        .await?;
    }
    super::schedules::upsert(&mut tx, &changes.schedules, &now).await?;
    super::spend::upsert_budgets(&mut tx, &changes.budgets, &now).await?;
    for r in &changes.rules {
        sqlx::query(
            "INSERT INTO routing_rules (provider, name, priority, conditions_json, action, handler_mode, \
             handler_target, enabled, updated_at, continue_after_match, flow_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (provider, name) DO UPDATE SET priority = EXCLUDED.priority, \
             conditions_json = EXCLUDED.conditions_json, action = EXCLUDED.action, \
             handler_mode = EXCLUDED.handler_mode, handler_target = EXCLUDED.handler_target, \
             enabled = EXCLUDED.enabled, updated_at = EXCLUDED.updated_at, \
             continue_after_match = EXCLUDED.continue_after_match, flow_json = EXCLUDED.flow_json",
        )
        .bind(&r.provider)
        .bind(&r.name)
        .bind(r.priority)
        .bind(&r.conditions_json)
        .bind(&r.action)
        .bind(r.handler_mode.as_str())
        .bind(&r.handler_target)
        .bind(i64::from(r.enabled))
        .bind(&now)
        .bind(i64::from(r.continue_after_match))
        .bind(rows::flow_json(r.flow.as_ref()))
        .execute(&mut *tx)
        .await?;
    }
    for p in &changes.pools {
        sqlx::query(crate::store::flow::sql::UPSERT_POOL)
            .bind(&p.name)
            .bind(i64::from(p.limit))
            .bind(&now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Reads rule rows (an unreadable row is an error naming it).
pub(super) fn rules_from_rows(rows: &[PgRow]) -> Result<Vec<Rule>, sqlx::Error> {
    rows.iter().map(rows::rule).collect()
}
