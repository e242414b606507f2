//! CONTRACT §11 "Request limits" and "Start-up warnings" (issue 12, acceptance 5 to 8).

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// `levels` objects/arrays inside each other.
fn nested(levels: usize) -> String {
    format!("{}[1]{}", "{\"a\":".repeat(levels - 1), "}".repeat(levels - 1))
}

pub(crate) fn addr_of(app: &App) -> String {
    app.base.trim_start_matches("http://").to_string()
}

/// Reads from `stream` until `needle` arrives (Ok(text)), EOF or `within` passes (Err(text)).
async fn read_until(stream: &mut TcpStream, needle: &str, within: Duration) -> Result<String, String> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if text.contains(needle) {
            return Ok(text);
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => return Err(text),
        }
    }
}

#[tokio::test]
async fn json_nested_past_64_levels_is_refused_and_60_is_routed() {
    let dir = tempfile::tempdir().unwrap();
    route_unknown(dir.path(), "deep_action", "noop", "");
    let app = App::spawn_in(dir.path(), "serve", &[("ADMIN_SECRET", "admin")]);
    let (code, v) = app.post("/webhook", &nested(100), &[]).await;
    assert_eq!(code, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("64"), "{v}");
    let (code, _) = app.get("/events/1", &[ADMIN]).await;
    assert_eq!(code, 404, "nothing stored for the refused body");

    let (code, v) = app.post("/webhook", &nested(60), &[]).await;
    assert_eq!(code, 200, "{v}");
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(10))
        .await;
    let event = &ev["event"];
    assert_eq!(event["result"]["router"]["mapped_action"], "deep_action", "{event}");
    assert_eq!(
        event["payload"]["json"],
        serde_json::from_str::<Value>(&nested(60)).unwrap()
    );
}

#[tokio::test]
async fn python_urllib_sending_a_whole_oversize_body_reads_the_413() {
    let app = App::spawn("http", &[]);
    let script = r#"
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], data=b"x" * (3 * 1024 * 1024),
                             headers={"Content-Type": "application/json"}, method="POST")
try:
    urllib.request.urlopen(req, timeout=30)
    print("no error")
except urllib.error.HTTPError as e:
    print(e.code)
    print(e.read().decode())
"#;
    let url = format!("{}/webhook", app.base);
    let out = tokio::process::Command::new("python3")
        .args(["-c", script, &url])
        .output()
        .await
        .expect("python3 on PATH");
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("413"), "{text}");
    let body: Value = serde_json::from_str(lines.next().unwrap_or("")).unwrap();
    assert_eq!(body["ok"], false);
    assert!(body["error"].as_str().unwrap().contains("too large"), "{body}");

    // Streamed without a Content-Length, the same.
    let script = script.replace("data=b\"x\" * (3 * 1024 * 1024)", "data=iter([b\"x\" * 65536] * 48)");
    let out = tokio::process::Command::new("python3")
        .args(["-c", &script, &url])
        .output()
        .await
        .unwrap();
    assert_eq!(
        stdout(&out).lines().next(),
        Some("413"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[tokio::test]
async fn stalled_bodies_are_closed_after_the_body_timeout() {
    let app = App::spawn("http", &[("BODY_READ_TIMEOUT_SECONDS", "1")]);
    let addr = addr_of(&app);
    let mut conns = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let head = "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\":";
        s.write_all(head.as_bytes()).await.unwrap();
        conns.push(s);
    }
    for (i, s) in conns.iter_mut().enumerate() {
        assert_408_then_closed(s, &format!("connection {i}")).await;
    }
}

/// The 408 and then end of stream: the server closed the stalled connection.
pub(crate) async fn assert_408_then_closed(s: &mut TcpStream, what: &str) {
    let reply = read_until(s, "\r\n\r\n", Duration::from_secs(30)).await;
    let reply = reply.unwrap_or_else(|t| panic!("{what}: no reply, got {t:?}"));
    assert!(reply.starts_with("HTTP/1.1 408"), "{what}: {reply}");
    let mut rest = Vec::new();
    let eof = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut rest)).await;
    assert!(matches!(eof, Ok(Ok(_))), "{what} not closed");
}

#[tokio::test]
async fn connections_past_max_connections_wait_while_open_ones_are_served() {
    let app = App::spawn("http", &[("MAX_CONNECTIONS", "50")]);
    let addr = addr_of(&app);
    let health = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut open = Vec::new();
    for i in 0..50 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(health.as_bytes()).await.unwrap();
        read_until(&mut s, "{\"ok\":true}", Duration::from_secs(30))
            .await
            .unwrap_or_else(|t| panic!("connection {i} not served: {t:?}"));
        open.push(s);
    }
    // The 51st connects (the kernel's backlog holds it) but is not served...
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    extra.write_all(health.as_bytes()).await.unwrap();
    let early = read_until(&mut extra, "{\"ok\":true}", Duration::from_millis(500)).await;
    assert!(early.is_err(), "51st served while 50 are open: {early:?}");
    // ...while an open connection still is.
    open[0].write_all(health.as_bytes()).await.unwrap();
    read_until(&mut open[0], "{\"ok\":true}", Duration::from_secs(30))
        .await
        .expect("healthz on an open connection");
    // Closing one lets the waiting one in.
    drop(open.pop());
    read_until(&mut extra, "{\"ok\":true}", Duration::from_secs(30))
        .await
        .expect("51st served once a slot frees");
    assert!(app.logs().contains("MAX_CONNECTIONS reached"), "{}", app.logs());
}

#[tokio::test]
async fn start_up_warns_per_unset_secret_off_loopback_and_db_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = App::spawn("http", &[("HOST", "0.0.0.0")]);
    let logs = app.logs();
    assert_eq!(logs.matches("INGRESS_SECRET is unset").count(), 1, "{logs}");
    assert_eq!(logs.matches("ADMIN_SECRET is unset").count(), 1, "{logs}");
    // Not only read: replay and cancel are open too (issue 32).
    assert!(
        logs.contains("can read, replay and cancel every stored event"),
        "{logs}"
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&app.db_path()), 0o600);
    assert_eq!(mode(app.db_path().parent().unwrap()), 0o700);

    let app = App::spawn("http", &[("HOST", "0.0.0.0"), ("INGRESS_SECRET", "i")]);
    let logs = app.logs();
    assert!(!logs.contains("INGRESS_SECRET is unset") && logs.contains("ADMIN_SECRET is unset"));

    let app = App::spawn("http", &[]);
    assert!(!app.logs().contains("is unset"), "{}", app.logs());
}

#[tokio::test]
async fn empty_secret_flag_means_unset() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/events.sqlite3");
    // `--ingress-secret ''`: requests without the header are accepted, as with no secret.
    let mut child = std::process::Command::new(bin())
        .args(["http", "--ingress-secret", "", "--host", "127.0.0.1", "--port", "0"])
        .current_dir(dir.path())
        .env_clear()
        .env("APP_DB_PATH", &db)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let addr = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("addr=") {
                return line[i + 5..].split_whitespace().next().map(str::to_string);
            }
        }
        None
    })
    .await
    .unwrap()
    .expect("listening line");
    let resp = client()
        .post(format!("http://{addr}/webhook"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
}
