//! Flow control (CONTRACT §13) through the binary: command handlers that log their start
//! and end, limits that hold across several processes on one database (2 `serve` on one
//! SQLite file, 3 on PostgreSQL over TLS), cancel_running killing the run, and a pool
//! paused by an `http` target's 429.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::store::PgSchema;

/// A command that logs `start <key> <ns>` and `end <key> <ns>` around a sleep of `secs`
/// (or of the payload's `"s"`, when it has one).
fn logging_command(log: &Path, secs: &str) -> Value {
    let field =
        |name: &str| format!("$(printf %s \"$in\" | grep -o '\"{name}\":\"[^\"]*\"' | head -1 | cut -d'\"' -f4)");
    let script = format!(
        "in=$(cat); k={k}; s={s}; \
         echo \"start $k $(date +%s%N)\" >> '{log}'; sleep ${{s:-{secs}}}; echo \"end $k $(date +%s%N)\" >> '{log}'; \
         echo '{{\"ok\": true}}'",
        k = field("k"),
        s = field("s"),
        log = log.display()
    );
    json!(["sh", "-c", script])
}

/// `(key, start ns, end ns)` of every finished run in the log.
fn runs(log: &Path) -> Vec<(String, u128, u128)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut open: Vec<(String, u128)> = Vec::new();
    let mut done = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let (kind, key, t) = (parts[0], parts[1].to_string(), parts[2].parse::<u128>().unwrap());
        if kind == "start" {
            open.push((key, t));
        } else if let Some(i) = open.iter().position(|(k, _)| *k == key) {
            let (k, s) = open.remove(i);
            done.push((k, s, t));
        }
    }
    done
}

/// The most runs overlapping at any instant, among those `keep` selects.
fn max_overlap(runs: &[(String, u128, u128)], keep: impl Fn(&str) -> bool) -> usize {
    let mut edges: Vec<(u128, i32)> = Vec::new();
    for (k, s, e) in runs.iter().filter(|(k, _, _)| keep(k)) {
        let _ = k;
        edges.push((*s, 1));
        edges.push((*e, -1));
    }
    // An end and a start at the same instant do not overlap.
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max as usize
}

fn write_config(dir: &Path, commands: Value, config: Value) {
    std::fs::write(dir.join("commands.json"), commands.to_string()).unwrap();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

fn apply(dir: &Path, env: &[(&str, &str)]) {
    let out = run_cli(
        dir,
        &["mapping", "apply-config", "--create-db", "--config", "config.json"],
        env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

async fn status_of(app: &App, row: i64) -> Value {
    app.get(&format!("/events/{row}"), &[]).await.1
}

/// limit 2 / per_key 1 over 3 keys × 4 events, served by `processes` processes.
async fn limits_hold_across_processes(env: &[(&str, &str)], processes: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("runs.log");
    write_config(
        dir,
        json!({"job": logging_command(&log, "0.4")}),
        json!({"mappings": [{"provider": "shop", "action": "job", "handler_mode": "command",
            "handler_target": "job",
            "flow": {"key": "{{payload.k}}", "concurrency": {"limit": 2, "per_key": 1}}}]}),
    );
    apply(dir, env);
    let mut env = env.to_vec();
    env.push(("WORKER_CONCURRENCY", "4"));
    let apps: Vec<App> = (0..processes).map(|_| App::spawn_in(dir, "serve", &env)).collect();

    let mut rows = Vec::new();
    for i in 0..4 {
        for k in ["a", "b", "c"] {
            let body = json!({"k": k, "i": i}).to_string();
            let (code, v) = apps[rows.len() % processes].post("/webhook/shop", &body, &[]).await;
            assert_eq!(code, 200, "{v}");
            rows.push(v["row_id"].as_i64().unwrap());
        }
    }
    let start = Instant::now();
    let mut saw_waiting = None;
    loop {
        let mut done = 0;
        for &row in &rows {
            let v = status_of(&apps[0], row).await;
            match v["event"]["status"].as_str() {
                Some("done") => done += 1,
                Some("waiting") if saw_waiting.is_none() => saw_waiting = Some(v["event"]["last_error"].clone()),
                _ => {}
            }
        }
        if done == rows.len() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not all done after 60 s\n{}",
            apps[0].logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let runs = runs(&log);
    assert_eq!(runs.len(), 12, "each event ran once: {runs:?}");
    assert!(max_overlap(&runs, |_| true) <= 2, "limit 2 exceeded: {runs:?}");
    for k in ["a", "b", "c"] {
        assert_eq!(
            max_overlap(&runs, |x| x == k),
            1,
            "per_key 1 exceeded for {k}: {runs:?}"
        );
    }
    assert_eq!(max_overlap(&runs, |_| true), 2, "two keys ran at once");
    let reason = saw_waiting.expect("some event was seen waiting");
    assert!(
        reason
            .as_str()
            .unwrap()
            .starts_with("flow:concurrency: action 'job' key '"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_with_two_processes_on_one_sqlite_file() {
    limits_hold_across_processes(&[], 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_with_three_instances_on_postgres() {
    let Some(schema) = PgSchema::create("flow::limits_hold_with_three_instances_on_postgres").await else {
        return;
    };
    limits_hold_across_processes(&[("DATABASE_URL", &schema.url)], 3).await;
}

/// `cancel_running`: a newer event of the key kills the running command's process group,
/// records its run `cancelled` and its event `superseded`, then runs.
async fn cancel_running_scenario(env: &[(&str, &str)]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("runs.log");
    write_config(
        dir,
        json!({"review": logging_command(&log, "1")}),
        json!({"mappings": [{"provider": "gh", "action": "review", "handler_mode": "command",
            "handler_target": "review",
            "flow": {"key": "{{payload.k}}", "concurrency": {"per_key": 1}, "on_conflict": "cancel_running"}}]}),
    );
    apply(dir, env);
    let app = App::spawn_in(dir, "serve", env);
    // The first run sleeps long enough to be cancelled.
    let (_, v) = app.post("/webhook/gh", r#"{"k":"pr-1","s":"30"}"#, &[]).await;
    let first = v["row_id"].as_i64().unwrap();
    let start = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("start pr-1") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "first run never started\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (_, v) = app.post("/webhook/gh", r#"{"k":"pr-1","s":"0.1"}"#, &[]).await;
    let second = v["row_id"].as_i64().unwrap();
    let v = app.wait_status(first, "superseded", Duration::from_secs(10)).await;
    assert_eq!(v["event"]["result"]["flow"]["by"]["row_id"], json!(second), "{v}");
    let run = &v["action_runs"][0];
    assert_eq!(run["status"], "cancelled", "{v}");
    app.wait_status(second, "done", Duration::from_secs(20)).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("end pr-1").count(),
        1,
        "the cancelled run never ended: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_running_kills_the_run_and_supersedes_its_event_on_sqlite() {
    cancel_running_scenario(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_running_kills_the_run_and_supersedes_its_event_on_postgres() {
    let Some(schema) = PgSchema::create("flow::cancel_running_on_postgres").await else {
        return;
    };
    cancel_running_scenario(&[("DATABASE_URL", &schema.url)]).await;
}

/// A receiver that answers 429 with `Retry-After: 2` to its first request, 200 after;
/// it records when each request came.
async fn limited_receiver() -> (String, Arc<Mutex<Vec<Instant>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let seen: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let sink = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let sink = sink.clone();
            async move {
                let mut s = sink.lock().unwrap();
                s.push(Instant::now());
                let mut h = HeaderMap::new();
                if s.len() == 1 {
                    h.insert("retry-after", "2".parse().unwrap());
                    (StatusCode::TOO_MANY_REQUESTS, h, "{}")
                } else {
                    (StatusCode::OK, h, r#"{"ok":true}"#)
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

/// A 429 with `Retry-After: 2` pauses the pool ~2 s: the other event waits without
/// spending an attempt, then both are delivered.
async fn pool_pause_scenario(env: &[(&str, &str)]) {
    let (url, seen) = limited_receiver().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_config(
        dir,
        json!({}),
        json!({"pools": {"partner": {"limit": 4}},
               "mappings": [{"provider": "shop", "action": "forward", "handler_mode": "http",
                             "handler_target": url, "flow": {"pool": "partner"}}]}),
    );
    apply(dir, env);
    let mut env = env.to_vec();
    env.extend([("HTTP_HANDLER_ALLOW_PRIVATE", "1"), ("HTTP_HANDLER_SECRET", "s")]);
    let app = App::spawn_in(dir, "serve", &env);
    let (_, v) = app.post("/webhook/shop", r#"{"n":1}"#, &[]).await;
    let first = v["row_id"].as_i64().unwrap();
    let start = Instant::now();
    while seen.lock().unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never delivered\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let limited_at = seen.lock().unwrap()[0];
    // The pool is paused now: a second event waits without an attempt.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, v) = app.post("/webhook/shop", r#"{"n":2}"#, &[]).await;
    let second = v["row_id"].as_i64().unwrap();
    let v = app.wait_status(second, "waiting", Duration::from_secs(5)).await;
    assert!(
        v["event"]["last_error"]
            .as_str()
            .unwrap()
            .contains("pool 'partner' is paused"),
        "{v}"
    );
    assert_eq!(v["event"]["attempt_count"], 0, "{v}");
    let v2 = app.wait_status(second, "done", Duration::from_secs(20)).await;
    app.wait_status(first, "done", Duration::from_secs(20)).await;
    assert_eq!(v2["event"]["attempt_count"], 1, "the pause cost it no attempt: {v2}");
    let times = seen.lock().unwrap().clone();
    assert_eq!(times.len(), 3, "one 429, then each event once");
    let paused = times[1].duration_since(limited_at);
    assert!(
        paused >= Duration::from_millis(1900) && paused < Duration::from_secs(6),
        "the pool paused for {paused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_the_pool_for_its_retry_after_on_sqlite() {
    pool_pause_scenario(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_the_pool_for_its_retry_after_on_postgres() {
    let Some(schema) = PgSchema::create("flow::pool_pause_on_postgres").await else {
        return;
    };
    pool_pause_scenario(&[("DATABASE_URL", &schema.url)]).await;
}

/// Waits until the log shows `needle`.
async fn logged(log: &Path, needle: &str, app: &App) {
    let start = Instant::now();
    while !std::fs::read_to_string(log).unwrap_or_default().contains(needle) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never logged {needle}\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts `body` with a fresh `X-Event-Id` (equal bodies would be one event).
async fn post(app: &App, hint: &str, body: Value) -> i64 {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let id = format!("ev-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let (code, v) = app
        .post(&format!("/webhook/{hint}"), &body.to_string(), &[("x-event-id", &id)])
        .await;
    assert_eq!(code, 200, "{v}");
    v["row_id"].as_i64().unwrap()
}

/// skip, supersede, debounce (`all`), rate and a pool shared by two actions, each as §13
/// says, with command handlers that log their start and end.
async fn policies_scenario(env: &[(&str, &str)]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("runs.log");
    let dump = dir.join("debounced.json");
    let dump_last = dir.join("last.json");
    let route = |provider: &str, flow: Value| {
        let target = match provider {
            "deb" => "dump",
            "debl" => "dump_last",
            _ => "job",
        };
        json!({"provider": provider, "action": provider, "handler_mode": "command",
               "handler_target": target, "flow": flow})
    };
    write_config(
        dir,
        json!({"job": logging_command(&log, "0.6"),
               "dump": ["sh", "-c", format!("cat > '{}'; echo '{{}}'", dump.display())],
               "dump_last": ["sh", "-c", format!("cat >> '{}'; echo >> '{}'; echo '{{}}'", dump_last.display(), dump_last.display())]}),
        json!({"pools": {"shared": {"limit": 1}},
        "mappings": [
            route("skipper", json!({"key": "{{payload.k}}", "on_conflict": "skip"})),
            route("sup", json!({"key": "{{payload.k}}", "concurrency": {"per_key": 1}, "on_conflict": "supersede"})),
            route("deb", json!({"key": "{{payload.k}}", "debounce": {"quiet": "1s", "deliver": "all"}})),
            route("debl", json!({"key": "{{payload.k}}", "debounce": {"quiet": "1s", "max_wait": "2s"}})),
            route("rl", json!({"key": "{{payload.k}}", "rate": {"limit": 2, "per": "3s"}})),
            route("pa", json!({"pool": "shared"})),
            route("pb", json!({"pool": "shared"})),
        ]}),
    );
    apply(dir, env);
    let mut env = env.to_vec();
    env.push(("WORKER_CONCURRENCY", "8"));
    let app = App::spawn_in(dir, "serve", &env);

    // skip: a second event of the key while the first runs ends `skipped`, naming it.
    let s1 = post(&app, "skipper", json!({"k": "s"})).await;
    logged(&log, "start s ", &app).await;
    let s2 = post(&app, "skipper", json!({"k": "s"})).await;
    let v = app.wait_status(s2, "skipped", Duration::from_secs(10)).await;
    assert_eq!(v["event"]["result"]["flow"]["by"]["row_id"], json!(s1), "{v}");
    app.wait_status(s1, "done", Duration::from_secs(10)).await;

    // supersede: of two events waiting behind a running one, the older ends `superseded`.
    let p1 = post(&app, "sup", json!({"k": "p"})).await;
    logged(&log, "start p ", &app).await;
    let p2 = post(&app, "sup", json!({"k": "p"})).await;
    app.wait_status(p2, "waiting", Duration::from_secs(10)).await;
    let p3 = post(&app, "sup", json!({"k": "p"})).await;
    let v = app.wait_status(p2, "superseded", Duration::from_secs(10)).await;
    assert_eq!(v["event"]["result"]["flow"]["by"]["row_id"], json!(p3), "{v}");
    app.wait_status(p1, "done", Duration::from_secs(10)).await;
    app.wait_status(p3, "done", Duration::from_secs(10)).await;

    // debounce, deliver all: three quick events run once, with the latest, handing over all three.
    let mut d = Vec::new();
    for n in 0..3 {
        d.push(post(&app, "deb", json!({"k": "d", "n": n})).await);
    }
    app.wait_status(d[2], "done", Duration::from_secs(15)).await;
    // Each earlier event names a newer one of the window that took its place (which one
    // depends on the order the worker's tasks reached admission).
    for &old in &d[..2] {
        let v = app.wait_status(old, "superseded", Duration::from_secs(5)).await;
        let by = v["event"]["result"]["flow"]["by"]["row_id"].as_i64().unwrap();
        assert!(by > old && d.contains(&by), "{v}");
    }
    let input: Value = serde_json::from_str(&std::fs::read_to_string(&dump).unwrap()).unwrap();
    let window: Vec<i64> = input["debounced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["row_id"].as_i64().unwrap())
        .collect();
    assert_eq!(window, d, "{input}");
    assert_eq!(input["debounced"][0]["payload"]["json"]["n"], 0);
    assert_eq!(input["payload"]["json"]["n"], 2);

    // debounce, deliver last: one run, with the latest event only.
    let mut l = Vec::new();
    for n in 0..3 {
        l.push(post(&app, "debl", json!({"k": "l", "n": n})).await);
    }
    app.wait_status(l[2], "done", Duration::from_secs(15)).await;
    for &old in &l[..2] {
        app.wait_status(old, "superseded", Duration::from_secs(5)).await;
    }
    let text = std::fs::read_to_string(&dump_last).unwrap();
    assert_eq!(text.lines().count(), 1, "one run: {text}");
    let input: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(input["payload"]["json"]["n"], 2, "{input}");
    assert!(input.get("debounced").is_none(), "{input}");

    // rate 2 per 3 s: the third start of the key waits for the window.
    let r: Vec<i64> = vec![
        post(&app, "rl", json!({"k": "r"})).await,
        post(&app, "rl", json!({"k": "r"})).await,
        post(&app, "rl", json!({"k": "r"})).await,
    ];
    for &row in &r {
        app.wait_status(row, "done", Duration::from_secs(20)).await;
    }
    let starts: Vec<u128> = runs(&log)
        .iter()
        .filter(|(k, _, _)| k == "r")
        .map(|(_, s, _)| *s)
        .collect();
    assert_eq!(starts.len(), 3);
    let mut sorted = starts.clone();
    sorted.sort_unstable();
    assert!(
        sorted[2] - sorted[0] >= 2_900_000_000,
        "third start {} ms after the first",
        (sorted[2] - sorted[0]) / 1_000_000
    );

    // A pool of 1 shared by two actions: never two of their runs at once.
    let mut pooled = Vec::new();
    for (hint, k) in [("pa", "x1"), ("pb", "x2"), ("pa", "x3"), ("pb", "x4")] {
        pooled.push(post(&app, hint, json!({"k": k})).await);
    }
    for &row in &pooled {
        app.wait_status(row, "done", Duration::from_secs(20)).await;
    }
    let all = runs(&log);
    assert_eq!(max_overlap(&all, |k| k.starts_with('x')), 1, "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_supersede_debounce_rate_and_pools_on_sqlite() {
    policies_scenario(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_supersede_debounce_rate_and_pools_on_postgres() {
    let Some(schema) = PgSchema::create("flow::policies_on_postgres").await else {
        return;
    };
    policies_scenario(&[("DATABASE_URL", &schema.url)]).await;
}
