//! Server time of the dashboard's events page over a large queue (issue 16, acceptance 4).
//!
//! `cargo run --release --example uibench -- [EVENTS]` (default 100000): fills a fresh
//! SQLite file through the store's own enqueue path, signs in through the login form, then
//! renders `/ui/events` (and its status filters) in-process through the real router, so the
//! figure is the server's time without the network. It prints the median and the worst of
//! 30 renders per page; the target is under 200 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::http::{Request, header};
use tower::ServiceExt;

use switchyard::http::{AppState, router};
use switchyard::ingest::sources::Sources;
use switchyard::settings::Settings;
use switchyard::store::NewEvent;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let mut settings = Settings::defaults();
    settings.db_path = dir.path().join("events.sqlite3");
    settings.database_url = None;
    settings.admin_secret = Some("bench".into());
    let db = switchyard::store::open(&settings.store_config()).await?;

    let started = Instant::now();
    let body = r#"{"source_hint":"bench","method":"POST","path":"/webhook/bench","query":{},"content_type":"application/json","headers":{"x-bench":"1"},"json":{"n":1}}"#;
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(n.div_ceil(64).max(1)) {
        let (db, ids) = (db.clone(), chunk.to_vec());
        tasks.spawn(async move {
            for i in ids {
                let event = NewEvent {
                    source: switchyard::domain::Source::Webhook,
                    event_id: format!("bench-{i}"),
                    payload_json: body.to_string(),
                };
                db.enqueue(event).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    println!("filled {n} events in {:.1} s", started.elapsed().as_secs_f64());

    let state = AppState {
        db,
        settings: Arc::new(settings),
        wake: Arc::new(tokio::sync::Notify::new()),
        sources: Arc::new(Sources::build(&[], Vec::new(), None).map_err(anyhow::Error::msg)?),
    };
    let app = router(state);
    let cookie = sign_in(&app).await?;
    for path in ["/ui/events", "/ui/events?status=pending", "/ui/events?status=error"] {
        let mut times = Vec::new();
        for _ in 0..30 {
            let req = Request::get(path).header(header::COOKIE, &cookie).body(Body::empty())?;
            let t = Instant::now();
            let res = app.clone().oneshot(req).await?;
            let status = res.status();
            let bytes = to_bytes(res.into_body(), usize::MAX).await?;
            times.push(t.elapsed());
            anyhow::ensure!(status == 200, "{path}: {status}");
            anyhow::ensure!(bytes.len() > 1000, "{path}: short page");
        }
        times.sort();
        println!(
            "{path:<28} median {:>7.2} ms  worst {:>7.2} ms  (target < 200 ms)",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Signs in through the login form, as a browser would; returns the session cookie.
async fn sign_in(app: &axum::Router) -> anyhow::Result<String> {
    let form = app
        .clone()
        .oneshot(Request::get("/ui/login").body(Body::empty())?)
        .await?;
    let pre = cookie_of(&form, "sy_login")?;
    let html = String::from_utf8(to_bytes(form.into_body(), usize::MAX).await?.to_vec())?;
    let marker = r#"name="_csrf" value=""#;
    let at = html.find(marker).ok_or_else(|| anyhow::anyhow!("no csrf field"))? + marker.len();
    let csrf: String = html[at..].chars().take_while(|c| *c != '"').collect();
    let login = Request::post("/ui/login")
        .header(header::COOKIE, pre)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("_csrf={csrf}&secret=bench")))?;
    let res = app.clone().oneshot(login).await?;
    cookie_of(&res, "sy_session")
}

fn cookie_of(res: &axum::response::Response, name: &str) -> anyhow::Result<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no {name} cookie"))
}
