//! Compatibility with the Python prototype found by black-box comparison (issue 12):
//! Fireflies event ids, GitHub's legacy signature header, the prototype's file layout.

use crate::helpers::*;

#[tokio::test]
async fn fireflies_ids_and_githubs_sha1_header() {
    let app = App::spawn("http", &[("FIREFLIES_WEBHOOK_SECRET", "ff")]);
    let body = r#"{"meetingId":"m-7","eventType":"Transcription completed"}"#;
    let sig = format!("sha256={}", sign("ff", body));
    let (code, v) = app.post("/webhook", body, &[("x-hub-signature", &sig)]).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["event_id"], "fireflies:m-7:Transcription completed");
    let body = r#"{"meetingId":"m-7","eventType":"x","clientReferenceId":"ref-1"}"#;
    let sig = format!("sha256={}", sign("ff", body));
    let (_, v) = app.post("/webhook", body, &[("x-hub-signature", &sig)]).await;
    assert_eq!(v["event_id"], "fireflies_ref:ref-1");
    // A wrong Fireflies signature is refused...
    let (code, _) = app.post("/webhook", body, &[("x-hub-signature", "sha256=00")]).await;
    assert_eq!(code, 401);
    // ...but GitHub's sha1 header is not a Fireflies signature at all.
    let gh = [("x-hub-signature", "sha1=0123456789abcdef"), ("x-github-event", "ping")];
    let (code, v) = app.post("/webhook/github", r#"{"zen":"z"}"#, &gh).await;
    assert_eq!(code, 200, "{v}");
}

#[tokio::test]
async fn prototype_layout_is_used_when_the_defaults_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The prototype's layout: its database (with a mapping) and whitelist under app/.
    std::fs::create_dir_all(d.join("app/data")).unwrap();
    let commands = serde_json::json!({"hello": ["sh", "-c", "cat > /dev/null; echo '{\"from\":\"prototype\"}'"]});
    std::fs::write(d.join("app/commands.json"), commands.to_string()).unwrap();
    let args = [
        "mapping",
        "set",
        "--provider",
        "unknown",
        "--action",
        "old_action",
        "--handler-mode",
        "command",
        "--handler-target",
        "hello",
    ];
    let out = run_cli(
        d,
        &[&args[..], &["--create-db"]].concat(),
        &[("APP_DB_PATH", "app/data/events.sqlite3")],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // No settings (an empty APP_DB_PATH is unset): serve finds both and says so.
    let app = App::spawn_in(d, "serve", &[("APP_DB_PATH", "")]);
    let logs = app.logs();
    assert!(logs.contains("using the prototype's database"), "{logs}");
    let (code, v) = app.post("/webhook", r#"{"any":"payload"}"#, &[]).await;
    assert_eq!(code, 200, "{v}");
    let ev = app
        .wait_status(
            v["row_id"].as_i64().unwrap(),
            "done",
            std::time::Duration::from_secs(15),
        )
        .await;
    let result = &ev["event"]["result"];
    assert_eq!(result["router"]["mapped_action"], "old_action", "{result}");
    assert_eq!(result["result"]["from"], "prototype", "{result}");
    assert!(app.logs().contains("using the prototype's commands file"));
    assert!(
        !d.join("data/events.sqlite3").exists(),
        "no new empty database beside it"
    );
}
