//! The `switchyard` binary: parse the command line, run the library.

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use switchyard::cli::Cli;
use switchyard::cli::prototype::{self, Defaulted};
use switchyard::settings::prepare_environment;

/// mimalloc rather than glibc's malloc, built without transparent huge pages (resident
/// memory grew in 2 MB steps with them): both measured in docs/PERFORMANCE.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    prepare_environment();
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.settings = cli.settings.normalized();
    switchyard::logging::init(cli.settings.log_format);
    let defaulted = |id: &str| matches!(matches.value_source(id), Some(ValueSource::DefaultValue) | None);
    let layout = Defaulted {
        db_path: defaulted("db_path"),
        commands_path: defaulted("commands_path"),
    };
    prototype::adopt(&mut cli.settings, layout);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(switchyard::cli::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
