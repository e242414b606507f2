//! What agent and `llm` runs cost over a period (CONTRACT §14): the reply of `GET /spend`
//! and `switchyard spend`, built from the store's spend ledger.

use serde::Serialize;

use crate::store::{Db, SpendBy, SpendGroup, StoreError, spend};

/// Default period: the last seven days.
pub const DEFAULT_SINCE: &str = "7d";

/// The spend of a period, grouped.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SpendReport {
    /// Always true.
    pub ok: bool,
    /// Start of the period (RFC 3339 UTC, inclusive; attempts count by their start).
    pub since: String,
    /// How the groups are keyed: `action`, `model` or `day`.
    pub by: String,
    /// Cost of every attempt in the period, in US dollars (unpriced ones count 0).
    pub total_usd: f64,
    /// Attempts in the period.
    pub runs: i64,
    /// One entry per action, model or UTC day (days oldest first, others costliest first).
    pub groups: Vec<SpendGroup>,
}

/// The start of a period: an age (`7d`, `12h`, `30m`, `90s`) or an RFC 3339 time.
pub fn parse_since(text: &str) -> Result<String, String> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(crate::time::format(t.with_timezone(&chrono::Utc)));
    }
    crate::retention::parse_age(text)
        .map(crate::retention::cutoff)
        .map_err(|_| format!("since must be an age such as 7d, 12h or 30m, or an RFC 3339 time; got '{text}'"))
}

/// The words `by` accepts.
pub fn parse_by(text: &str) -> Result<(SpendBy, &'static str), String> {
    let by: SpendBy = text.parse()?;
    let word = match by {
        SpendBy::Action => "action",
        SpendBy::Model => "model",
        SpendBy::Day => "day",
    };
    Ok((by, word))
}

/// The spend since `since` (stored timestamp text) grouped by `by`.
pub async fn report(db: &Db, since: String, by: SpendBy, word: &str) -> Result<SpendReport, StoreError> {
    let cells = db.spend_cells(since.clone()).await?;
    let groups = spend::group(&cells, by);
    Ok(SpendReport {
        ok: true,
        since,
        by: word.to_owned(),
        total_usd: groups.iter().map(|g| g.cost_usd).sum(),
        runs: groups.iter().map(|g| g.runs).sum(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_by() {
        assert_eq!(
            parse_since("2026-03-01T10:00:00+01:00").unwrap(),
            crate::time::format(
                chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
                    .unwrap()
                    .to_utc()
            )
        );
        assert!(parse_since("7d").unwrap() < crate::time::now());
        assert!(parse_since("yesterday").unwrap_err().contains("since"));
        assert_eq!(parse_by("model").unwrap().1, "model");
        assert!(parse_by("week").unwrap_err().contains("action, model or day"));
    }
}
