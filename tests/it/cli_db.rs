//! Issue 31: one rule for the CLI — no command but the service roles creates a SQLite
//! database; `db init` or `--create-db` does, so a command run in the wrong directory (a
//! crontab line without `cd`) fails instead of queueing into a file nobody serves.

use std::path::Path;

use crate::helpers::*;

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn operator_commands_in_an_empty_directory_exit_1_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["cron", "enqueue", "--job", "digest"][..],
        &["cron", "list"],
        &["mapping", "set", "--provider", "github", "--action", "a"],
        &[
            "mapping",
            "rule-set",
            "--provider",
            "github",
            "--name",
            "n",
            "--conditions-json",
            "{\"all\":[]}",
            "--action",
            "a",
        ],
        &["mapping", "rule-delete", "--provider", "github", "--name", "n"],
        &["events", "replay", "1"],
        &["events", "cancel", "1"],
        &["events", "purge", "--older-than", "7d"],
    ] {
        let out = run_cli(dir.path(), args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("no switchyard database at") && err.contains("data/events.sqlite3") && err.contains("db init"),
            "{args:?}: {err}"
        );
        assert!(is_empty(dir.path()), "{args:?} created a file");
    }
}

#[test]
fn db_init_or_create_db_creates_the_file_and_the_commands_then_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(dir.path(), &["db", "init"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("ok: created "), "{}", stdout(&out));
    assert!(dir.path().join("data/events.sqlite3").is_file());
    let out = run_cli(dir.path(), &["db", "init"], &[]);
    assert!(stdout(&out).contains("is ready"), "{}", stdout(&out));
    let out = run_cli(dir.path(), &["cron", "enqueue", "--job", "digest"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"status\":\"queued\""), "{}", stdout(&out));

    let other = tempfile::tempdir().unwrap();
    let args = ["mapping", "set", "--provider", "github", "--action", "a", "--create-db"];
    let out = run_cli(other.path(), &args, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(other.path().join("data/events.sqlite3").is_file());
    let out = run_cli(other.path(), &["mapping", "get", "--provider", "github"], &[]);
    assert!(stdout(&out).contains("\"action\":\"a\""), "{}", stdout(&out));
}

#[test]
fn sources_list_says_its_answer_is_this_shells() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(dir.path(), &["sources", "list"], &[("GITHUB_WEBHOOK_SECRET", "s")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("sources of this shell's environment"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("/webhook/github"), "{}", stdout(&out));
}
