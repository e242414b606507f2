//! `switchyard events …`: look at and replay stored events.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use crate::domain::EventStatus;
use crate::settings::Settings;

/// `events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Recent events, newest first, one JSON object per line.
    List {
        /// Only events with this status.
        #[arg(long)]
        status: Option<EventStatus>,
        /// How many (1 to 10000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
    },
    /// One event with its action runs (the JSON of GET /events/{id}).
    Show {
        /// Row id.
        row_id: i64,
    },
    /// Queue a finished or failed event again, with a fresh attempt budget.
    Replay {
        /// Row id.
        row_id: i64,
    },
}

/// Runs an `events` subcommand.
pub async fn run(s: &Settings, cmd: EventsCommand) -> anyhow::Result<ExitCode> {
    // Looking never creates a database: a wrong directory or URL is an error naming it.
    let db = match cmd {
        EventsCommand::List { .. } | EventsCommand::Show { .. } => crate::store::open_existing(&s.store_config()).await,
        EventsCommand::Replay { .. } => crate::store::open(&s.store_config()).await,
    }
    .context("opening the database")?;
    match cmd {
        EventsCommand::List { status, limit } => {
            for e in db.list_events(status, limit).await? {
                let line = json!({
                    "id": e.id, "source": e.source, "event_id": e.event_id, "status": e.status,
                    "attempt_count": e.attempt_count, "received_at": e.received_at, "last_error": e.last_error,
                });
                println!("{line}");
            }
        }
        EventsCommand::Show { row_id } => match db.event(row_id).await? {
            Some(e) => {
                let runs = db.action_runs(row_id).await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&crate::views::event_json(&e, &runs))?
                );
            }
            None => {
                eprintln!("event {row_id} not found");
                return Ok(ExitCode::FAILURE);
            }
        },
        EventsCommand::Replay { row_id } => {
            if db.replay(row_id).await? {
                println!("ok: event {row_id} queued again");
            } else {
                eprintln!("event {row_id} not found or still processing");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
