//! The advisory locks of flow control: one per action (its `limit`), per key and per pool,
//! taken in one global order (sorted), so two transactions never wait on each other in a
//! circle.

use crate::store::flow::FlowAsk;

/// The advisory lock key of an action or a pool (`hashtextextended` is stable across
/// servers and versions ≥ 11).
const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 7235))";

/// The lock name of an action's action-wide lines (its `limit`): taken only by flows that
/// have one, so that the keys of an action without a limit admit in parallel.
pub(in crate::store::postgres) fn action_lock(action: &str) -> String {
    format!("flow:action:{action}")
}

/// The lock name of one key's line in an action: every admission takes it.
pub(in crate::store::postgres) fn key_lock(action: &str, key: &str) -> String {
    format!("flow:key:{action}\u{1f}{key}")
}

/// The lock name of a pool's line.
pub(in crate::store::postgres) fn pool_lock(pool: &str) -> String {
    format!("flow:pool:{pool}")
}

/// Takes the advisory locks `names` in the one global order (sorted), for the transaction.
pub(in crate::store::postgres) async fn take_locks(
    conn: &mut sqlx::PgConnection,
    mut names: Vec<String>,
) -> Result<(), sqlx::Error> {
    names.sort();
    names.dedup();
    for name in names {
        sqlx::query(LOCK).bind(name).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The lock names of an admission: each run's key, its action when it has a limit, its pool.
pub(super) fn lock_names(ask: &FlowAsk) -> Vec<String> {
    let mut names = Vec::new();
    for run in &ask.runs {
        names.push(key_lock(&run.action, &run.key));
        if run.flow.limit.is_some() {
            names.push(action_lock(&run.action));
        }
        if let Some(p) = &run.flow.pool {
            names.push(pool_lock(p));
        }
    }
    names
}
