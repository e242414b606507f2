//! The clap command tree: the global settings plus one subcommand.

use clap::{Parser, Subcommand};

use super::{events, mapping, sources};
use crate::settings::Settings;

/// The command line: global settings plus one subcommand.
#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Webhooks and cron into a durable queue, routed to handlers."
)]
pub struct Cli {
    /// Print the database the command uses (on stderr) before running it.
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,
    /// Settings shared by every command.
    #[command(flatten)]
    pub settings: Settings,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP server, worker pool and cron scheduler in one process (the default way to run).
    Serve,
    /// HTTP server only.
    Http,
    /// Worker pool and cron scheduler.
    Worker {
        /// Process at most one due event, then exit 0.
        #[arg(long)]
        run_once: bool,
    },
    /// Cron helpers.
    #[command(subcommand)]
    Cron(CronCommand),
    /// Provider mappings, routing rules and the config file.
    #[command(subcommand)]
    Mapping(mapping::MappingCommand),
    /// Operator tools for stored events.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Provider sources (signature-verified webhook paths).
    #[command(subcommand)]
    Sources(sources::SourcesCommand),
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
    /// Ask a running server to enqueue a cron event (POST /cron/enqueue).
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
        let cli = Cli::try_parse_from(["switchyard", "--llm-mode", "Echo", "serve"]).unwrap();
        assert_eq!(cli.settings.llm_mode, crate::domain::LlmMode::Echo);
        assert!(Cli::try_parse_from(["switchyard", "--llm-provider", "gpt", "serve"]).is_err());
        assert!(Cli::try_parse_from(["switchyard", "--sqlite-synchronous", "FULL", "serve"]).is_err());
    }
}
