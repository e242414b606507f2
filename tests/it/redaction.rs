//! CONTRACT §11 "Headers stored", acceptance 1 of issue 12: the service's secret header
//! and the sender's credentials reach neither the database, nor `GET /events`, nor any
//! handler (a command's stdin, an `http` receiver, the Claude CLI).

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::http_handler::receiver;
use crate::llm::{map, write_fake_claude};

const INGRESS: &str = "ingress-s3cret-value";
const BEARER: &str = "t0k";
const COOKIE: &str = "s=1";

fn secrets_in(text: &str) -> Vec<&'static str> {
    [INGRESS, BEARER, COOKIE]
        .into_iter()
        .filter(|s| text.contains(s))
        .collect()
}

#[tokio::test]
async fn secret_and_credential_headers_reach_no_store_reader_or_handler() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fake = tempfile::tempdir().unwrap();
    let cli = write_fake_claude(fake.path());
    let stdin_file = d.join("command-stdin.json");
    let commands = json!({"dump": ["sh", "-c", "cat > \"$0\"; echo '{\"dumped\":true}'", stdin_file]});
    std::fs::write(d.join("commands.json"), commands.to_string()).unwrap();
    std::fs::create_dir_all(d.join(".claude/agents")).unwrap();
    std::fs::write(
        d.join(".claude/agents/echo.md"),
        "---\nname: echo\ndescription: echoes\ntools: Read\n---\nEcho.\n",
    )
    .unwrap();
    let (url, seen) = receiver(200, None).await;
    map(d, "cmd", "command", "dump");
    map(d, "hook", "http", &url);
    map(d, "agentp", "agent", "echo");
    let env = [
        ("INGRESS_SECRET", INGRESS),
        ("ADMIN_SECRET", "admin"),
        ("CLAUDE_CLI", cli.as_str()),
        ("HTTP_HANDLER_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("HTTP_HANDLER_ALLOW_PRIVATE", "1"),
    ];
    let app = App::spawn_in(d, "serve", &env);
    let headers = [
        ("x-ingress-secret", INGRESS),
        ("authorization", "Bearer t0k"),
        ("cookie", COOKIE),
    ];
    let mut rows = Vec::new();
    for hint in ["cmd", "hook", "agentp"] {
        let body = json!({"hint": hint, "mode": "MODE_structured"}).to_string();
        let (code, v) = app.post(&format!("/webhook/{hint}"), &body, &headers).await;
        assert_eq!(code, 200, "{v}");
        rows.push(v["row_id"].as_i64().unwrap());
    }
    for row in rows {
        let ev = app.wait_status(row, "done", Duration::from_secs(20)).await;
        let text = ev.to_string();
        assert_eq!(secrets_in(&text), Vec::<&str>::new(), "GET /events/{row}: {text}");
        let stored = &ev["event"]["payload"]["headers"];
        assert_eq!(stored["authorization"], "[redacted]", "{stored}");
        assert_eq!(stored["cookie"], "[redacted]", "{stored}");
        assert!(stored.get("x-ingress-secret").is_none(), "{stored}");
    }

    let command_stdin = std::fs::read_to_string(&stdin_file).unwrap();
    assert!(command_stdin.contains("[redacted]"), "{command_stdin}");
    assert_eq!(secrets_in(&command_stdin), Vec::<&str>::new(), "command stdin");

    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let (recv_headers, recv_body) = &requests[0];
    let recv_text = format!("{recv_headers:?} {recv_body}");
    assert!(recv_body.contains("[redacted]"), "{recv_body}");
    assert_eq!(secrets_in(&recv_text), Vec::<&str>::new(), "http receiver");

    let cli_stdin = std::fs::read_to_string(fake.path().join("stdin.structured")).unwrap();
    let cli_argv = String::from_utf8_lossy(&std::fs::read(fake.path().join("argv.structured")).unwrap()).into_owned();
    assert!(cli_stdin.contains("[redacted]") || cli_argv.contains("[redacted]"));
    assert_eq!(secrets_in(&cli_stdin), Vec::<&str>::new(), "claude stdin");
    assert_eq!(secrets_in(&cli_argv), Vec::<&str>::new(), "claude argv");

    // Nor in the database file itself (WAL included), where a backup would carry it.
    drop(app);
    let mut raw = std::fs::read(d.join("data/events.sqlite3")).unwrap();
    raw.extend(std::fs::read(d.join("data/events.sqlite3-wal")).unwrap_or_default());
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.contains("[redacted]"));
    assert_eq!(secrets_in(&raw), Vec::<&str>::new(), "database file");
}

#[tokio::test]
async fn store_sensitive_headers_keeps_credentials_but_never_the_secret_header() {
    let app = App::spawn(
        "http",
        &[
            ("INGRESS_SECRET", INGRESS),
            ("ADMIN_SECRET", "admin"),
            ("STORE_SENSITIVE_HEADERS", "1"),
        ],
    );
    let headers = [("x-ingress-secret", INGRESS), ("authorization", "Bearer t0k")];
    let (code, v) = app.post("/webhook", r#"{"a":1}"#, &headers).await;
    assert_eq!(code, 200, "{v}");
    let (_, ev) = app.get(&format!("/events/{}", v["row_id"]), &[ADMIN]).await;
    let stored = &ev["event"]["payload"]["headers"];
    assert_eq!(stored["authorization"], "Bearer t0k");
    assert!(!ev.to_string().contains(INGRESS), "{ev}");
}

#[test]
fn url_credentials_and_query_stay_out_of_error_messages() {
    let dir = tempfile::tempdir().unwrap();
    let base = "http://user:PASSWORD-1@127.0.0.1:9/?token=TOKEN-1";
    let out = run_cli(dir.path(), &["cron", "call", "--job", "x", "--api-base-url", base], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("127.0.0.1:9"), "{err}");
    assert!(!err.contains("PASSWORD-1") && !err.contains("TOKEN-1"), "{err}");

    let url = "postgres://app:PASSWORD-2@127.0.0.1:9/db?sslmode=disable";
    let out = run_cli(
        dir.path(),
        &["mapping", "get", "--provider", "x"],
        &[("DATABASE_URL", url), ("DATABASE_CONNECT_TIMEOUT_SECONDS", "0")],
    );
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("PASSWORD-2"), "{}", stderr(&out));
}
