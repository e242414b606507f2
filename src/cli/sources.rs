//! `switchyard sources list`: the configured sources, never their secrets.

use std::process::ExitCode;

use clap::Subcommand;

use crate::settings::Settings;

/// `sources` subcommands.
#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Lists each source: name, path, scheme, provider and how many secrets it has.
    List,
}

/// Runs a `sources` subcommand.
pub fn run(s: &Settings, cmd: SourcesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SourcesCommand::List => {
            let sources = crate::load_sources(s)?;
            if sources.is_empty() {
                println!("no sources");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<20} {:<30} {:<18} {:<18} SECRETS",
                "NAME", "PATH", "SCHEME", "PROVIDER"
            );
            for src in sources.iter() {
                println!(
                    "{:<20} {:<30} {:<18} {:<18} {}",
                    src.name,
                    src.path(),
                    src.scheme.name(),
                    src.provider,
                    src.secret_count()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
