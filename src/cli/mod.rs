//! Subcommands: the long-running roles and the operator tools.

mod command;
pub mod cron;
pub mod events;
pub mod mapping;
pub mod prototype;
pub mod sources;

use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

pub use command::{Cli, Command, CronCommand};

use crate::settings::Settings;
use crate::{Role, run, shutdown_signal};

/// Runs the parsed command line.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let s = cli.settings;
    match cli.command {
        Command::Serve => serve(s, Role::Serve).await,
        Command::Http => serve(s, Role::Http).await,
        Command::Worker { run_once: false } => {
            run(s, Role::Worker, None, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { run_once: true } => {
            let db = crate::open_store(&s).await?;
            let processed =
                crate::worker::run_once(db.clone(), crate::processor(&db, &s), &crate::pool_config(&s)).await?;
            println!(
                "{}",
                if processed {
                    "processed 1 event"
                } else {
                    "no due events"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Cron(CronCommand::Enqueue { job }) => cron_enqueue(&s, &job).await,
        Command::Cron(CronCommand::Call { job, api_base_url }) => cron_call(&s, &job, &api_base_url).await,
        Command::Cron(CronCommand::List) => cron::list(&s).await,
        Command::Mapping(cmd) => mapping::run(&s, cmd).await,
        Command::Events(cmd) => events::run(&s, cmd).await,
        Command::Sources(cmd) => sources::run(&s, cmd),
    }
}

async fn serve(s: Settings, role: Role) -> anyhow::Result<ExitCode> {
    let addr = format!("{}:{}", s.host, s.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (HOST/PORT)"))?;
    run(s, role, Some(listener), shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn cron_enqueue(s: &Settings, job: &str) -> anyhow::Result<ExitCode> {
    let job = job.trim();
    anyhow::ensure!(!job.is_empty(), "--job must not be empty");
    let db = crate::store::open(&s.store_config())
        .await
        .context("opening the database")?;
    let event = crate::cron::event_for(job, chrono::Utc::now());
    let event_id = event.event_id.clone();
    let outcome = db.enqueue(event).await?;
    let status = match outcome {
        crate::store::Enqueued::Queued(_) => "queued",
        crate::store::Enqueued::Duplicate(_) => "duplicate_ignored",
    };
    let reply = serde_json::json!({"ok": true, "status": status, "row_id": outcome.row_id(), "event_id": event_id});
    println!("{reply}");
    Ok(ExitCode::SUCCESS)
}

async fn cron_call(s: &Settings, job: &str, base: &str) -> anyhow::Result<ExitCode> {
    let url = format!("{}/cron/enqueue", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mut req = client.post(&url).query(&[("job", job)]);
    if let Some(secret) = &s.ingress_secret {
        req = req.header("X-Ingress-Secret", secret);
    }
    if let Some(secret) = &s.cron_secret {
        req = req.header("X-Cron-Secret", secret);
    }
    // API_BASE_URL may carry credentials or a token in its query: messages show neither.
    let shown = crate::ingest::redact::url_for_display(&url);
    let resp = req
        .send()
        .await
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("POST {shown} failed (API_BASE_URL)"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => println!("{v}"),
        Err(_) => println!("{text}"),
    }
    if status.is_success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {shown} answered HTTP {status}");
        Ok(ExitCode::FAILURE)
    }
}
