//! `switchyard db init`: create (or migrate) the database, the one way besides the service
//! roles and `--create-db` that a new SQLite file comes into being.

use std::process::ExitCode;

use anyhow::Context;

use crate::settings::Settings;

/// Creates the database `s` selects when it is missing and migrates it; prints where.
pub async fn run(s: &Settings) -> anyhow::Result<ExitCode> {
    let location = crate::store::location(&s.store_config());
    let postgres = location.starts_with("postgres://");
    let existed = postgres || std::path::Path::new(&location).is_file();
    create(s).await?;
    if existed {
        println!("ok: {location} is ready (schema up to date)");
    } else {
        println!("ok: created {location}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the database as the service does (creating a SQLite file, migrating either).
pub async fn create(s: &Settings) -> anyhow::Result<()> {
    crate::store::open(&s.store_config())
        .await
        .context("creating the database")?;
    Ok(())
}
