//! The `command` handler through the binary: the children's environment allowlist
//! (CONTRACT §11) and the seed's trimming of stdout.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use switchyard::handlers::child_env::{self, ChildKind};

use crate::helpers::*;

/// Writes `commands.json` with `name → argv` and routes every unknown payload to `name`.
fn route_to_command(dir: &Path, name: &str, argv: &[&str]) {
    std::fs::write(dir.join("commands.json"), json!({ name: argv }).to_string()).unwrap();
    route_unknown(dir, name, "command", name);
}

#[tokio::test]
async fn a_command_sees_only_allowlisted_variables() {
    let dir = tempfile::tempdir().unwrap();
    route_to_command(dir.path(), "env", &["env"]);
    let app = App::spawn_in(
        dir.path(),
        "serve",
        &[
            ("SWITCHYARD_SENTINEL", "sentinel-4f1d"),
            ("GITHUB_TOKEN", "ghp_not_for_children"),
            ("ANTHROPIC_API_KEY", "sk-not-for-commands"),
            ("INGRESS_SECRET", "ingress-7"),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C.UTF-8"),
            ("TZ", "UTC"),
            ("HOME", "/nonexistent-home"),
            ("PASSED_ON", "yes-please"),
            ("COMMAND_ENV_PASSTHROUGH", "PASSED_ON"),
        ],
    );
    let (code, v) = app
        .post("/webhook", r#"{"x":1}"#, &[("x-ingress-secret", "ingress-7")])
        .await;
    assert_eq!(code, 200, "{v}");
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(10))
        .await;
    let env = ev["event"]["result"]["result"]["stdout"].as_str().unwrap().to_owned();
    let names: Vec<&str> = env.lines().filter_map(|l| l.split_once('=').map(|(n, _)| n)).collect();
    for name in &names {
        assert!(
            child_env::allowed(name, ChildKind::Command, &["PASSED_ON".to_owned()]),
            "{name} is not allowlisted:\n{env}"
        );
    }
    for name in ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "PASSED_ON"] {
        assert!(names.contains(&name), "{name} missing:\n{env}");
    }
    for value in [
        "sentinel-4f1d",
        "ghp_not_for_children",
        "sk-not-for-commands",
        "ingress-7",
    ] {
        assert!(!env.contains(value), "{value} leaked:\n{env}");
    }
}

#[tokio::test]
async fn command_stdout_is_trimmed_before_it_is_parsed_or_stored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("commands.json"),
        json!({
            "text": ["sh", "-c", "cat >/dev/null; printf 'not json at all\\n'"],
            "json": ["sh", "-c", "cat >/dev/null; printf '\\n  {\"ok\": true}\\n\\n'"],
        })
        .to_string(),
    )
    .unwrap();
    route_unknown(dir.path(), "text", "command", "text");
    let app = App::spawn_in(dir.path(), "serve", &[]);
    let (_, v) = app.post("/webhook", r#"{"n":1}"#, &[]).await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(10))
        .await;
    assert_eq!(
        ev["event"]["result"]["result"],
        json!({"stdout": "not json at all", "stderr": ""})
    );
    let output = ev["action_runs"][0]["output_json"].as_str().unwrap();
    assert!(output.contains(r#""not json at all""#), "{output}");

    route_unknown(dir.path(), "json", "command", "json");
    let (_, v) = app.post("/webhook", r#"{"n":2}"#, &[]).await;
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(10))
        .await;
    assert_eq!(ev["event"]["result"]["result"], json!({"ok": true}));
}
