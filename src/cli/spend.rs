//! `switchyard spend`: what agent and `llm` runs cost (CONTRACT §14), as `GET /spend`.

use std::process::ExitCode;

use anyhow::Context;

use crate::settings::Settings;
use crate::spend_report::{self, SpendReport};

/// Prints the spend since `since` grouped by `by`, as a table or (`json`) as `GET /spend`.
pub async fn run(s: &Settings, since: &str, by: &str, json: bool) -> anyhow::Result<ExitCode> {
    // Bad input is a usage error (exit 2) before any database is looked for.
    let (since, (by, word)) = match (spend_report::parse_since(since), spend_report::parse_by(by)) {
        (Ok(since), Ok(by)) => (since, by),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let db = crate::store::open_existing(&s.store_config())
        .await
        .context("opening the database")?;
    let report = spend_report::report(&db, since, by, word).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The report as aligned text: one line per group, then the total.
fn table(r: &SpendReport) -> String {
    let width = r
        .groups
        .iter()
        .map(|g| g.key.chars().count())
        .max()
        .unwrap_or(0)
        .max(r.by.len());
    let mut out = format!(
        "{:width$}  {:>12}  {:>6}  {:>12}  {:>12}\n",
        r.by, "cost_usd", "runs", "input", "output"
    );
    for g in &r.groups {
        out.push_str(&format!(
            "{:width$}  {:>12.6}  {:>6}  {:>12}  {:>12}\n",
            g.key,
            g.cost_usd,
            g.runs,
            g.tokens.get("input").copied().unwrap_or(0),
            g.tokens.get("output").copied().unwrap_or(0)
        ));
    }
    out.push_str(&format!(
        "{:width$}  {:>12.6}  {:>6}  (since {})\n",
        "total", r.total_usd, r.runs, r.since
    ));
    out
}
