//! The `switchyard` binary: parse the command line, run the library.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use switchyard::cli::Cli;
use switchyard::cli::prototype;
use switchyard::settings::prepare_environment;

/// mimalloc rather than glibc's malloc, built without transparent huge pages (resident
/// memory grew in 2 MB steps with them): both measured in docs/PERFORMANCE.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    prepare_environment();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let (settings, defaulted) = cli.settings(&matches).unwrap_or_else(|e| e.exit());
    let mut settings = settings.normalized();
    switchyard::logging::init(settings.log_format);
    switchyard::settings::warn_misspelled_environment();
    prototype::adopt(&mut settings, defaulted);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(switchyard::cli::dispatch(cli, settings));
    // Log lines are written by a thread of their own: all of them before exiting.
    switchyard::logging::flush();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", switchyard::cli::error_message(&e));
            ExitCode::FAILURE
        }
    }
}
