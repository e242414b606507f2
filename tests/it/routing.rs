//! CONTRACT §4–§6 end to end: detection, rules, mappings, the CLI, the config file,
//! command handlers and action idempotency.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "stdout: {}\nstderr: {}", stdout(out), stderr(out));
}

#[tokio::test]
async fn github_push_routes_by_rule_with_contract_router() {
    let dir = tempfile::tempdir().unwrap();
    init_db(dir.path());
    let cond = r#"{"all":[{"op":"header_equals","name":"x-github-event","value":"push"}]}"#;
    ok(&run_cli(
        dir.path(),
        &[
            "mapping",
            "rule-set",
            "--provider",
            "github",
            "--name",
            "push",
            "--priority",
            "10",
            "--conditions-json",
            cond,
            "--action",
            "handle_github_push",
        ],
        &[],
    ));
    let app = App::spawn_in(dir.path(), "serve", &[]);
    let (_, v) = app
        .post(
            "/webhook/github",
            r#"{"ref":"refs/heads/main"}"#,
            &[
                ("x-github-event", "push"),
                ("x-hub-signature", "sha1=abc"),
                ("x-github-delivery", "d-1"),
            ],
        )
        .await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(10))
        .await;
    let result = &ev["event"]["result"];
    assert_eq!(
        result["router"],
        json!({"provider": "github", "confidence": 0.98, "event_type": null, "matched_rule": "push",
               "mapped_action": "handle_github_push", "handler_mode": "noop", "handler_target": null,
               "reasons": ["header:x-github-event", "rule:push", "header_equals:x-github-event"],
               "ai_detection": null})
    );
    assert_eq!(
        result["result"],
        json!({"mode": "noop", "action": "handle_github_push"})
    );
    assert_eq!(result["event_id"], "d-1");
    let runs = ev["action_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "done");
    assert_eq!(runs[0]["action"], "handle_github_push");
    assert_eq!(runs[0]["provider"], "github");
}

#[tokio::test]
async fn rule_beats_mapping_and_changes_apply_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::spawn_in(dir.path(), "serve", &[]);
    ok(&run_cli(
        dir.path(),
        &["mapping", "set", "--provider", "stripe", "--action", "stripe_default"],
        &[],
    ));
    let body = r#"{"object":"event","type":"invoice.paid","data":{"amount":7}}"#;
    let (_, v) = app.post("/webhook", body, &[("x-event-id", "s1")]).await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(10))
        .await;
    assert_eq!(ev["event"]["result"]["router"]["mapped_action"], "stripe_default");
    assert_eq!(ev["event"]["result"]["router"]["confidence"], 0.85);

    // A rule added while the service runs wins over the mapping for the next event.
    let cond = r#"{"op":"json_path_equals","path":"data.amount","value":7}"#;
    ok(&run_cli(
        dir.path(),
        &[
            "mapping",
            "rule-set",
            "--provider",
            "stripe",
            "--name",
            "seven",
            "--conditions-json",
            cond,
            "--action",
            "seven",
        ],
        &[],
    ));
    let (_, v) = app.post("/webhook", body, &[("x-event-id", "s2")]).await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(10))
        .await;
    assert_eq!(ev["event"]["result"]["router"]["mapped_action"], "seven");

    // "7" is not 7: falls back to the mapping.
    let (_, v) = app
        .post(
            "/webhook",
            r#"{"object":"event","type":"t","data":{"amount":"7"}}"#,
            &[("x-event-id", "s3")],
        )
        .await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(10))
        .await;
    assert_eq!(ev["event"]["result"]["router"]["mapped_action"], "stripe_default");

    // Disabled mapping: no route.
    ok(&run_cli(
        dir.path(),
        &[
            "mapping",
            "set",
            "--provider",
            "stripe",
            "--action",
            "stripe_default",
            "--disabled",
        ],
        &[],
    ));
    let (_, v) = app
        .post(
            "/webhook",
            r#"{"object":"event","type":"t","data":{}}"#,
            &[("x-event-id", "s4")],
        )
        .await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(10))
        .await;
    assert_eq!(ev["event"]["result"]["result"], json!({"note": "no mapping"}));
}

#[test]
fn mapping_cli_outputs_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Reading never creates the database: a missing one is an error naming it.
    let out = run_cli(d, &["mapping", "get", "--provider", "github"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("data/events.sqlite3"), "{}", stderr(&out));
    init_db(d);
    let out = run_cli(
        d,
        &[
            "mapping",
            "set",
            "--provider",
            "GitHub",
            "--action",
            "a",
            "--handler-mode",
            "command",
            "--handler-target",
            "t",
        ],
        &[],
    );
    ok(&out);
    assert_eq!(stdout(&out).trim(), "ok");
    let got: Value =
        serde_json::from_str(stdout(&run_cli(d, &["mapping", "get", "--provider", "github"], &[])).trim()).unwrap();
    assert_eq!(
        got,
        json!({"provider": "github", "action": "a", "handler_mode": "command", "handler_target": "t", "enabled": true})
    );

    assert_eq!(
        stdout(&run_cli(d, &["mapping", "rule-list", "--provider", "github"], &[])).trim(),
        "no rules"
    );
    for (name, prio) in [("late", "50"), ("early", "5"), ("tie", "50")] {
        let cond = r#"{"op":"header_present","name":"x-a"}"#;
        ok(&run_cli(
            d,
            &[
                "mapping",
                "rule-set",
                "--provider",
                "github",
                "--name",
                name,
                "--priority",
                prio,
                "--conditions-json",
                cond,
                "--action",
                name,
            ],
            &[],
        ));
    }
    let listed = stdout(&run_cli(d, &["mapping", "rule-list", "--provider", "github"], &[]));
    let names: Vec<String> = listed
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["early", "late", "tie"], "priority, then id");

    let bad = [
        (r#"{"op":"frobnicate","name":"x"}"#, "frobnicate"),
        (r#"{"op":"header_equals","name":"x"}"#, "value"),
        (r#"{"all": [{"op":"json_path_exists"}]}"#, "path"),
        ("{not json", "JSON"),
    ];
    for (cond, needle) in bad {
        let out = run_cli(
            d,
            &[
                "mapping",
                "rule-set",
                "--provider",
                "github",
                "--name",
                "bad",
                "--conditions-json",
                cond,
                "--action",
                "x",
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{cond}");
        assert!(stderr(&out).contains(needle), "{cond}: {}", stderr(&out));
    }
    let out = run_cli(
        d,
        &[
            "mapping",
            "set",
            "--provider",
            "x",
            "--action",
            "a",
            "--handler-mode",
            "shell",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("shell"));
    let listed_after = stdout(&run_cli(d, &["mapping", "rule-list", "--provider", "github"], &[]));
    assert_eq!(listed, listed_after, "refused rules changed nothing");
}

#[tokio::test]
async fn config_file_all_or_nothing_at_start_up_and_by_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = json!({"version": 1,
        "mappings": [{"provider": "Unknown", "action": "echo_action", "handler_mode": "noop", "handler_target": null, "enabled": true}],
        "rules": [{"provider": "github", "name": "push", "priority": 10,
                   "conditions": {"all": [{"op": "header_equals", "name": "x-github-event", "value": "push"}]},
                   "action": "handle_github_push", "handler_mode": "noop", "handler_target": null, "enabled": true}]});
    let bad = json!({"version": 1,
        "mappings": [{"provider": "slack", "action": "slack_action"}],
        "rules": [{"provider": "github", "name": "broken", "conditions": {"op": "nope"}, "action": "x"}]});
    std::fs::write(d.join("good.json"), good.to_string()).unwrap();
    std::fs::write(d.join("bad.json"), bad.to_string()).unwrap();

    let out = run_cli(d, &["mapping", "apply-config", "--config", "bad.json"], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("rules[0]") && stderr(&out).contains("broken"),
        "{}",
        stderr(&out)
    );
    assert!(
        !d.join("data/events.sqlite3").exists(),
        "nothing half-applied: not even a database"
    );

    // A bad file at start-up stops the service.
    let out = run_cli(d, &["serve"], &[("APP_CONFIG_PATH", "bad.json")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));

    // A good file at start-up is applied.
    let app = App::spawn_in(d, "serve", &[("APP_CONFIG_PATH", "good.json")]);
    let (_, v) = app.post("/webhook", r#"{"x":1}"#, &[]).await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(10))
        .await;
    assert_eq!(
        ev["event"]["result"]["result"],
        json!({"mode": "noop", "action": "echo_action"})
    );
    drop(app);

    let other = tempfile::tempdir().unwrap();
    std::fs::copy(d.join("good.json"), other.path().join("good.json")).unwrap();
    init_db(other.path());
    let out = run_cli(other.path(), &["mapping", "apply-config", "--config", "good.json"], &[]);
    ok(&out);
    let rules = stdout(&run_cli(
        other.path(),
        &["mapping", "rule-list", "--provider", "github"],
        &[],
    ));
    assert!(rules.contains("handle_github_push"));
}

#[tokio::test]
async fn command_outputs_and_idempotent_replay() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init_db(d);
    let counter = d.join("runs.txt");
    let script = format!(
        "cat > /dev/null; echo run >> {}; echo '{{\"answer\": 42}}'",
        counter.display()
    );
    std::fs::write(
        d.join("commands.json"),
        json!({"json": ["sh", "-c", script], "plain": ["sh", "-c", "read -r line; echo hello; echo warn >&2"]})
            .to_string(),
    )
    .unwrap();
    let cond = |v: &str| format!(r#"{{"op":"json_path_equals","path":"kind","value":"{v}"}}"#);
    for kind in ["json", "plain"] {
        ok(&run_cli(
            d,
            &[
                "mapping",
                "rule-set",
                "--provider",
                "unknown",
                "--name",
                kind,
                "--conditions-json",
                &cond(kind),
                "--action",
                kind,
                "--handler-mode",
                "command",
                "--handler-target",
                kind,
            ],
            &[],
        ));
    }
    let app = App::spawn_in(d, "serve", &[]);
    let (_, v) = app.post("/webhook", r#"{"kind":"plain"}"#, &[]).await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(10))
        .await;
    assert_eq!(
        ev["event"]["result"]["result"],
        json!({"stdout": "hello", "stderr": "warn"})
    );

    let (_, v) = app.post("/webhook", r#"{"kind":"json"}"#, &[]).await;
    let row = v["row_id"].as_i64().unwrap();
    let ev = app.wait_status(row, "done", Duration::from_secs(10)).await;
    assert_eq!(ev["event"]["result"]["result"], json!({"answer": 42}));
    let input: Value = serde_json::from_str(ev["action_runs"][0]["input_json"].as_str().unwrap()).unwrap();
    assert_eq!(input["action"], "json");
    assert_eq!(input["payload"]["json"], json!({"kind": "json"}));
    assert_eq!(input["router"]["matched_rule"], "json");

    // Processing the event again does not run the done action again.
    let out = run_cli(d, &["events", "replay", &row.to_string()], &[]);
    ok(&out);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ev = app.wait_status(row, "done", Duration::from_secs(10)).await;
    assert_eq!(ev["event"]["attempt_count"], 1, "replay starts a fresh attempt budget");
    assert_eq!(
        ev["event"]["result"]["idempotent_replay"], true,
        "{}",
        ev["event"]["result"]
    );
    assert_eq!(ev["event"]["result"]["result"], json!({"answer": 42}));
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap().lines().count(),
        1,
        "the command ran once"
    );
    assert_eq!(ev["action_runs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_command_target_fails_the_attempt_clearly() {
    let dir = tempfile::tempdir().unwrap();
    init_db(dir.path());
    std::fs::write(dir.path().join("commands.json"), "{}").unwrap();
    ok(&run_cli(
        dir.path(),
        &[
            "mapping",
            "set",
            "--provider",
            "unknown",
            "--action",
            "a",
            "--handler-mode",
            "command",
            "--handler-target",
            "ghost",
        ],
        &[],
    ));
    let app = App::spawn_in(dir.path(), "serve", &[("WORKER_MAX_ATTEMPTS", "1")]);
    let (_, v) = app.post("/webhook", r#"{"x":1}"#, &[]).await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "error", Duration::from_secs(10))
        .await;
    assert!(
        ev["event"]["last_error"].as_str().unwrap().contains("ghost"),
        "{}",
        ev["event"]
    );
}

#[tokio::test]
async fn llm_mode_echo_and_command_for_unrouted_events() {
    let app = App::spawn("serve", &[("LLM_MODE", "echo")]);
    let (_, v) = app.post("/webhook", r#"{"x":1}"#, &[]).await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(10))
        .await;
    assert_eq!(ev["event"]["result"]["result"]["mode"], "echo");

    let app = App::spawn(
        "serve",
        &[
            ("LLM_MODE", "command"),
            ("LLM_COMMAND", "sh -c 'cat >/dev/null; echo not-json'"),
        ],
    );
    let (_, v) = app.post("/webhook", r#"{"x":1}"#, &[]).await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(10))
        .await;
    assert_eq!(ev["event"]["result"]["result"]["raw_stdout"], "not-json");
}
