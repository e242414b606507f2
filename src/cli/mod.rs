//! Subcommands: the long-running roles and the operator tools.

mod command;
pub mod cron;
pub mod db;
mod db_init;
pub mod events;
pub mod mapping;
pub mod prototype;
pub mod sources;
pub mod spend;
mod targets;

use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

pub use command::{Cli, Command, CronCommand, DbArgs, DbCommand, Tool};

use crate::settings::Settings;
use crate::{Role, run, shutdown_signal};

/// Runs the parsed command line with the settings [`Cli::settings`] resolved for it.
pub async fn dispatch(cli: Cli, s: Settings) -> anyhow::Result<ExitCode> {
    if cli.verbose {
        let backend = if s.database_url.is_some() {
            "DATABASE_URL"
        } else {
            "APP_DB_PATH"
        };
        eprintln!("database: {} ({backend})", crate::store::location(&s.store_config()));
    }
    if cli.command.db_args().is_some_and(|db| db.create_db) {
        db_init::create(&s).await?;
    }
    match cli.command {
        Command::Serve(_) => serve(s, Role::Serve).await,
        Command::Http(_) => serve(s, Role::Http).await,
        Command::Worker { run_once: false, .. } => {
            run(s, Role::Worker, None, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { run_once: true, .. } => {
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
        Command::Cron(tool) => match tool.command {
            CronCommand::Enqueue { job } => cron_enqueue(&s, &job).await,
            CronCommand::Call { job, api_base_url } => cron_call(&s, &job, &api_base_url).await,
            CronCommand::List => cron::list(&s).await,
        },
        Command::Mapping(tool) => mapping::run(&s, tool.command).await,
        Command::Events(tool) => events::run(&s, tool.command).await,
        Command::Db(tool) => match tool.command {
            DbCommand::Init => db_init::run(&s).await,
            DbCommand::Copy { from, to, resume } => db::copy(&s, &from, &to, resume).await,
        },
        Command::Spend { since, by, json, .. } => spend::run(&s, &since, &by, json).await,
        Command::Sources { command, .. } => sources::run(&s, command),
    }
}

/// An error and its causes on one line, each cause once: thiserror messages often embed
/// their source already, and printing the chain after them would repeat it.
pub fn error_message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
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
    let db = crate::store::open_initialised(&s.store_config())
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
