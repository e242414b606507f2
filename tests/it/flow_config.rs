//! CONTRACT §13's settings from every entry point to the router: a config file's `"flow"`
//! and `"pools"`, `--flow-json`, what is stored and read back on both backends, and the
//! routing page. (How the worker honours them is tested with the worker.)

use std::path::Path;

use serde_json::{Value, json};
use switchyard::domain::flow::{Flow, Pool};
use switchyard::store::flow::PoolState;

use crate::helpers::*;
use crate::store::{PgSchema, TestStore, store_tests};

/// A review rule with every setting, a debounced mapping, and the pool they name. The flows
/// are written as `Flow::to_json` writes them, so what is read back must equal them.
const REVIEW_FLOW: &str = r#"{"key": "{{payload.repository.full_name}}#{{payload.pull_request.number}}",
    "concurrency": {"limit": 4, "per_key": 1}, "on_conflict": "supersede",
    "debounce": {"quiet": "90s", "max_wait": "10m", "deliver": "all"},
    "rate": {"limit": 30, "per": "1h"}, "pool": "anthropic"}"#;
const TRIAGE_FLOW: &str = r#"{"on_conflict": "queue", "debounce": {"quiet": "2m", "deliver": "last"}}"#;

fn config() -> String {
    format!(
        r#"{{"version": 1, "pools": {{"anthropic": {{"limit": 2}}}},
         "mappings": [{{"provider": "linear", "action": "triage", "flow": {TRIAGE_FLOW}}}],
         "rules": [{{"provider": "github", "name": "review", "priority": 10, "conditions": {{"all": []}},
                     "action": "review_pr", "flow": {REVIEW_FLOW}}},
                   {{"provider": "github", "name": "push", "priority": 20, "conditions": {{"all": []}},
                     "action": "push"}}]}}"#
    )
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

store_tests!(flows_and_pools_are_stored_and_read_back);

async fn flows_and_pools_are_stored_and_read_back(t: TestStore) {
    let db = &t.db;
    let changes = switchyard::config_file::parse(&config()).unwrap();
    db.apply(changes.clone()).await.unwrap();
    let tables = db.routing_tables().await.unwrap();
    let review = tables.rules.iter().find(|r| r.name == "review").unwrap();
    assert_eq!(review.flow, changes.rules[0].flow);
    assert_eq!(review.flow.as_ref().unwrap().to_json(), json_of(REVIEW_FLOW));
    assert_eq!(tables.rules.iter().find(|r| r.name == "push").unwrap().flow, None);
    let triage = db.mapping("linear").await.unwrap().unwrap();
    assert_eq!(triage.flow.unwrap().to_json(), json_of(TRIAGE_FLOW));
    assert_eq!(db.rules("github").await.unwrap()[0].flow, changes.rules[0].flow);
    let pools = db.flow_state().await.unwrap().pools;
    assert_eq!(
        pools,
        vec![PoolState {
            name: "anthropic".into(),
            limit: 2,
            running: 0,
            paused_until: None
        }]
    );

    // Applying again is an upsert: an entry without "flow" has none, a pool's limit moves.
    let mut again = changes;
    again.rules[0].flow = None;
    again.mappings[0].flow = Some(Flow::parse(&json!({"rate": {"limit": 5, "per": "1m"}}), None).unwrap());
    again.pools = vec![Pool {
        name: "anthropic".into(),
        limit: 3,
    }];
    db.apply(again).await.unwrap();
    assert_eq!(db.rules("github").await.unwrap()[0].flow, None);
    let rate = db.mapping("linear").await.unwrap().unwrap().flow.unwrap().rate.unwrap();
    assert_eq!((rate.limit, rate.per.as_secs()), (5, 60));
    assert_eq!(db.flow_state().await.unwrap().pools[0].limit, 3);

    // A stored flow that no longer parses is read as none: the route still routes.
    let sql = r#"UPDATE provider_mappings SET flow_json = '{"concurrency": {"limit": 0}}' WHERE provider = 'linear'"#;
    t.exec(sql, sql).await;
    let sql = "UPDATE routing_rules SET flow_json = 'not json' WHERE name = 'push'";
    t.exec(sql, sql).await;
    let tables = db.routing_tables().await.unwrap();
    assert_eq!(tables.mappings[0].flow, None);
    assert!(tables.rules.iter().all(|r| r.flow.is_none()));
    assert_eq!(db.mapping("linear").await.unwrap().unwrap().action, "triage");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "stdout: {}\nstderr: {}", stdout(out), stderr(out));
}

/// The CLI on one database (`env` selects it; SQLite's must exist already).
fn cli_scenario(dir: &Path, env: &[(&str, &str)]) {
    let config_path = write(dir, "config.json", &config());
    ok(&run_cli(
        dir,
        &["mapping", "apply-config", "--config", &config_path],
        env,
    ));
    let got = json_of(&stdout(&run_cli(dir, &["mapping", "get", "--provider", "linear"], env)));
    assert_eq!(got["flow"], json_of(TRIAGE_FLOW), "{got}");
    let listed = stdout(&run_cli(dir, &["mapping", "rule-list", "--provider", "github"], env));
    let lines: Vec<Value> = listed.lines().map(json_of).collect();
    assert_eq!(lines[0]["flow"], json_of(REVIEW_FLOW), "{listed}");
    assert!(
        lines[1].get("flow").is_none(),
        "a rule without flow lists as before: {listed}"
    );

    // Each bad flow refuses the whole file, naming the entry; nothing of it is applied.
    let rule = |flow: &str| {
        format!(
            r#"{{"pools": {{"anthropic": {{"limit": 2}}}},
             "mappings": [{{"provider": "acme", "action": "a"}}],
             "rules": [{{"provider": "gitlab", "name": "ok", "conditions": {{"all": []}}, "action": "b"}},
                       {{"provider": "github", "name": "x", "conditions": {{"all": []}}, "action": "c", "flow": {flow}}}]}}"#
        )
    };
    let bad = [
        (
            r#"{"pool": "openai"}"#,
            "flow: unknown pool 'openai' (known: anthropic)",
        ),
        (
            r#"{"debounce": {"quiet": "90 seconds"}}"#,
            "flow.debounce.quiet: bad duration",
        ),
        (r#"{"rate": {"limit": 3, "per": "1y"}}"#, "flow.rate.per: bad duration"),
        (
            r#"{"key": "{{body.id}}"}"#,
            "flow.key: unknown placeholder '{{body.id}}'",
        ),
        (
            r#"{"concurrency": {"limit": 1, "per_key": 2}}"#,
            "flow.concurrency: per_key (2) is larger than limit (1)",
        ),
        (
            r#"{"concurency": {"limit": 1}}"#,
            "flow: unknown key 'concurency' (did you mean 'concurrency'?",
        ),
    ];
    for (flow, reason) in bad {
        let path = write(dir, "bad.json", &rule(flow));
        let out = run_cli(dir, &["mapping", "apply-config", "--config", &path], env);
        assert_eq!(out.status.code(), Some(2), "{flow}: {}", stderr(&out));
        let expected = format!("rules[1]: (rule 'x' of provider 'github') {reason}");
        assert!(stderr(&out).contains(&expected), "{flow}: {}", stderr(&out));
        let out = run_cli(dir, &["mapping", "get", "--provider", "acme"], env);
        assert_eq!(
            stdout(&out).trim(),
            "not found",
            "{flow}: the mapping before it was applied"
        );
        let out = run_cli(dir, &["mapping", "rule-list", "--provider", "gitlab"], env);
        assert_eq!(
            stdout(&out).trim(),
            "no rules",
            "{flow}: the rule before it was applied"
        );
    }
    // A flow on a mapping is named as the mapping.
    let path = write(
        dir,
        "bad.json",
        r#"{"mappings": [{"provider": "Acme", "action": "a", "flow": {"pool": "anthropic"}}]}"#,
    );
    let out = run_cli(dir, &["mapping", "apply-config", "--config", &path], env);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            r#"mappings[0]: (provider 'acme') flow: unknown pool 'anthropic' (the config defines no "pools")"#
        ),
        "{}",
        stderr(&out)
    );

    // --flow-json: a bad flow exits 2 naming the flag; a pool must be one the database holds.
    let set = |flow: &str| {
        run_cli(
            dir,
            &[
                "mapping",
                "set",
                "--provider",
                "acme",
                "--action",
                "a",
                "--flow-json",
                flow,
            ],
            env,
        )
    };
    for (flow, reason) in [
        ("{", "error: --flow-json: flow: invalid JSON"),
        (
            r#"{"concurrency": {"limit": 1, "per_key": 3}}"#,
            "error: --flow-json: flow.concurrency: per_key (3) is larger than limit (1)",
        ),
        (
            r#"{"pool": "openai"}"#,
            "error: --flow-json: flow: unknown pool 'openai' (known: anthropic)",
        ),
    ] {
        let out = set(flow);
        assert_eq!(out.status.code(), Some(2), "{flow}: {}", stderr(&out));
        assert!(stderr(&out).contains(reason), "{flow}: {}", stderr(&out));
        let out = run_cli(dir, &["mapping", "get", "--provider", "acme"], env);
        assert_eq!(stdout(&out).trim(), "not found", "{flow} was stored");
    }
    let good = r#"{"key": "{{header.x-team}}", "concurrency": {"per_key": 1}, "pool": "anthropic"}"#;
    ok(&set(good));
    let got = json_of(&stdout(&run_cli(dir, &["mapping", "get", "--provider", "acme"], env)));
    assert_eq!(
        got,
        json!({"provider": "acme", "action": "a", "handler_mode": "noop", "handler_target": null, "enabled": true,
               "flow": {"key": "{{header.x-team}}", "concurrency": {"per_key": 1}, "on_conflict": "queue",
                        "pool": "anthropic"}})
    );
    let rule_set = |flow: &str| {
        let args = [
            "mapping",
            "rule-set",
            "--provider",
            "acme",
            "--name",
            "r",
            "--conditions-json",
            r#"{"all": []}"#,
            "--action",
            "b",
            "--flow-json",
            flow,
        ];
        run_cli(dir, &args, env)
    };
    let out = rule_set(r#"{"on_conflict": "drop"}"#);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("error: --flow-json: flow: "), "{}", stderr(&out));
    assert_eq!(
        stdout(&run_cli(dir, &["mapping", "rule-list", "--provider", "acme"], env)).trim(),
        "no rules"
    );
    ok(&rule_set(r#"{"on_conflict": "skip"}"#));
    let listed = json_of(&stdout(&run_cli(
        dir,
        &["mapping", "rule-list", "--provider", "acme"],
        env,
    )));
    assert_eq!(listed["flow"], json!({"on_conflict": "skip"}));
    // Set again without the flag: the rule is replaced whole, without flow.
    let args = [
        "mapping",
        "rule-set",
        "--provider",
        "acme",
        "--name",
        "r",
        "--conditions-json",
        r#"{"all": []}"#,
        "--action",
        "b",
    ];
    ok(&run_cli(dir, &args, env));
    let listed = json_of(&stdout(&run_cli(
        dir,
        &["mapping", "rule-list", "--provider", "acme"],
        env,
    )));
    assert!(listed.get("flow").is_none(), "{listed}");
}

#[test]
fn the_cli_applies_shows_and_refuses_flows_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    init_db(dir.path());
    cli_scenario(dir.path(), &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_applies_shows_and_refuses_flows_on_postgres() {
    let Some(pg) = PgSchema::create("flow_config::cli").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    tokio::task::block_in_place(|| cli_scenario(dir.path(), &[("DATABASE_URL", &pg.url)]));
}

#[tokio::test]
async fn the_routing_page_shows_each_routes_flow_and_the_pools() {
    let dir = tempfile::tempdir().unwrap();
    init_db(dir.path());
    // Literal text of a key template is the operator's: the page escapes it.
    let config = config().replace("#{{payload.pull_request.number}}", "<b>{{payload.pull_request.number}}");
    let config_path = write(dir.path(), "config.json", &config);
    ok(&run_cli(
        dir.path(),
        &["mapping", "apply-config", "--config", &config_path],
        &[],
    ));
    let app = App::spawn_in(dir.path(), "serve", &[]);
    let page = crate::ui::open_page(&app, "/ui/routing").await;
    let review = "key {{payload.repository.full_name}}&lt;b&gt;{{payload.pull_request.number}} · limit 4 · \
                  per key 1 · supersede · debounce 90s (max 10m, all) · rate 30/1h · pool anthropic";
    assert!(page.contains(review), "{page}");
    assert!(!page.contains("<b>{{"), "unescaped: {page}");
    assert!(page.contains("debounce 2m</td>"), "the mapping's flow: {page}");
    let card = &page[page.find(r#"id="flow""#).expect("the flow control card")..];
    for action in ["triage", "review_pr"] {
        assert!(
            card.contains(&format!(
                r#"<td class="mono">{action}</td><td class="num running">0</td><td class="num waiting">0</td>"#
            )),
            "{action}: {card}"
        );
    }
    assert!(
        card.contains(r#"<td class="mono">anthropic</td><td class="num">0 / 2</td>"#),
        "{card}"
    );
}
