//! `switchyard sources list`: the configured sources, never their secrets.

use std::process::ExitCode;

use clap::Subcommand;

use crate::settings::Settings;

/// `sources` subcommands.
#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Lists each source this shell's environment (and --config) defines: name, path,
    /// scheme, provider and how many secrets it has.
    List,
}

/// Runs a `sources` subcommand.
pub fn run(s: &Settings, cmd: SourcesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SourcesCommand::List => {
            let sources = crate::load_sources(s)?;
            // The answer is this shell's, not a running service's: say so, on stderr so
            // the listing itself stays machine-readable.
            let config = match &s.config_path {
                Some(path) => format!(" and {}", path.display()),
                None => String::new(),
            };
            eprintln!(
                "sources of this shell's environment{config} (what a `switchyard serve` started \
                 here would verify; a running service's own are on its dashboard, /ui/routing)"
            );
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
