//! Fan-out (CONTRACT §12) through the binary, on SQLite and on PostgreSQL: rules with
//! `continue`, one action run per action, retries that rerun only the failed action, forced
//! replays that rerun all, and the per-action state in the API and `/metrics`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::store::PgSchema;

/// A command that appends its name to `<name>.log` in `dir` (its side effect, counted by
/// the test), then answers JSON; `slack` fails (exit 3) until the file `fixed` exists.
fn command(dir: &Path, name: &str) -> Value {
    let log = dir.join(format!("{name}.log"));
    let fixed = dir.join("fixed");
    let gate = if name == "slack" {
        format!(
            "test -e '{}' || {{ echo slack is down >&2; exit 3; }}; ",
            fixed.display()
        )
    } else {
        String::new()
    };
    let script = format!(
        "echo {name} >> '{}'; {gate}echo '{{\"did\": \"{name}\"}}'",
        log.display()
    );
    json!(["sh", "-c", script])
}

/// Lines in `<name>.log`: how many times that command ran.
fn runs_of(dir: &Path, name: &str) -> usize {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).map_or(0, |s| s.lines().count())
}

/// The config: three rules of provider `shop` that match every event, the first two with
/// `continue`; a fourth after them and the provider's mapping must never apply.
fn write_config(dir: &Path) {
    let commands: serde_json::Map<String, Value> = ["review", "slack", "ledger", "after", "mapped"]
        .iter()
        .map(|n| ((*n).to_string(), command(dir, n)))
        .collect();
    std::fs::write(dir.join("commands.json"), Value::Object(commands).to_string()).unwrap();
    let rule = |name: &str, priority: i64, cont: bool| {
        json!({"provider": "shop", "name": name, "priority": priority, "continue": cont,
               "conditions": {"op": "json_path_exists", "path": "order"},
               "action": name, "handler_mode": "command", "handler_target": name})
    };
    let config = json!({"version": 1,
        "mappings": [{"provider": "shop", "action": "mapped", "handler_mode": "command",
                      "handler_target": "mapped"}],
        // Listed out of order: evaluation goes by priority.
        "rules": [rule("ledger", 30, false), rule("review", 10, true), rule("after", 40, true),
                  rule("slack", 20, true)]});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// Polls the event until `done(event)` holds, or panics after `within`.
async fn wait_for(app: &App, row: i64, what: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (code, v) = app.get(&format!("/events/{row}"), &[]).await;
        if code == 200 && done(&v) {
            return v;
        }
        assert!(
            start.elapsed() < within,
            "event {row}: not {what} after {within:?}: {v}\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Each action run's status by action.
fn run_states(v: &Value) -> Vec<(String, String)> {
    let mut states: Vec<(String, String)> = v["action_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().into(),
                r["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    states.sort();
    states
}

/// Each action run's attempt count by action.
fn run_attempts(v: &Value) -> Vec<(String, i64)> {
    let mut counts: Vec<(String, i64)> = v["action_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["action"].as_str().unwrap().into(), r["attempts"].as_i64().unwrap()))
        .collect();
    counts.sort();
    counts
}

fn attempts(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
    pairs.iter().map(|(a, n)| ((*a).into(), *n)).collect()
}

fn states(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, s)| ((*a).into(), (*s).into())).collect()
}

async fn fan_out_scenario(env: &[(&str, &str)]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_config(dir);
    let out = run_cli(
        dir,
        &["mapping", "apply-config", "--create-db", "--config", "config.json"],
        env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let app = App::spawn_in(dir, "serve", env);

    let (code, v) = app.post("/webhook/shop", r#"{"order": {"id": 7}}"#, &[]).await;
    assert_eq!(code, 200, "{v}");
    let row = v["row_id"].as_i64().unwrap();

    // Attempt 1: review and ledger done, slack failed; the event retries.
    let v = wait_for(&app, row, "retry", Duration::from_secs(20), |v| {
        v["event"]["status"] == "retry"
    })
    .await;
    let ev = &v["event"];
    let listed: Vec<&str> = ev["result"]["router"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["review", "slack", "ledger"], "{ev}");
    assert_eq!(ev["result"]["router"]["mapped_action"], "review");
    assert_eq!(ev["result"]["router"]["actions"][1]["matched_rule"], "slack");
    assert_eq!(ev["result"]["ok"], false);
    assert_eq!(ev["result"]["result"]["actions"]["review"], json!({"did": "review"}));
    assert!(
        ev["result"]["result"]["actions"]["slack"]["error"]
            .as_str()
            .unwrap()
            .contains("slack is down"),
        "{ev}"
    );
    assert!(ev["last_error"].as_str().unwrap().starts_with("slack: "), "{ev}");
    assert_eq!(
        run_states(&v),
        states(&[("ledger", "done"), ("review", "done"), ("slack", "error")])
    );
    assert_eq!(
        run_attempts(&v),
        attempts(&[("ledger", 1), ("review", 1), ("slack", 1)])
    );
    assert!(
        v["action_runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["action"] != "after")
    );

    // Attempt 2 reruns slack alone.
    let v = wait_for(&app, row, "retried", Duration::from_secs(30), |v| {
        v["event"]["attempt_count"].as_i64() >= Some(2) && v["event"]["status"] == "retry"
    })
    .await;
    assert_eq!(run_states(&v)[2], ("slack".into(), "error".into()));
    assert_eq!((runs_of(dir, "review"), runs_of(dir, "ledger")), (1, 1));
    assert!(runs_of(dir, "slack") >= 2);
    // Only slack counts its reruns.
    let counts = run_attempts(&v);
    assert_eq!(counts[..2], attempts(&[("ledger", 1), ("review", 1)]), "{v}");
    assert!(counts[2].1 >= 2, "{v}");

    // The listing and the metrics show which action failed and which are done.
    let (code, list) = app.get("/events?provider=shop", &[]).await;
    assert_eq!(code, 200, "{list}");
    let actions = &list["events"][0]["actions"];
    assert!(
        actions
            .as_array()
            .unwrap()
            .contains(&json!({"action": "slack", "status": "error"})),
        "{list}"
    );
    assert!(
        actions
            .as_array()
            .unwrap()
            .contains(&json!({"action": "review", "status": "done"}))
    );
    let metrics = client()
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_fan_out_action_runs_total")
                && l.contains(r#"action="slack""#)
                && l.contains(r#"outcome="error""#)),
        "{metrics}"
    );

    // Fixed: the next attempt runs slack once more and the event ends done.
    std::fs::write(dir.join("fixed"), "").unwrap();
    let v = wait_for(&app, row, "done", Duration::from_secs(30), |v| {
        v["event"]["status"] == "done"
    })
    .await;
    let ev = &v["event"];
    assert_eq!(
        ev["result"]["result"],
        json!({"actions": {"review": {"did": "review"}, "slack": {"did": "slack"}, "ledger": {"did": "ledger"}}})
    );
    assert_eq!(ev["result"]["ok"], true);
    assert_eq!(ev["last_error"], Value::Null);
    assert!(ev["result"].get("idempotent_replay").is_none(), "{ev}");
    assert_eq!(
        run_states(&v),
        states(&[("ledger", "done"), ("review", "done"), ("slack", "done")])
    );
    let slack_runs = runs_of(dir, "slack");
    assert_eq!((runs_of(dir, "review"), runs_of(dir, "ledger")), (1, 1));
    // Each action counts the times its handler really ran: slack failed at least twice
    // (3 when the fix lands before its third attempt), the others succeeded at once.
    assert!(slack_runs >= 3, "{slack_runs}");
    let counted = attempts(&[("ledger", 1), ("review", 1), ("slack", slack_runs as i64)]);
    assert_eq!(run_attempts(&v), counted, "{v}");
    // The dashboard shows each action's count beside its state, in the action list and
    // on the run cards.
    let page = crate::ui::open_page(&app, &format!("/ui/events/{row}")).await;
    let shown = |n: usize| page.matches(&format!(r#"data-attempts="{n}">"#)).count();
    assert_eq!((shown(1), shown(slack_runs)), (4, 2), "{page}");
    assert!(page.contains(&format!("{slack_runs} attempts</span>")), "{page}");
    // Each done run keeps its own input and output.
    for run in v["action_runs"].as_array().unwrap() {
        let action = run["action"].as_str().unwrap();
        let output: Value = serde_json::from_str(run["output_json"].as_str().unwrap()).unwrap();
        assert_eq!(output, json!({"did": action}));
        let input: Value = serde_json::from_str(run["input_json"].as_str().unwrap()).unwrap();
        assert_eq!(input["action"], action);
        assert_eq!(input["payload"]["json"], json!({"order": {"id": 7}}));
    }
    assert_eq!((runs_of(dir, "after"), runs_of(dir, "mapped")), (0, 0));

    // A plain replay runs nothing again: every output is replayed.
    let (code, r) = app.post(&format!("/events/{row}/replay"), "", &[]).await;
    assert_eq!(code, 200, "{r}");
    let v = wait_for(&app, row, "replayed", Duration::from_secs(20), |v| {
        v["event"]["status"] == "done" && v["event"]["result"]["idempotent_replay"] == true
    })
    .await;
    assert_eq!(
        v["event"]["result"]["result"]["actions"]["slack"],
        json!({"did": "slack"})
    );
    assert_eq!(
        (runs_of(dir, "review"), runs_of(dir, "ledger"), runs_of(dir, "slack")),
        (1, 1, slack_runs)
    );
    assert_eq!(run_attempts(&v), counted, "a replayed output is no attempt: {v}");

    // A forced replay reruns every action.
    let (code, r) = app.post(&format!("/events/{row}/replay?force=1"), "", &[]).await;
    assert_eq!(code, 200, "{r}");
    let v = wait_for(&app, row, "force-replayed", Duration::from_secs(20), |v| {
        v["event"]["status"] == "done" && v["event"]["result"].get("idempotent_replay").is_none()
    })
    .await;
    assert_eq!(
        (runs_of(dir, "review"), runs_of(dir, "ledger"), runs_of(dir, "slack")),
        (2, 2, slack_runs + 1)
    );
    let forced = attempts(&[("ledger", 2), ("review", 2), ("slack", slack_runs as i64 + 1)]);
    assert_eq!(run_attempts(&v), forced, "{v}");
    assert_eq!((runs_of(dir, "after"), runs_of(dir, "mapped")), (0, 0));
}

#[tokio::test]
async fn fan_out_runs_each_action_as_its_own_unit_on_sqlite() {
    fan_out_scenario(&[]).await;
}

#[tokio::test]
async fn fan_out_runs_each_action_as_its_own_unit_on_postgres() {
    let Some(pg) = PgSchema::create("fan_out::each_action_its_own_unit").await else {
        return;
    };
    fan_out_scenario(&[("DATABASE_URL", &pg.url)]).await;
}

#[tokio::test]
async fn rule_set_continue_is_stored_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    init_db(dir.path());
    let set = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "mapping",
            "rule-set",
            "--provider",
            "shop",
            "--name",
            name,
            "--conditions-json",
            r#"{"op":"json_path_exists","path":"order"}"#,
            "--action",
            name,
        ];
        args.extend_from_slice(extra);
        let out = run_cli(dir.path(), &args, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    set("first", &["--priority", "1", "--continue"]);
    set("second", &["--priority", "2"]);
    let listed = stdout(&run_cli(
        dir.path(),
        &["mapping", "rule-list", "--provider", "shop"],
        &[],
    ));
    let rules: Vec<Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rules[0]["continue"], true, "{listed}");
    assert!(rules[1].get("continue").is_none(), "{listed}");

    let app = App::spawn_in(dir.path(), "serve", &[]);
    let (_, v) = app.post("/webhook/shop", r#"{"order": 1}"#, &[]).await;
    let v = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(20))
        .await;
    assert_eq!(
        v["event"]["result"]["result"],
        json!({"actions": {"first": {"mode": "noop", "action": "first"},
                           "second": {"mode": "noop", "action": "second"}}})
    );
    // noop runs of a fan-out are stored like any other, and count their one attempt.
    assert_eq!(run_attempts(&v), attempts(&[("first", 1), ("second", 1)]));
}

/// A command that marks `<name>.started` and waits (up to `tenths` tenths of a second) for
/// `<other>.started`: it succeeds in its first run only if both run at the same time.
fn rendezvous(dir: &Path, name: &str, other: &str, tenths: u32) -> Value {
    let (mine, theirs) = (
        dir.join(format!("{name}.started")),
        dir.join(format!("{other}.started")),
    );
    let script = format!(
        "touch '{}'; i=0; while [ ! -e '{}' ]; do i=$((i+1)); [ $i -gt {tenths} ] && exit 4; sleep 0.1; done; \
         echo '{{\"met\": \"{other}\"}}'",
        mine.display(),
        theirs.display()
    );
    json!(["sh", "-c", script])
}

/// Serves the two rendezvous actions for provider `pair` with `env`; returns the event once done.
async fn pair_event(tenths: u32, env: &[(&str, &str)]) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let commands = json!({"left": rendezvous(dir, "left", "right", tenths),
                          "right": rendezvous(dir, "right", "left", tenths)});
    std::fs::write(dir.join("commands.json"), commands.to_string()).unwrap();
    let rule = |name: &str, priority: i64, cont: bool| {
        json!({"provider": "pair", "name": name, "priority": priority, "continue": cont,
               "conditions": {"all": []}, "action": name, "handler_mode": "command", "handler_target": name})
    };
    let config = json!({"version": 1, "rules": [rule("left", 1, true), rule("right", 2, false)]});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let out = run_cli(
        dir,
        &["mapping", "apply-config", "--create-db", "--config", "config.json"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let app = App::spawn_in(dir, "serve", env);
    let (_, v) = app.post("/webhook/pair", r#"{"x": 1}"#, &[]).await;
    app.wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(60))
        .await
}

#[tokio::test]
async fn the_actions_of_an_event_run_at_the_same_time_each_in_a_worker_slot() {
    let v = pair_event(200, &[]).await;
    // Run one after the other, the first would have given up and failed attempt 1.
    assert_eq!(v["event"]["attempt_count"], 1, "{v}");
    assert_eq!(
        v["event"]["result"]["result"],
        json!({"actions": {"left": {"met": "right"}, "right": {"met": "left"}}})
    );
    // With one worker slot, the second action waits for the first one's slot: the first
    // gives up waiting, and only the retry (the other now started) gets both done.
    let v = pair_event(15, &[("WORKER_CONCURRENCY", "1")]).await;
    assert_eq!(v["event"]["attempt_count"], 2, "{v}");
}

mod store_level {
    //! A fan-out finish through the store, on both backends: every run written, the
    //! unfinished result stored, nothing written for a lost claim, done runs read back.

    use std::time::Duration;

    use switchyard::store::{EventFilter, FanOutFinish, Finish, Outcome};

    use crate::store::{TestStore, done, enqueue, run, store_tests};

    store_tests!(a_fan_out_finish_writes_every_run_and_its_unfinished_result);

    async fn a_fan_out_finish_writes_every_run_and_its_unfinished_result(t: TestStore) {
        let db = &t.db;
        let (fan, single) = (enqueue(db, "fan").await, enqueue(db, "single").await);
        let claimed = db.claim(2, Duration::from_secs(30)).await.unwrap();
        let claim = |id: i64| claimed.iter().find(|c| c.id == id).unwrap().claim_ref();
        let unfinished = r#"{"event_id":"fan","ok":false,"result":{"actions":{"a":{"out":1},"b":{"error":"no"}}}}"#;
        let fan_finish = |claim, extra: &str| Finish {
            claim,
            outcome: Outcome::Retry {
                error: "b: no".into(),
                next_attempt_at: switchyard::domain::Timestamp::from_stored(switchyard::time::now()),
            },
            action_run: Some(run(fan, "a", "done")),
            provider: Some("github".into()),
            action: Some("a".into()),
            other_runs_read_event: false,
            fan_out: Some(Box::new(FanOutFinish {
                more_runs: vec![run(fan, "b", "error"), run(fan, extra, "done")],
                unfinished_result_json: Some(unfinished.into()),
            })),
        };
        // With a one-action finish in the same batch (PostgreSQL stores both in one statement).
        let applied = db
            .finish_many(vec![fan_finish(claim(fan), "c"), done(claim(single))])
            .await
            .unwrap();
        assert_eq!(applied, [true, true]);
        let event = db.event(fan).await.unwrap().unwrap();
        assert_eq!(event.status.unwrap().as_str(), "retry");
        assert_eq!(event.result_json.as_deref(), Some(unfinished));
        assert_eq!(event.last_error.as_deref(), Some("b: no"));
        let mut runs: Vec<(String, String)> = db
            .action_runs(fan)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.action.unwrap(), r.status.unwrap().as_str().to_string()))
            .collect();
        runs.sort();
        let want = [("a", "done"), ("b", "error"), ("c", "done")].map(|(a, s)| (a.to_string(), s.to_string()));
        assert_eq!(runs, want);

        // A lost claim (a stale attempt) writes no run at all.
        assert!(!db.finish(fan_finish(claim(fan), "lost")).await.unwrap());
        assert!(db.action_run(fan, "lost").await.unwrap().is_none());

        // The listing shows each action's state, and nothing more for the one-action event.
        let page = db.list_page(EventFilter::default(), None, 10).await.unwrap().events;
        let listed = |id: i64| page.iter().find(|e| e.id == id).unwrap();
        let states: Vec<(String, String)> = listed(fan)
            .actions
            .as_ref()
            .expect("a fan-out event lists its actions")
            .iter()
            .map(|s| (s.action.clone(), s.status.unwrap().as_str().to_string()))
            .collect();
        assert_eq!(states.len(), 3);
        assert!(states.contains(&("b".into(), "error".into())));
        assert!(listed(single).actions.is_none());
        let json = serde_json::to_value(listed(single)).unwrap();
        assert!(json.get("actions").is_none(), "{json}");

        // The next claim sees the done runs, with their full outputs: they are not rerun.
        let again = db.claim(1, Duration::from_secs(30)).await.unwrap();
        let mut done_runs: Vec<(String, Option<String>)> = again[0]
            .done_runs
            .iter()
            .map(|r| (r.action.clone(), r.output_json.clone()))
            .collect();
        done_runs.sort();
        assert_eq!(
            done_runs,
            [
                ("a".to_string(), Some(r#"{"out":1}"#.to_string())),
                ("c".to_string(), Some(r#"{"out":1}"#.to_string()))
            ]
        );
    }
}
