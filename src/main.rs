//! The `switchyard` binary: parse the command line, run the library.

use std::process::ExitCode;

use clap::Parser;
use switchyard::cli::Cli;
use switchyard::settings::prepare_environment;

/// mimalloc rather than glibc's malloc, built without transparent huge pages (resident
/// memory grew in 2 MB steps with them): both measured in docs/PERFORMANCE.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    prepare_environment();
    let mut cli = Cli::parse();
    cli.settings = cli.settings.normalized();
    switchyard::logging::init(cli.settings.log_format);
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
