//! Several `switchyard` processes on one PostgreSQL database: one queue, no duplicates,
//! no lost events when an instance dies or its connections are killed.
//!
//! PostgreSQL only: each test skips (saying so) when TEST_DATABASE_URL is unset and fails
//! when it is set but unusable. Every instance gets its own `application_name`, so a test
//! can find and kill exactly that instance's connections.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgConnection;

use crate::helpers::*;
use crate::store::PgSchema;

/// The environment of instance `name` on `pg`; `extra` wins.
pub(crate) fn instance_env(pg: &PgSchema, name: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("DATABASE_URL".to_string(), pg.url_as(&app_name(pg, name))),
        ("DATABASE_POOL_SIZE".to_string(), "4".to_string()),
        ("SY_INSTANCE".to_string(), name.to_string()),
        // Handler children see only allowlisted variables; the test's commands need this one.
        ("COMMAND_ENV_PASSTHROUGH".to_string(), "SY_INSTANCE".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

pub(crate) fn app_name(pg: &PgSchema, name: &str) -> String {
    format!("{}_{name}", pg.name)
}

pub(crate) fn spawn(dir: &Path, role: &str, env: &[(String, String)]) -> App {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    App::spawn_in(dir, role, &env)
}

/// Maps every (unknown-provider) event to `mode`/`target` with the CLI, on the shared database.
pub(crate) fn map_unknown(dir: &Path, pg: &PgSchema, mode: &str, target: Option<&str>) {
    let url = pg.url_as(&app_name(pg, "cli"));
    let mut args = vec![
        "mapping",
        "set",
        "--provider",
        "unknown",
        "--action",
        "act",
        "--handler-mode",
        mode,
    ];
    if let Some(t) = target {
        args.extend(["--handler-target", t]);
    }
    let out = run_cli(dir, &args, &[("DATABASE_URL", url.as_str())]);
    assert!(out.status.success(), "mapping set failed: {}", stderr(&out));
}

/// POSTs one webhook with `X-Event-Id: id`; the status code and the reply (None when the
/// request itself failed).
pub(crate) async fn send(client: &reqwest::Client, base: &str, id: &str) -> (u16, Option<serde_json::Value>) {
    let resp = client
        .post(format!("{base}/webhook"))
        .header("content-type", "application/json")
        .header("x-event-id", id)
        .body(json!({"id_was": id}).to_string())
        .send()
        .await;
    match resp {
        Ok(r) => {
            let code = r.status().as_u16();
            (code, r.json().await.ok())
        }
        // The client's error (timeout, reset, refused…) stands in for the reply.
        Err(e) => (0, Some(serde_json::Value::String(format!("{e:?}")))),
    }
}

pub(crate) fn row_id(reply: &Option<serde_json::Value>) -> i64 {
    reply
        .as_ref()
        .and_then(|v| v["row_id"].as_i64())
        .expect("reply with a row_id")
}

pub(crate) async fn scalar(conn: &mut PgConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.expect(sql)
}

/// Waits until every row in `rows` is `done`; on timeout panics with the status counts and
/// the instances' logs.
pub(crate) async fn wait_done(pg: &PgSchema, rows: &[i64], within: Duration, apps: &[&App]) {
    let mut conn = pg.connect().await;
    let start = Instant::now();
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE id = ANY($1) AND status = 'done'")
            .bind(rows)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if done == rows.len() as i64 {
            return;
        }
        if start.elapsed() > within {
            let counts: Vec<(String, i64)> =
                sqlx::query_as("SELECT status, count(*) FROM events WHERE id = ANY($1) GROUP BY status")
                    .bind(rows)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            let logs: Vec<String> = apps.iter().map(|a| a.logs()).collect();
            panic!(
                "{done}/{} done after {within:?}: {counts:?}\nlogs:\n{}",
                rows.len(),
                logs.join("\n-----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_sent_to_two_instances_make_one_row_handled_once() {
    let Some(pg) = PgSchema::create("multi_instance::duplicates_sent_to_two_instances").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    map_unknown(dir.path(), &pg, "noop", None);
    let a = spawn(dir.path(), "serve", &instance_env(&pg, "a", &[]));
    let b = spawn(dir.path(), "serve", &instance_env(&pg, "b", &[]));
    let c = spawn(dir.path(), "worker", &instance_env(&pg, "c", &[]));

    let client = client();
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (client, base_a, base_b) = (client.clone(), a.base.clone(), b.base.clone());
        sends.spawn(async move {
            let id = format!("dup-{i}");
            let (ra, rb) = tokio::join!(send(&client, &base_a, &id), send(&client, &base_b, &id));
            (id, ra, rb)
        });
    }
    let mut rows = Vec::new();
    for (id, (code_a, reply_a), (code_b, reply_b)) in sends.join_all().await {
        assert_eq!((code_a, code_b), (200, 200), "{id}: {reply_a:?} {reply_b:?}");
        let row = row_id(&reply_a);
        assert_eq!(row, row_id(&reply_b), "{id}: both instances name the same row");
        let mut statuses = [reply_a.unwrap()["status"].clone(), reply_b.unwrap()["status"].clone()];
        statuses.sort_by_key(|s| s.to_string());
        assert_eq!(
            statuses,
            [json!("duplicate_ignored"), json!("queued")],
            "{id}: exactly one is new"
        );
        rows.push(row);
    }

    wait_done(&pg, &rows, Duration::from_secs(60), &[&a, &b, &c]).await;
    let mut conn = pg.connect().await;
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) FROM events").await,
        200,
        "one row per event"
    );
    assert_eq!(
        scalar(&mut conn, "SELECT count(DISTINCT (source, event_id)) FROM events").await,
        200
    );
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT count(*) FROM events WHERE status = 'done' AND attempt_count = 1"
        )
        .await,
        200,
        "each handled once"
    );
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) FROM action_runs WHERE status = 'done'").await,
        200,
        "one action run per event"
    );
    assert_eq!(
        scalar(&mut conn, "SELECT count(DISTINCT event_row_id) FROM action_runs").await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_s_claims_are_finished_by_the_others() {
    let Some(pg) = PgSchema::create("multi_instance::a_killed_instance").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Each run leaves a marker naming its instance and its event (one marker per event, however
    // often that instance starts it), then takes three seconds: long enough that the victim
    // cannot finish a run before the test kills it, even on a loaded machine.
    let script = r#"id=$(grep -o 'kill-[0-9]*' | head -n 1); touch "started.$SY_INSTANCE.$id"; sleep 3; printf '{"by":"%s"}' "$SY_INSTANCE""#;
    std::fs::write(
        dir.path().join("commands.json"),
        json!({"slow": ["sh", "-c", script]}).to_string(),
    )
    .unwrap();
    map_unknown(dir.path(), &pg, "command", Some("slow"));
    let lease = ("WORKER_LEASE_SECONDS", "1");
    let a = spawn(
        dir.path(),
        "serve",
        &instance_env(&pg, "a", &[lease, ("WORKER_CONCURRENCY", "2")]),
    );
    let b = spawn(
        dir.path(),
        "worker",
        &instance_env(&pg, "b", &[lease, ("WORKER_CONCURRENCY", "2")]),
    );
    let mut victim = spawn(
        dir.path(),
        "worker",
        &instance_env(&pg, "v", &[lease, ("WORKER_CONCURRENCY", "4")]),
    );

    let client = client();
    let mut rows = Vec::new();
    for i in 0..16 {
        let (code, reply) = send(&client, &a.base, &format!("kill-{i}")).await;
        assert_eq!(code, 200, "{reply:?}");
        rows.push(row_id(&reply));
    }

    // Kill the victim as soon as it runs a handler: it holds claims it never finishes.
    let started_by_victim = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("started.v."))
            })
            .count()
    };
    let start = Instant::now();
    while started_by_victim() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the victim never ran a handler:\n{}",
            victim.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    victim.child.kill().unwrap(); // SIGKILL
    victim.child.wait().unwrap();
    let held = started_by_victim();

    wait_done(&pg, &rows, Duration::from_secs(60), &[&a, &b]).await;
    let mut conn = pg.connect().await;
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) FROM events WHERE status = 'done'").await,
        16,
        "nothing lost"
    );
    let reclaimed = scalar(&mut conn, "SELECT count(*) FROM events WHERE attempt_count >= 2").await;
    eprintln!("the killed instance had started {held} events; {reclaimed} events needed a second attempt");
    assert!(
        reclaimed as usize >= held,
        "{held} events were cut short by the kill but only {reclaimed} events were retried"
    );
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT count(*) FROM events WHERE result_json::jsonb -> 'result' ->> 'by' = 'v'"
        )
        .await,
        0,
        "the killed instance finished nothing"
    );
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) FROM action_runs WHERE status = 'done'").await,
        16
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_do_not_stop_ingest_processing_or_wake_ups() {
    let Some(pg) = PgSchema::create("multi_instance::killed_connections").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    map_unknown(dir.path(), &pg, "noop", None);
    // Ingest only on A, processing only on B, whose poll is far longer than the test waits:
    // B can only learn about A's events promptly through LISTEN/NOTIFY.
    let mut a = spawn(dir.path(), "http", &instance_env(&pg, "a", &[]));
    let mut b = spawn(
        dir.path(),
        "worker",
        &instance_env(
            &pg,
            "b",
            &[("WORKER_POLL_INTERVAL", "30"), ("WORKER_LEASE_SECONDS", "2")],
        ),
    );
    let (app_a, app_b) = (app_name(&pg, "a"), app_name(&pg, "b"));
    let client = client();

    let mut rows = Vec::new();
    for i in 0..10 {
        let (code, reply) = send(&client, &a.base, &format!("warm-{i}")).await;
        assert_eq!(code, 200, "{reply:?}");
        rows.push(row_id(&reply));
    }
    wait_done(&pg, &rows, Duration::from_secs(10), &[&a, &b]).await;
    pg.wait_for_listener(&app_b, Duration::from_secs(10)).await;

    // Mid-run: kill every connection of both instances twice while events stream in.
    let sender = {
        let (client, base) = (client.clone(), a.base.clone());
        tokio::spawn(async move {
            let (mut acked, mut failed) = (Vec::new(), Vec::new());
            for i in 0..60 {
                match send(&client, &base, &format!("stream-{i}")).await {
                    (200, reply) => acked.push(row_id(&reply)),
                    (code, reply) => failed.push((code, reply)),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (acked, failed)
        })
    };
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (killed_a, killed_b) = (pg.terminate(&app_a).await, pg.terminate(&app_b).await);
        eprintln!("killed {killed_a} connections of A and {killed_b} of B");
        assert!(killed_a >= 1 && killed_b >= 1, "nothing to kill");
    }
    let (acked, failed) = sender.await.unwrap();
    eprintln!("{} of 60 streamed events acknowledged", acked.len());
    // A request whose COMMIT was cut off cannot know whether it committed and says so (503);
    // everything else is retried on a fresh connection.
    assert!(failed.len() <= 2, "{} of 60 requests failed: {failed:?}", failed.len());
    wait_done(&pg, &acked, Duration::from_secs(20), &[&a, &b]).await;

    // The LISTEN connection comes back by itself; new events wake B at once again.
    pg.wait_for_listener(&app_b, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent_at = Instant::now();
    let mut fresh = Vec::new();
    for i in 0..10 {
        let (code, reply) = send(&client, &a.base, &format!("after-{i}")).await;
        assert_eq!(code, 200, "{reply:?}");
        fresh.push(row_id(&reply));
    }
    wait_done(&pg, &fresh, Duration::from_secs(5), &[&a, &b]).await;
    assert!(
        sent_at.elapsed() < Duration::from_secs(5),
        "B was not woken: it took {:?}",
        sent_at.elapsed()
    );
    assert!(
        a.child.try_wait().unwrap().is_none() && b.child.try_wait().unwrap().is_none(),
        "no restart"
    );
}

/// Issue 17's scenario: three `serve` instances on one database, every event sent to two
/// of them, a fast command handler that appends the event's id to a file, 5 s leases.
/// Every event is handled exactly once: one line per event in the file, one attempt and
/// one action run per row. (Finishes and lease renewals of the same rows used to deadlock
/// here; the dropped outcomes made events run twice.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_handle_every_event_sent_twice_exactly_once() {
    const EVENTS: usize = 3000;
    let Some(pg) = PgSchema::create("multi_instance::three_instances").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The handler's input (a JSON document naming the event), appended to the file as it
    // reads it: one read and one write of a few hundred bytes, so the documents of
    // concurrent runs do not interleave (O_APPEND).
    std::fs::write(
        dir.path().join("commands.json"),
        json!({"append": ["tee", "-a", "handled.log"]}).to_string(),
    )
    .unwrap();
    map_unknown(dir.path(), &pg, "command", Some("append"));
    let settings = [("WORKER_LEASE_SECONDS", "5"), ("WORKER_CONCURRENCY", "8")];
    let apps: Vec<App> = ["a", "b", "c"]
        .iter()
        .map(|name| spawn(dir.path(), "serve", &instance_env(&pg, name, &settings)))
        .collect();
    let bases: Vec<String> = apps.iter().map(|a| a.base.clone()).collect();

    // 32 senders; event i goes to instances i % 3 and (i + 1) % 3 at the same time.
    let started = Instant::now();
    let client = client();
    let mut senders = tokio::task::JoinSet::new();
    for first in 0..32 {
        let (client, bases) = (client.clone(), bases.clone());
        senders.spawn(async move {
            let (mut sent, mut refused) = (Vec::new(), Vec::new());
            for i in (first..EVENTS).step_by(32) {
                let id = format!("tri-{i}");
                let (one, two) = (&bases[i % 3], &bases[(i + 1) % 3]);
                let ((code_1, reply_1), (code_2, reply_2)) =
                    tokio::join!(send(&client, one, &id), send(&client, two, &id));
                if (code_1, code_2) != (200, 200) {
                    refused.push(format!("{id}: {code_1} {reply_1:?}, {code_2} {reply_2:?}"));
                    continue;
                }
                let row = row_id(&reply_1);
                assert_eq!(row, row_id(&reply_2), "{id}: both instances name the same row");
                sent.push(row);
            }
            (sent, refused)
        });
    }
    let (mut rows, mut refused) = (Vec::new(), Vec::new());
    for (sent, failed) in senders.join_all().await {
        rows.extend(sent);
        refused.extend(failed);
    }
    if !refused.is_empty() {
        let logs: Vec<String> = apps.iter().map(App::logs).collect();
        panic!(
            "{} events refused: {refused:?}\nlogs:\n{}",
            refused.len(),
            logs.join("\n-----\n")
        );
    }
    assert_eq!(rows.len(), EVENTS);
    eprintln!("sent after {:?}", started.elapsed());

    let app_refs: Vec<&App> = apps.iter().collect();
    wait_done(&pg, &rows, Duration::from_secs(120), &app_refs).await;
    eprintln!("done after {:?}", started.elapsed());
    let mut conn = pg.connect().await;
    assert_eq!(scalar(&mut conn, "SELECT count(*) FROM events").await, EVENTS as i64);
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) FROM events WHERE status = 'done'").await,
        EVENTS as i64,
        "every event done"
    );
    // A claim may be taken over when its lease runs out on a starved machine; what must hold
    // is that no handler ran twice (the log below), not that no claim expired.
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) FROM action_runs WHERE status = 'done'").await,
        EVENTS as i64,
        "one action run per event"
    );
    // The documents follow each other without separators.
    let log = std::fs::read_to_string(dir.path().join("handled.log")).unwrap();
    let seen: Vec<String> = serde_json::Deserializer::from_str(&log)
        .into_iter::<serde_json::Value>()
        .map(|doc| {
            let doc = doc.expect("one whole JSON document per handler run");
            doc["payload"]["json"]["id_was"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| panic!("no id in {doc}"))
        })
        .collect();
    let distinct: std::collections::HashSet<&str> = seen.iter().map(String::as_str).collect();
    let expected: std::collections::HashSet<String> = (0..EVENTS).map(|i| format!("tri-{i}")).collect();
    assert_eq!(seen.len(), EVENTS, "one handler run per event");
    assert!(
        distinct.len() == EVENTS && distinct.iter().all(|id| expected.contains(*id)),
        "the handler saw each event's id once"
    );
}
