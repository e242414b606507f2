//! The `Store` contract, written once and run against both backends.
//!
//! `store_tests!` turns each `async fn name(t: TestStore)` into `store::name::sqlite`
//! (a fresh SQLite file, always) and `store::name::postgres` (a fresh schema in
//! `TEST_DATABASE_URL`; skipped with a message when the variable is unset, a failure when
//! it is set but the server cannot be used). PostgreSQL-only behaviour (connection
//! errors, concurrent migrations, killed connections, LISTEN/NOTIFY) is at the end.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor};
use switchyard::domain::{HandlerMode, Mapping, Source, Timestamp};
use switchyard::settings::Settings;
use switchyard::store::postgres::PgStore;
use switchyard::store::{
    ActionRunRecord, ClaimRef, ClaimedEvent, Db, Enqueued, EventFilter, EventSummary, Finish, NewEvent, Outcome,
    RoutingChanges, RuleUpsert, Transition,
};
use switchyard::time;

const LEASE: Duration = Duration::from_secs(60);

/// `TEST_DATABASE_URL`, or None when it is unset or empty. Without an `sslmode` of its own
/// it gets `sslmode=require`: the tests run over TLS, as managed PostgreSQL is reached, so
/// a TLS-only slowdown or failure cannot hide behind plain-text tests (issue 26).
pub fn test_database_url() -> Option<String> {
    let url = std::env::var("TEST_DATABASE_URL").ok()?.trim().to_string();
    if url.is_empty() {
        return None;
    }
    if url.contains("sslmode=") {
        return Some(url);
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}sslmode=require"))
}

/// A fresh PostgreSQL schema in `TEST_DATABASE_URL`, dropped (best effort) on drop.
pub struct PgSchema {
    /// Schema name (`sy_<random>`).
    pub name: String,
    /// `TEST_DATABASE_URL` with `search_path` set to the schema.
    pub url: String,
    admin_url: String,
}

impl PgSchema {
    /// None (after saying so) when `TEST_DATABASE_URL` is unset; panics when it is set but
    /// unusable, so a broken CI database cannot pass as "skipped".
    pub async fn create(test: &str) -> Option<PgSchema> {
        let Some(admin_url) = test_database_url() else {
            eprintln!("{test}: PostgreSQL half skipped: TEST_DATABASE_URL is unset");
            return None;
        };
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("TEST_DATABASE_URL is set but PostgreSQL cannot be reached: {e}"));
        let name = format!("sy_{:016x}", fastrand::u64(..));
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .await
            .unwrap_or_else(|e| panic!("cannot create schema {name} in TEST_DATABASE_URL: {e}"));
        let _ = conn.close().await;
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options=-c%20search_path%3D{name}");
        Some(PgSchema { name, url, admin_url })
    }

    /// The schema URL with an `application_name`, so a test can find (and kill) the
    /// connections of one instance in `pg_stat_activity`.
    pub fn url_as(&self, application_name: &str) -> String {
        format!("{}&application_name={application_name}", self.url)
    }

    /// A plain connection to the schema, for checks in SQL.
    pub async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect to the test schema")
    }

    /// Kills every connection whose `application_name` is `name`; returns how many.
    pub async fn terminate(&self, application_name: &str) -> i64 {
        let mut conn = self.connect().await;
        let n: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind(application_name)
        .fetch_one(&mut conn)
        .await
        .expect("pg_terminate_backend");
        let _ = conn.close().await;
        n
    }

    /// Waits until an instance's LISTEN connection is up again (its last statement was
    /// `LISTEN …`); panics after `within`.
    pub async fn wait_for_listener(&self, application_name: &str, within: Duration) {
        let start = Instant::now();
        let mut conn = self.connect().await;
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query ILIKE 'LISTEN%'",
            )
            .bind(application_name)
            .fetch_one(&mut conn)
            .await
            .expect("read pg_stat_activity");
            if n > 0 {
                return;
            }
            assert!(
                start.elapsed() < within,
                "{application_name} did not LISTEN again within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Drop runs outside (or at the end of) the test's runtime: use a private one.
        let admin = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                conn.execute("SET lock_timeout = '5s'").await.ok()?;
                conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {name} CASCADE")))
                    .await
                    .ok()?;
                conn.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("note: could not drop test schema {}", self.name);
        }
    }
}

/// Which backend a test runs on (for the rare setup step that needs raw SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store on a fresh database, plus what a test needs to reach that database directly.
pub struct TestStore {
    pub db: Db,
    pub backend: Backend,
    settings: Settings,
    sqlite_path: Option<PathBuf>,
    // Declared last: dropped after `db`.
    pg: Option<PgSchema>,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// A fresh SQLite file.
    pub async fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.sqlite3");
        let mut settings = Settings::defaults();
        settings.database_url = None;
        settings.db_path = path.clone();
        let db = switchyard::store::open(&settings.store_config())
            .await
            .expect("open SQLite store");
        assert_eq!(db.backend(), "sqlite");
        TestStore {
            db,
            backend: Backend::Sqlite,
            settings,
            sqlite_path: Some(path),
            pg: None,
            _dir: Some(dir),
        }
    }

    /// A fresh PostgreSQL schema, or None when `TEST_DATABASE_URL` is unset.
    pub async fn postgres(test: &str) -> Option<TestStore> {
        let pg = PgSchema::create(test).await?;
        let mut settings = Settings::defaults();
        settings.database_url = Some(pg.url.clone());
        settings.database_connect_timeout = 10.0;
        let db = switchyard::store::open(&settings.store_config())
            .await
            .expect("open PostgreSQL store");
        assert_eq!(db.backend(), "postgres");
        Some(TestStore {
            db,
            backend: Backend::Postgres,
            settings,
            sqlite_path: None,
            pg: Some(pg),
            _dir: None,
        })
    }

    /// Another handle on the same database (as a second instance would open it).
    pub async fn open_again(&self) -> Db {
        switchyard::store::open(&self.settings.store_config())
            .await
            .expect("open the store again")
    }

    /// The environment that points a `switchyard` process at this database.
    pub fn process_env(&self) -> Vec<(&'static str, String)> {
        match (&self.sqlite_path, &self.pg) {
            (Some(path), _) => vec![("APP_DB_PATH", path.display().to_string())],
            (_, Some(pg)) => vec![("DATABASE_URL", pg.url.clone())],
            _ => unreachable!("a TestStore always has its database"),
        }
    }

    /// Runs backend-specific setup SQL directly on the database.
    pub async fn exec(&self, sqlite_sql: &str, pg_sql: &str) {
        match (self.backend, &self.sqlite_path, &self.pg) {
            (Backend::Sqlite, Some(path), _) => {
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                c.execute(sqlx::AssertSqlSafe(sqlite_sql.to_string())).await.unwrap();
                c.close().await.unwrap();
            }
            (Backend::Postgres, _, Some(pg)) => {
                let mut c = pg.connect().await;
                c.execute(sqlx::AssertSqlSafe(pg_sql.to_string())).await.unwrap();
                c.close().await.unwrap();
            }
            _ => unreachable!("a TestStore always has its database"),
        }
    }

    /// The one text value `sql` selects (the same SQL on both backends).
    pub async fn sql_text(&self, sql: &str) -> String {
        match (self.backend, &self.sqlite_path, &self.pg) {
            (Backend::Sqlite, Some(path), _) => {
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                let v: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                c.close().await.unwrap();
                v
            }
            (Backend::Postgres, _, Some(pg)) => {
                let mut c = pg.connect().await;
                let v: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                c.close().await.unwrap();
                v
            }
            _ => unreachable!("a TestStore always has its database"),
        }
    }
}

macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::TestStore::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(t) = super::TestStore::postgres(concat!("store::", stringify!($name))).await {
                    super::$name(t).await;
                }
            }
        }
    )*};
}

pub(crate) use store_tests;

store_tests!(
    unreadable_rows_are_errors_naming_the_row,
    enqueue_dedupes_on_source_and_event_id,
    concurrent_identical_enqueues_make_one_row,
    concurrent_large_enqueues_each_land_once,
    claims_take_the_oldest_due_first_up_to_the_limit,
    concurrent_claimers_never_share_a_row,
    finish_is_fenced_by_the_attempt,
    finish_many_stores_each_outcome_as_finish_would,
    a_lost_and_a_current_claim_of_one_event_in_one_batch,
    renew_extends_only_the_current_claim,
    expired_leases_go_to_retry_then_error,
    release_gives_the_attempt_back,
    retry_waits_for_its_due_time,
    action_runs_are_one_per_event_and_action,
    routing_version_moves_on_every_change,
    apply_is_all_or_nothing,
    list_and_replay,
);

pub(crate) fn event(id: &str) -> NewEvent {
    NewEvent {
        source: Source::Webhook,
        event_id: id.into(),
        payload_json: format!(r#"{{"n":"{id}"}}"#),
    }
}

pub(crate) async fn enqueue(db: &Db, id: &str) -> i64 {
    match db.enqueue(event(id)).await.unwrap() {
        Enqueued::Queued(row) => row,
        other => panic!("{id} should be new, got {other:?}"),
    }
}

/// The first page of `filter`, newest first.
pub async fn list(db: &Db, filter: EventFilter, limit: u32) -> Vec<EventSummary> {
    db.list_page(filter, None, limit).await.unwrap().events
}

async fn claim(db: &Db, n: usize, lease: Duration) -> Vec<ClaimedEvent> {
    db.claim(n, lease).await.unwrap()
}

fn ids(claimed: &[ClaimedEvent]) -> Vec<i64> {
    claimed.iter().map(|c| c.id).collect()
}

pub(crate) fn done(claim: ClaimRef) -> Finish {
    Finish {
        claim,
        outcome: Outcome::Done {
            result_json: r#"{"ok":true}"#.into(),
        },
        action_run: None,
        provider: None,
        action: None,
        other_runs_read_event: true,
        fan_out: None,
    }
}

fn retry_at(claim: ClaimRef, next_attempt_at: String) -> Finish {
    Finish {
        claim,
        outcome: Outcome::Retry {
            error: "boom".into(),
            next_attempt_at: Timestamp::from_stored(next_attempt_at),
        },
        action_run: None,
        provider: None,
        action: None,
        other_runs_read_event: true,
        fan_out: None,
    }
}

pub(crate) fn run(event_row_id: i64, action: &str, status: &str) -> ActionRunRecord {
    ActionRunRecord {
        event_row_id,
        started_at: time::now(),
        finished_at: (status != "running").then(time::now),
        status: status.parse().expect("a run status"),
        provider: "github".into(),
        action: action.into(),
        handler_mode: HandlerMode::Command,
        handler_target: Some("job".into()),
        input_json: r#"{"in":1}"#.into(),
        output_json: (status == "done").then(|| r#"{"out":1}"#.into()),
        error: None,
    }
}

async fn status(db: &Db, row: i64) -> String {
    db.event(row).await.unwrap().unwrap().status.unwrap().to_string()
}

/// So that a zero-length lease set a moment ago is strictly in the past.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

fn assert_timestamp(s: &str) {
    assert!(chrono::DateTime::parse_from_rfc3339(s).is_ok(), "not RFC 3339: {s}");
    assert!(
        s.ends_with("+00:00") && s.len() == "2024-01-01T00:00:00.000000+00:00".len(),
        "not the stored form: {s}"
    );
}

async fn enqueue_dedupes_on_source_and_event_id(t: TestStore) {
    let db = &t.db;
    let row = enqueue(db, "evt-1").await;
    assert_eq!(db.enqueue(event("evt-1")).await.unwrap(), Enqueued::Duplicate(row));
    let mut cron = event("evt-1");
    cron.source = Source::Cron;
    let cron_row = db.enqueue(cron).await.unwrap();
    assert!(
        matches!(cron_row, Enqueued::Queued(r) if r != row),
        "another source is another event: {cron_row:?}"
    );

    let e = db.event(row).await.unwrap().expect("stored");
    assert_eq!(e.source.map(|v| v.as_str()), Some("webhook"));
    assert_eq!(e.event_id.as_deref(), Some("evt-1"));
    assert_eq!(e.status.map(|v| v.as_str()), Some("pending"));
    assert_eq!(e.attempt_count, 0);
    assert_eq!(e.payload_json.as_deref(), Some(r#"{"n":"evt-1"}"#));
    let received = e.received_at.clone().unwrap();
    assert_timestamp(&received);
    assert_eq!(e.next_attempt_at.as_deref(), Some(received.as_str()));
    assert!(e.processing_started_at.is_none() && e.processed_at.is_none());
    assert!(e.result_json.is_none() && e.last_error.is_none());
    assert!(db.event(row + 1000).await.unwrap().is_none());
}

async fn concurrent_identical_enqueues_make_one_row(t: TestStore) {
    let other = t.open_again().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        // Two store handles (two "instances"), and other events in between so that the
        // identical ones land in different batches and transactions.
        let db = if i % 2 == 0 { t.db.clone() } else { other.clone() };
        tasks.spawn(async move { (true, db.enqueue(event("same")).await.unwrap()) });
        let db = t.db.clone();
        tasks.spawn(async move { (false, db.enqueue(event(&format!("other-{}", i % 10))).await.unwrap()) });
    }
    let outcomes: Vec<(bool, Enqueued)> = tasks.join_all().await;
    let same: Vec<Enqueued> = outcomes.iter().filter(|o| o.0).map(|o| o.1).collect();
    assert_eq!(same.len(), 50);
    let rows: HashSet<i64> = same.iter().map(|o| o.row_id()).collect();
    assert_eq!(rows.len(), 1, "every caller gets the same row id: {same:?}");
    assert_eq!(
        same.iter().filter(|o| matches!(o, Enqueued::Queued(_))).count(),
        1,
        "exactly one is new: {same:?}"
    );
    let all_rows: HashSet<i64> = outcomes.iter().map(|o| o.1.row_id()).collect();
    assert_eq!(all_rows.len(), 11);
    assert_eq!(
        outcomes.iter().filter(|o| matches!(o.1, Enqueued::Queued(_))).count(),
        11
    );

    let listed = list(&t.db, EventFilter::default(), 1000).await;
    assert_eq!(listed.len(), 11, "one row per distinct event");
    let same_row = listed
        .iter()
        .find(|e| e.event_id.as_deref() == Some("same"))
        .unwrap()
        .id;
    assert!(rows.contains(&same_row));
    assert_eq!(
        t.db.enqueue(event("same")).await.unwrap(),
        Enqueued::Duplicate(same_row)
    );
}

/// Batches of large payloads (several statements per PostgreSQL transaction) store every
/// event once, with its own payload, and answer duplicates with the original row.
async fn concurrent_large_enqueues_each_land_once(t: TestStore) {
    let pad = "p".repeat(3000);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..120 {
        let (db, pad) = (t.db.clone(), pad.clone());
        // Every fourth id is sent twice.
        let id = format!("big-{}", if i % 4 == 3 { i - 1 } else { i });
        tasks.spawn(async move {
            let mut e = event(&id);
            e.payload_json = format!(r#"{{"id":"{id}","pad":"{pad}"}}"#);
            (id, db.enqueue(e).await.unwrap())
        });
    }
    let outcomes: Vec<(String, Enqueued)> = tasks.join_all().await;
    let mut by_id: std::collections::HashMap<String, HashSet<i64>> = Default::default();
    for (id, o) in &outcomes {
        by_id.entry(id.clone()).or_default().insert(o.row_id());
    }
    assert_eq!(by_id.len(), 90);
    assert!(by_id.values().all(|rows| rows.len() == 1), "one row per event id");
    assert_eq!(
        outcomes.iter().filter(|o| matches!(o.1, Enqueued::Queued(_))).count(),
        90
    );
    for (id, rows) in &by_id {
        let row = *rows.iter().next().unwrap();
        let e = t.db.event(row).await.unwrap().unwrap();
        assert_eq!(e.event_id.as_deref(), Some(id.as_str()));
        let payload = e.payload_json.unwrap();
        assert!(
            payload.contains(&format!(r#""id":"{id}""#)) && payload.len() > 3000,
            "{id}"
        );
    }
}

async fn claims_take_the_oldest_due_first_up_to_the_limit(t: TestStore) {
    let db = &t.db;
    let mut rows = Vec::new();
    for i in 0..5 {
        rows.push(enqueue(db, &format!("c{i}")).await);
    }
    let first = claim(db, 2, LEASE).await;
    assert_eq!(ids(&first), rows[..2]);
    assert!(first.iter().all(|c| c.attempt_count == 1 && c.source == "webhook"));
    assert_eq!(first[0].event_id, "c0");
    assert_eq!(first[0].payload_json, r#"{"n":"c0"}"#);
    let e = db.event(rows[0]).await.unwrap().unwrap();
    assert_eq!(e.status.map(|v| v.as_str()), Some("processing"));
    assert_eq!(e.attempt_count, 1);
    assert_timestamp(e.processing_started_at.as_deref().unwrap());

    let rest = claim(db, 10, LEASE).await;
    assert_eq!(ids(&rest), rows[2..]);
    assert!(claim(db, 10, LEASE).await.is_empty());

    // Due time decides, not the row id: c4 is due earlier than c0 now.
    let c0 = first[0].claim_ref();
    let c4 = rest[2].claim_ref();
    assert!(
        db.finish(retry_at(c0, "2001-01-01T00:00:00.000000+00:00".into()))
            .await
            .unwrap()
    );
    assert!(
        db.finish(retry_at(c4, "2000-01-01T00:00:00+00:00".into()))
            .await
            .unwrap()
    );
    let next = claim(db, 1, LEASE).await;
    assert_eq!(ids(&next), [rows[4]]);
    assert_eq!(next[0].attempt_count, 2);
    assert_eq!(ids(&claim(db, 1, LEASE).await), [rows[0]]);
}

async fn concurrent_claimers_never_share_a_row(t: TestStore) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let db = t.db.clone();
        tasks.spawn(async move { db.enqueue(event(&format!("cc{i}"))).await.unwrap().row_id() });
    }
    let all: HashSet<i64> = tasks.join_all().await.into_iter().collect();
    assert_eq!(all.len(), 200);

    let other = t.open_again().await;
    let mut claimers = tokio::task::JoinSet::new();
    for i in 0..8 {
        // Half the claimers use a second store handle, as another instance would.
        let db = if i % 2 == 0 { t.db.clone() } else { other.clone() };
        claimers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = db.claim(7, LEASE).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|c| (c.id, c.attempt_count)));
            }
        });
    }
    let claimed: Vec<(i64, i64)> = claimers.join_all().await.into_iter().flatten().collect();
    let unique: HashSet<i64> = claimed.iter().map(|c| c.0).collect();
    assert_eq!(unique.len(), claimed.len(), "a row was claimed twice");
    assert_eq!(unique, all, "every row claimed exactly once");
    assert!(claimed.iter().all(|c| c.1 == 1));
    assert!(claim(&t.db, 10, LEASE).await.is_empty());
}

async fn finish_is_fenced_by_the_attempt(t: TestStore) {
    let db = &t.db;
    let row = enqueue(db, "f1").await;
    let c = claim(db, 1, LEASE).await.remove(0).claim_ref();
    assert!(
        !db.finish(done(ClaimRef {
            id: row,
            attempt: c.attempt + 1
        }))
        .await
        .unwrap()
    );
    assert!(!db.finish(done(ClaimRef { id: row, attempt: 0 })).await.unwrap());
    assert_eq!(status(db, row).await, "processing");

    let mut finish = done(c);
    finish.action_run = Some(run(row, "act", "done"));
    assert!(db.finish(finish).await.unwrap());
    let e = db.event(row).await.unwrap().unwrap();
    assert_eq!(e.status.map(|v| v.as_str()), Some("done"));
    assert_eq!(e.result_json.as_deref(), Some(r#"{"ok":true}"#));
    assert_timestamp(e.processed_at.as_deref().unwrap());
    assert_eq!(db.action_runs(row).await.unwrap().len(), 1);
    // The same claim cannot finish twice.
    assert!(!db.finish(retry_at(c, time::now())).await.unwrap());
    assert_eq!(status(db, row).await, "done");

    // A claim whose lease was taken over is refused, and its action run is not written.
    let row2 = enqueue(db, "f2").await;
    let stale = claim(db, 1, Duration::ZERO).await.remove(0).claim_ref();
    tick().await;
    assert_eq!(db.reclaim_expired(8).await.unwrap().len(), 1);
    let mut late = done(stale);
    late.action_run = Some(run(row2, "act", "done"));
    assert!(!db.finish(late).await.unwrap());
    assert_eq!(status(db, row2).await, "retry");
    assert!(db.action_run(row2, "act").await.unwrap().is_none());
}

/// Two claims of one event in one batch, the lost one and the current one, in either order
/// (a lease that expired under a running attempt, and the event claimed again by the same
/// process): the current claim's outcome is stored, the lost one's refused.
async fn a_lost_and_a_current_claim_of_one_event_in_one_batch(t: TestStore) {
    let db = &t.db;
    for (n, lost_first) in [(0, true), (1, false)] {
        let row = enqueue(db, &format!("twice{n}")).await;
        let lost = claim(db, 1, Duration::ZERO).await.remove(0).claim_ref();
        tick().await;
        assert_eq!(db.reclaim_expired(8).await.unwrap().len(), 1);
        let current = claim(db, 1, LEASE).await.remove(0).claim_ref();
        assert_eq!((current.id, current.attempt), (row, lost.attempt + 1));
        let batch = if lost_first {
            vec![done(lost), done(current)]
        } else {
            vec![done(current), done(lost)]
        };
        let applied = db.finish_many(batch).await.unwrap();
        let expected = if lost_first { [false, true] } else { [true, false] };
        assert_eq!(applied, expected, "lost claim first: {lost_first}");
        let e = db.event(row).await.unwrap().unwrap();
        assert_eq!(e.status.map(|v| v.as_str()), Some("done"));
        assert_eq!(e.attempt_count, current.attempt);
    }
}

/// A batch mixing every outcome, a lost claim and enough action-run data to be written in
/// several statements stores each outcome exactly as `finish` alone would.
async fn finish_many_stores_each_outcome_as_finish_would(t: TestStore) {
    let db = &t.db;
    let lost_row = enqueue(db, "lost").await;
    let lost = claim(db, 1, Duration::ZERO).await.remove(0).claim_ref();
    tick().await;
    assert_eq!(db.reclaim_expired(8).await.unwrap().len(), 1);
    let mut rows = Vec::new();
    for i in 0..60 {
        rows.push(enqueue(db, &format!("m{i}")).await);
    }
    // The reclaimed event is claimed again too: its new owner holds it.
    let mut claims = claim(db, 64, LEASE).await;
    claims.retain(|c| c.id != lost_row);
    assert_eq!(ids(&claims), rows);
    let later = time::after(Duration::from_secs(600));
    let big_input = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));

    let mut batch = Vec::new();
    for c in &claims {
        let c = c.claim_ref();
        let mut f = match c.id % 3 {
            0 => done(c),
            1 => retry_at(c, later.clone()),
            _ => Finish {
                claim: c,
                outcome: Outcome::Failed {
                    error: "gave up".into(),
                },
                action_run: None,
                provider: None,
                action: None,
                other_runs_read_event: true,
                fan_out: None,
            },
        };
        let mut r = run(c.id, "act", if c.id % 3 == 0 { "done" } else { "error" });
        r.input_json = big_input.clone();
        f.action_run = Some(r);
        batch.push(f);
    }
    let mut stale = done(lost);
    stale.action_run = Some(run(lost_row, "act", "done"));
    batch.insert(7, stale);

    let applied = db.finish_many(batch).await.unwrap();
    assert_eq!(applied.len(), 61);
    assert!(!applied[7], "the lost claim is refused");
    assert_eq!(applied.iter().filter(|a| **a).count(), 60);
    assert_eq!(status(db, lost_row).await, "processing", "the new owner's claim stands");
    assert!(db.action_run(lost_row, "act").await.unwrap().is_none());

    for &row in &rows {
        let e = db.event(row).await.unwrap().unwrap();
        let runs = db.action_runs(row).await.unwrap();
        assert_eq!(runs.len(), 1, "row {row}");
        assert_eq!(runs[0].input_json.as_deref(), Some(big_input.as_str()));
        match row % 3 {
            0 => {
                assert_eq!(e.status.map(|v| v.as_str()), Some("done"));
                assert_eq!(e.result_json.as_deref(), Some(r#"{"ok":true}"#));
                assert_eq!(e.last_error, None);
                assert_timestamp(e.processed_at.as_deref().unwrap());
                assert_eq!(runs[0].status.map(|v| v.as_str()), Some("done"));
            }
            1 => {
                assert_eq!(e.status.map(|v| v.as_str()), Some("retry"));
                assert_eq!(e.last_error.as_deref(), Some("boom"));
                assert_eq!(e.next_attempt_at.as_deref(), Some(later.as_str()));
                assert_eq!((e.processed_at.as_deref(), e.result_json.as_deref()), (None, None));
            }
            _ => {
                assert_eq!(e.status.map(|v| v.as_str()), Some("error"));
                assert_eq!(e.last_error.as_deref(), Some("gave up"));
                assert_timestamp(e.processed_at.as_deref().unwrap());
                assert_eq!(e.result_json, None);
            }
        }
    }
}

async fn renew_extends_only_the_current_claim(t: TestStore) {
    let db = &t.db;
    let a = enqueue(db, "r1").await;
    let b = enqueue(db, "r2").await;
    let claimed = claim(db, 2, Duration::ZERO).await;
    assert_eq!(ids(&claimed), [a, b]);
    db.renew(vec![claimed[0].claim_ref()], LEASE).await.unwrap();
    let stale_b = ClaimRef {
        id: b,
        attempt: claimed[1].attempt_count + 1,
    };
    db.renew(vec![stale_b], LEASE).await.unwrap();
    db.renew(Vec::new(), LEASE).await.unwrap();
    tick().await;
    assert_eq!(
        db.reclaim_expired(8).await.unwrap().len(),
        1,
        "only the unrenewed lease expired"
    );
    assert_eq!(status(db, a).await, "processing");
    assert_eq!(status(db, b).await, "retry");
    assert!(
        db.finish(done(claimed[0].claim_ref())).await.unwrap(),
        "the renewed claim still holds"
    );
}

async fn expired_leases_go_to_retry_then_error(t: TestStore) {
    let db = &t.db;
    let live = enqueue(db, "l0").await;
    assert_eq!(ids(&claim(db, 1, LEASE).await), [live]);
    let row = enqueue(db, "l1").await;
    assert_eq!(claim(db, 1, Duration::ZERO).await[0].attempt_count, 1);
    tick().await;
    let named = |exhausted| switchyard::store::Reclaimed {
        id: row,
        event_id: "l1".into(),
        exhausted,
    };
    assert_eq!(
        db.reclaim_expired(2).await.unwrap(),
        [named(false)],
        "the live lease is left alone"
    );
    let e = db.event(row).await.unwrap().unwrap();
    assert_eq!(e.status.map(|v| v.as_str()), Some("retry"));
    assert_eq!(e.attempt_count, 1);
    assert!(
        e.last_error.as_deref().unwrap().contains("lease expired"),
        "{:?}",
        e.last_error
    );
    assert!(e.processed_at.is_none());

    // Due at once; the second attempt is the last of two.
    let again = claim(db, 5, Duration::ZERO).await;
    assert_eq!(ids(&again), [row]);
    assert_eq!(again[0].attempt_count, 2);
    tick().await;
    assert_eq!(db.reclaim_expired(2).await.unwrap(), [named(true)]);
    let e = db.event(row).await.unwrap().unwrap();
    assert_eq!(e.status.map(|v| v.as_str()), Some("error"));
    assert_timestamp(e.processed_at.as_deref().unwrap());
    assert!(claim(db, 5, LEASE).await.is_empty());
    assert_eq!(status(db, live).await, "processing");
}

async fn release_gives_the_attempt_back(t: TestStore) {
    let db = &t.db;
    let row = enqueue(db, "rel").await;
    let c = claim(db, 1, LEASE).await.remove(0).claim_ref();
    assert_eq!(db.release(vec![ClaimRef { id: row, attempt: 2 }]).await.unwrap(), 0);
    assert_eq!(db.release(Vec::new()).await.unwrap(), 0);
    assert_eq!(db.release(vec![c]).await.unwrap(), 1);
    let e = db.event(row).await.unwrap().unwrap();
    assert_eq!(e.status.map(|v| v.as_str()), Some("retry"));
    assert_eq!(e.attempt_count, 0);
    let again = claim(db, 1, LEASE).await;
    assert_eq!(ids(&again), [row], "a released event is claimable at once");
    assert_eq!(again[0].attempt_count, 1, "the released attempt was not counted");
}

async fn retry_waits_for_its_due_time(t: TestStore) {
    let db = &t.db;
    let later = enqueue(db, "later").await;
    let c = claim(db, 1, LEASE).await.remove(0).claim_ref();
    let due = time::after(Duration::from_secs(3600));
    assert!(db.finish(retry_at(c, due.clone())).await.unwrap());
    let e = db.event(later).await.unwrap().unwrap();
    assert_eq!(e.status.map(|v| v.as_str()), Some("retry"));
    assert_eq!(e.next_attempt_at.as_deref(), Some(due.as_str()));
    assert_eq!(e.last_error.as_deref(), Some("boom"));
    assert!(
        claim(db, 10, LEASE).await.is_empty(),
        "not claimable before next_attempt_at"
    );

    let soon = enqueue(db, "soon").await;
    let c = claim(db, 1, LEASE).await.remove(0).claim_ref();
    assert_eq!(c.id, soon);
    assert!(
        db.finish(retry_at(c, time::after(Duration::from_millis(300))))
            .await
            .unwrap()
    );
    assert!(claim(db, 10, LEASE).await.is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let now_due = claim(db, 10, LEASE).await;
    assert_eq!(ids(&now_due), [soon], "due now; the other one still waits");
    assert_eq!(now_due[0].attempt_count, 2);
}

async fn action_runs_are_one_per_event_and_action(t: TestStore) {
    let db = &t.db;
    let row = enqueue(db, "ar").await;
    let c = claim(db, 1, LEASE).await.remove(0).claim_ref();
    db.start_action_run(run(row, "act", "running")).await.unwrap();
    db.start_action_run(run(row, "act", "running")).await.unwrap();
    let started = db.action_run(row, "act").await.unwrap().expect("running row");
    assert_eq!(started.status.map(|v| v.as_str()), Some("running"));
    assert!(started.finished_at.is_none());
    assert_timestamp(started.started_at.as_deref().unwrap());

    let mut finish = done(c);
    finish.action_run = Some(run(row, "act", "done"));
    assert!(db.finish(finish).await.unwrap());
    let runs = db.action_runs(row).await.unwrap();
    assert_eq!(runs.len(), 1, "one row per (event, action)");
    assert_eq!(runs[0].id, started.id, "upserted in place");
    assert_eq!(runs[0].status.map(|v| v.as_str()), Some("done"));
    assert_eq!(runs[0].output_json.as_deref(), Some(r#"{"out":1}"#));
    assert_eq!(runs[0].provider.as_deref(), Some("github"));
    assert_eq!(runs[0].handler_target.as_deref(), Some("job"));
    assert_eq!(runs[0].input_json.as_deref(), Some(r#"{"in":1}"#));
    assert_timestamp(runs[0].finished_at.as_deref().unwrap());

    db.start_action_run(run(row, "other", "running")).await.unwrap();
    let runs = db.action_runs(row).await.unwrap();
    let actions: Vec<_> = runs.iter().map(|r| r.action.clone().unwrap()).collect();
    assert_eq!(actions, ["other", "act"], "newest first");
    assert!(db.action_run(row, "missing").await.unwrap().is_none());
}

pub(crate) fn mapping(provider: &str, action: &str, enabled: bool) -> Mapping {
    Mapping {
        provider: provider.into(),
        action: action.into(),
        handler_mode: HandlerMode::Command,
        handler_target: Some("job".into()),
        enabled,
        flow: None,
    }
}

pub(crate) fn rule(provider: &str, name: &str, priority: i64) -> RuleUpsert {
    RuleUpsert {
        provider: provider.into(),
        name: name.into(),
        priority,
        conditions_json: r#"{"op":"header_present","name":"x-github-event"}"#.into(),
        action: format!("do_{name}"),
        handler_mode: HandlerMode::Noop,
        handler_target: None,
        enabled: true,
        continue_after_match: false,
        flow: None,
    }
}

async fn routing_version_moves_on_every_change(t: TestStore) {
    let db = &t.db;
    let v0 = db.routing_version().await.unwrap();
    db.apply(RoutingChanges {
        mappings: vec![mapping("github", "gh", true)],
        rules: vec![],
        ..Default::default()
    })
    .await
    .unwrap();
    let v1 = db.routing_version().await.unwrap();
    assert!(v1 > v0, "{v0} -> {v1}");
    let m = db.mapping("github").await.unwrap().expect("mapping");
    assert_eq!(
        (
            m.action.as_str(),
            m.handler_mode.as_str(),
            m.handler_target.as_deref(),
            m.enabled
        ),
        ("gh", "command", Some("job"), true)
    );

    db.apply(RoutingChanges {
        mappings: vec![],
        rules: vec![rule("github", "push", 10), rule("github", "first", 5)],
        ..Default::default()
    })
    .await
    .unwrap();
    let v2 = db.routing_version().await.unwrap();
    assert!(v2 > v1);
    let rules = db.rules("github").await.unwrap();
    let names: Vec<_> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["first", "push"], "priority order");
    assert_eq!(rules[0].action, "do_first");

    // An update (not only an insert) moves it too, and is visible through a second handle.
    let other = t.open_again().await;
    set_github_mapping(&other, "gh2", false).await;
    let v3 = db.routing_version().await.unwrap();
    assert!(v3 > v2);
    assert!(!db.mapping("github").await.unwrap().unwrap().enabled);
    let tables = db.routing_tables().await.unwrap();
    assert_eq!((tables.rules.len(), tables.mappings.len()), (2, 1));
    assert!(db.mapping("stripe").await.unwrap().is_none());
    assert!(db.rules("stripe").await.unwrap().is_empty());

    // The check right after a claim sees a change committed before the claim (SQLite
    // answers it with the claim's own reading), and the one after it a later change.
    enqueue(db, "rv-1").await;
    assert_eq!(db.claim(1, Duration::from_secs(60)).await.unwrap().len(), 1);
    assert_eq!(db.routing_version().await.unwrap(), v3);
    set_github_mapping(&other, "gh4", true).await;
    let v4 = db.routing_version().await.unwrap();
    assert!(v4 > v3);
    enqueue(db, "rv-2").await;
    assert_eq!(db.claim(1, Duration::from_secs(60)).await.unwrap().len(), 1);
    assert_eq!(
        db.routing_version().await.unwrap(),
        v4,
        "the claim's reading is as new as the claim"
    );
    set_github_mapping(&other, "gh3", true).await;
    assert!(
        db.routing_version().await.unwrap() > v4,
        "a later change is not hidden by the claim's reading"
    );
}

/// Replaces the `github` mapping through `db`.
async fn set_github_mapping(db: &Db, action: &str, enabled: bool) {
    db.apply(RoutingChanges {
        mappings: vec![mapping("github", action, enabled)],
        rules: vec![],
        ..Default::default()
    })
    .await
    .unwrap();
}

async fn apply_is_all_or_nothing(t: TestStore) {
    // A constraint the store does not know about, failing the middle rule of the batch.
    t.exec(
        "CREATE TRIGGER reject_bad_rule BEFORE INSERT ON routing_rules WHEN NEW.name = 'bad' \
         BEGIN SELECT RAISE(ABORT, 'rule name bad is refused'); END",
        "ALTER TABLE routing_rules ADD CONSTRAINT reject_bad_rule CHECK (name <> 'bad')",
    )
    .await;
    let db = &t.db;
    let v0 = db.routing_version().await.unwrap();
    let changes = RoutingChanges {
        mappings: vec![mapping("stripe", "st", true)],
        rules: vec![
            rule("stripe", "ok1", 1),
            rule("stripe", "bad", 2),
            rule("stripe", "ok2", 3),
        ],
        ..Default::default()
    };
    assert!(db.apply(changes).await.is_err());
    assert!(
        db.mapping("stripe").await.unwrap().is_none(),
        "the mapping was rolled back"
    );
    assert!(
        db.rules("stripe").await.unwrap().is_empty(),
        "the first rule was rolled back"
    );
    assert_eq!(db.routing_version().await.unwrap(), v0);

    let changes = RoutingChanges {
        mappings: vec![mapping("stripe", "st", true)],
        rules: vec![rule("stripe", "ok1", 1), rule("stripe", "ok2", 3)],
        ..Default::default()
    };
    db.apply(changes).await.unwrap();
    assert_eq!(db.rules("stripe").await.unwrap().len(), 2);
}

async fn unreadable_rows_are_errors_naming_the_row(t: TestStore) {
    let db = &t.db;
    let row = enqueue(db, "bogus-status").await;
    db.apply(RoutingChanges {
        mappings: vec![mapping("acme", "a", true)],
        rules: vec![rule("acme", "r1", 1)],
        ..Default::default()
    })
    .await
    .unwrap();
    let sql = format!("UPDATE events SET status = 'finished' WHERE id = {row}");
    t.exec(&sql, &sql).await;
    let err = db.event(row).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("events row {row}")) && err.contains("status"),
        "{err}"
    );
    assert!(err.contains("'finished'"), "{err}");
    assert!(
        db.list_page(EventFilter::default(), None, 10).await.is_err(),
        "a listing does not skip the row"
    );

    let sql = "UPDATE provider_mappings SET handler_mode = 'shell' WHERE provider = 'acme'";
    t.exec(sql, sql).await;
    let err = db.mapping("acme").await.unwrap_err().to_string();
    assert!(
        err.contains("provider_mappings row 'acme'") && err.contains("'shell'"),
        "{err}"
    );

    let sql = "UPDATE routing_rules SET handler_mode = 'Noop' WHERE name = 'r1'";
    t.exec(sql, sql).await;
    let err = db.rules("acme").await.unwrap_err().to_string();
    assert!(
        err.contains("routing_rules row ") && err.contains("handler_mode"),
        "{err}"
    );
    assert!(db.routing_tables().await.is_err(), "the router never reads it as noop");
}

async fn list_and_replay(t: TestStore) {
    let db = &t.db;
    let a = enqueue(db, "la").await;
    let b = enqueue(db, "lb").await;
    let c = enqueue(db, "lc").await;
    let ca = claim(db, 1, LEASE).await.remove(0).claim_ref();
    assert_eq!(ca.id, a);
    assert!(db.finish(done(ca)).await.unwrap());

    let listed = |v: Vec<EventSummary>| v.iter().map(|e| e.id).collect::<Vec<_>>();
    let status = |s: &str| EventFilter {
        status: Some(s.into()),
        ..EventFilter::default()
    };
    assert_eq!(listed(list(db, EventFilter::default(), 10).await), [c, b, a]);
    assert_eq!(listed(list(db, EventFilter::default(), 2).await), [c, b]);
    assert_eq!(listed(list(db, status("done"), 10).await), [a]);
    assert_eq!(listed(list(db, status("pending"), 10).await), [c, b]);
    assert!(list(db, status("error"), 10).await.is_empty());

    assert_eq!(db.replay(a, false).await.unwrap(), Transition::Applied);
    let e = db.event(a).await.unwrap().unwrap();
    assert_eq!(e.status.map(|v| v.as_str()), Some("pending"));
    assert_eq!(e.attempt_count, 0);
    assert!(e.processed_at.is_none() && e.last_error.is_none());
    // Replayed now, so due after the two that waited since before.
    let claimed = claim(db, 3, LEASE).await;
    let mut got = ids(&claimed);
    got.sort_unstable();
    assert_eq!(got, [a, b, c]);
    assert!(claimed.iter().all(|x| x.attempt_count == 1));
    assert_eq!(
        db.replay(a, false).await.unwrap(),
        Transition::Conflict("processing".into()),
        "an event being processed is not replayed"
    );
    assert_eq!(db.replay(c + 1000, false).await.unwrap(), Transition::NotFound);
}

// ---- PostgreSQL only -------------------------------------------------------------------

fn pg_settings(url: &str) -> Settings {
    let mut s = Settings::defaults();
    s.database_url = Some(url.to_string());
    s.database_connect_timeout = 10.0;
    s
}

/// Opening errors as a user sees them (`{:#}` of the error chain).
async fn open_error(s: &Settings) -> String {
    match switchyard::store::open(&s.store_config()).await {
        Ok(_) => panic!("opening {:?} should fail", s.database_url),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn postgres_bad_urls_fail_with_a_message_naming_database_url() {
    let malformed = open_error(&pg_settings("postgres://postgres@127.0.0.1:notaport/test")).await;
    assert!(malformed.contains("DATABASE_URL"), "{malformed}");

    // Nothing listens on port 1: retried (and logged) until the connect timeout.
    let mut s = pg_settings("postgres://postgres@127.0.0.1:1/test");
    s.database_connect_timeout = 1.0;
    let started = Instant::now();
    let down = open_error(&s).await;
    let took = started.elapsed();
    assert!(
        down.contains("DATABASE_URL") && down.contains("DATABASE_CONNECT_TIMEOUT_SECONDS"),
        "{down}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "gave up after {took:?}"
    );

    let Some(pg) = PgSchema::create("store::postgres_bad_urls_fail_with_a_message_naming_database_url").await else {
        return;
    };
    // A database that does not exist is not worth waiting for: refused at once.
    let (base, _) = pg.url.split_once('?').unwrap();
    let (server, _) = base.rsplit_once('/').unwrap();
    let started = Instant::now();
    let missing = open_error(&pg_settings(&format!("{server}/sy_no_such_database"))).await;
    assert!(
        missing.contains("DATABASE_URL") && missing.contains("sy_no_such_database"),
        "{missing}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refused database was retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_starting_together_migrate_once() {
    let Some(pg) = PgSchema::create("store::postgres_instances_starting_together_migrate_once").await else {
        return;
    };
    let options = pg_settings(&pg.url).store_config().postgres;
    let mut opens = tokio::task::JoinSet::new();
    for _ in 0..6 {
        opens.spawn(PgStore::connect(&pg.url, &options));
    }
    let stores: Vec<Db> = opens
        .join_all()
        .await
        .into_iter()
        .map(|r| Arc::new(r.expect("concurrent start-up on a fresh schema")) as Db)
        .collect();
    let mut conn = pg.connect().await;
    let applied: Vec<(i64, bool)> = sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    // Every migration file, each applied once (read from the directory, so that a new
    // migration does not have to be listed here too).
    let mut want: Vec<(i64, bool)> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            (name.split('_').next().unwrap().parse().unwrap(), true)
        })
        .collect();
    want.sort();
    assert_eq!(applied, want);
    let row = enqueue(&stores[0], "after-migrate").await;
    assert_eq!(
        stores[5].event(row).await.unwrap().unwrap().event_id.as_deref(),
        Some("after-migrate")
    );
    // Timestamps compare bytewise whatever the database's default collation is.
    let collations: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT collation_name FROM information_schema.columns \
         WHERE table_schema = current_schema() AND ((table_name = 'events' \
           AND column_name IN ('received_at', 'next_attempt_at', 'lease_until')) \
           OR (table_name = 'event_queue' AND column_name IN ('run_at', 'claimed_at', 'leased_until')))",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(collations, ["C"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_killed_connections_and_listens_again() {
    let Some(pg) = PgSchema::create("store::postgres_survives_killed_connections_and_listens_again").await else {
        return;
    };
    let app_a = format!("{}_a", pg.name);
    let app_b = format!("{}_b", pg.name);
    let a = switchyard::store::open(&pg_settings(&pg.url_as(&app_a)).store_config())
        .await
        .unwrap();
    let b = switchyard::store::open(&pg_settings(&pg.url_as(&app_b)).store_config())
        .await
        .unwrap();
    let wake = |db: &Db, within: Duration| {
        let db = db.clone();
        async move {
            tokio::time::timeout(within, db.external_wake())
                .await
                .map(|r| r.unwrap())
                .is_ok()
        }
    };

    // The first wait starts the listener, which wakes once when it is connected.
    assert!(
        wake(&b, Duration::from_secs(10)).await,
        "no wake-up after LISTEN started"
    );
    pg.wait_for_listener(&app_b, Duration::from_secs(10)).await;
    let first = enqueue(&b, "before-kill").await;

    assert!(pg.terminate(&app_b).await >= 1, "b had connections to kill");
    // The pool replaces the dead connections: no error reaches the caller.
    let second = enqueue(&b, "after-kill").await;
    let claimed = claim(&b, 10, LEASE).await;
    assert_eq!(ids(&claimed), [first, second]);
    assert!(b.finish(done(claimed[0].claim_ref())).await.unwrap());

    // The listener comes back by itself, and wakes its worker once for a re-scan.
    pg.wait_for_listener(&app_b, Duration::from_secs(10)).await;
    assert!(
        wake(&b, Duration::from_secs(10)).await,
        "no wake-up after the listener reconnected"
    );
    let _ = wake(&b, Duration::from_millis(300)).await; // absorb a NOTIFY of b's own enqueue
    assert!(!wake(&b, Duration::from_millis(300)).await, "woken with nothing new");

    // Another instance's enqueue reaches b through NOTIFY.
    let started = Instant::now();
    let (woke, _) = tokio::join!(wake(&b, Duration::from_secs(5)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        enqueue(&a, "from-a").await
    });
    assert!(woke, "NOTIFY from another instance did not wake b");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Rows of `table` per event, as `(event_row_id, count)` in id order.
async fn rows_per_event(conn: &mut sqlx::PgConnection, table: &str) -> Vec<(i64, i64)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT event_row_id, count(*) FROM {table} GROUP BY event_row_id ORDER BY event_row_id"
    )))
    .fetch_all(conn)
    .await
    .unwrap()
}

/// The events of the queue rows, in id order.
async fn queue(conn: &mut sqlx::PgConnection) -> Vec<i64> {
    sqlx::query_scalar("SELECT event_row_id FROM event_queue ORDER BY event_row_id")
        .fetch_all(conn)
        .await
        .unwrap()
}

/// Migration 0028: deleting events by hand takes their queue rows, action runs and
/// attempts along (a trigger, not foreign keys), and `TRUNCATE events` empties them all
/// (with the foreign keys it was refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_deleted_events_take_their_queue_rows_runs_and_attempts() {
    let Some(pg) = PgSchema::create("store::postgres_deleted_events_take_their_queue_rows_runs_and_attempts").await
    else {
        return;
    };
    let db = switchyard::store::open(&pg_settings(&pg.url).store_config())
        .await
        .unwrap();
    let (a, b) = (enqueue(&db, "del-a").await, enqueue(&db, "del-b").await);
    for c in claim(&db, 2, LEASE).await {
        let mut finish = done(c.claim_ref());
        finish.action_run = Some(run(c.id, "act", "done"));
        assert!(db.finish(finish).await.unwrap());
    }
    let (queued, claimed) = (enqueue(&db, "del-c").await, enqueue(&db, "del-d").await);
    assert_eq!(ids(&claim(&db, 1, LEASE).await), [queued]);
    let mut conn = pg.connect().await;
    assert_eq!(rows_per_event(&mut conn, "action_runs").await, [(a, 1), (b, 1)]);
    assert_eq!(rows_per_event(&mut conn, "event_attempts").await, [(a, 1), (b, 1)]);
    assert_eq!(queue(&mut conn).await, [queued, claimed]);

    let delete = format!("DELETE FROM events WHERE id IN ({a}, {queued})");
    sqlx::query(sqlx::AssertSqlSafe(delete))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows_per_event(&mut conn, "action_runs").await, [(b, 1)]);
    assert_eq!(rows_per_event(&mut conn, "event_attempts").await, [(b, 1)]);
    assert_eq!(queue(&mut conn).await, [claimed]);

    sqlx::query("TRUNCATE events").execute(&mut conn).await.unwrap();
    assert!(rows_per_event(&mut conn, "action_runs").await.is_empty());
    assert!(rows_per_event(&mut conn, "event_attempts").await.is_empty());
    assert!(queue(&mut conn).await.is_empty());
    // Naming the other tables in the same TRUNCATE works too.
    enqueue(&db, "del-e").await;
    sqlx::query("TRUNCATE events, event_queue, action_runs, event_attempts")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(queue(&mut conn).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statement_timeout_applies_to_pooled_connections() {
    let Some(pg) = PgSchema::create("store::postgres_statement_timeout_applies_to_pooled_connections").await else {
        return;
    };
    let mut s = pg_settings(&pg.url);
    s.database_statement_timeout = 0.2;
    let db = switchyard::store::open(&s.store_config()).await.unwrap();
    // Hold the routing_version row: an apply's trigger then waits for it.
    let mut locker = pg.connect().await;
    locker.execute("BEGIN").await.unwrap();
    locker
        .execute("SELECT value FROM switchyard_meta FOR UPDATE")
        .await
        .unwrap();
    let started = Instant::now();
    let changes = || RoutingChanges {
        mappings: vec![mapping("github", "gh", true)],
        rules: vec![],
        ..Default::default()
    };
    let err = db
        .apply(changes())
        .await
        .expect_err("the apply should time out")
        .to_string();
    assert!(err.contains("statement timeout"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    locker.execute("ROLLBACK").await.unwrap();
    db.apply(changes()).await.unwrap();
    assert!(db.mapping("github").await.unwrap().is_some());
}

/// Size of a file, 0 when it does not exist.
fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Checkpoints run beside the writer (not in its commits): committed pages reach the database
/// file while the store is open, and under writes faster than the checkpoints the WAL stays
/// bounded (without the rewind a PASSIVE checkpoint never catches up and the WAL only grows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_checkpointed_and_stays_bounded_under_sustained_writes() {
    let t = TestStore::sqlite().await;
    let db_file = t.sqlite_path.clone().unwrap();
    let wal_file = db_file.with_extension("sqlite3-wal");
    let padding = "x".repeat(8 * 1024);
    let before = file_len(&db_file);

    // ~80 MB of payloads from 32 concurrent writers, so commits never pause.
    let mut tasks = Vec::new();
    for w in 0..32 {
        let (db, padding) = (t.db.clone(), padding.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..300 {
                let mut e = event(&format!("w{w}-{i}"));
                e.payload_json = format!(r#"{{"pad":"{padding}"}}"#);
                db.enqueue(e).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let wal_peak = file_len(&wal_file);
    // Past 16,384 frames of 4 KiB (67.5 MB with frame headers) the writer rewinds the WAL
    // before its next batch, whatever the checkpoint thread is doing; allow one batch more
    // (512 of these payloads). Without the rewind this run grows the WAL to ~135 MB.
    assert!(wal_peak < 80 << 20, "WAL grew to {wal_peak} bytes");

    let deadline = Instant::now() + Duration::from_secs(10);
    while file_len(&db_file) < before + (60 << 20) {
        assert!(
            Instant::now() < deadline,
            "database file still {} bytes: the WAL was not checkpointed",
            file_len(&db_file)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(list(&t.db, EventFilter::default(), 1).await.len(), 1);
}

/// A SQLite file at `path` whose `action_runs` lacks the seed's unique key on
/// `(event_row_id, action)`, holding the given `(event_row_id, action)` rows.
async fn action_runs_without_unique_key(path: &std::path::Path, rows: &[(i64, &str)]) {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    c.execute(
        "CREATE TABLE action_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, event_row_id INTEGER NOT NULL, \
         started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL, provider TEXT, action TEXT, \
         handler_mode TEXT, handler_target TEXT, input_json TEXT, output_json TEXT, error TEXT)",
    )
    .await
    .unwrap();
    for (event_row_id, action) in rows {
        sqlx::query("INSERT INTO action_runs (event_row_id, started_at, status, action) VALUES (?, 'x', 'error', ?)")
            .bind(event_row_id)
            .bind(action)
            .execute(&mut c)
            .await
            .unwrap();
    }
    c.close().await.unwrap();
}

fn sqlite_settings(path: &std::path::Path) -> Settings {
    let mut settings = Settings::defaults();
    settings.database_url = None;
    settings.db_path = path.to_path_buf();
    settings
}

/// The writer's action-run upsert needs the unique key: a file without it gets one, and
/// runs stay one per (event, action), updated in place.
#[tokio::test]
async fn sqlite_action_runs_without_the_unique_key_get_it_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.sqlite3");
    action_runs_without_unique_key(&path, &[(1, "act")]).await;

    let db = switchyard::store::open(&sqlite_settings(&path).store_config())
        .await
        .expect("open");
    let row = enqueue(&db, "k").await;
    assert_eq!(row, 1);
    let c = claim(&db, 1, LEASE).await.remove(0).claim_ref();
    db.start_action_run(run(row, "act", "running")).await.unwrap();
    let mut finish = done(c);
    finish.action_run = Some(run(row, "act", "done"));
    assert!(db.finish(finish).await.unwrap());
    let runs = db.action_runs(row).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].id, 1, "the existing row is updated in place");
    assert_eq!(runs[0].status.map(|v| v.as_str()), Some("done"));
    drop(db);

    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_index_list('action_runs') WHERE \"unique\" = 1")
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert_eq!(indexes, ["action_runs_event_action"]);
}

/// A file whose rows already break "one run per (event, action)" is refused, with the
/// reason, rather than served with an upsert that cannot work.
#[tokio::test]
async fn sqlite_duplicate_action_runs_refuse_to_open_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.sqlite3");
    action_runs_without_unique_key(&path, &[(1, "act"), (1, "act")]).await;
    let err = match switchyard::store::open(&sqlite_settings(&path).store_config()).await {
        Ok(_) => panic!("a file with duplicate action runs should be refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("action_runs") && err.contains("(event_row_id, action)"),
        "{err}"
    );
    assert!(err.contains("more than one run for the same event and action"), "{err}");
}
