//! `switchyard db copy`: moving a database between SQLite and PostgreSQL (CONTRACT §15).

use std::process::ExitCode;

use anyhow::Context;

use crate::settings::Settings;
use crate::store::copy::{self, CopyOptions, Endpoint, TableCount};

/// Runs `db copy`: prints each table's counts; exit 1 when any differ at the end.
pub async fn copy(s: &Settings, from: &str, to: &str, resume: bool) -> anyhow::Result<ExitCode> {
    let (from, to) = (Endpoint::parse(from), Endpoint::parse(to));
    let options = CopyOptions {
        resume,
        connect_timeout: s.store_config().postgres.connect_timeout,
        sqlite_synchronous: s.sqlite_synchronous,
    };
    println!("copying {} → {}", from.describe(), to.describe());
    let counts = copy::copy(&from, &to, &options, print_table)
        .await
        .with_context(|| format!("db copy from {} to {}", from.describe(), to.describe()))?;
    let differ: Vec<&TableCount> = counts.iter().filter(|c| c.source != c.target).collect();
    if differ.is_empty() {
        let rows: u64 = counts.iter().map(|c| c.copied).sum();
        println!("ok: {rows} rows copied; every table holds as many rows as the source");
        return Ok(ExitCode::SUCCESS);
    }
    let names: Vec<&str> = differ.iter().map(|c| c.table).collect();
    eprintln!(
        "error: the counts differ for {} (rows the target held before, or rows it refused as duplicates)",
        names.join(", ")
    );
    Ok(ExitCode::FAILURE)
}

fn print_table(c: &TableCount) {
    println!(
        "{:<18} source {:>9}  copied {:>9}  target {:>9}{}",
        c.table,
        c.source,
        c.copied,
        c.target,
        if c.source == c.target { "" } else { "  ≠" }
    );
}
