//! `switchyard db copy` (CONTRACT §15): SQLite → PostgreSQL from a file in use, the same
//! answers on both, refusal without `--resume`, `--resume`, PostgreSQL → SQLite, errors
//! that create nothing, and the copied tables matching every migrated table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::Connection;
use switchyard::domain::{HandlerMode, RoutingChanges, RunStatus, Source};
use switchyard::settings::Settings;
use switchyard::store::copy::{NOT_COPIED, TABLES};
use switchyard::store::{ActionRunRecord, Db, Finish, Missed, NewEvent, Outcome, Schedule};

use crate::helpers::*;
use crate::store::{PgSchema, mapping, rule};

const LEASE: Duration = Duration::from_secs(600);

async fn open_sqlite(path: &Path) -> Db {
    let mut s = Settings::defaults();
    s.database_url = None;
    s.db_path = path.to_path_buf();
    switchyard::store::open(&s.store_config()).await.unwrap()
}

async fn open_url(url: &str) -> Db {
    let mut s = Settings::defaults();
    s.database_url = Some(url.to_string());
    switchyard::store::open(&s.store_config()).await.unwrap()
}

async fn enqueue(db: &Db, source: Source, id: &str) -> i64 {
    let payload = format!(r#"{{"source_hint":"github","headers":{{"x-github-event":"push"}},"json":{{"id":"{id}"}}}}"#);
    let e = NewEvent {
        source,
        event_id: id.into(),
        payload_json: payload,
    };
    db.enqueue(e).await.unwrap().row_id()
}

fn finish(c: &switchyard::store::ClaimedEvent, outcome: Outcome, run: RunStatus) -> Finish {
    let now = switchyard::time::now();
    Finish {
        claim: c.claim_ref(),
        outcome,
        action_run: Some(ActionRunRecord {
            event_row_id: c.id,
            started_at: now.clone(),
            finished_at: Some(now),
            status: run,
            provider: "github".into(),
            action: "act".into(),
            handler_mode: HandlerMode::Noop,
            handler_target: None,
            input_json: r#"{"in":1}"#.into(),
            output_json: (run == RunStatus::Done).then(|| r#"{"out":1}"#.into()),
            error: (run != RunStatus::Done).then(|| "boom".into()),
        }),
        provider: Some("github".into()),
        action: Some("act".into()),
        other_runs_read_event: true,
        fan_out: None,
    }
}

/// 300 events in every status (with action runs), 2 mappings, 2 rules, 2 schedules.
/// `r` with flow control (CONTRACT §13) in the pool `fill` defines.
fn flowing(mut r: switchyard::store::RuleUpsert) -> switchyard::store::RuleUpsert {
    let flow = serde_json::json!({"key": "{{payload.pr}}", "concurrency": {"per_key": 1}, "pool": "anthropic"});
    r.flow = Some(switchyard::domain::flow::Flow::parse(&flow, None).unwrap());
    r
}

async fn fill(db: &Db) {
    let schedule = |job: &str, cron: &str| Schedule {
        job: job.into(),
        cron: cron.into(),
        timezone: "Europe/Paris".into(),
        payload_json: r#"{"k":1}"#.into(),
        enabled: true,
        missed: Missed::Skip,
    };
    db.apply(RoutingChanges {
        mappings: vec![
            mapping("github", "handle_github", true),
            mapping("stripe", "handle_stripe", true),
        ],
        rules: vec![rule("github", "push", 10), flowing(rule("github", "pr", 20))],
        schedules: vec![schedule("daily", "0 9 * * *"), schedule("hourly", "@hourly")],
        budgets: vec![switchyard::domain::ActionBudget {
            action: "handle_github".into(),
            budget: switchyard::domain::Budget {
                per_run_usd: Some(0.5),
                daily_usd: Some(2.25),
                monthly_usd: None,
            },
        }],
        pools: vec![switchyard::domain::flow::Pool {
            name: "anthropic".into(),
            limit: 2,
        }],
    })
    .await
    .unwrap();
    for i in 0..290 {
        enqueue(db, Source::Webhook, &format!("evt-{i:04}")).await;
    }
    for i in 0..10 {
        enqueue(db, Source::Cron, &format!("cron:job:{i}")).await;
    }
    let claimed = db.claim(200, LEASE).await.unwrap();
    let later = switchyard::time::timestamp_after(Duration::from_secs(3600));
    for (n, c) in claimed.iter().enumerate() {
        let f = match n % 4 {
            0 => finish(
                c,
                Outcome::Done {
                    result_json: r#"{"ok":true,"result":{"mode":"noop"}}"#.into(),
                },
                RunStatus::Done,
            ),
            1 => finish(
                c,
                Outcome::Retry {
                    error: "boom".into(),
                    next_attempt_at: later.clone(),
                },
                RunStatus::Error,
            ),
            2 => finish(
                c,
                Outcome::Failed {
                    error: "gave up".into(),
                },
                RunStatus::Error,
            ),
            _ => continue, // stays processing
        };
        assert!(db.finish(f).await.unwrap());
    }
    // Some retries cancelled; the 100 unclaimed stay pending.
    for c in claimed.iter().skip(1).step_by(8) {
        db.cancel(c.id).await.unwrap();
    }
}

/// `table → (source, copied, target)` from the command's output.
fn counts(out: &str) -> std::collections::BTreeMap<String, (u64, u64, u64)> {
    out.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 7 && w[1] == "source").then(|| {
                let n = |i: usize| w[i].parse::<u64>().unwrap();
                (w[0].to_string(), (n(2), n(4), n(6)))
            })
        })
        .collect()
}

fn db_copy(dir: &Path, from: &str, to: &str, resume: bool) -> std::process::Output {
    let mut args = vec!["db", "copy", "--from", from, "--to", to];
    if resume {
        args.push("--resume");
    }
    run_cli(dir, &args, &[("DATABASE_CONNECT_TIMEOUT_SECONDS", "1")])
}

/// `GET /events/{id}` for ids 1..=n from an `http` process on each database: the same
/// answers; the copy `b` has no event n+1.
async fn same_answers(dir: &Path, a: &[(&str, &str)], b: &[(&str, &str)], n: i64) {
    let (a, b) = (App::spawn_in(dir, "http", a), App::spawn_in(dir, "http", b));
    for id in 1..=n {
        let path = format!("/events/{id}");
        let (left, right) = (a.get(&path, &[]).await, b.get(&path, &[]).await);
        assert_eq!(left, right, "GET {path}");
        assert_eq!(left.0, 200, "GET {path}: {left:?}");
    }
    assert_eq!(b.get(&format!("/events/{}", n + 1), &[]).await.0, 404);
}

fn sqlite_env(path: &Path) -> Vec<(&'static str, String)> {
    vec![("APP_DB_PATH", path.display().to_string())]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_use_to_postgres_and_back_keeps_every_row_and_answer() {
    let Some(pg) = PgSchema::create("db_copy::sqlite_to_postgres").await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = dir.join("src.sqlite3");
    let db = open_sqlite(&src).await;
    fill(&db).await;

    // The copy reads the file while this process keeps writing to it (as `serve` would).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                enqueue(&db, Source::Webhook, &format!("late-{n}")).await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let src_text = src.display().to_string();
    let out = tokio::task::block_in_place(|| db_copy(dir, &src_text, &pg.url, false));
    stop.store(true, Ordering::Relaxed);
    let late = writer.await.unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(
        !text.contains(pg.url.as_str()),
        "the URL is printed only without credentials: {text}"
    );
    let first = counts(&text);
    assert_eq!(first.len(), TABLES.len(), "{text}");
    for (table, (source, copied, target)) in &first {
        assert_eq!(source, target, "{table}: {text}");
        // The target's own change counters stay (the triggers moved them).
        let expected = if table == "switchyard_meta" { 0 } else { *target };
        assert_eq!(*copied, expected, "{table}: {text}");
    }
    let copied_events = first["events"].0 as i64;
    assert!(
        copied_events >= 300 && copied_events < 300 + late,
        "{copied_events} of {late}"
    );
    assert_eq!(first["action_runs"].0, 150);
    assert_eq!(first["provider_mappings"].0, 2);
    assert_eq!(first["routing_rules"].0, 2);
    assert_eq!(first["schedules"].0, 2);
    assert_eq!(first["flow_pools"].0, 1);

    // The same answers, event by event, and the same routing (flows included) and schedules.
    let pg_env = [("DATABASE_URL", pg.url.as_str())];
    let src_env = sqlite_env(&src);
    same_answers(dir, &env_refs(&src_env), &pg_env, copied_events).await;
    for args in [&["cron", "list"][..], &["mapping", "rule-list", "--provider", "github"]] {
        let (a, b) = (run_cli(dir, args, &env_refs(&src_env)), run_cli(dir, args, &pg_env));
        assert_eq!(stdout(&a), stdout(&b), "{args:?}");
    }

    // PostgreSQL's narrow queue holds every copied event that waits or runs (migration
    // 0020): none is left where no worker would ever claim it.
    let mut conn = pg.connect().await;
    let unqueued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e WHERE (e.status IN ('pending', 'retry') \
           AND NOT EXISTS (SELECT 1 FROM event_queue q WHERE q.event_row_id = e.id)) OR e.status = 'processing'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(unqueued, 0, "copied events outside PostgreSQL's queue");
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM event_queue")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(queued > 0, "fill() queues events in every status");

    // Again without --resume: refused, nothing changes.
    let out = db_copy(dir, &src_text, &pg.url, false);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already holds") && stderr(&out).contains("--resume"),
        "{}",
        stderr(&out)
    );
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(held, copied_events);

    // --resume: only the events written since the first copy.
    let out = db_copy(dir, &src_text, &pg.url, true);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let second = counts(&text);
    let all = 300 + late;
    assert_eq!(second["events"], (all as u64, (all - copied_events) as u64, all as u64));
    assert!(
        second.iter().filter(|(t, _)| *t != "events").all(|(_, c)| c.1 == 0),
        "{text}"
    );
    // The sequence moved past the copied ids.
    let target = open_url(&pg.url).await;
    assert_eq!(enqueue(&target, Source::Webhook, "on-postgres").await, all + 1);
    drop(db);

    // PostgreSQL → a new SQLite file: the same again.
    let back = dir.join("back/events.sqlite3");
    let out = db_copy(dir, &pg.url, &back.display().to_string(), false);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert_eq!(
        counts(&text)["events"],
        (all as u64 + 1, all as u64 + 1, all as u64 + 1)
    );
    let back_env = sqlite_env(&back);
    same_answers(dir, &env_refs(&back_env), &pg_env, all + 1).await;
    assert_eq!(
        enqueue(&open_sqlite(&back).await, Source::Webhook, "on-sqlite").await,
        all + 2
    );
}

/// The files in `dir`, without SQLite's `-wal` and `-shm` (which come and go with connections).
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with("-wal") && !p.to_string_lossy().ends_with("-shm"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_source_or_unreachable_server_is_a_clear_error_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let before = files(dir);
    let unreachable = "postgres://u:secret@127.0.0.1:9/db?sslmode=disable";
    let cases = [
        (
            "nope/missing.sqlite3",
            "copy.sqlite3",
            "nope/missing.sqlite3 does not exist",
        ),
        (
            unreachable,
            "copy.sqlite3",
            "cannot connect to PostgreSQL at 127.0.0.1:9/db",
        ),
    ];
    for (from, to, needle) in cases {
        let out = tokio::task::block_in_place(|| db_copy(dir, from, to, false));
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(needle), "{from} → {to}: {err}");
        assert!(!err.contains("secret"), "{err}");
        assert_eq!(files(dir), before, "{from} → {to} created a file");
    }
    // An unreachable target: the source is read, nothing is created.
    let src = dir.join("src.sqlite3");
    drop(open_sqlite(&src).await);
    let before = files(dir);
    let out = tokio::task::block_in_place(|| db_copy(dir, "src.sqlite3", unreachable, false));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot connect to PostgreSQL at 127.0.0.1:9/db"),
        "{}",
        stderr(&out)
    );
    assert_eq!(files(dir), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_that_differ_at_the_end_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fill(&open_sqlite(&dir.join("a.sqlite3")).await).await;
    // The target holds no events but a mapping of its own: the copy runs, the counts differ.
    let target = open_sqlite(&dir.join("b.sqlite3")).await;
    target
        .apply(RoutingChanges {
            mappings: vec![mapping("linear", "a", true)],
            ..RoutingChanges::default()
        })
        .await
        .unwrap();
    let out = tokio::task::block_in_place(|| db_copy(dir, "a.sqlite3", "b.sqlite3", false));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(counts(&stdout(&out))["provider_mappings"], (2, 2, 3));
    assert_eq!(counts(&stdout(&out))["events"], (300, 300, 300));
    assert!(
        stderr(&out).contains("counts differ for provider_mappings"),
        "{}",
        stderr(&out)
    );
    let out = tokio::task::block_in_place(|| db_copy(dir, "a.sqlite3", "./a.sqlite3", false));
    assert!(stderr(&out).contains("the same file"), "{}", stderr(&out));
}

/// Every table and column of a freshly migrated database is in `TABLES` (a migration that
/// adds one without adding it there fails here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copied_tables_are_every_migrated_table_and_column() {
    let expected: BTreeSet<String> = TABLES
        .iter()
        .flat_map(|t| t.columns.iter().map(move |c| format!("{}.{}", t.name, c.name)))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.sqlite3");
    drop(open_sqlite(&path).await);
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT m.name || '.' || c.name FROM sqlite_master m, pragma_table_info(m.name) c WHERE m.type = 'table'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(copied(found), expected, "SQLite");

    let Some(pg) = PgSchema::create("db_copy::tables").await else {
        return;
    };
    drop(open_url(&pg.url).await);
    let mut conn = pg.connect().await;
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT c.table_name::text || '.' || c.column_name::text FROM information_schema.columns c \
         JOIN information_schema.tables t USING (table_schema, table_name) \
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(copied(found), expected, "PostgreSQL");
}

fn copied(found: Vec<String>) -> BTreeSet<String> {
    found
        .into_iter()
        .filter(|c| !NOT_COPIED.iter().any(|t| c.starts_with(&format!("{t}."))))
        .collect()
}
