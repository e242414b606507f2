//! CONTRACT §1: settings validation, cron commands, worker --run-once.

use serde_json::Value;

use crate::helpers::*;

#[test]
fn bad_settings_stop_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("PORT", "abc"),
        ("WORKER_MAX_ATTEMPTS", "-1"),
        ("WORKER_POLL_INTERVAL", "soon"),
        ("LLM_MODE", "magic"),
    ] {
        let out = run_cli(dir.path(), &["serve"], &[(var, value)]);
        assert!(!out.status.success(), "{var}={value} was accepted");
        assert!(stderr(&out).contains(var), "{var}: {}", stderr(&out));
    }
    // Empty means unset; values are trimmed.
    let out = run_cli(
        dir.path(),
        &["cron", "enqueue", "--job", "x", "--create-db"],
        &[("PORT", ""), ("WORKER_MAX_ATTEMPTS", " 3 ")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn dotenv_is_loaded_and_real_env_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "APP_DB_PATH=from-dotenv.sqlite3\nPORT=abc\n").unwrap();
    let out = run_cli(
        dir.path(),
        &["cron", "enqueue", "--job", "j", "--create-db"],
        &[("PORT", "8080")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // base_command sets APP_DB_PATH, which wins over .env.
    assert!(!dir.path().join("from-dotenv.sqlite3").exists());
    let out = std::process::Command::new(bin())
        .args(["cron", "enqueue", "--job", "j"])
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success(), "PORT=abc from .env must be refused");
    assert!(stderr(&out).contains("PORT"));
}

#[test]
fn cron_enqueue_dedupes_the_same_tick() {
    let dir = tempfile::tempdir().unwrap();
    init_db(dir.path());
    let first = run_cli(dir.path(), &["cron", "enqueue", "--job", "digest"], &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let v: Value = serde_json::from_str(stdout(&first).trim()).unwrap();
    assert_eq!(v["status"], "queued");
    let id = v["event_id"].as_str().unwrap();
    assert!(id.starts_with("cron:digest:") && id.ends_with("+00:00"), "{id}");
    let out = run_cli(dir.path(), &["worker", "--run-once"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("processed 1 event"));
    let out = run_cli(dir.path(), &["worker", "--run-once"], &[]);
    assert!(stdout(&out).contains("no due events"));
    let shown = run_cli(dir.path(), &["events", "show", "1"], &[]);
    let v: Value = serde_json::from_str(&stdout(&shown)).unwrap();
    assert_eq!(v["event"]["status"], "done");
    assert_eq!(v["event"]["source"], "cron");
    assert_eq!(v["event"]["payload"]["job"], "digest");
    assert_eq!(v["event"]["payload"]["source_hint"], "cron");
}

#[tokio::test]
async fn cron_call_uses_secrets_and_fails_on_non_2xx() {
    let env = [("INGRESS_SECRET", "in"), ("CRON_SECRET", "cr")];
    let app = App::spawn("http", &env);
    let dir = tempfile::tempdir().unwrap();
    let base = app.base.clone();
    let out = run_cli(
        dir.path(),
        &["cron", "call", "--job", "nightly", "--api-base-url", &base],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["status"], "queued");
    assert!(v["event_id"].as_str().unwrap().starts_with("cron:nightly:"));

    let out = run_cli(
        dir.path(),
        &["cron", "call", "--job", "nightly"],
        &[
            ("API_BASE_URL", &base),
            ("INGRESS_SECRET", "in"),
            ("CRON_SECRET", "wrong"),
        ],
    );
    assert!(!out.status.success());
    assert!(stdout(&out).contains("unauthorized"));
    let out = run_cli(
        dir.path(),
        &["cron", "call", "--job", "x", "--api-base-url", "http://127.0.0.1:9"],
        &[],
    );
    assert!(!out.status.success(), "unreachable server must fail");
}

/// Issue 19: an operator command's help shows its own flags, not the service settings.
#[test]
fn subcommand_help_shows_its_own_flags_and_serve_the_service_settings() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(dir.path(), &["mapping", "set", "--help"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    assert!(help.lines().count() < 36, "{} lines:\n{help}", help.lines().count());
    let at = |flag: &str| help.find(flag).unwrap_or_else(|| panic!("{flag} missing:\n{help}"));
    for own in [
        "--provider",
        "--action",
        "--handler-mode",
        "--handler-target",
        "--strict",
    ] {
        assert!(at(own) < at("--db"), "{own} after the database flags:\n{help}");
    }
    for service in ["--host", "--port", "--ingress-secret", "--llm-mode", "--concurrency"] {
        assert!(!help.contains(service), "{service} in mapping set --help:\n{help}");
    }
    let out = run_cli(dir.path(), &["serve", "--help"], &[]);
    let help = stdout(&out);
    for service in [
        "--host",
        "--port",
        "--db",
        "--ingress-secret",
        "--llm-mode",
        "--github-webhook-secret",
    ] {
        assert!(help.contains(service), "{service} missing from serve --help");
    }
}

/// Service flags go after the role; the operator commands take the database flags at
/// either level and read every other setting from the environment.
#[test]
fn service_flags_follow_the_role_and_tools_take_the_database_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(dir.path(), &["serve", "--port", "abc"], &[]);
    assert!(
        !out.status.success() && stderr(&out).contains("PORT"),
        "{}",
        stderr(&out)
    );
    let out = run_cli(dir.path(), &["mapping", "set", "--port", "9"], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a service flag on mapping set: {}",
        stderr(&out)
    );
    let flag_db = dir.path().join("flag.sqlite3");
    let flag_db = flag_db.to_str().unwrap();
    let out = run_cli(
        dir.path(),
        &["cron", "--db", flag_db, "enqueue", "--job", "a", "--create-db"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_cli(dir.path(), &["events", "list", "--db", flag_db], &[]);
    assert!(stdout(&out).contains("cron:a:"), "{}", stderr(&out));
    // A bad service setting in the environment still stops an operator command, naming it.
    let out = run_cli(
        dir.path(),
        &["events", "list", "--db", flag_db],
        &[("WORKER_CONCURRENCY", "0")],
    );
    assert!(
        !out.status.success() && stderr(&out).contains("WORKER_CONCURRENCY"),
        "{}",
        stderr(&out)
    );
}
