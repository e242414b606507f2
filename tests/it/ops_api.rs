//! CONTRACT §10 over HTTP and the CLI, against the real binary: auth, replay and cancel,
//! bulk replay, metrics, readiness, the OpenAPI document, retention.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

const SECRETS: &[(&str, &str)] = &[("INGRESS_SECRET", "ingress"), ("ADMIN_SECRET", "admin")];
const INGRESS: (&str, &str) = ("x-ingress-secret", "ingress");

/// `GET path` as text.
async fn get_text(app: &App, path: &str) -> (u16, String) {
    let resp = client().get(format!("{}{path}", app.base)).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn admin_routes_need_the_secret_and_probes_do_not() {
    let app = App::spawn("http", SECRETS);
    let unauthorized = json!({"ok": false, "error": "unauthorized", "expected_header": "X-Admin-Secret"});
    let gets = ["/events", "/events?status=error", "/stats", "/events/1"];
    let posts = [
        "/events/1/replay",
        "/events/1/replay?force=1",
        "/events/1/cancel",
        "/events/replay?status=error",
    ];
    for wrong in [vec![], vec![("x-admin-secret", "nope")]] {
        for path in gets {
            assert_eq!(app.get(path, &wrong).await, (401, unauthorized.clone()), "GET {path}");
        }
        for path in posts {
            assert_eq!(
                app.post(path, "", &wrong).await,
                (401, unauthorized.clone()),
                "POST {path}"
            );
        }
    }
    for path in gets {
        assert_ne!(app.get(path, &[ADMIN]).await.0, 401, "GET {path}");
    }
    for path in posts {
        assert_ne!(app.post(path, "", &[ADMIN]).await.0, 401, "POST {path}");
    }
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert_eq!(get_text(&app, path).await.0, 200, "{path} needs no secret");
    }
}

#[tokio::test]
async fn listing_validates_and_pages_over_http() {
    let app = App::spawn("http", SECRETS);
    for i in 0..5 {
        let id = format!("evt-{i}");
        app.post("/webhook/github", "{}", &[INGRESS, ("x-event-id", &id)]).await;
    }
    let (code, page) = app.get("/events?limit=2&source=webhook", &[ADMIN]).await;
    assert_eq!(code, 200);
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_id"], "evt-4");
    assert!(events[0].get("payload_json").is_none() && events[0].get("result_json").is_none());
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = app.get(&format!("/events?limit=10&cursor={cursor}"), &[ADMIN]).await;
    let ids: Vec<&str> = rest["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["evt-2", "evt-1", "evt-0"]);
    assert_eq!(rest["next_cursor"], Value::Null);

    for bad in [
        "/events?status=bogus",
        "/events?limit=0",
        "/events?limit=501",
        "/events?limit=x",
        "/events?cursor=nope",
        "/events?since=yesterday",
        "/events/replay",
        "/events/1/replay?force=2",
    ] {
        let (code, v) = if bad.contains("replay") {
            app.post(bad, "", &[ADMIN]).await
        } else {
            app.get(bad, &[ADMIN]).await
        };
        assert_eq!((code, v["ok"].clone()), (400, json!(false)), "{bad}: {v}");
    }
    let (_, v) = app.get("/events?status=bogus", &[ADMIN]).await;
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("pending, processing, retry, done, error, cancelled")
    );
}

fn write_commands(dir: &Path, commands: Value) {
    std::fs::write(dir.join("commands.json"), commands.to_string()).unwrap();
}

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs.txt")).map_or(0, |s| s.lines().count())
}

#[tokio::test]
async fn replay_reruns_errors_reuses_done_unless_forced_and_cancel_stops_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // `count` logs each run and fails until the file `ok` exists; `nap` holds its event.
    write_commands(
        dir,
        json!({
            "count": ["sh", "-c", "echo run >> runs.txt; test -f ok || exit 3; echo '{\"ran\":true}'"],
            "nap": ["sleep", "30"],
            "fail": ["false"],
        }),
    );
    set_mapping(dir, "counting", "count_it", "command", "count");
    set_mapping(dir, "sleepy", "nap_it", "command", "nap");
    set_mapping(dir, "flaky", "fail_it", "command", "fail");
    let mut env = SECRETS.to_vec();
    env.push(("WORKER_MAX_ATTEMPTS", "2"));
    let app = App::spawn_in(dir, "serve", &env);
    let row = |v: &Value| v["row_id"].as_i64().unwrap();
    let long = Duration::from_secs(30);

    let (_, v) = app
        .post("/webhook/counting", "{}", &[INGRESS, ("x-event-id", "counting-1")])
        .await;
    let id = row(&v);
    app.wait_status(id, "error", long).await;
    assert_eq!(runs(dir), 2);

    // An error event runs its handler again and ends done.
    std::fs::write(dir.join("ok"), "").unwrap();
    let replayed = app.post(&format!("/events/{id}/replay"), "", &[ADMIN]).await;
    assert_eq!(replayed, (200, json!({"ok": true, "status": "queued", "row_id": id})));
    let done = app.wait_status(id, "done", long).await;
    assert_eq!(runs(dir), 3);
    assert_eq!(done["event"]["attempt_count"], 1, "a fresh attempt budget");
    assert_eq!(done["event"]["result"]["result"], json!({"ran": true}));

    // A done event reuses the stored output ...
    assert_eq!(app.post(&format!("/events/{id}/replay"), "", &[ADMIN]).await.0, 200);
    let again = app.wait_status(id, "done", long).await;
    assert_eq!(again["event"]["result"]["idempotent_replay"], true);
    assert_eq!(runs(dir), 3, "the handler did not run");
    // ... unless forced.
    assert_eq!(
        app.post(&format!("/events/{id}/replay?force=1"), "", &[ADMIN]).await.0,
        200
    );
    let forced = app.wait_status(id, "done", long).await;
    assert_eq!(runs(dir), 4, "force reran the handler");
    assert!(forced["event"]["result"].get("idempotent_replay").is_none());

    // A processing event refuses both.
    let (_, v) = app
        .post("/webhook/sleepy", "{}", &[INGRESS, ("x-event-id", "sleepy-1")])
        .await;
    let busy = row(&v);
    app.wait_status(busy, "processing", long).await;
    for action in ["replay", "cancel"] {
        let (code, v) = app.post(&format!("/events/{busy}/{action}"), "", &[ADMIN]).await;
        assert_eq!((code, v["ok"].clone()), (409, json!(false)), "{action}: {v}");
    }
    assert_eq!(app.post("/events/999999/cancel", "", &[ADMIN]).await.0, 404);

    // A retry event is cancelled and never claimed again.
    let (_, v) = app
        .post("/webhook/flaky", "{}", &[INGRESS, ("x-event-id", "flaky-1")])
        .await;
    let flaky = row(&v);
    app.wait_status(flaky, "retry", long).await;
    let cancelled = app.post(&format!("/events/{flaky}/cancel"), "", &[ADMIN]).await;
    assert_eq!(
        cancelled,
        (200, json!({"ok": true, "status": "cancelled", "row_id": flaky}))
    );
    // Its back-off (2 s plus jitter) passes; it stays cancelled with one attempt.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, v) = app.get(&format!("/events/{flaky}"), &[ADMIN]).await;
    assert_eq!(
        (v["event"]["status"].as_str(), v["event"]["attempt_count"].as_i64()),
        (Some("cancelled"), Some(1))
    );
}

/// Polls `/stats` until `status` counts `n`.
async fn wait_count(app: &App, status: &str, n: i64, within: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (_, v) = app.get("/stats", &[ADMIN]).await;
        if v["by_status"][status] == n {
            return v;
        }
        assert!(
            start.elapsed() < within,
            "{status} never reached {n}: {v}\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn bulk_replay_of_a_thousand_dead_letters_finishes_them_all() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_commands(dir, json!({}));
    // A target missing from commands.json fails every attempt.
    route_unknown(dir, "lost", "command", "missing");
    let mut env = SECRETS.to_vec();
    env.push(("WORKER_MAX_ATTEMPTS", "1"));
    let app = App::spawn_in(dir, "serve", &env);
    for chunk in 0..20 {
        let mut sends = tokio::task::JoinSet::new();
        for i in 0..50 {
            let url = format!("{}/webhook", app.base);
            sends.spawn(async move {
                let req = client().post(url).header(INGRESS.0, INGRESS.1);
                let req = req.header("x-event-id", format!("dead-{chunk}-{i}")).body("{}");
                req.send().await.unwrap().status().as_u16()
            });
        }
        assert!(sends.join_all().await.iter().all(|c| *c == 200));
    }
    wait_count(&app, "error", 1000, Duration::from_secs(120)).await;

    set_mapping(dir, "unknown", "found", "noop", "");
    let (code, v) = app
        .post("/events/replay?status=error&provider=unknown", "", &[ADMIN])
        .await;
    assert_eq!((code, v), (200, json!({"ok": true, "status": "queued", "count": 1000})));
    let stats = wait_count(&app, "done", 1000, Duration::from_secs(120)).await;
    assert_eq!(stats["by_status"]["error"], 0);
    assert_eq!(stats["done_last_minute"], 1000);
}

/// The value of the sample `name` whose labels include `labels`, from Prometheus text.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("/metrics parses as Prometheus text");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
        .reduce(f64::max)
}

#[tokio::test]
async fn metrics_parse_and_move_as_events_flow() {
    let tmp = tempfile::tempdir().unwrap();
    route_unknown(tmp.path(), "counted", "noop", "");
    let app = App::spawn_in(tmp.path(), "serve", SECRETS);
    let (code, before) = get_text(&app, "/metrics").await;
    assert_eq!(code, 200);
    let queued = |t: &str| sample(t, "switchyard_ingested_total", &[("outcome", "queued")]).unwrap_or(0.0);
    let start = queued(&before);
    for i in 0..5 {
        let id = format!("m-{i}");
        app.post("/webhook", "{}", &[INGRESS, ("x-event-id", &id)]).await;
    }
    app.post("/webhook", "{}", &[INGRESS, ("x-event-id", "m-0")]).await;
    app.post("/webhook", "{}", &[]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = get_text(&app, "/metrics").await;
        let done = sample(&text, "switchyard_attempts_total", &[("outcome", "done")]).unwrap_or(0.0);
        let depth = sample(&text, "switchyard_queue_depth", &[("status", "pending")]);
        if queued(&text) - start == 5.0 && done >= 5.0 && depth == Some(0.0) {
            assert_eq!(
                sample(&text, "switchyard_ingested_total", &[("outcome", "duplicate")]),
                Some(1.0)
            );
            assert_eq!(
                sample(&text, "switchyard_ingested_total", &[("outcome", "unauthorized")]),
                Some(1.0)
            );
            assert!(sample(&text, "switchyard_claims_total", &[]).unwrap() >= 5.0);
            assert!(sample(&text, "switchyard_handler_duration_seconds_count", &[("mode", "noop")]).unwrap() >= 5.0);
            assert!(sample(&text, "switchyard_oldest_due_age_seconds", &[]).is_some());
            assert!(!text.contains("m-0"), "metrics never reveal payloads or ids");
            break;
        }
        assert!(Instant::now() < deadline, "metrics did not move:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let app = App::spawn("http", &[]);
    let (code, text) = get_text(&app, "/openapi.json").await;
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/webhook", "post"),
        ("/webhook/{hint}", "post"),
        ("/cron/enqueue", "post"),
        ("/events/{row_id}", "get"),
        ("/events", "get"),
        ("/events/{row_id}/replay", "post"),
        ("/events/{row_id}/cancel", "post"),
        ("/events/replay", "post"),
        ("/stats", "get"),
        ("/spend", "get"),
        ("/events/{row_id}/runs/{run_id}/transcript", "get"),
    ] {
        assert!(paths[path].get(method).is_some(), "{method} {path} missing");
    }
    let statuses = &doc["paths"]["/events"]["get"]["parameters"];
    let status = statuses
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "status")
        .unwrap();
    let names: Vec<&str> = status["schema"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(names, switchyard::domain::EventStatus::NAMES, "{status}");
    for flow in ["waiting", "skipped", "superseded"] {
        assert!(names.contains(&flow), "{flow}");
    }
}

#[tokio::test]
async fn readyz_follows_the_postgres_database() {
    let Some(admin_url) = crate::store::test_database_url() else {
        eprintln!("readyz_follows_the_postgres_database skipped: TEST_DATABASE_URL is unset");
        return;
    };
    use sqlx::{Connection, Executor};
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("TEST_DATABASE_URL reachable");
    let name = format!("sy_ready_{:012x}", fastrand::u64(..1 << 48));
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let mut url = reqwest::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    let url = url.to_string();
    let app = App::spawn("http", &[("DATABASE_URL", &url)]);
    assert_eq!(get_text(&app, "/readyz").await.0, 200);

    let set_allowed = |allowed: bool| format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allowed}");
    admin.execute(sqlx::AssertSqlSafe(set_allowed(false))).await.unwrap();
    let kill = format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
    admin.execute(sqlx::AssertSqlSafe(kill.clone())).await.unwrap();
    let gone = Instant::now();
    let wait_for = |want: u16| {
        let app = &app;
        async move {
            loop {
                if get_text(app, "/readyz").await.0 == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait_for(503))
        .await
        .expect("503 once the database is gone");
    let took = gone.elapsed();
    admin.execute(sqlx::AssertSqlSafe(set_allowed(true))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), wait_for(200))
        .await
        .expect("200 once it is back");
    drop(app);
    let _ = admin.execute(sqlx::AssertSqlSafe(kill)).await;
    let _ = admin
        .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
        .await;
    assert!(
        took < Duration::from_secs(2),
        "readyz took {took:?} to notice the database had gone"
    );
}

#[tokio::test]
async fn cli_mirrors_the_api_and_serve_applies_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cli = |args: &[&str]| run_cli(dir, args, &[]);
    let out = cli(&["events", "list", "--status", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pending, processing, retry, done, error, cancelled"),
        "{}",
        stderr(&out)
    );
    assert_eq!(cli(&["events", "list", "--since", "yesterday"]).status.code(), Some(2));
    assert_eq!(cli(&["events", "purge", "--older-than", "7x"]).status.code(), Some(2));
    assert_eq!(
        cli(&["events", "replay"]).status.code(),
        Some(2),
        "an id or --status is required"
    );

    init_db(dir);
    for i in 0..3 {
        let out = cli(&["cron", "enqueue", "--job", &format!("job{i}")]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = cli(&["events", "list", "--source", "cron", "--limit", "2"]);
    assert_eq!(stdout(&out).lines().count(), 2);
    let first: Value = serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(
        first["event_id"].as_str().map(|s| s.starts_with("cron:job2:")),
        Some(true)
    );
    let cursor = stderr(&out).split("--cursor ").nth(1).unwrap().trim().to_string();
    let rest = cli(&["events", "list", "--cursor", &cursor]);
    assert_eq!(stdout(&rest).lines().count(), 1);

    assert!(stdout(&cli(&["events", "cancel", "1"])).contains("cancelled"));
    assert_eq!(
        cli(&["events", "cancel", "1"]).status.code(),
        Some(1),
        "already cancelled"
    );
    let out = cli(&["events", "replay", "--status", "cancelled"]);
    assert_eq!(stdout(&out).trim(), "ok: 1 events queued again");
    assert!(cli(&["events", "cancel", "1"]).status.success());

    // Finished long ago: the CLI purge takes the cancelled one, serve's retention the rest.
    let db = dir.join("data/events.sqlite3");
    sql_update(&db, "UPDATE events SET processed_at = '2020-01-01T00:00:00+00:00'");
    let out = cli(&["events", "purge", "--older-than", "7d", "--status", "done"]);
    assert_eq!(
        stdout(&out).trim().split(" finished").next(),
        Some("ok: deleted 0 events")
    );
    let out = cli(&["events", "purge", "--older-than", "7d"]);
    assert!(stdout(&out).starts_with("ok: deleted 1 events"), "{}", stdout(&out));
    sql_update(&db, "UPDATE events SET status = 'done'");
    let app = App::spawn_in(dir, "serve", &[("RETENTION_DONE_DAYS", "30")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.get("/events", &[]).await.1["events"]
        .as_array()
        .is_some_and(|e| !e.is_empty())
    {
        assert!(Instant::now() < deadline, "retention did not purge:\n{}", app.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one statement on a SQLite file (on its own runtime: callers are inside a test's).
fn sql_update(db: &Path, sql: &str) {
    let url = format!("sqlite://{}", db.display());
    let sql = sql.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use sqlx::{Connection, Executor};
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            c.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
            c.close().await.unwrap();
        });
    })
    .join()
    .unwrap();
}
