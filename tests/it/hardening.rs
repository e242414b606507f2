//! CONTRACT §11, second round (issue 32): the dashboard's forms, sessions and the `Host`
//! check, each test written as the audit's attack.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::limits::{addr_of, assert_408_then_closed};
use crate::store::{TestStore, store_tests};
use crate::ui::{cookie_pair, csrf_of, login, no_redirects, set_cookie};

/// Resident memory of process `pid` in KiB (`VmRSS` of /proc/PID/status).
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The session cookie `GET /ui/login` grants when `ADMIN_SECRET` is unset (no credentials).
async fn open_session(app: &App) -> String {
    let r = no_redirects()
        .get(format!("{}/ui/login", app.base))
        .send()
        .await
        .unwrap();
    cookie_pair(&set_cookie(&r, "sy_session").expect("session cookie"))
}

/// Sends `head`, then `total` bytes of form body (chunked or not) while reading the reply.
/// Returns the reply's head and whether the whole body could be written.
async fn post_huge(addr: &str, head: String, chunked: bool, total: usize) -> (String, bool) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..total / chunk.len() {
            if chunked {
                wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
            }
            wr.write_all(&chunk).await?;
            if chunked {
                wr.write_all(b"\r\n").await?;
            }
        }
        if chunked {
            wr.write_all(b"0\r\n\r\n").await?;
        }
        wr.flush().await
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(60), rd.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            other => panic!("no reply head ({other:?}): {}", String::from_utf8_lossy(&seen)),
        }
    }
    let wrote_all = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("the writer ends")
        .unwrap()
        .is_ok();
    (String::from_utf8_lossy(&seen).into_owned(), wrote_all)
}

#[tokio::test]
async fn a_40_mib_form_is_refused_before_it_is_read() {
    let app = App::spawn("serve", &[]);
    let cookie = open_session(&app).await;
    let addr = addr_of(&app);
    let pid = app.child.id();
    let before = vm_rss_kib(pid);
    const SIZE: usize = 40 << 20;
    let form = "Content-Type: application/x-www-form-urlencoded";
    for (length, chunked) in [
        (format!("Content-Length: {SIZE}"), false),
        ("Transfer-Encoding: chunked".to_string(), true),
    ] {
        let head = format!(
            "POST /ui/events/1/replay HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n{form}\r\n{length}\r\n\r\n"
        );
        let (reply, wrote_all) = post_huge(&addr, head, chunked, SIZE).await;
        assert!(reply.starts_with("HTTP/1.1 413"), "chunked={chunked}: {reply}");
        // The server stopped reading and closed: the 40 MiB never went in whole.
        assert!(!wrote_all, "chunked={chunked}: the whole body was read");
    }
    let grown_kib = vm_rss_kib(pid).saturating_sub(before);
    assert!(grown_kib < 16 * 1024, "RSS grew by {grown_kib} KiB");
}

#[tokio::test]
async fn a_stalled_login_is_closed_at_the_body_deadline() {
    let app = App::spawn("http", &[("BODY_READ_TIMEOUT_SECONDS", "1")]);
    let addr = addr_of(&app);
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /ui/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n_csrf=abcde"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    assert_408_then_closed(&mut s, "the stalled login").await;
}

#[tokio::test]
async fn a_cookie_used_after_logout_is_refused_by_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("ADMIN_SECRET", "s3cret")];
    let a = App::spawn_in(dir.path(), "serve", &env);
    let b = App::spawn_in(dir.path(), "http", &env);
    let signed_in = login(&a, "s3cret").await;
    assert_eq!(signed_in.status(), 303);
    let session = cookie_pair(&set_cookie(&signed_in, "sy_session").expect("session"));
    let c = no_redirects();
    let page = |app: &App| {
        c.get(format!("{}/ui/events", app.base))
            .header("cookie", &session)
            .send()
    };
    // One secret, one key: the session is valid on both processes.
    assert_eq!(page(&b).await.unwrap().status(), 200);
    let html = page(&a).await.unwrap().text().await.unwrap();
    let csrf = csrf_of(&html);
    let out = c
        .post(format!("{}/ui/logout", a.base))
        .header("cookie", &session)
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    // The attacker kept the old cookie: both processes refuse it, for pages and forms.
    for app in [&a, &b] {
        let r = page(app).await.unwrap();
        assert_eq!(r.status(), 303, "{}", app.base);
        assert!(r.headers()["location"].to_str().unwrap().starts_with("/ui/login"));
        let replay = c
            .post(format!("{}/ui/events/1/replay", app.base))
            .header("cookie", &session)
            .form(&[("_csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(replay.status(), 403, "{}", app.base);
    }
    // A new login still works.
    assert_eq!(login(&b, "s3cret").await.status(), 303);
}

#[tokio::test]
async fn a_burst_of_wrong_logins_is_throttled_and_logged() {
    let app = App::spawn("http", &[("ADMIN_SECRET", "s3cret")]);
    let c = no_redirects();
    let form = c.get(format!("{}/ui/login", app.base)).send().await.unwrap();
    let pre = cookie_pair(&set_cookie(&form, "sy_login").expect("login cookie"));
    let csrf = csrf_of(&form.text().await.unwrap());
    let attempt = |secret: &'static str| {
        let (c, url, pre, csrf) = (c.clone(), format!("{}/ui/login", app.base), pre.clone(), csrf.clone());
        tokio::spawn(async move {
            c.post(url)
                .header("cookie", pre)
                .form(&[("_csrf", csrf.as_str()), ("secret", secret)])
                .send()
                .await
                .unwrap()
        })
    };
    let tasks: Vec<_> = (0..25).map(|_| attempt("wrong-guess")).collect();
    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        statuses.push(r.status().as_u16());
        if let Some(v) = r.headers().get("retry-after") {
            retry_after.push(v.to_str().unwrap().parse::<u64>().unwrap());
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 10, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 15, "{statuses:?}");
    assert_eq!(retry_after.len(), 15);
    assert!(retry_after.iter().all(|s| (1..=60).contains(s)), "{retry_after:?}");
    // Even the right secret waits out the window: guessing cannot go on meanwhile.
    assert_eq!(attempt("s3cret").await.unwrap().status(), 429);
    let logs = app.logs();
    assert_eq!(logs.matches("dashboard login failed").count(), 10, "{logs}");
    assert!(logs.contains("remote=127.0.0.1"), "{logs}");
}

#[tokio::test]
async fn a_rebinding_host_is_refused_while_the_admin_secret_is_unset() {
    let app = App::spawn("http", &[("ALLOWED_HOSTS", "ops.example, Other.Example")]);
    let addr = addr_of(&app);
    let c = no_redirects();
    let get = |path: &str, host: &str| {
        c.get(format!("{}{path}", app.base))
            .header("host", host.to_string())
            .send()
    };
    for path in ["/events", "/stats", "/events/1", "/ui/login", "/ui/events"] {
        for host in ["evil.example", "evil.example:80", "127.0.0.1.evil.example"] {
            assert_eq!(get(path, host).await.unwrap().status(), 403, "{path} {host}");
        }
        for host in [addr.as_str(), "localhost:9", "ops.example", "other.example:8080"] {
            let status = get(path, host).await.unwrap().status().as_u16();
            assert!(matches!(status, 200 | 303 | 404), "{path} {host}: {status}");
        }
    }
    let replay = c
        .post(format!("{}/events/replay?status=error", app.base))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 403);
    assert_eq!(replay.headers()["x-content-type-options"], "nosniff");
    // Webhook ingest is not the operator's: any Host.
    let hook = c
        .post(format!("{}/webhook", app.base))
        .header("host", "evil.example")
        .body(r#"{"a":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 200);
    assert_eq!(hook.headers()["x-content-type-options"], "nosniff");

    // With ADMIN_SECRET set, the secret guards the routes and any Host is answered.
    let guarded = App::spawn("http", &[("ADMIN_SECRET", "a")]);
    let r = c
        .get(format!("{}/events", guarded.base))
        .header("host", "evil.example")
        .header("x-admin-secret", "a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn cookies_are_secure_behind_an_https_public_url() {
    for (url, secure) in [("https://hooks.example", true), ("http://hooks.example", false)] {
        let app = App::spawn("http", &[("PUBLIC_BASE_URL", url)]);
        let r = no_redirects()
            .get(format!("{}/ui/login", app.base))
            .send()
            .await
            .unwrap();
        let cookie = set_cookie(&r, "sy_session").expect("session cookie");
        assert_eq!(cookie.contains("; Secure"), secure, "{url}: {cookie}");
    }
}

store_tests!(revoked_sessions_stay_revoked_until_they_expire);

async fn revoked_sessions_stay_revoked_until_they_expire(t: TestStore) {
    let db = &t.db;
    let now = chrono::Utc::now().timestamp();
    assert!(!db.session_revoked("nonce-1").await.unwrap());
    db.revoke_session("nonce-1", now + 3600).await.unwrap();
    // A second logout with the same cookie (two tabs) is no error.
    db.revoke_session("nonce-1", now + 3600).await.unwrap();
    assert!(db.session_revoked("nonce-1").await.unwrap());
    assert!(!db.session_revoked("nonce-2").await.unwrap());
    // A cookie past its expiry needs no revocation: the next logout forgets it.
    db.revoke_session("expired", now - 1).await.unwrap();
    db.revoke_session("nonce-2", now + 3600).await.unwrap();
    assert!(!db.session_revoked("expired").await.unwrap());
    assert!(db.session_revoked("nonce-1").await.unwrap() && db.session_revoked("nonce-2").await.unwrap());
}
