//! Issue 19: a CLI that cannot silently miss — read-only commands never create a
//! database, the database must be writable before `listening`, wrong values are refused.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use sqlx::{Connection, Executor};

use crate::helpers::*;
use crate::store::PgSchema;

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn read_only_commands_in_an_empty_directory_fail_naming_the_path_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["events", "list"][..],
        &["events", "show", "1"],
        &["mapping", "get", "--provider", "github"],
        &["mapping", "rule-list"],
    ] {
        let out = run_cli(dir.path(), args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("data/events.sqlite3"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(
            files_in(dir.path()).is_empty(),
            "{args:?} created {:?}",
            files_in(dir.path())
        );
    }
    // `-v` names the database a command uses.
    let out = run_cli(dir.path(), &["-v", "cron", "enqueue", "--job", "j", "--create-db"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("database: ") && stderr(&out).contains("data/events.sqlite3"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn events_list_on_a_postgres_database_without_our_tables_creates_none() {
    let Some(pg) = PgSchema::create("cli_safety::events_list_on_postgres").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(dir.path(), &["events", "list"], &[("DATABASE_URL", &pg.url)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no switchyard tables"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("options="),
        "the URL's options leaked: {}",
        stderr(&out)
    );
    let mut conn = pg.connect().await;
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = $1")
        .bind(&pg.name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(tables, 0, "events list created tables");
}

#[test]
fn serve_refuses_a_read_only_sqlite_file_before_listening() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = run_cli(dir, &["cron", "enqueue", "--job", "j", "--create-db"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let db = dir.join("data/events.sqlite3");
    let set_mode = |p: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    for name in files_in(&dir.join("data")) {
        set_mode(&dir.join("data").join(name), 0o444);
    }
    set_mode(&dir.join("data"), 0o555);
    set_mode(dir, 0o755);
    let mut cmd = Command::new(bin());
    cmd.args(["serve"])
        .current_dir(dir)
        .env_clear()
        .env("APP_DB_PATH", &db)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .stdin(Stdio::null());
    // root writes through file modes: run as `nobody`, for whom the file is read-only.
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.output().unwrap();
    set_mode(&dir.join("data"), 0o755);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("listening"), "{err}");
    // Refused at open or at the write probe, depending on the WAL files present: both name it.
    assert!(
        err.contains(&db.display().to_string()) && err.contains("APP_DB_PATH"),
        "{err}"
    );
    assert!(err.contains("not writable") || err.contains("readonly"), "{err}");
}

#[tokio::test]
async fn a_postgres_role_without_create_is_told_which_privilege_is_missing_once() {
    let Some(admin_url) = crate::store::test_database_url() else {
        eprintln!("cli_safety::postgres_role_without_create skipped: TEST_DATABASE_URL is unset");
        return;
    };
    let suffix = format!("{:012x}", fastrand::u64(..1 << 48));
    let (database, role) = (format!("sy_priv_{suffix}"), format!("sy_role_{suffix}"));
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("TEST_DATABASE_URL");
    for sql in [
        format!("CREATE DATABASE {database}"),
        format!("CREATE ROLE {role} LOGIN"),
    ] {
        admin.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
    }
    let mut url = reqwest::Url::parse(&admin_url).unwrap();
    url.set_path(&format!("/{database}"));
    let mut owner = sqlx::PgConnection::connect(url.as_str()).await.unwrap();
    // PostgreSQL 15's default, stated so that older servers behave the same.
    owner
        .execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        .await
        .unwrap();
    owner.close().await.unwrap();
    url.set_username(&role).unwrap();
    url.set_password(None).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(
        dir.path(),
        &["serve"],
        &[
            ("DATABASE_URL", url.as_str()),
            ("DATABASE_CONNECT_TIMEOUT_SECONDS", "5"),
        ],
    );
    for sql in [
        format!("DROP DATABASE {database} WITH (FORCE)"),
        format!("DROP ROLE {role}"),
    ] {
        admin.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
    }
    let err = stderr(&out);
    assert!(!out.status.success() && !err.contains("listening"), "{err}");
    assert!(
        err.contains("CREATE privilege") && err.contains("GRANT CREATE ON SCHEMA public"),
        "{err}"
    );
    assert_eq!(err.matches("permission denied").count(), 1, "{err}");
}

#[test]
fn wrong_values_are_refused_and_misses_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(dir.path(), &["events", "list", "--status", "bogus"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pending, processing, retry, done, error"),
        "{}",
        stderr(&out)
    );
    let out = run_cli(dir.path(), &["events", "list", "--limit", "0"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        files_in(dir.path()).is_empty(),
        "refused commands created {:?}",
        files_in(dir.path())
    );

    init_db(dir.path());
    std::fs::write(dir.path().join("commands.json"), r#"{"deploy": ["true"]}"#).unwrap();
    let rule = |name: &str, target: &str, extra: &[&str]| {
        let mut args = vec!["mapping", "rule-set", "--provider", "github", "--name", name];
        args.extend([
            "--conditions-json",
            r#"{"all":[]}"#,
            "--action",
            "a",
            "--handler-mode",
            "command",
        ]);
        args.extend(["--handler-target", target]);
        args.extend(extra);
        run_cli(dir.path(), &args, &[])
    };
    let out = rule("typo", "deplyo", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning") && stderr(&out).contains("deplyo"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("deploy"),
        "known commands listed: {}",
        stderr(&out)
    );
    let out = rule("strict", "deplyo", &["--strict"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = rule("fine", "deploy", &[]);
    assert!(out.status.success() && stderr(&out).is_empty(), "{}", stderr(&out));
    let out = run_cli(
        dir.path(),
        &[
            "mapping",
            "set",
            "--provider",
            "x",
            "--action",
            "a",
            "--handler-mode",
            "agent",
            "--handler-target",
            "nobody",
        ],
        &[],
    );
    assert!(
        out.status.success() && stderr(&out).contains("agent 'nobody' not found"),
        "{}",
        stderr(&out)
    );

    let out = run_cli(dir.path(), &["mapping", "get", "--provider", "missing"], &[]);
    assert_eq!((out.status.code(), stdout(&out).trim()), (Some(1), "not found"));
    // All providers' rules without --provider; the strict one was not stored.
    let out = run_cli(dir.path(), &["mapping", "rule-list"], &[]);
    let names: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["typo", "fine"]);
    let delete = |name: &str| {
        run_cli(
            dir.path(),
            &["mapping", "rule-delete", "--provider", "github", "--name", name],
            &[],
        )
    };
    assert!(delete("typo").status.success());
    assert_eq!(delete("typo").status.code(), Some(1));
    let out = run_cli(dir.path(), &["mapping", "rule-list", "--provider", "github"], &[]);
    assert!(
        stdout(&out).contains("\"fine\"") && !stdout(&out).contains("typo"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_missing_config_file_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(dir.path(), &["serve", "--config", "nonexist.json"], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.matches("nonexist.json").count(), 1, "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}
