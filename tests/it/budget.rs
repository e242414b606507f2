//! LLM budgets (CONTRACT §14, issue 29 acceptance 2): `per_run_usd` reaches the Claude CLI
//! as `--max-budget-usd`; a reached daily budget holds the next events (`held`, attempts
//! untouched) and raising it lets them finish; the global `LLM_DAILY_BUDGET_USD` holds too.
//! A fake CLI reports $1 per run.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

/// A fake Claude CLI: appends its argv to `argv` next to it and reports a $1 run.
fn fake_cli(dir: &Path) -> String {
    let script = dir.join("claude");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf '%s\\n' \"$@\" >> \"$(dirname \"$0\")/argv\"\ncat >/dev/null\n\
         echo '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"{\\\"ok\\\":true}\",\
         \"total_cost_usd\":1.0,\"num_turns\":1,\"modelUsage\":{\"claude-test\":{\"inputTokens\":10,\"outputTokens\":5,\"costUSD\":1.0}}}'\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap();
    script.display().to_string()
}

/// Posts an event and returns its row id.
async fn post(app: &App, body: &str) -> i64 {
    let (code, v) = app.post("/webhook", body, &[]).await;
    assert_eq!(code, 200, "{v}");
    v["row_id"].as_i64().unwrap()
}

/// Polls `/metrics` until `line` is in it.
async fn wait_metric(app: &App, line: &str) {
    let started = Instant::now();
    loop {
        let text = metrics_text(app).await;
        if text.lines().any(|l| l == line) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{line} not in:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn setup(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("agents")).unwrap();
    std::fs::write(
        dir.join("agents/spender.md"),
        "---\nname: spender\n---\nAnswer with JSON.\n",
    )
    .unwrap();
    fake_cli(dir)
}

#[tokio::test]
async fn a_reached_daily_budget_holds_runs_until_it_is_raised() {
    let dir = tempfile::tempdir().unwrap();
    let cli = setup(dir.path());
    init_db(dir.path());
    let budget = |daily: f64| format!(r#"{{"per_run_usd": 2, "daily_usd": {daily}}}"#);
    let set = |daily: f64| {
        let out = run_cli(
            dir.path(),
            &[
                "mapping",
                "set",
                "--provider",
                "unknown",
                "--action",
                "spend_it",
                "--handler-mode",
                "agent",
                "--handler-target",
                "spender",
                "--budget-json",
                &budget(daily),
            ],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    };
    set(1.5);
    let bad = run_cli(
        dir.path(),
        &[
            "mapping",
            "set",
            "--provider",
            "x",
            "--action",
            "a",
            "--budget-json",
            r#"{"daily_usd": -1}"#,
        ],
        &[],
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let app = App::spawn_in(
        dir.path(),
        "serve",
        &[
            ("CLAUDE_CLI", cli.as_str()),
            ("ADMIN_SECRET", "admin"),
            ("WORKER_CONCURRENCY", "1"),
            ("WORKER_LEASE_SECONDS", "2"),
            ("LLM_BUDGET_RECHECK_SECONDS", "0.3"),
        ],
    );
    let within = Duration::from_secs(20);
    // $0 then $1 spent of $1.50: both run.
    for n in 0..2 {
        let id = post(&app, &format!(r#"{{"n": {n}}}"#)).await;
        app.wait_status(id, "done", within).await;
    }
    let argv = std::fs::read_to_string(dir.path().join("argv")).unwrap();
    assert!(
        argv.contains("--max-budget-usd\n2\n"),
        "per_run_usd reaches the CLI: {argv}"
    );

    // $2 spent: the next two wait, with their attempts untouched and no run started.
    let held: Vec<i64> = vec![post(&app, r#"{"n": 2}"#).await, post(&app, r#"{"n": 3}"#).await];
    for id in &held {
        let ev = app.wait_status(*id, "held", within).await;
        assert_eq!(ev["event"]["attempt_count"], 0, "{ev}");
        let reason = ev["event"]["last_error"].as_str().unwrap();
        assert!(
            reason.starts_with("budget:daily") && reason.contains("spend_it"),
            "{reason}"
        );
        assert_eq!(ev["action_runs"], Value::Array(vec![]), "{ev}");
    }
    let (_, list) = app.get("/events?status=held", &[("x-admin-secret", "admin")]).await;
    assert_eq!(list["events"].as_array().unwrap().len(), 2, "{list}");
    wait_metric(&app, r#"switchyard_queue_depth{status="held"} 2"#).await;
    let listed = run_cli(dir.path(), &["events", "list", "--status", "held"], &[]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    // Still over budget after a recheck: still held, still no attempt.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, ev) = app
        .get(&format!("/events/{}", held[0]), &[("x-admin-secret", "admin")])
        .await;
    assert_eq!(
        (ev["event"]["status"].as_str(), ev["event"]["attempt_count"].as_i64()),
        (Some("held"), Some(0)),
        "{ev}"
    );

    // Raising the budget lets them finish, each in one attempt.
    set(10.0);
    for id in &held {
        let ev = app.wait_status(*id, "done", within).await;
        assert_eq!(ev["event"]["attempt_count"], 1, "{ev}");
    }
    let (_, spend) = app.get("/spend?since=1d", &[("x-admin-secret", "admin")]).await;
    assert_eq!(spend["total_usd"], 4.0, "{spend}");
}

#[tokio::test]
async fn the_global_daily_budget_holds_every_action() {
    let dir = tempfile::tempdir().unwrap();
    let cli = setup(dir.path());
    route_unknown(dir.path(), "free_action", "agent", "spender");
    let app = App::spawn_in(
        dir.path(),
        "serve",
        &[
            ("CLAUDE_CLI", cli.as_str()),
            ("ADMIN_SECRET", "admin"),
            ("WORKER_CONCURRENCY", "1"),
            ("LLM_DAILY_BUDGET_USD", "0.5"),
        ],
    );
    let first = post(&app, r#"{"n": 1}"#).await;
    app.wait_status(first, "done", Duration::from_secs(20)).await;
    let argv = std::fs::read_to_string(dir.path().join("argv")).unwrap();
    assert!(!argv.contains("--max-budget-usd"), "no per-run budget set: {argv}");
    let second = post(&app, r#"{"n": 2}"#).await;
    let ev = app.wait_status(second, "held", Duration::from_secs(20)).await;
    let reason = ev["event"]["last_error"].as_str().unwrap();
    assert!(
        reason.starts_with("budget:daily") && reason.contains("LLM_DAILY_BUDGET_USD"),
        "{reason}"
    );
    // A noop route is not an LLM run: budgets never hold it.
    set_mapping(dir.path(), "github", "gh", "noop", "");
    let (_, v) = app
        .post(
            "/webhook",
            r#"{"zen": "z", "hook_id": 1}"#,
            &[("x-github-event", "ping")],
        )
        .await;
    app.wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(20))
        .await;
}

/// A fan-out event (CONTRACT §12) whose agent action is over its budget is held whole:
/// none of its actions runs, not even the one without a budget; raised, both run once.
#[tokio::test]
async fn a_fan_out_event_over_a_budget_is_held_before_any_action_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cli = setup(dir.path());
    init_db(dir.path());
    let config = |daily: f64| {
        serde_json::json!({"mappings": [{"provider": "solo", "action": "spend_it",
                           "handler_mode": "agent", "handler_target": "spender"}],
                           "rules": [
            {"provider": "fan", "name": "note", "priority": 1, "continue": true,
             "conditions": {"all": []}, "action": "note"},
            {"provider": "fan", "name": "spend", "priority": 2, "conditions": {"all": []},
             "action": "spend_it", "handler_mode": "agent", "handler_target": "spender",
             "budget": {"daily_usd": daily}}]})
        .to_string()
    };
    let apply = |daily: f64| {
        std::fs::write(dir.path().join("fan.json"), config(daily)).unwrap();
        let out = run_cli(dir.path(), &["mapping", "apply-config", "--config", "fan.json"], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    apply(0.5);
    let app = App::spawn_in(
        dir.path(),
        "serve",
        &[
            ("CLAUDE_CLI", cli.as_str()),
            ("ADMIN_SECRET", "admin"),
            ("LLM_BUDGET_RECHECK_SECONDS", "0.3"),
        ],
    );
    let within = Duration::from_secs(20);
    // One $1 run of the action spends its $0.50 day.
    let (code, v) = app.post("/webhook/solo", r#"{"n": 0}"#, &[]).await;
    assert_eq!(code, 200, "{v}");
    app.wait_status(v["row_id"].as_i64().unwrap(), "done", within).await;
    let (code, v) = app.post("/webhook/fan", r#"{"n": 1}"#, &[]).await;
    assert_eq!(code, 200, "{v}");
    let id = v["row_id"].as_i64().unwrap();
    let ev = app.wait_status(id, "held", within).await;
    assert_eq!(ev["event"]["attempt_count"], 0, "{ev}");
    assert_eq!(ev["action_runs"], Value::Array(vec![]), "no action ran: {ev}");

    apply(10.0);
    let ev = app.wait_status(id, "done", within).await;
    let mut ran: Vec<(String, i64)> = ev["action_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["attempts"].as_i64().unwrap(),
            )
        })
        .collect();
    ran.sort();
    assert_eq!(ran, [("note".to_owned(), 1), ("spend_it".to_owned(), 1)], "{ev}");
}
