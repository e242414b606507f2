//! The PostgreSQL backend: many instances sharing one queue.
//!
//! Same tables, columns and semantics as [`super::sqlite`] (timestamps are the same RFC 3339
//! text), so rows and JSON are identical on both backends. What differs is how instances
//! cooperate:
//!
//! - **Claims** are one statement that locks due rows of the narrow `event_queue` with
//!   `FOR NO KEY UPDATE SKIP LOCKED`, so any number of workers in any number of processes
//!   claim disjoint rows without waiting on each other; no transaction stays open while a
//!   handler runs. The wide `events` row is written once per attempt, by the finish.
//! - **Enqueues** go through a collector task: concurrent requests are folded into one
//!   multi-row `INSERT … ON CONFLICT (source, event_id) DO NOTHING` transaction (a few run
//!   at once), which also sends `NOTIFY switchyard_events` before its commit.
//! - **Wake-ups across instances:** a background `LISTEN switchyard_events` connection
//!   resolves [`Store::external_wake`] on every notification and after every
//!   (re)connection; polling stays the fallback.
//! - **Lost connections** (`pg_terminate_backend`, a restarted server) are not fatal: the
//!   pool tests connections before use, and an operation that fails because its connection
//!   died is retried on a fresh one (a few times, with a short back-off; every store
//!   operation retried is safe to repeat).
//!
//! docs/POSTGRES.md is the operator's view of all this.

mod admin;
mod attempts;
mod chunks;
mod claim;
mod connect;
mod enqueue;
mod finish;
mod flow;
mod listen;
mod retry;
mod routing;
mod schedules;
mod sessions;
mod spend;

use std::sync::{Arc, OnceLock, PoisonError};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

pub use connect::PgOptions;
pub(crate) use connect::{connect_options, migrated_connection};

use super::*;
use crate::store::claim_times::SharedClaimTimes;
use claim::{ClaimCursor, claim_due, reclaim_expired_leases, release_claims, renew_leases};
use enqueue::EnqueueRequest;
use finish::{finish_batch, start_run};
use listen::{Wakes, listen_loop};
use retry::retry;
use routing::{apply_changes, rules_from_rows};

/// The NOTIFY channel that announces new due work to every instance on the database.
///
/// Channels are database-wide, so the payload names the schema of the queue
/// (`current_schema()`); a listener ignores other schemas' notifications, and an empty
/// payload (a hand-typed `NOTIFY switchyard_events`) wakes everyone.
pub const CHANNEL: &str = "switchyard_events";

/// The PostgreSQL store.
pub struct PgStore {
    pool: PgPool,
    /// One connection for claims, planning without sorts or bitmap scans
    /// ([`connect`](PgStore::connect)); opened by the first claim.
    claims: PgPool,
    enqueue_tx: mpsc::Sender<EnqueueRequest>,
    /// Options for the LISTEN connection (the pool's, without a statement timeout).
    listen_options: PgConnectOptions,
    /// The schema holding our tables: the payload of our notifications.
    schema: String,
    /// Poked by the listener task; awaited by [`Store::external_wake`].
    wake: Arc<Notify>,
    /// Poked by the listener on schedule changes; awaited by [`Store::schedules_changed`].
    schedules_wake: Arc<Notify>,
    /// Started by the first `external_wake`, so CLI commands and `http`-only instances
    /// (which never wait for work) hold no LISTEN connection.
    listener: OnceLock<JoinHandle<()>>,
    /// Where this process's next claim starts scanning the due index.
    claim_cursor: ClaimCursor,
    /// The routing version read by the last claim that returned events, until asked for:
    /// the worker checks the version right after such a claim, and this spares that check
    /// a round trip per claim.
    claimed_version: std::sync::Mutex<Option<i64>>,
    /// When this process claimed the events it holds, for the attempts' durations.
    claim_times: SharedClaimTimes,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(task) = self.listener.get() {
            task.abort();
        }
    }
}
impl PgStore {
    /// Tells every listening instance that there is due work (best effort: polling is the
    /// fallback, so a failure is only logged).
    async fn notify(&self) {
        if let Err(e) = sqlx::query("SELECT pg_notify($1, current_schema())")
            .bind(CHANNEL)
            .execute(&self.pool)
            .await
        {
            tracing::debug!(error = %e, "NOTIFY failed; other instances will find the work by polling");
        }
    }

    /// Starts the LISTEN task unless it runs already.
    fn ensure_listener(&self) {
        self.listener.get_or_init(|| {
            let wakes = Wakes {
                events: self.wake.clone(),
                schedules: self.schedules_wake.clone(),
            };
            tokio::spawn(listen_loop(self.listen_options.clone(), self.schema.clone(), wakes))
        });
    }
}

/// Finish transactions a worker keeps in flight ([`Store::finish_parallelism`]): with
/// one, the drain ran at the pace of the server process executing it, one core, while the
/// claim's process and the worker left the other core partly idle.
const FINISH_PARALLELISM: usize = 3;

/// Events per claim ([`Store::claim_batch`]): the worker's claim loop waits for each claim
/// (a round trip and a commit's WAL flush), and at 256 a drain was paced by that loop
/// rather than by the server's CPU.
const CLAIM_BATCH: usize = 512;

// Column lists as macros so that each statement is one `concat!`ed `&'static str`.
macro_rules! rule_select {
    () => {
        "SELECT id, provider, name, priority, conditions_json, action, handler_mode, handler_target, enabled, \
         continue_after_match, flow_json FROM routing_rules"
    };
}
macro_rules! mapping_select {
    () => {
        "SELECT provider, action, handler_mode, handler_target, enabled, flow_json FROM provider_mappings"
    };
}
/// An event as the API shows it: a claimed one's status, attempt and start are its
/// claim's (`query::PG_EVENTS_WITH_CLAIMS`).
macro_rules! event_select {
    () => {
        concat!(
            "SELECT id, source, event_id, received_at, ",
            query::pg_claimed!(),
            ", processed_at, payload_json, result_json, last_error \
             FROM events LEFT JOIN event_queue claim \
             ON claim.event_row_id = events.id AND claim.leased_until IS NOT NULL"
        )
    };
}
macro_rules! action_run_select {
    () => {
        "SELECT id, event_row_id, started_at, finished_at, status, provider, action, handler_mode, \
         handler_target, input_json, output_json, error, attempts FROM action_runs"
    };
}

impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn enqueue(&self, event: NewEvent) -> StoreFuture<'_, Enqueued> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.enqueue_tx
                .send(EnqueueRequest { event, reply })
                .await
                .map_err(|_| StoreError::WriterGone)?;
            rx.await.map_err(|_| StoreError::WriterGone)?
        })
    }

    fn claim(&self, limit: usize, lease: Duration) -> StoreFuture<'_, Vec<ClaimedEvent>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let claim = retry("claim", || claim_due(&self.claims, &self.claim_cursor, limit, lease)).await?;
            if let Some(version) = claim.version {
                *self.claimed_version.lock().unwrap_or_else(PoisonError::into_inner) = Some(version);
            }
            self.claim_times.claimed(&claim.events, &claim.text, claim.at);
            Ok(claim.events)
        })
    }

    fn renew(&self, claims: Vec<ClaimRef>, lease: Duration) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if claims.is_empty() {
                return Ok(());
            }
            Ok(retry("renew", || renew_leases(&self.pool, &claims, lease)).await?)
        })
    }

    fn finish(&self, finish: Finish) -> StoreFuture<'_, bool> {
        // A retry after a COMMIT whose reply was lost finds the event no longer
        // `processing` and answers false; the outcome stored is still this one.
        Box::pin(async move { Ok(self.finish_many(vec![finish]).await?.remove(0)) })
    }

    fn finish_many(&self, finishes: Vec<Finish>) -> StoreFuture<'_, Vec<bool>> {
        // Safe to retry whole: the transaction either committed nothing or everything,
        // and each finish is fenced by its claim.
        Box::pin(async move {
            let starts = self.claim_times.starts(finishes.iter().map(|f| f.claim));
            let applied = retry("finish", || finish_batch(&self.pool, &finishes, &starts)).await?;
            self.claim_times.ended(finishes.iter().map(|f| f.claim));
            Ok(applied)
        })
    }

    fn release(&self, claims: Vec<ClaimRef>) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            if claims.is_empty() {
                return Ok(0);
            }
            let n = retry("release", || release_claims(&self.pool, &claims)).await?;
            self.claim_times.ended(claims.iter().copied());
            if n > 0 {
                self.notify().await;
            }
            Ok(n)
        })
    }

    fn reclaim_expired(&self, max_attempts: u32) -> StoreFuture<'_, Vec<Reclaimed>> {
        Box::pin(async move {
            let reclaimed = retry("reclaim", || reclaim_expired_leases(&self.pool, max_attempts)).await?;
            if !reclaimed.is_empty() {
                self.notify().await;
            }
            Ok(reclaimed)
        })
    }

    fn finish_parallelism(&self) -> usize {
        FINISH_PARALLELISM
    }

    fn claim_batch(&self) -> usize {
        CLAIM_BATCH
    }

    fn start_action_run(&self, run: ActionRunRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move { Ok(retry("start action run", || start_run(&self.pool, &run)).await?) })
    }

    fn action_run(&self, event_row_id: i64, action: &str) -> StoreFuture<'_, Option<ActionRunRow>> {
        let action = action.to_string();
        Box::pin(async move {
            let q = concat!(action_run_select!(), " WHERE event_row_id = $1 AND action = $2");
            let row = retry("read action run", || {
                sqlx::query(q)
                    .bind(event_row_id)
                    .bind(&action)
                    .fetch_optional(&self.pool)
            })
            .await?;
            let mut runs: Vec<ActionRunRow> = row.as_ref().map(rows::action_run).transpose()?.into_iter().collect();
            if run_input::needs_event(&runs) {
                run_input::resolve(&mut runs, self.event(event_row_id).await?.as_ref());
            }
            Ok(runs.pop())
        })
    }

    fn event(&self, row_id: i64) -> StoreFuture<'_, Option<EventRow>> {
        Box::pin(async move {
            let q = concat!(event_select!(), " WHERE events.id = $1");
            let row = retry("read event", || sqlx::query(q).bind(row_id).fetch_optional(&self.pool)).await?;
            Ok(row.as_ref().map(rows::event).transpose()?)
        })
    }

    fn action_runs(&self, event_row_id: i64) -> StoreFuture<'_, Vec<ActionRunRow>> {
        Box::pin(async move {
            let q = concat!(action_run_select!(), " WHERE event_row_id = $1 ORDER BY id DESC");
            let rows = retry("read action runs", || {
                sqlx::query(q).bind(event_row_id).fetch_all(&self.pool)
            })
            .await?;
            let mut runs = rows.iter().map(rows::action_run).collect::<Result<Vec<_>, _>>()?;
            if run_input::needs_event(&runs) {
                run_input::resolve(&mut runs, self.event(event_row_id).await?.as_ref());
            }
            Ok(runs)
        })
    }

    fn attempts(&self, event_row_id: i64) -> StoreFuture<'_, Vec<AttemptRow>> {
        Box::pin(async move {
            let rows = retry("read attempts", || {
                sqlx::query(super::attempts::SELECT_BY_EVENT)
                    .bind(event_row_id)
                    .fetch_all(&self.pool)
            })
            .await?;
            Ok(rows.iter().map(rows::attempt).collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn list_page(&self, filter: EventFilter, cursor: Option<Cursor>, limit: u32) -> StoreFuture<'_, EventPage> {
        Box::pin(async move {
            let read = || admin::list_page(&self.pool, &filter, cursor.as_ref(), limit);
            Ok(retry("list events", read).await?)
        })
    }

    fn replay(&self, row_id: i64, force: bool) -> StoreFuture<'_, Transition> {
        Box::pin(async move {
            let done = retry("replay", || admin::replay(&self.pool, row_id, force)).await?;
            if done == Transition::Applied {
                self.notify().await;
            }
            Ok(done)
        })
    }

    fn replay_matching(&self, filter: EventFilter) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let ids = retry("select replays", || admin::matching_ids(&self.pool, &filter)).await?;
            let mut replayed = 0;
            for chunk in ids.chunks(query::REPLAY_CHUNK) {
                let status = filter.status.as_deref();
                replayed += retry("replay", || admin::replay_ids(&self.pool, chunk, status)).await?;
            }
            if replayed > 0 {
                self.notify().await;
            }
            Ok(replayed)
        })
    }

    fn cancel(&self, row_id: i64) -> StoreFuture<'_, Transition> {
        Box::pin(async move {
            let (done, woke) = retry("cancel", || admin::cancel(&self.pool, row_id)).await?;
            if woke {
                self.notify().await;
            }
            Ok(done)
        })
    }

    fn stats(&self) -> StoreFuture<'_, Stats> {
        Box::pin(async move { Ok(retry("stats", || admin::stats(&self.pool)).await?) })
    }

    fn per_minute(&self, now: chrono::DateTime<chrono::Utc>, minutes: u32) -> StoreFuture<'_, Vec<MinuteCounts>> {
        Box::pin(async move { Ok(retry("per-minute series", || admin::per_minute(&self.pool, now, minutes)).await?) })
    }

    fn queue_depth(&self) -> StoreFuture<'_, QueueDepth> {
        Box::pin(async move { Ok(retry("queue depth", || admin::queue_depth(&self.pool)).await?) })
    }

    fn purge_batch(&self, status: crate::domain::EventStatus, before: &str, limit: usize) -> StoreFuture<'_, u64> {
        let (status, before) = (status.to_string(), before.to_string());
        Box::pin(async move {
            let purge = || admin::purge_batch(&self.pool, &status, &before, limit);
            Ok(retry("purge", purge).await?)
        })
    }

    fn record_usage(&self, record: UsageRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move { Ok(retry("record usage", || spend::record(&self.pool, &record)).await?) })
    }

    fn run_usage(&self, event_row_id: i64) -> StoreFuture<'_, Vec<RunUsage>> {
        Box::pin(async move { Ok(retry("read run usage", || spend::run_usage(&self.pool, event_row_id)).await?) })
    }

    fn transcript(&self, event_row_id: i64, run_id: i64) -> StoreFuture<'_, Option<Option<String>>> {
        Box::pin(async move {
            Ok(retry("read a transcript", || {
                spend::transcript(&self.pool, event_row_id, run_id)
            })
            .await?)
        })
    }

    fn spend_cells(&self, since: String) -> StoreFuture<'_, Vec<SpendCell>> {
        Box::pin(async move { Ok(retry("read spend", || spend::cells(&self.pool, &since)).await?) })
    }

    fn top_runs(&self, since: String, limit: u32) -> StoreFuture<'_, Vec<TopRun>> {
        Box::pin(async move { Ok(retry("read top runs", || spend::top(&self.pool, &since, limit)).await?) })
    }

    fn budget(&self, action: &str) -> StoreFuture<'_, Option<crate::domain::Budget>> {
        let action = action.to_owned();
        Box::pin(async move { Ok(retry("read a budget", || spend::budget(&self.pool, &action)).await?) })
    }

    fn budgets(&self) -> StoreFuture<'_, Vec<crate::domain::ActionBudget>> {
        Box::pin(async move { Ok(retry("read budgets", || spend::budgets(&self.pool)).await?) })
    }

    fn spent_since(&self, since: String, action: Option<String>) -> StoreFuture<'_, f64> {
        Box::pin(async move { Ok(retry("read spend", || spend::spent(&self.pool, &since, action.as_deref())).await?) })
    }

    fn reserved(&self, since: String, except_event: i64, action: Option<String>) -> StoreFuture<'_, f64> {
        Box::pin(async move {
            let read = || spend::reserved(&self.pool, &since, except_event, action.as_deref());
            Ok(retry("read reserved spend", read).await?)
        })
    }

    fn hold(&self, claim: ClaimRef, reason: String, until: String) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let held = retry("hold", || spend::hold(&self.pool, claim, &reason, &until)).await?;
            self.claim_times.ended(std::iter::once(claim));
            Ok(held)
        })
    }

    fn release_held(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move { Ok(retry("release held", || spend::release_held(&self.pool)).await?) })
    }

    fn flow_admit(&self, ask: crate::store::flow::FlowAsk) -> StoreFuture<'_, crate::store::flow::FlowVerdict> {
        Box::pin(async move { flow::admit(&self.pool, ask).await })
    }

    fn flow_release(&self, event_row_id: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move { flow::release(&self.pool, event_row_id).await })
    }

    fn flow_supersede_running(&self, claim: ClaimRef, action: String, by: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move { flow::supersede_running(&self.pool, claim, &action, by).await })
    }

    fn flow_cancels(&self, running: Vec<i64>) -> StoreFuture<'_, Vec<(i64, i64)>> {
        Box::pin(async move {
            let rows: Vec<(i64, i64)> = sqlx::query_as(crate::store::flow::sql::CANCELS)
                .fetch_all(&self.pool)
                .await?;
            Ok(rows.into_iter().filter(|(id, _)| running.contains(id)).collect())
        })
    }

    fn flow_pause(&self, pool: String, retry_after: Option<Duration>) -> StoreFuture<'_, String> {
        Box::pin(async move { flow::pause(&self.pool, &pool, retry_after).await })
    }

    fn flow_pool_ok(&self, pool: String) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query(crate::store::flow::sql::POOL_OK)
                .bind(pool)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn flow_sweep(&self, tidy: bool) -> StoreFuture<'_, u64> {
        Box::pin(async move { flow::sweep(&self.pool, tidy).await })
    }

    fn flow_state(&self) -> StoreFuture<'_, crate::store::flow::FlowState> {
        Box::pin(async move { flow::state(&self.pool).await })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
    }

    fn routing_version(&self) -> StoreFuture<'_, i64> {
        // Asked once per claim: the claim's own reading when there is one.
        let claimed = self
            .claimed_version
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Box::pin(async move {
            if let Some(version) = claimed {
                return Ok(version);
            }
            let v: Option<i64> = retry("read routing version", || {
                sqlx::query_scalar("SELECT value FROM switchyard_meta WHERE key = 'routing_version'")
                    .fetch_optional(&self.pool)
            })
            .await?;
            Ok(v.unwrap_or(0))
        })
    }

    fn routing_tables(&self) -> StoreFuture<'_, RoutingTables> {
        Box::pin(async move {
            let rules = retry("read rules", || sqlx::query(rule_select!()).fetch_all(&self.pool)).await?;
            let mappings = retry("read mappings", || sqlx::query(mapping_select!()).fetch_all(&self.pool)).await?;
            Ok(RoutingTables {
                rules: rules_from_rows(&rules)?,
                mappings: mappings.iter().map(rows::mapping).collect::<Result<_, _>>()?,
            })
        })
    }

    fn mapping(&self, provider: &str) -> StoreFuture<'_, Option<Mapping>> {
        let provider = provider.to_string();
        Box::pin(async move {
            let q = concat!(mapping_select!(), " WHERE provider = $1");
            let row = retry("read mapping", || {
                sqlx::query(q).bind(&provider).fetch_optional(&self.pool)
            })
            .await?;
            Ok(row.as_ref().map(rows::mapping).transpose()?)
        })
    }

    fn rules(&self, provider: &str) -> StoreFuture<'_, Vec<Rule>> {
        let provider = provider.to_string();
        Box::pin(async move {
            let q = concat!(rule_select!(), " WHERE provider = $1 ORDER BY priority, id");
            let rows = retry("read rules", || sqlx::query(q).bind(&provider).fetch_all(&self.pool)).await?;
            Ok(rules_from_rows(&rows)?)
        })
    }

    fn apply(&self, changes: RoutingChanges) -> StoreFuture<'_, ()> {
        // Retrying after a lost connection is safe: the upserts are idempotent.
        Box::pin(async move { Ok(retry("apply routing changes", || apply_changes(&self.pool, &changes)).await?) })
    }

    fn delete_rule(&self, provider: &str, name: &str) -> StoreFuture<'_, bool> {
        let (provider, name) = (provider.to_string(), name.to_string());
        Box::pin(async move {
            let delete = || {
                sqlx::query("DELETE FROM routing_rules WHERE provider = $1 AND name = $2")
                    .bind(&provider)
                    .bind(&name)
                    .execute(&self.pool)
            };
            Ok(retry("delete rule", delete).await?.rows_affected() == 1)
        })
    }

    fn external_wake(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.ensure_listener();
            self.wake.notified().await;
            Ok(())
        })
    }

    fn schedules(&self) -> StoreFuture<'_, Vec<StoredSchedule>> {
        Box::pin(async move { Ok(retry("read schedules", || schedules::all(&self.pool)).await?) })
    }

    fn schedules_version(&self) -> StoreFuture<'_, i64> {
        Box::pin(async move { Ok(retry("read schedules version", || schedules::version(&self.pool)).await?) })
    }

    fn revoke_session(&self, nonce: &str, expires_at: i64) -> StoreFuture<'_, ()> {
        let nonce = nonce.to_string();
        // Safe to retry: both statements are idempotent.
        Box::pin(async move { Ok(retry("revoke session", || sessions::revoke(&self.pool, &nonce, expires_at)).await?) })
    }

    fn session_revoked(&self, nonce: &str) -> StoreFuture<'_, bool> {
        let nonce = nonce.to_string();
        Box::pin(async move { Ok(retry("read revoked session", || sessions::revoked(&self.pool, &nonce)).await?) })
    }

    fn record_ticks(&self, ticks: Vec<TickRecord>) -> StoreFuture<'_, ()> {
        // Safe to retry: moving a timestamp up to a value is idempotent.
        Box::pin(async move {
            if ticks.is_empty() {
                return Ok(());
            }
            Ok(retry("record ticks", || schedules::record(&self.pool, &ticks)).await?)
        })
    }

    fn schedules_changed(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.ensure_listener();
            self.schedules_wake.notified().await;
            Ok(())
        })
    }
}
