//! The clap command tree. `serve`, `http` and `worker` take every service setting as a
//! flag; the operator commands take only their own flags and the database selection, and
//! read the other settings from the environment (so their `--help` stays short).

use std::path::PathBuf;

use clap::{ArgMatches, Args, Parser, Subcommand};

use super::{events, mapping, sources};
use crate::settings::{DefaultedPaths, Settings};
use crate::spend_report::DEFAULT_SINCE;

/// The command line: one subcommand.
#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Webhooks and cron into a durable queue, routed to handlers."
)]
pub struct Cli {
    /// Print the database the command uses (on stderr) before running it.
    #[arg(short = 'v', long, global = true, display_order = 900)]
    pub verbose: bool,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP server, worker pool and cron scheduler in one process (the default way to run).
    Serve(Box<Settings>),
    /// HTTP server only.
    Http(Box<Settings>),
    /// Worker pool and cron scheduler.
    Worker {
        /// Process at most one due event, then exit 0.
        #[arg(long)]
        run_once: bool,
        /// The service settings.
        #[command(flatten)]
        settings: Box<Settings>,
    },
    /// Cron helpers.
    Cron(Tool<CronCommand>),
    /// Provider mappings, routing rules and the config file.
    Mapping(Tool<mapping::MappingCommand>),
    /// Operator tools for stored events.
    Events(Tool<events::EventsCommand>),
    /// The database itself: create it, or copy it between SQLite and PostgreSQL.
    Db(Tool<DbCommand>),
    /// What agent and llm runs cost, by action, model or day (as GET /spend).
    Spend {
        /// Where the database is.
        #[command(flatten)]
        db: DbArgs,
        /// Start of the period: an age (7d, 12h, 30m) or an RFC 3339 time.
        #[arg(long, default_value = DEFAULT_SINCE)]
        since: String,
        /// Group by action, model or day.
        #[arg(long, default_value = "action")]
        by: String,
        /// Print GET /spend's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Provider sources (signature-verified webhook paths).
    Sources {
        /// JSON config file whose `sources` are listed with the environment's shortcuts.
        #[arg(
            long = "config",
            env = "APP_CONFIG_PATH",
            value_name = "APP_CONFIG_PATH",
            global = true
        )]
        config_path: Option<PathBuf>,
        /// What to list.
        #[command(subcommand)]
        command: sources::SourcesCommand,
    },
}

/// An operator command group: the database it works on, then the subcommand.
#[derive(Debug, Args)]
pub struct Tool<C: Subcommand> {
    /// Where the database is.
    #[command(flatten)]
    pub db: DbArgs,
    /// What to run.
    #[command(subcommand)]
    pub command: C,
}

/// The database selection of the operator commands (the service's `--db`/`--database-url`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Database")]
pub struct DbArgs {
    /// SQLite database file, used when DATABASE_URL is unset [default: data/events.sqlite3].
    #[arg(long = "db", env = "APP_DB_PATH", value_name = "APP_DB_PATH", global = true)]
    pub db_path: Option<PathBuf>,
    /// A postgres:// URL selects PostgreSQL instead of SQLite.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Create the SQLite file when it does not exist (as `switchyard db init`); without
    /// it, a command refuses a missing file rather than start a queue nobody serves.
    #[arg(long, global = true)]
    pub create_db: bool,
}

impl DbArgs {
    /// Puts the flags given on the command line over the environment's settings.
    fn overlay(&self, s: &mut Settings, defaulted: &mut DefaultedPaths) {
        if let Some(path) = &self.db_path {
            s.db_path = path.clone();
            defaulted.db_path = false;
        }
        if let Some(url) = &self.database_url {
            s.database_url = Some(url.clone());
        }
    }
}

impl Cli {
    /// The settings this command runs with: a service role's own flags, or for the
    /// operator commands the environment under their flags. `matches` are the ones
    /// this `Cli` was parsed from. A bad value is clap's error naming the variable.
    pub fn settings(&self, matches: &ArgMatches) -> Result<(Settings, DefaultedPaths), clap::Error> {
        let sub = matches.subcommand().map(|(_, m)| m).unwrap_or(matches);
        let service = |s: &Settings| Ok((s.clone(), DefaultedPaths::of(sub)));
        let (mut s, mut defaulted) = match &self.command {
            Command::Serve(s) | Command::Http(s) => return service(s),
            Command::Worker { settings, .. } => return service(settings),
            _ => Settings::from_environment()?,
        };
        match &self.command {
            Command::Cron(tool) => tool.db.overlay(&mut s, &mut defaulted),
            Command::Events(tool) => tool.db.overlay(&mut s, &mut defaulted),
            Command::Db(tool) => tool.db.overlay(&mut s, &mut defaulted),
            Command::Spend { db, .. } => db.overlay(&mut s, &mut defaulted),
            Command::Mapping(tool) => {
                tool.db.overlay(&mut s, &mut defaulted);
                tool.command.overlay(&mut s, &mut defaulted);
            }
            Command::Sources { config_path, .. } => {
                if config_path.is_some() {
                    s.config_path.clone_from(config_path);
                }
            }
            Command::Serve(_) | Command::Http(_) | Command::Worker { .. } => {}
        }
        Ok((s, defaulted))
    }
}

impl Command {
    /// The database flags of an operator command (`None` for the service roles and
    /// `sources`, which take none).
    pub fn db_args(&self) -> Option<&DbArgs> {
        match self {
            Command::Cron(tool) => Some(&tool.db),
            Command::Mapping(tool) => Some(&tool.db),
            Command::Events(tool) => Some(&tool.db),
            Command::Db(tool) => Some(&tool.db),
            Command::Spend { db, .. } => Some(db),
            Command::Serve(_) | Command::Http(_) | Command::Worker { .. } | Command::Sources { .. } => None,
        }
    }
}

/// `db` subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create the database (a SQLite file: only this, `--create-db` and the service roles
    /// create one) or bring its schema up to date.
    Init,
    /// Copy every table switchyard owns to another database (SQLite ⇄ PostgreSQL), row ids
    /// kept; `--db`/`--database-url` play no part.
    Copy {
        /// The source: a SQLite file (it may be in use by `serve`) or a postgres:// URL.
        #[arg(long, value_name = "SQLITE_PATH|POSTGRES_URL")]
        from: String,
        /// The target: a postgres:// URL or a SQLite file (created when missing).
        #[arg(long, value_name = "POSTGRES_URL|SQLITE_PATH")]
        to: String,
        /// Copy into a target that already holds events, only the rows it lacks (by primary key).
        #[arg(long)]
        resume: bool,
    },
}

/// `cron` subcommands.
#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Enqueue a cron event straight into the database.
    Enqueue {
        /// Job name.
        #[arg(long)]
        job: String,
    },
    /// Ask a running server to enqueue a cron event (POST /cron/enqueue with the
    /// INGRESS_SECRET and CRON_SECRET of the environment).
    Call {
        /// Job name.
        #[arg(long)]
        job: String,
        /// Base URL of the server.
        #[arg(
            long,
            env = "API_BASE_URL",
            value_name = "API_BASE_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        api_base_url: String,
    },
    /// List the schedules with their next three run times.
    List,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    use super::*;
    use crate::settings::ENV_VARS;

    /// Every `env = "…"` of the command tree, subcommands included.
    fn env_names(cmd: &clap::Command, into: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if let Some(name) = arg.get_env() {
                into.insert(name.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            env_names(sub, into);
        }
    }

    #[test]
    fn env_vars_list_matches_the_clap_definitions() {
        let mut defined = BTreeSet::new();
        env_names(&Cli::command(), &mut defined);
        let listed: BTreeSet<String> = ENV_VARS.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(listed.len(), ENV_VARS.len(), "ENV_VARS lists a name twice");
        let missing: Vec<_> = defined.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&defined).collect();
        assert!(
            missing.is_empty(),
            "env names read by clap but not in ENV_VARS: {missing:?}"
        );
        assert!(extra.is_empty(), "ENV_VARS names no clap argument reads: {extra:?}");
    }

    #[test]
    fn llm_mode_is_case_insensitive_and_unknown_values_are_refused() {
        let cli = Cli::try_parse_from(["switchyard", "serve", "--llm-mode", "Echo"]).unwrap();
        let Command::Serve(settings) = cli.command else {
            panic!("parsed {cli:?}")
        };
        assert_eq!(settings.llm_mode, crate::domain::LlmMode::Echo);
        assert!(Cli::try_parse_from(["switchyard", "serve", "--llm-provider", "gpt"]).is_err());
        assert!(Cli::try_parse_from(["switchyard", "serve", "--sqlite-synchronous", "FULL"]).is_err());
    }
}
