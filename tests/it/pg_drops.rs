//! Dropped PostgreSQL connections (CONTRACT §15): a connection the server kills costs at
//! most a retry — no event lost, none handled twice, no process exits — and `/readyz`
//! follows whether the database can be reached.
//!
//! PostgreSQL only (skipped, saying so, without TEST_DATABASE_URL), over TLS like the rest
//! of the suite. Only this test's connections are killed: each instance has its own
//! `application_name`, and other tests share the server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::*;
use crate::multi_instance::{app_name, instance_env, map_unknown, row_id, scalar, send, spawn, wait_done};
use crate::store::PgSchema;

/// Sends event `id` to `base` until it is acknowledged (a 503 or a cut connection is the
/// sender's cue to retry, as a webhook provider does); the row id.
async fn send_until_acked(client: &reqwest::Client, base: &str, id: &str) -> i64 {
    let start = Instant::now();
    loop {
        match send(client, base, id).await {
            (200, reply) => return row_id(&reply),
            (code, reply) => assert!(
                start.elapsed() < Duration::from_secs(60),
                "{id} not acknowledged within 60 s: {code} {reply:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Terminates every backend whose `application_name` is one of `names`, every second for
/// `window`; the number of connections killed.
async fn kill_every_second(mut conn: sqlx::PgConnection, names: Vec<String>, window: Duration) -> i64 {
    let start = Instant::now();
    let mut killed = 0;
    while start.elapsed() < window {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = ANY($1)",
        )
        .bind(&names)
        .fetch_one(&mut conn)
        .await
        .expect("pg_terminate_backend");
        killed += n;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    killed
}

/// Three `serve` instances over TLS; every connection they hold is terminated each second
/// for 20 s while 2,000 events, each sent to two instances, drain through a command handler
/// that appends the event to a file. Every event ends `done`, its handler ran exactly once
/// (the file), and every process is still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_every_second_lose_nothing_and_run_nothing_twice() {
    const EVENTS: usize = 2000;
    const SENDERS: usize = 10;
    let Some(pg) = PgSchema::create("pg_drops::connections_killed_every_second").await else {
        return;
    };
    assert!(pg.url.contains("sslmode=require"), "over TLS: {}", pg.url);
    let dir = tempfile::tempdir().unwrap();
    // One read and one write of a few hundred bytes per run (O_APPEND): documents of
    // concurrent runs do not interleave.
    std::fs::write(
        dir.path().join("commands.json"),
        json!({"append": ["tee", "-a", "handled.log"]}).to_string(),
    )
    .unwrap();
    map_unknown(dir.path(), &pg, "command", Some("append"));
    let settings = [("WORKER_LEASE_SECONDS", "5"), ("WORKER_CONCURRENCY", "8")];
    let names = ["a", "b", "c"];
    let mut apps: Vec<App> = names
        .iter()
        .map(|name| spawn(dir.path(), "serve", &instance_env(&pg, name, &settings)))
        .collect();
    let bases: Vec<String> = apps.iter().map(|a| a.base.clone()).collect();
    let killer = {
        let app_names: Vec<String> = names.iter().map(|n| app_name(&pg, n)).collect();
        let conn = pg.connect().await;
        tokio::spawn(kill_every_second(conn, app_names, Duration::from_secs(20)))
    };

    // Event i goes to instances i % 3 and (i + 1) % 3 at once; about 200 events a second,
    // so the sending spans half of the killing.
    let client = client();
    let mut senders = tokio::task::JoinSet::new();
    for first in 0..SENDERS {
        let (client, bases) = (client.clone(), bases.clone());
        senders.spawn(async move {
            let mut rows = Vec::new();
            for i in (first..EVENTS).step_by(SENDERS) {
                let id = format!("drop-{i}");
                let (one, two) = (&bases[i % 3], &bases[(i + 1) % 3]);
                let (row_1, row_2) =
                    tokio::join!(send_until_acked(&client, one, &id), send_until_acked(&client, two, &id));
                assert_eq!(row_1, row_2, "{id}: both instances name the same row");
                rows.push(row_1);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            rows
        });
    }
    let rows: Vec<i64> = senders.join_all().await.into_iter().flatten().collect();
    assert_eq!(rows.len(), EVENTS);
    let killed = killer.await.unwrap();
    eprintln!("killed {killed} connections in 20 s");
    assert!(
        killed >= 20,
        "the killer found connections to kill every second: {killed}"
    );

    let app_refs: Vec<&App> = apps.iter().collect();
    wait_done(&pg, &rows, Duration::from_secs(120), &app_refs).await;
    let mut conn = pg.connect().await;
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) FROM events").await,
        EVENTS as i64,
        "one row per event"
    );
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) FROM events WHERE status = 'done'").await,
        EVENTS as i64,
        "none lost"
    );
    assert_eq!(
        scalar(&mut conn, "SELECT count(*) FROM action_runs WHERE status = 'done'").await,
        EVENTS as i64,
        "one action run per event"
    );
    let log = std::fs::read_to_string(dir.path().join("handled.log")).unwrap();
    let mut runs: HashMap<String, usize> = HashMap::new();
    for doc in serde_json::Deserializer::from_str(&log).into_iter::<serde_json::Value>() {
        let doc = doc.expect("one whole JSON document per handler run");
        let id = doc["payload"]["json"]["id_was"].as_str().expect("an id").to_string();
        *runs.entry(id).or_default() += 1;
    }
    let twice: Vec<(&String, &usize)> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    assert_eq!(runs.len(), EVENTS, "every event handled");
    for app in &mut apps {
        assert!(
            app.child.try_wait().unwrap().is_none(),
            "an instance exited:\n{}",
            app.logs()
        );
    }
}

/// A loopback TCP proxy to `upstream` that can be cut: while down, it closes every
/// connection it carries and every new one at once. TLS passes through it untouched.
struct Proxy {
    port: u16,
    up: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, _) = watch::channel(true);
        let state = up.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut down = state.subscribe();
                if !*down.borrow_and_update() {
                    continue; // dropped: closed at once
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Proxy { port, up }
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// `/readyz` answers 503 within 3 s of the database becoming unreachable (a proxy between
/// the service and PostgreSQL stops forwarding) and 200 within 5 s of its return; the
/// process keeps running throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_database_is_unreachable_and_200_after() {
    let Some(pg) = PgSchema::create("pg_drops::readyz_through_a_proxy").await else {
        return;
    };
    let mut url = reqwest::Url::parse(&pg.url).expect("TEST_DATABASE_URL is a URL");
    let upstream = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    let proxy = Proxy::start(upstream).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.port)).unwrap();
    let mut app = App::spawn("serve", &[("DATABASE_URL", url.as_str()), ("DATABASE_POOL_SIZE", "4")]);
    let readyz = |want: u16, within: Duration| {
        let app = &app;
        async move {
            let start = Instant::now();
            loop {
                let (code, _) = app.get("/readyz", &[]).await;
                if code == want {
                    return start.elapsed();
                }
                assert!(
                    start.elapsed() < within,
                    "/readyz was not {want} within {within:?} (last {code}); logs:\n{}",
                    app.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    readyz(200, Duration::from_secs(10)).await;
    for round in 0..2 {
        proxy.set_up(false);
        let down = readyz(503, Duration::from_secs(3)).await;
        assert_eq!(
            app.get("/healthz", &[]).await.0,
            200,
            "alive while the database is away"
        );
        proxy.set_up(true);
        let back = readyz(200, Duration::from_secs(5)).await;
        eprintln!("round {round}: 503 after {down:?}, 200 again {back:?} after the return");
    }
    let (code, reply) = app
        .post("/webhook", r#"{"after":"return"}"#, &[("x-event-id", "after-return")])
        .await;
    assert_eq!(code, 200, "ingest works again: {reply}");
    assert!(
        app.child.try_wait().unwrap().is_none(),
        "still running:\n{}",
        app.logs()
    );
}
