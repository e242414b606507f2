//! Server time of the dashboard's events page over a large queue (issue 16, acceptance 4).
//!
//! `cargo run --release --example uibench -- [EVENTS]` (default 100000): fills a fresh
//! SQLite file through the store's own enqueue path, then gives the rows a realistic spread
//! by SQL (statuses with a rare `error` and a rarer `cancelled`, three providers, two
//! actions, every fifth from cron, received over the last hour), signs in through the login
//! form, and renders the events page (newest, each filter, a later page by cursor) and the
//! Overview in-process through the real router, so the figure is the server's time without
//! the network. It prints the median and the worst of 30 renders per page; the target is
//! under 200 ms.

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
    spread(&settings.db_path, n).await?;

    let state = AppState {
        db,
        settings: Arc::new(settings),
        wake: Arc::new(tokio::sync::Notify::new()),
        sources: Arc::new(Sources::build(&[], Vec::new(), None).map_err(anyhow::Error::msg)?),
    };
    let app = router(state);
    let cookie = sign_in(&app).await?;
    let hour_ago = crate_time(chrono::Utc::now() - chrono::Duration::minutes(30));
    let later = later_page(&app, &cookie, 5).await?;
    let paths = [
        "/ui/events".to_string(),
        "/ui/events?status=pending".into(),
        "/ui/events?status=error".into(),
        "/ui/events?status=cancelled".into(),
        "/ui/events?provider=stripe".into(),
        "/ui/events?action=act1".into(),
        "/ui/events?source=cron".into(),
        format!("/ui/events?since={hour_ago}"),
        "/ui/events?until=2000-01-01T00:00:00Z".into(),
        "/ui/events?q=boom+3".into(),
        "/ui/events?status=cancelled&provider=slack&q=bench".into(),
        later,
        "/ui/overview".into(),
    ];
    for path in &paths {
        let mut times = Vec::new();
        for _ in 0..30 {
            let (t, _) = render(&app, &cookie, path).await?;
            times.push(t);
        }
        times.sort();
        println!(
            "{:<60} median {:>7.2} ms  worst {:>7.2} ms  (target < 200 ms)",
            shorten(path),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
    Ok(())
}

/// Renders `path` once; its server time and body.
async fn render(app: &axum::Router, cookie: &str, path: &str) -> anyhow::Result<(Duration, String)> {
    let req = Request::get(path).header(header::COOKIE, cookie).body(Body::empty())?;
    let t = Instant::now();
    let res = app.clone().oneshot(req).await?;
    let status = res.status();
    let bytes = to_bytes(res.into_body(), usize::MAX).await?;
    let elapsed = t.elapsed();
    anyhow::ensure!(status == 200, "{path}: {status}");
    anyhow::ensure!(bytes.len() > 1000, "{path}: short page");
    Ok((elapsed, String::from_utf8(bytes.to_vec())?))
}

/// The URL of the `n`th page of the unfiltered table, following "next page" links.
async fn later_page(app: &axum::Router, cookie: &str, n: usize) -> anyhow::Result<String> {
    let mut path = "/ui/events".to_string();
    for _ in 1..n {
        let (_, html) = render(app, cookie, &path).await?;
        let marker = r#"class="next" href=""#;
        let at = html
            .find(marker)
            .ok_or_else(|| anyhow::anyhow!("no next page after {path}"))?
            + marker.len();
        path = html[at..]
            .chars()
            .take_while(|c| *c != '"')
            .collect::<String>()
            .replace("&amp;", "&");
    }
    Ok(path)
}

/// A path short enough for the table (cursors are long).
fn shorten(path: &str) -> String {
    match path.find("cursor=") {
        Some(i) => format!("{}cursor=… (page 5)", &path[..i]),
        None => path.to_string(),
    }
}

/// A time as a query-string value.
fn crate_time(t: chrono::DateTime<chrono::Utc>) -> String {
    form_urlencoded::byte_serialize(switchyard::time::format(t).as_bytes()).collect()
}

/// Spreads the queued rows: status by id (1 in 500 `error`, 1 in 20,000 `cancelled`, half
/// `done`, the rest `pending`), provider by id % 3, action by id % 2, every fifth from
/// cron, received evenly over the last hour (newest last) and finished a second later.
async fn spread(db_path: &std::path::Path, n: usize) -> anyhow::Result<()> {
    use sqlx::{Connection, Executor};
    let started = Instant::now();
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db_path.display())).await?;
    let step_ms = 3_600_000.0 / n.max(1) as f64;
    let at = |extra: &str| {
        format!(
            "strftime('%Y-%m-%dT%H:%M:%f', 'now', '-3600 seconds', '+' || ((id * {step_ms}) / 1000.0{extra}) || ' seconds') || '000+00:00'"
        )
    };
    let sql = format!(
        "UPDATE events SET \
           status = CASE WHEN id % 20000 = 7 THEN 'cancelled' WHEN id % 500 = 0 THEN 'error' \
                         WHEN id % 2 = 1 THEN 'done' ELSE 'pending' END, \
           provider = CASE id % 3 WHEN 0 THEN 'github' WHEN 1 THEN 'stripe' ELSE 'slack' END, \
           action = 'act' || (id % 2), \
           source = CASE WHEN id % 5 = 0 THEN 'cron' ELSE 'webhook' END, \
           last_error = CASE WHEN id % 500 = 0 THEN 'Boom ' || (id % 7) END, \
           received_at = {}, \
           processed_at = CASE WHEN id % 2 = 1 OR id % 500 = 0 OR id % 20000 = 7 THEN {} END",
        at(""),
        at(" + 1")
    );
    c.execute(sqlx::AssertSqlSafe(sql)).await?;
    c.close().await?;
    println!("spread statuses and times in {:.1} s", started.elapsed().as_secs_f64());
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
