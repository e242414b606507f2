//! PostgreSQL row locks and outcomes: statements on the same events from two connections
//! never wait on each other in a circle (a renewal skips what a finish holds), a transaction chosen as a deadlock's
//! victim anyway is tried again, and an outcome the database refuses does not take the
//! rest of its batch with it.
//!
//! The interleavings are forced, not hoped for: a test connection holds row locks in an
//! explicit transaction, and the test waits (in `pg_stat_activity`) until the store's
//! statements are blocked on them before it lets go.

use std::time::{Duration, Instant};

use sqlx::PgConnection;
use switchyard::domain::Timestamp;
use switchyard::settings::Settings;
use switchyard::store::{ClaimRef, Db, Finish, Outcome};

use crate::store::{PgSchema, done, event, run};

const LEASE: Duration = Duration::from_secs(60);
/// Far longer than any step here takes; only a hang runs into it.
const PATIENCE: Duration = Duration::from_secs(30);

/// A store on `pg` whose connections carry their own `application_name`, so the test can
/// see when they wait for a lock; and the claims of two fresh events, lower id first.
async fn store_with_two_claims(pg: &PgSchema) -> (Db, String, ClaimRef, ClaimRef) {
    let app = format!("{}_store", pg.name);
    let mut settings = Settings::defaults();
    settings.database_url = Some(pg.url_as(&app));
    settings.database_connect_timeout = 10.0;
    let db = switchyard::store::open(&settings.store_config())
        .await
        .expect("open PostgreSQL store");
    for id in ["first", "second"] {
        db.enqueue(event(id)).await.unwrap();
    }
    let claimed = db.claim(2, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let (a, b) = (claimed[0].claim_ref(), claimed[1].claim_ref());
    assert!(a.id < b.id);
    (db, app, a, b)
}

/// Opens a transaction on `conn` holding the lock of event `id`'s queue row.
async fn lock_row(conn: &mut PgConnection, id: i64) {
    // A claim's row in the narrow queue: what renewals and finishes lock first.
    sqlx::query("SELECT event_row_id FROM event_queue WHERE event_row_id = $1 FOR NO KEY UPDATE")
        .bind(id)
        .fetch_one(conn)
        .await
        .expect("lock the row");
}

/// Waits until `n` connections of `app` are blocked on a lock.
async fn wait_for_lock_waiters(pg: &PgSchema, app: &str, n: i64) {
    let mut conn = pg.connect().await;
    let start = Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
        )
        .bind(app)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if waiting >= n {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{waiting} of {n} statements of {app} ever waited for a lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn status_and_lease(pg: &PgSchema, id: i64) -> (String, Option<String>) {
    sqlx::query_as(
        "SELECT e.status, q.leased_until FROM events e LEFT JOIN event_queue q ON q.event_row_id = e.id \
         WHERE e.id = $1",
    )
    .bind(id)
    .fetch_one(&mut pg.connect().await)
    .await
    .unwrap()
}

/// The interleaving behind issue 17's deadlocks, forced: row A is held (as a finish of A
/// holds it) when a renewal of A and B comes in, then a finish of B and A (in completion
/// order). A renewal that waited for A while holding B could close a circle with a finish
/// that holds A and wants B; a renewal skips the rows it cannot lock at once, so it renews B
/// and returns, the finish waits only for the holder, and both complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_skips_a_held_row_and_the_finish_waits_for_it() {
    let Some(pg) = PgSchema::create("pg_locks::renewal_and_finish").await else {
        return;
    };
    let (db, app, a, b) = store_with_two_claims(&pg).await;
    let (_, a_lease) = status_and_lease(&pg, a.id).await;
    let (_, b_lease) = status_and_lease(&pg, b.id).await;
    let mut holder = pg.connect().await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    lock_row(&mut holder, a.id).await;

    tokio::time::sleep(Duration::from_millis(5)).await;
    tokio::time::timeout(Duration::from_secs(5), db.renew(vec![a, b], LEASE))
        .await
        .expect("the renewal waited for the held row")
        .expect("renewal");
    assert_eq!(status_and_lease(&pg, a.id).await.1, a_lease, "the held row was renewed");
    let (_, renewed) = status_and_lease(&pg, b.id).await;
    assert!(renewed > b_lease, "B was not renewed: {renewed:?} after {b_lease:?}");

    let finishing = {
        let db = db.clone();
        let mut with_run = done(a);
        with_run.action_run = Some(run(a.id, "act", "done"));
        // In completion order, which need not be id order.
        tokio::spawn(async move { db.finish_many(vec![done(b), with_run]).await })
    };
    wait_for_lock_waiters(&pg, &app, 1).await;
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();

    let applied = tokio::time::timeout(PATIENCE, finishing)
        .await
        .expect("finish hung")
        .unwrap();
    assert_eq!(applied.expect("finish"), [true, true]);
    for id in [a.id, b.id] {
        assert_eq!(status_and_lease(&pg, id).await, ("done".into(), None), "event {id}");
    }
    let run = db.action_run(a.id, "act").await.unwrap().expect("the action run");
    assert_eq!(run.status.map(|s| s.as_str()), Some("done"));
}

/// A deadlock the store cannot avoid (another client locks the rows in the other order):
/// PostgreSQL aborts the finish's transaction, and the store tries it again once the way
/// is clear, so the outcomes are stored after all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_chosen_as_deadlock_victim_is_tried_again() {
    let Some(pg) = PgSchema::create("pg_locks::deadlock_victim").await else {
        return;
    };
    let (db, app, a, b) = store_with_two_claims(&pg).await;
    let mut holder = pg.connect().await;
    // The finish, whose deadlock check fires first (1 s), is the victim; not this one.
    sqlx::query("SET deadlock_timeout = '60s'")
        .execute(&mut holder)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    lock_row(&mut holder, b.id).await;

    // The finish locks A, then waits for B.
    let finishing = {
        let db = db.clone();
        tokio::spawn(async move { db.finish_many(vec![done(a), done(b)]).await })
    };
    wait_for_lock_waiters(&pg, &app, 1).await;
    // Now the holder wants A: a cycle. It can only get A once the finish was rolled back.
    let mut holder = tokio::time::timeout(PATIENCE, async move {
        lock_row(&mut holder, a.id).await;
        holder
    })
    .await
    .expect("the deadlock was never broken");
    assert!(!finishing.is_finished(), "the finish gave up instead of trying again");
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();

    let applied = tokio::time::timeout(PATIENCE, finishing)
        .await
        .expect("finish hung")
        .unwrap();
    assert_eq!(applied.expect("the finish, tried again"), [true, true]);
    for id in [a.id, b.id] {
        assert_eq!(status_and_lease(&pg, id).await, ("done".into(), None), "event {id}");
    }
}

/// PostgreSQL text cannot hold NUL, so a batch holding an outcome with one fails as a
/// whole: the worker splits it, stores the others, and records that event as failed with
/// the reason instead of dropping every outcome of the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_the_database_refuses_does_not_take_its_batch_with_it() {
    let Some(pg) = PgSchema::create("pg_locks::refused_outcome").await else {
        return;
    };
    let (db, _, a, b) = store_with_two_claims(&pg).await;
    db.enqueue(event("third")).await.unwrap();
    let c = db.claim(1, LEASE).await.unwrap()[0].claim_ref();
    let refused = Finish {
        claim: b,
        outcome: Outcome::Retry {
            error: "child wrote \0 to stderr".into(),
            next_attempt_at: Timestamp::from_stored(switchyard::time::now()),
        },
        action_run: None,
        provider: None,
        action: None,
        other_runs_read_event: true,
        fan_out: None,
    };
    let processor = switchyard::processor(&db, &Settings::defaults());
    tokio::time::timeout(PATIENCE, processor.record_many(vec![done(a), refused, done(c)]))
        .await
        .expect("recording hung");

    for id in [a.id, c.id] {
        assert_eq!(status_and_lease(&pg, id).await, ("done".into(), None), "event {id}");
    }
    let row = db.event(b.id).await.unwrap().unwrap();
    assert_eq!(row.status.map(|s| s.as_str()), Some("error"));
    let error = row.last_error.unwrap_or_default();
    assert!(error.contains("could not be stored"), "{error}");
}
