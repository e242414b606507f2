//! The built-in scheduler (CONTRACT §9): the task on a fake clock against both backends
//! (DST, downtime, disabling), then real `serve` processes sharing one database.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use switchyard::domain::{EventStatus, Source};
use switchyard::scheduler::clock::FakeClock;
use switchyard::scheduler::{Options, Scheduler};
use switchyard::settings::Settings;
use switchyard::store::{Db, Missed, RoutingChanges, Schedule};
use tokio::sync::watch;

use crate::helpers::*;
use crate::store::{PgSchema, TestStore};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn schedule(job: &str, cron: &str, tz: &str, missed: Missed) -> Schedule {
    Schedule {
        job: job.into(),
        cron: cron.into(),
        timezone: tz.into(),
        payload_json: r#"{"extra":1}"#.into(),
        enabled: true,
        missed,
    }
}

async fn put(db: &Db, schedules: Vec<Schedule>) {
    db.apply(RoutingChanges {
        schedules,
        ..Default::default()
    })
    .await
    .unwrap();
}

/// Makes `job` active since `at` (RFC 3339), as if it had been added or enabled at that
/// time on the fake clock (the store stamps the real time).
async fn active_since(t: &TestStore, job: &str, at: &str) {
    let sql = format!("UPDATE schedules SET active_since = '{at}' WHERE job = '{job}'");
    t.exec(&sql, &sql).await;
}

/// The scheduler task of one "process" on a fake clock.
struct Running {
    clock: Arc<FakeClock>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts with a long recheck: only ticks and notifications wake the task.
    fn start(db: &Db, at: &str) -> Running {
        let options = Options {
            recheck: Duration::from_secs(3600),
            ..Options::default()
        };
        Running::start_with(db, at, options)
    }

    fn start_with(db: &Db, at: &str, options: Options) -> Running {
        let clock = Arc::new(FakeClock::new(utc(at)));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(Scheduler::new(db.clone(), clock.clone(), options).run(stop_rx));
        Running { clock, stop, task }
    }

    /// Waits until the task has done all it could at the clock's time and sleeps;
    /// returns what it sleeps until.
    async fn parked(&self) -> DateTime<Utc> {
        tokio::time::timeout(Duration::from_secs(30), self.clock.asleep())
            .await
            .expect("the scheduler did not go back to sleep")
    }

    /// Moves the clock from wake-up to wake-up until `until`, the task idle at the end.
    async fn run_until(&self, until: &str) {
        let until = utc(until);
        loop {
            let at = self.parked().await;
            if at > until {
                self.clock.set(until);
                return;
            }
            self.clock.set(at);
        }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        self.task.await.unwrap();
    }
}

/// Every event with its payload, newest first.
async fn all_events(db: &Db) -> Vec<switchyard::store::EventRow> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let filter = switchyard::store::EventFilter::default();
        let page = db.list_page(filter, cursor, 500).await.unwrap();
        for e in &page.events {
            out.push(db.event(e.id).await.unwrap().unwrap());
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// The `scheduled_at` of every queued tick of `job`, oldest first.
async fn ticks(db: &Db, job: &str) -> Vec<String> {
    let mut out: Vec<String> = all_events(db)
        .await
        .into_iter()
        .filter(|e| e.source == Some(Source::Cron))
        .filter_map(|e| {
            let p: serde_json::Value = serde_json::from_str(e.payload_json.as_deref()?).ok()?;
            (p["job"] == job).then(|| p["scheduled_at"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    out.sort();
    out
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::store::TestStore::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let name = concat!("scheduler::", stringify!($name));
                if let Some(t) = crate::store::TestStore::postgres(name).await {
                    super::$name(t).await;
                }
            }
        }
    )*};
}

both_backends!(
    schedules_are_stored_and_their_version_moves_only_on_definitions,
    dst_jumps_and_repeats_fire_once,
    downtime_enqueues_the_latest_tick_or_none,
    a_disabled_schedule_stops_before_its_next_tick,
    a_first_tick_that_falls_in_a_restart_is_missed_not_lost,
    changes_by_another_process_take_effect_within_a_second,
);

async fn schedules_are_stored_and_their_version_moves_only_on_definitions(t: TestStore) {
    use switchyard::store::TickRecord;
    let db = &t.db;
    let v0 = db.schedules_version().await.unwrap();
    put(
        db,
        vec![
            schedule("b", "@hourly", "UTC", Missed::Skip),
            schedule("a", "* * * * *", "Asia/Kolkata", Missed::Latest),
        ],
    )
    .await;
    let v1 = db.schedules_version().await.unwrap();
    assert_ne!(v0, v1);
    let rows = db.schedules().await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].schedule,
        schedule("a", "* * * * *", "Asia/Kolkata", Missed::Latest)
    );
    assert_eq!(rows[1].schedule.missed, Missed::Skip);
    assert_eq!(rows[0].last_scheduled_at, None);

    // Ticks move last_scheduled_at up only, and are not definition changes.
    let tick = |job: &str, at: &str| TickRecord {
        job: job.into(),
        at: at.into(),
    };
    db.record_ticks(vec![
        tick("a", "2026-05-04T10:01:00+00:00"),
        tick("a", "2026-05-04T10:00:00+00:00"),
    ])
    .await
    .unwrap();
    db.record_ticks(vec![
        tick("a", "2026-05-04T09:59:00+00:00"),
        tick("nope", "2026-05-04T09:59:00+00:00"),
    ])
    .await
    .unwrap();
    let rows = db.schedules().await.unwrap();
    assert_eq!(rows[0].last_scheduled_at.as_deref(), Some("2026-05-04T10:01:00+00:00"));
    assert_eq!(db.schedules_version().await.unwrap(), v1);

    // Disabling is an upsert that keeps the row (and its history).
    let mut off = schedule("a", "* * * * *", "Asia/Kolkata", Missed::Latest);
    off.enabled = false;
    put(db, vec![off]).await;
    assert_ne!(db.schedules_version().await.unwrap(), v1);
    let rows = db.schedules().await.unwrap();
    assert!(!rows[0].schedule.enabled);
    assert_eq!(rows[0].last_scheduled_at.as_deref(), Some("2026-05-04T10:01:00+00:00"));

    // A row edited by hand into an unknown policy is an error naming it, not a default.
    let sql = "UPDATE schedules SET missed = 'sometimes' WHERE job = 'b'";
    t.exec(sql, sql).await;
    let err = db.schedules().await.unwrap_err().to_string();
    assert!(err.contains("schedules row b") && err.contains("sometimes"), "{err}");
}

async fn dst_jumps_and_repeats_fire_once(t: TestStore) {
    // skip: the October run starts months after March's last tick (downtime is tested below).
    put(
        &t.db,
        vec![schedule("paris", "0 2 * * *", "Europe/Paris", Missed::Skip)],
    )
    .await;
    let run = Running::start(&t.db, "2026-03-27T12:00:00Z");
    run.run_until("2026-03-31T12:00:00Z").await;
    run.stop().await;
    // 02:00 does not exist on the 29th: it fires once, at 03:00 CEST (01:00 UTC).
    assert_eq!(
        ticks(&t.db, "paris").await,
        [
            "2026-03-28T01:00:00+00:00",
            "2026-03-29T01:00:00+00:00",
            "2026-03-30T00:00:00+00:00",
            "2026-03-31T00:00:00+00:00"
        ]
    );

    let run = Running::start(&t.db, "2026-10-24T12:00:00Z");
    run.run_until("2026-10-26T12:00:00Z").await;
    run.stop().await;
    // 02:00 happens twice on the 25th: once at 02:00 CEST (00:00 UTC).
    let october: Vec<String> = ticks(&t.db, "paris").await.into_iter().skip(4).collect();
    assert_eq!(october, ["2026-10-25T00:00:00+00:00", "2026-10-26T01:00:00+00:00"]);

    // The tick's payload is the cron payload plus the schedule's.
    let events = all_events(&t.db).await;
    let payload: serde_json::Value = serde_json::from_str(events[0].payload_json.as_deref().unwrap()).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({"job": "paris", "source_hint": "cron",
                           "scheduled_at": "2026-10-26T01:00:00+00:00", "extra": 1})
    );
    assert_eq!(
        events[0].event_id.as_deref(),
        Some("cron:paris:2026-10-26T01:00:00+00:00")
    );
}

async fn downtime_enqueues_the_latest_tick_or_none(t: TestStore) {
    put(
        &t.db,
        vec![
            schedule("latest", "* * * * *", "UTC", Missed::Latest),
            schedule("skip", "* * * * *", "UTC", Missed::Skip),
        ],
    )
    .await;
    active_since(&t, "latest", "2026-05-04T09:58:30Z").await;
    active_since(&t, "skip", "2026-05-04T09:58:30Z").await;
    let run = Running::start(&t.db, "2026-05-04T09:58:30Z");
    run.run_until("2026-05-04T10:00:30Z").await;
    run.stop().await;
    let before = ["2026-05-04T09:59:00+00:00", "2026-05-04T10:00:00+00:00"];
    assert_eq!(ticks(&t.db, "latest").await, before);
    assert_eq!(ticks(&t.db, "skip").await, before);

    // Down from 10:00:30 to 10:05:10.
    let run = Running::start(&t.db, "2026-05-04T10:05:10Z");
    // Right after start-up: latest caught up with 10:05 only, skip with nothing; both
    // sleep until the next minute.
    assert_eq!(run.parked().await, utc("2026-05-04T10:06:00Z"));
    assert_eq!(ticks(&t.db, "latest").await[2..], ["2026-05-04T10:05:00+00:00"]);
    assert_eq!(ticks(&t.db, "skip").await.len(), 2);
    // The next tick fires on time (the clock stands exactly at it).
    run.clock.set(utc("2026-05-04T10:06:00Z"));
    assert_eq!(run.parked().await, utc("2026-05-04T10:07:00Z"));
    run.stop().await;
    assert_eq!(ticks(&t.db, "latest").await[3..], ["2026-05-04T10:06:00+00:00"]);
    assert_eq!(ticks(&t.db, "skip").await[2..], ["2026-05-04T10:06:00+00:00"]);
}

async fn a_disabled_schedule_stops_before_its_next_tick(t: TestStore) {
    put(&t.db, vec![schedule("m", "* * * * *", "UTC", Missed::Latest)]).await;
    active_since(&t, "m", "2026-05-04T10:00:30Z").await;
    // The production recheck (1 s): how a schedule enabled by another process on SQLite
    // is found.
    let run = Running::start_with(&t.db, "2026-05-04T10:00:30Z", Options::default());
    run.run_until("2026-05-04T10:02:30Z").await;
    assert_eq!(ticks(&t.db, "m").await.len(), 2);
    // Another instance (a second handle on the database) disables it; no notification is
    // needed on SQLite: the version is checked when the next tick is due.
    let other = t.open_again().await;
    let mut off = schedule("m", "* * * * *", "UTC", Missed::Latest);
    off.enabled = false;
    put(&other, vec![off]).await;
    run.run_until("2026-05-04T10:10:00Z").await;
    assert_eq!(ticks(&t.db, "m").await.len(), 2, "no tick after it was disabled");
    // Enabled again: ticks resume from now, without catching up.
    put(&other, vec![schedule("m", "* * * * *", "UTC", Missed::Latest)]).await;
    active_since(&t, "m", "2026-05-04T10:10:00Z").await;
    run.run_until("2026-05-04T10:11:30Z").await;
    run.stop().await;
    assert_eq!(ticks(&t.db, "m").await[2..], ["2026-05-04T10:11:00+00:00"]);
}

async fn a_first_tick_that_falls_in_a_restart_is_missed_not_lost(t: TestStore) {
    // Added at 08:59:50; a process runs three seconds and stops before the first tick.
    put(
        &t.db,
        vec![
            schedule("latest", "* * * * *", "UTC", Missed::Latest),
            schedule("skip", "* * * * *", "UTC", Missed::Skip),
            schedule("daily", "0 9 * * *", "UTC", Missed::Latest),
        ],
    )
    .await;
    for job in ["latest", "skip", "daily"] {
        active_since(&t, job, "2026-05-04T08:59:50Z").await;
    }
    let run = Running::start(&t.db, "2026-05-04T08:59:50Z");
    run.run_until("2026-05-04T08:59:53Z").await;
    run.stop().await;
    // Added while no process runs, after 09:00: its first tick is tomorrow's.
    put(&t.db, vec![schedule("later", "0 9 * * *", "UTC", Missed::Latest)]).await;
    active_since(&t, "later", "2026-05-04T09:00:20Z").await;
    assert!(all_events(&t.db).await.is_empty());

    // Back at 09:00:30: the 09:00 ticks fell while no process ran; `latest` queues them.
    let run = Running::start(&t.db, "2026-05-04T09:00:30Z");
    assert_eq!(run.parked().await, utc("2026-05-04T09:01:00Z"));
    run.stop().await;
    assert_eq!(ticks(&t.db, "latest").await, ["2026-05-04T09:00:00+00:00"]);
    assert_eq!(ticks(&t.db, "daily").await, ["2026-05-04T09:00:00+00:00"]);
    assert!(ticks(&t.db, "skip").await.is_empty());
    assert!(ticks(&t.db, "later").await.is_empty());
    let rows = t.db.schedules().await.unwrap();
    let since = |job: &str| {
        rows.iter()
            .find(|r| r.schedule.job == job)
            .unwrap()
            .active_since
            .clone()
    };
    assert_eq!(since("daily").as_deref(), Some("2026-05-04T08:59:50Z"));

    // Upserting the same definition (every start-up with APP_CONFIG_PATH does) or a new
    // payload keeps active_since; enabling again or a new cron moves it.
    let mut daily = schedule("daily", "0 9 * * *", "UTC", Missed::Latest);
    put(&t.db, vec![daily.clone()]).await;
    daily.payload_json = r#"{"extra":2}"#.into();
    put(&t.db, vec![daily.clone()]).await;
    let rows = t.db.schedules().await.unwrap();
    assert_eq!(
        rows.iter()
            .find(|r| r.schedule.job == "daily")
            .unwrap()
            .active_since
            .as_deref(),
        Some("2026-05-04T08:59:50Z")
    );
    daily.cron = "0 10 * * *".into();
    let mut skip = schedule("skip", "* * * * *", "UTC", Missed::Skip);
    skip.enabled = false;
    put(&t.db, vec![daily, skip.clone()]).await;
    skip.enabled = true;
    put(&t.db, vec![skip]).await;
    for r in t.db.schedules().await.unwrap() {
        let moved = r.active_since.as_deref() != Some("2026-05-04T08:59:50Z");
        assert_eq!(moved, r.schedule.job != "latest", "{r:?}");
    }
}

async fn changes_by_another_process_take_effect_within_a_second(t: TestStore) {
    // The production recheck, no schedules yet.
    let run = Running::start_with(&t.db, "2026-05-04T10:00:00.200Z", Options::default());
    assert!(run.parked().await <= utc("2026-05-04T10:00:01.200Z"));
    let other = t.open_again().await;
    // Each change is made while the fake clock stands at it, and stamped with that time.
    let change = |s: Schedule, at: &'static str| {
        let (other, t, run) = (&other, &t, &run);
        async move {
            let job = s.job.clone();
            put(other, vec![s]).await;
            active_since(t, &job, at).await;
            run.clock.set(utc(at));
        }
    };
    let every_second = schedule("sec", "* * * * * *", "UTC", Missed::Latest);

    // Added at 10:00:00.5: the task has it by 10:00:01.2 and queues the 10:00:01 tick.
    run.parked().await;
    change(every_second.clone(), "2026-05-04T10:00:00.500Z").await;
    run.run_until("2026-05-04T10:00:01.500Z").await;
    assert_eq!(ticks(&t.db, "sec").await, ["2026-05-04T10:00:01+00:00"]);

    // Disabled at 10:00:01.5: the 10:00:02 tick (the next wake-up) never fires.
    let mut off = every_second.clone();
    off.enabled = false;
    change(off, "2026-05-04T10:00:01.500Z").await;
    run.run_until("2026-05-04T10:00:05Z").await;
    assert_eq!(ticks(&t.db, "sec").await.len(), 1);

    // Enabled again at 10:00:05: the 10:00:06 tick fires.
    change(every_second.clone(), "2026-05-04T10:00:05Z").await;
    run.run_until("2026-05-04T10:00:06.100Z").await;
    assert_eq!(ticks(&t.db, "sec").await[1..], ["2026-05-04T10:00:06+00:00"]);

    // Changed at 10:00:06.5 to second 30 of each minute: nothing between.
    let mut thirty = every_second;
    thirty.cron = "30 * * * * *".into();
    change(thirty, "2026-05-04T10:00:06.500Z").await;
    run.run_until("2026-05-04T10:00:31Z").await;
    run.stop().await;
    assert_eq!(
        ticks(&t.db, "sec").await[1..],
        ["2026-05-04T10:00:06+00:00", "2026-05-04T10:00:30+00:00"]
    );
}

// --- real processes -------------------------------------------------------------------

const EVERY_SECOND: &str = r#"{"schedules": [{"job": "sec", "cron": "*/1 * * * * *"}]}"#;
const DISABLED: &str = r#"{"schedules": [{"job": "sec", "cron": "*/1 * * * * *", "enabled": false}]}"#;

/// A store handle for checks, on the database the processes use.
async fn open(database_url: Option<&str>, dir: &Path) -> Db {
    let mut settings = Settings::defaults();
    settings.database_url = database_url.map(str::to_string);
    settings.db_path = dir.join("data/events.sqlite3");
    switchyard::store::open(&settings.store_config()).await.unwrap()
}

/// `n` serve processes tick every second for 10 s on one database; then `mapping
/// apply-config` disables the schedule while they run.
async fn every_second_on_one_database(n: usize, database_url: Option<&str>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("on.json"), EVERY_SECOND).unwrap();
    std::fs::write(dir.join("off.json"), DISABLED).unwrap();
    let mut env = vec![
        ("APP_CONFIG_PATH", "on.json"),
        ("RUST_LOG", "info,switchyard::scheduler=debug"),
    ];
    if let Some(url) = database_url {
        env.push(("DATABASE_URL", url));
    }
    let apps: Vec<App> = (0..n).map(|_| App::spawn_in(dir, "serve", &env)).collect();
    tokio::time::sleep(Duration::from_secs(10)).await;

    let cli_env: Vec<(&str, &str)> = database_url.map(|u| ("DATABASE_URL", u)).into_iter().collect();
    let out = run_cli(dir, &["mapping", "apply-config", "--config", "off.json"], &cli_env);
    assert!(out.status.success(), "apply-config failed: {}", stderr(&out));
    let disabled_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let db = open(database_url, dir).await;
    let ticks = ticks(&db, "sec").await;
    let secs: Vec<i64> = ticks.iter().map(|t| utc(t).timestamp()).collect();
    let logs = || apps.iter().map(App::logs).collect::<Vec<_>>().join("\n---\n");
    assert!(secs.len() >= 8, "ticks: {ticks:?}\n{}", logs());
    // One event per second-tick (the unique key holds by construction; the ids are the
    // ticks), none missing between the first and the last.
    let distinct: BTreeSet<i64> = secs.iter().copied().collect();
    assert_eq!(distinct.len(), secs.len());
    assert_eq!(
        secs.last().unwrap() - secs[0] + 1,
        secs.len() as i64,
        "a second is missing: {ticks:?}"
    );
    // Disabled while running: no tick more than one tick after the command returned.
    assert!(
        *secs.last().unwrap() <= disabled_at.timestamp() + 1,
        "ticked after being disabled at {disabled_at}: {ticks:?}"
    );
    // Several instances queued the same ticks; each was handled exactly once.
    let start = Instant::now();
    loop {
        let events = all_events(&db).await;
        let cron: Vec<_> = events.iter().filter(|e| e.source == Some(Source::Cron)).collect();
        if cron.iter().all(|e| e.status == Some(EventStatus::Done)) {
            assert!(cron.iter().all(|e| e.attempt_count == 1), "an event ran twice");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "cron events not done\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let duplicates = logs().matches("already queued by another instance").count();
    assert!(duplicates > 0, "the instances did not compete for ticks");
    eprintln!(
        "{n} instances: {} ticks in a row, each queued once and done once; {duplicates} duplicate attempts refused",
        secs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_one_sqlite_file_tick_once_per_second() {
    every_second_on_one_database(2, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_serve_processes_on_one_postgres_database_tick_once_per_second() {
    let Some(pg) = PgSchema::create("scheduler::three_serve_processes").await else {
        return;
    };
    every_second_on_one_database(3, Some(&pg.url)).await;
}

#[test]
fn a_bad_schedule_stops_start_up_naming_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"{"job": "a", "cron": "0 0 32 * *"}"#,
            "(job 'a') invalid cron expression",
        ),
        (
            r#"{"job": "a", "cron": "@daily", "timezone": "Europe/Nowhere"}"#,
            "Europe/Nowhere",
        ),
        (r#"{"job": "ok", "cron": "@daily"}"#, "duplicate job 'ok'"),
    ];
    for (entry, needle) in cases {
        let text = format!(r#"{{"schedules": [{{"job": "ok", "cron": "@hourly"}}, {entry}]}}"#);
        std::fs::write(tmp.path().join("bad.json"), text).unwrap();
        let out = run_cli(tmp.path(), &["serve"], &[("APP_CONFIG_PATH", "bad.json")]);
        assert!(!out.status.success(), "serve started with {entry}");
        let err = stderr(&out);
        assert!(err.contains("schedules[1]") && err.contains(needle), "{err}");
    }
}

#[test]
fn cron_list_prints_the_next_three_runs_with_their_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_db(dir);
    let out = run_cli(dir, &["cron", "list"], &[]);
    assert_eq!(stdout(&out).trim(), "no schedules");
    let config = r#"{"schedules": [
        {"job": "kolkata", "cron": "0 9 * * *", "timezone": "Asia/Kolkata", "missed": "skip"},
        {"job": "utc", "cron": "@hourly", "enabled": false}]}"#;
    std::fs::write(dir.join("c.json"), config).unwrap();
    let out = run_cli(dir, &["mapping", "apply-config", "--config", "c.json"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("0 mappings, 0 rules and 2 schedules"),
        "{}",
        stdout(&out)
    );

    let out = run_cli(dir, &["cron", "list"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("kolkata\t0 9 * * *\tAsia/Kolkata\tenabled\tmissed=skip\tnext: "));
    assert!(lines[1].starts_with("utc\t@hourly\tUTC\tdisabled\tmissed=latest\tnext: "));
    let runs = |line: &str| -> Vec<DateTime<chrono::FixedOffset>> {
        let next = line.split("next: ").nth(1).unwrap();
        next.split(' ')
            .map(|t| DateTime::parse_from_rfc3339(t).unwrap())
            .collect()
    };
    let kolkata = runs(lines[0]);
    assert_eq!(kolkata.len(), 3);
    for (i, t) in kolkata.iter().enumerate() {
        assert_eq!(t.offset().local_minus_utc(), 5 * 3600 + 1800);
        assert_eq!(t.format("%H:%M:%S").to_string(), "09:00:00");
        if i > 0 {
            assert_eq!(*t - kolkata[i - 1], chrono::Duration::days(1));
        }
    }
    assert!(lines[0].contains("+05:30"));
    let hourly = runs(lines[1]);
    assert_eq!(hourly.len(), 3);
    assert!(hourly.iter().all(|t| t.offset().local_minus_utc() == 0));
    assert!(lines[1].contains("+00:00"));
}

/// The issue 30 case in real time: a schedule applied while no process runs, its first
/// tick passing before `serve` starts, is queued at start-up (`missed: latest`).
async fn first_tick_during_downtime_is_queued_at_start_up(database_url: Option<&str>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // A tick five seconds from now, then once a minute.
    let tick = Utc::now().with_nanosecond(0).unwrap() + chrono::Duration::seconds(5);
    let config = format!(
        r#"{{"schedules": [{{"job": "first", "cron": "{} * * * * *"}}]}}"#,
        tick.second()
    );
    std::fs::write(dir.join("c.json"), config).unwrap();
    let env: Vec<(&str, &str)> = database_url.map(|u| ("DATABASE_URL", u)).into_iter().collect();
    let out = run_cli(
        dir,
        &["mapping", "apply-config", "--create-db", "--config", "c.json"],
        &env,
    );
    assert!(out.status.success(), "apply-config failed: {}", stderr(&out));
    assert!(Utc::now() < tick, "apply-config took more than 5 s");
    while Utc::now() < tick + chrono::Duration::milliseconds(1500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let app = App::spawn_in(dir, "serve", &env);
    // Only the missed tick has this id (the next one is a minute later).
    let id = format!("cron:first:{}", format_tick(tick));
    let db = open(database_url, dir).await;
    let start = Instant::now();
    while !all_events(&db)
        .await
        .iter()
        .any(|e| e.event_id.as_deref() == Some(id.as_str()))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{id} was not queued at start-up\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn format_tick(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_tick_during_downtime_is_queued_at_start_up_on_sqlite() {
    first_tick_during_downtime_is_queued_at_start_up(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_tick_during_downtime_is_queued_at_start_up_on_postgres() {
    let Some(pg) = PgSchema::create("scheduler::first_tick_during_downtime").await else {
        return;
    };
    first_tick_during_downtime_is_queued_at_start_up(Some(&pg.url)).await;
}

/// The issue 30 case in real time: a schedule added by `mapping apply-config` reaches two
/// running `serve` processes within a second (each logs it loaded; 2 s of slack for a
/// loaded machine, against the 10 s it used to take on SQLite).
async fn a_new_schedule_reaches_every_process(database_url: Option<&str>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("on.json"), EVERY_SECOND).unwrap();
    let mut env = vec![("RUST_LOG", "info")];
    if let Some(url) = database_url {
        env.push(("DATABASE_URL", url));
    }
    let apps: Vec<App> = (0..2).map(|_| App::spawn_in(dir, "serve", &env)).collect();
    // Both schedulers have read the (empty) schedules and sleep.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cli_env: Vec<(&str, &str)> = database_url.map(|u| ("DATABASE_URL", u)).into_iter().collect();
    let out = run_cli(dir, &["mapping", "apply-config", "--config", "on.json"], &cli_env);
    assert!(out.status.success(), "apply-config failed: {}", stderr(&out));
    let applied = Instant::now();
    let loaded = |app: &App| {
        app.logs()
            .lines()
            .any(|l| l.contains("schedule loaded") && l.contains("sec"))
    };
    while !apps.iter().all(loaded) {
        assert!(
            applied.elapsed() < Duration::from_secs(3),
            "not every process loaded the schedule within 3 s:\n{}",
            apps.iter().map(App::logs).collect::<Vec<_>>().join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "both processes loaded the new schedule {:?} after apply-config returned",
        applied.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_schedule_reaches_every_process_within_a_second_on_sqlite() {
    a_new_schedule_reaches_every_process(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_schedule_reaches_every_process_within_a_second_on_postgres() {
    let Some(pg) = PgSchema::create("scheduler::a_new_schedule_reaches_every_process").await else {
        return;
    };
    a_new_schedule_reaches_every_process(Some(&pg.url)).await;
}
