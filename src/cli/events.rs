//! `switchyard events …`: the operator API on the command line (CONTRACT §10).

use std::process::ExitCode;

use anyhow::Context;
use clap::builder::PossibleValuesParser;
use clap::{Args, Subcommand};

use crate::domain::EventStatus;
use crate::settings::Settings;
use crate::store::{Cursor, Db, EventFilter, FilterError, PURGEABLE, STATUSES, Transition};

/// The filters of `GET /events`, as flags.
#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// Only this status.
    #[arg(long, value_parser = PossibleValuesParser::new(STATUSES))]
    pub status: Option<String>,
    /// Only events routed to this provider.
    #[arg(long)]
    pub provider: Option<String>,
    /// Only events routed to this action.
    #[arg(long)]
    pub action: Option<String>,
    /// Only this source (webhook or cron).
    #[arg(long)]
    pub source: Option<String>,
    /// Received at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Received before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    /// Text found in event_id or last_error.
    #[arg(long)]
    pub q: Option<String>,
}

impl FilterArgs {
    /// The flags through the API's filter parser (same checks, same messages).
    fn filter(&self) -> Result<EventFilter, FilterError> {
        let flags = [
            ("status", &self.status),
            ("provider", &self.provider),
            ("action", &self.action),
            ("source", &self.source),
            ("since", &self.since),
            ("until", &self.until),
            ("q", &self.q),
        ];
        EventFilter::from_pairs(flags.into_iter().filter_map(|(k, v)| Some((k, v.as_deref()?))))
    }
}

/// `events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Events newest first, one JSON object per line (no bodies); the next page's cursor goes to stderr.
    List {
        /// Filters.
        #[command(flatten)]
        filter: FilterArgs,
        /// How many (1 to 10000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Start after this cursor (printed by the previous page).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One event with its action runs (the JSON of GET /events/{id}); what a waiting event
    /// waits for, or which event holds or took the place of a skipped or superseded one,
    /// goes to stderr.
    Show {
        /// Row id.
        row_id: i64,
    },
    /// Queue one event again (ROW_ID), or every event matching --status and the other filters.
    Replay {
        /// Row id (omit to replay by filter).
        #[arg(required_unless_present = "status", conflicts_with = "status")]
        row_id: Option<i64>,
        /// Rerun actions that already ran to done instead of reusing their output.
        #[arg(long, requires = "row_id")]
        force: bool,
        /// Filters of a bulk replay (--status is required for one).
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Cancel a pending, retry, held or waiting event: it is never claimed again.
    Cancel {
        /// Row id.
        row_id: i64,
    },
    /// Delete finished events older than an age, with their action runs.
    Purge {
        /// Age such as 7d, 12h, 30m or 90s (by when the event finished).
        #[arg(long, value_parser = crate::retention::parse_age)]
        older_than: std::time::Duration,
        /// Only this status (default: done, error, cancelled, skipped and superseded).
        #[arg(long, value_parser = PossibleValuesParser::new(PURGEABLE.iter().map(|s| s.as_str())))]
        status: Option<String>,
    },
}

/// A usage error: the message, exit code 2 (as clap's own).
fn usage(message: &str) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(2))
}

/// Opens the database: no command creates one (a wrong directory or URL is an error
/// naming it); read-only ones also leave a PostgreSQL database without our tables alone.
async fn open_db(s: &Settings, read_only: bool) -> anyhow::Result<Db> {
    let config = s.store_config();
    let db = if read_only {
        crate::store::open_existing(&config).await
    } else {
        crate::store::open_initialised(&config).await
    };
    db.context("opening the database")
}

/// Runs an `events` subcommand.
pub async fn run(s: &Settings, cmd: EventsCommand) -> anyhow::Result<ExitCode> {
    let read_only = matches!(cmd, EventsCommand::List { .. } | EventsCommand::Show { .. });
    match cmd {
        EventsCommand::List { filter, limit, cursor } => {
            // Bad input is a usage error (exit 2) before any database is looked for.
            let filter = match filter.filter() {
                Ok(f) => f,
                Err(e) => return usage(&e.0),
            };
            let cursor = match cursor.as_deref().map(Cursor::decode) {
                None => None,
                Some(Some(c)) => Some(c),
                Some(None) => return usage("--cursor is not a cursor printed by events list"),
            };
            let db = open_db(s, read_only).await?;
            let page = db.list_page(filter, cursor, limit).await?;
            for e in &page.events {
                println!("{}", serde_json::to_string(e)?);
            }
            if let Some(next) = page.next {
                eprintln!("next page: --cursor {}", next.encode());
            }
        }
        cmd => return run_on(&open_db(s, read_only).await?, cmd).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// The subcommands that need no validation beyond clap's before the database is opened.
async fn run_on(db: &Db, cmd: EventsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EventsCommand::List { .. } => anyhow::bail!("events list validates its input first; it is run by `run`"),
        EventsCommand::Show { row_id } => match db.event(row_id).await? {
            Some(e) => {
                let usage = db.run_usage(row_id).await?;
                let runs = crate::views::runs_with_usage(db.action_runs(row_id).await?, &usage);
                let attempts = db.attempts(row_id).await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&crate::views::event_json(&e, &runs, &attempts))?
                );
                // For people, beside the JSON on stdout that scripts read.
                if let Some(note) = crate::views::FlowNote::of(&e) {
                    eprintln!("event {row_id} is {}", note.line());
                }
            }
            None => {
                eprintln!("event {row_id} not found");
                return Ok(ExitCode::FAILURE);
            }
        },
        EventsCommand::Replay { row_id, force, filter } => return replay(db, row_id, force, filter).await,
        EventsCommand::Cancel { row_id } => {
            return transition(db.cancel(row_id).await?, row_id, EventStatus::Cancelled.as_str());
        }
        EventsCommand::Purge { older_than, status } => {
            let before = crate::retention::cutoff(older_than);
            let statuses = match &status {
                Some(s) => vec![s.parse()?],
                None => PURGEABLE.to_vec(),
            };
            let mut total = 0;
            for status in statuses {
                total += crate::retention::purge(db, status, &before).await?;
            }
            println!("ok: deleted {total} events finished before {before}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn replay(db: &Db, row_id: Option<i64>, force: bool, filter: FilterArgs) -> anyhow::Result<ExitCode> {
    if let Some(row_id) = row_id {
        return transition(db.replay(row_id, force).await?, row_id, "queued again");
    }
    let filter = match filter.filter() {
        Ok(f) => f,
        Err(e) => return usage(&e.0),
    };
    let n = db.replay_matching(filter).await?;
    println!("ok: {n} events queued again");
    Ok(ExitCode::SUCCESS)
}

fn transition(t: Transition, row_id: i64, done: &str) -> anyhow::Result<ExitCode> {
    match t {
        Transition::Applied => {
            println!("ok: event {row_id} {done}");
            Ok(ExitCode::SUCCESS)
        }
        Transition::NotFound => {
            eprintln!("event {row_id} not found");
            Ok(ExitCode::FAILURE)
        }
        Transition::Conflict(status) => {
            eprintln!("event {row_id} is {status}: refused");
            Ok(ExitCode::FAILURE)
        }
    }
}
