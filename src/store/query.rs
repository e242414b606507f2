//! Operator queries over events: filters, keyset pages, transitions and purges (CONTRACT
//! §10); the counts of `/stats` are in [`counts`](super::counts). The SQL text of the filters is built here once for both backends; only
//! the placeholder style differs.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

/// The WHERE of the `events_status_received` index (SQLite migration 0014, PostgreSQL
/// 0012), which a query of statuses other than `done` repeats verbatim so that the planner
/// sees the index applies.
macro_rules! not_done_rows {
    () => {
        "status <> 'done'"
    };
}
pub(crate) use not_done_rows;

/// Every status an event can have.
pub const STATUSES: &[&str] = crate::domain::EventStatus::NAMES;

/// Statuses a purge may delete (finished ones).
pub const PURGEABLE: &[crate::domain::EventStatus] = crate::domain::EventStatus::FINISHED;

/// Events replayed per writer request by a bulk replay (one short transaction each).
pub(crate) const REPLAY_CHUNK: usize = 500;

/// Longest accepted filter text (provider, action, source, q); longer is a client error.
pub const MAX_FILTER_LEN: usize = 200;

/// Which events an operator query covers; every field narrows (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// One of [`STATUSES`].
    pub status: Option<String>,
    /// Detected provider (known once an attempt routed the event).
    pub provider: Option<String>,
    /// Routed action.
    pub action: Option<String>,
    /// `webhook` or `cron`.
    pub source: Option<String>,
    /// Received at or after (stored timestamp text).
    pub since: Option<String>,
    /// Received before (stored timestamp text).
    pub until: Option<String>,
    /// Substring of `event_id` or `last_error` (ASCII case-insensitive).
    pub q: Option<String>,
}

/// A position in the newest-first order: the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// `received_at` exactly as stored (not normalised), so it compares like the index.
    pub received_at: String,
    /// Row id (ties on `received_at`).
    pub id: i64,
}

impl Cursor {
    /// The opaque text handed to clients.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.id, self.received_at))
    }

    /// Parses a client's cursor; `None` when it is not one of ours.
    pub fn decode(text: &str) -> Option<Cursor> {
        if text.len() > 200 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (id, received_at) = raw.split_once('|')?;
        Some(Cursor {
            id: id.parse().ok()?,
            received_at: received_at.to_string(),
        })
    }
}

/// An event as listed: the seed's columns without payload or result bodies.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventSummary {
    /// Row id.
    pub id: i64,
    /// `webhook` or `cron`.
    pub source: Option<crate::domain::Source>,
    /// Dedupe key.
    pub event_id: Option<String>,
    /// When it arrived (RFC 3339 UTC).
    pub received_at: Option<String>,
    /// pending, processing, retry, done, error, cancelled, held, waiting, skipped or superseded.
    pub status: Option<crate::domain::EventStatus>,
    /// Attempts so far.
    pub attempt_count: i64,
    /// When it is next due.
    pub next_attempt_at: Option<String>,
    /// When the current or last attempt started.
    pub processing_started_at: Option<String>,
    /// When it finished (done, error, cancelled, skipped or superseded).
    pub processed_at: Option<String>,
    /// Why the last attempt failed; for a `held` or `waiting` event, what it waits for.
    pub last_error: Option<String>,
    /// Provider detected by the last attempt.
    pub provider: Option<String>,
    /// Action routed by the last attempt (the first, when it routed to several).
    pub action: Option<String>,
    /// Each action and its run's status, only for an event with runs of several actions
    /// (fan-out); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<super::action_states::ActionState>>,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// Newest first.
    pub events: Vec<EventSummary>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// What a replay or cancel did to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Applied.
    Applied,
    /// No such event.
    NotFound,
    /// Refused in this status.
    Conflict(String),
}

/// Placeholder style of a backend.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dialect {
    /// `?1`, `LIKE` (ASCII case-insensitive).
    Sqlite,
    /// `$1`, `ILIKE`.
    Postgres,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// A WHERE clause and its values, placeholders numbered from 1.
#[derive(Debug, Default)]
pub(crate) struct Clause {
    pub sql: String,
    pub binds: Vec<Bind>,
}

impl Clause {
    /// Adds a condition whose `#` marks take `values` in order.
    pub(crate) fn and(&mut self, dialect: Dialect, template: &str, values: Vec<Bind>) {
        let mut part = template.to_string();
        for v in values {
            self.binds.push(v);
            let mark = match dialect {
                Dialect::Sqlite => format!("?{}", self.binds.len()),
                Dialect::Postgres => format!("${}", self.binds.len()),
            };
            part = part.replacen('#', &mark, 1);
        }
        self.sql.push_str(if self.sql.is_empty() { " WHERE " } else { " AND " });
        self.sql.push_str(&part);
    }

    /// The next placeholder's text (for a LIMIT after the clause).
    pub(crate) fn next_mark(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::Sqlite => format!("?{}", self.binds.len() + 1),
            Dialect::Postgres => format!("${}", self.binds.len() + 1),
        }
    }
}

/// `%`, `_` and `\` escaped for `LIKE … ESCAPE '\'`.
fn like_pattern(q: &str) -> String {
    let mut p = String::with_capacity(q.len() + 2);
    p.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The keys of a filter, as the query string and the command line name them: `status`,
/// `provider`, `action`, `source`, `since` (RFC 3339, inclusive), `until` (exclusive), `q`.
pub const FILTER_KEYS: &[&str] = &["status", "provider", "action", "source", "since", "until", "q"];

/// Why a client's filter was refused; the message names the field and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FilterError {}

/// Trims; empty means unset; too long is an error naming the field.
fn field(name: &str, value: Option<&str>) -> Result<Option<String>, FilterError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.len() > MAX_FILTER_LEN {
        return Err(FilterError(format!(
            "{name} is longer than {MAX_FILTER_LEN} characters"
        )));
    }
    Ok(Some(v.to_string()))
}

/// An RFC 3339 time as stored text.
fn time_field(name: &str, value: Option<&str>) -> Result<Option<String>, FilterError> {
    field(name, value)?
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(&v)
                .map(|t| crate::time::format(t.with_timezone(&chrono::Utc)))
                .map_err(|_| {
                    FilterError(format!(
                        "{name} must be an RFC 3339 time such as 2024-01-31T00:00:00Z, got '{v}'"
                    ))
                })
        })
        .transpose()
}

impl EventFilter {
    /// Validates a client's filter given as `(key, value)` pairs (a query string, flags):
    /// keys outside [`FILTER_KEYS`] are left to the caller (paging, force); an empty value
    /// is unset; a key given twice is an error.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<EventFilter, FilterError> {
        let mut given: [Option<&str>; 7] = [None; 7];
        for (key, value) in pairs {
            let Some(i) = FILTER_KEYS.iter().position(|k| *k == key) else {
                continue;
            };
            if given[i].replace(value).is_some() {
                return Err(FilterError(format!("{key} is given more than once")));
            }
        }
        let [status, provider, action, source, since, until, q] = given;
        let status = field("status", status)?;
        if let Some(s) = &status
            && !STATUSES.contains(&s.as_str())
        {
            return Err(FilterError(format!(
                "status must be one of {}, got '{s}'",
                STATUSES.join(", ")
            )));
        }
        Ok(EventFilter {
            status,
            provider: field("provider", provider)?.map(|p| p.to_ascii_lowercase()),
            action: field("action", action)?,
            source: field("source", source)?,
            since: time_field("since", since)?,
            until: time_field("until", until)?,
            q: field("q", q)?,
        })
    }

    /// The filter as a WHERE clause (empty when nothing filters).
    pub(crate) fn clause(&self, dialect: Dialect) -> Clause {
        let mut c = Clause::default();
        let text = |s: &String| vec![Bind::Text(s.clone())];
        if let Some(s) = &self.status {
            // The status index holds no `done` rows (SQLite migration 0014, PostgreSQL
            // 0012): other statuses name its WHERE so that the planner sees it applies;
            // `done` pages walk `events_received`.
            // On PostgreSQL a claimed event's `processing` lives in `event_queue`
            // ([`PG_EVENTS_WITH_CLAIMS`]); its events row keeps `pending` or `retry`.
            use crate::domain::EventStatus::{Done, Pending, Processing, Retry};
            let is = |status: crate::domain::EventStatus| s == status.as_str();
            match dialect {
                _ if is(Done) => c.and(dialect, "status = #", text(s)),
                Dialect::Postgres if is(Processing) => c.and(dialect, "claim.event_row_id IS NOT NULL", vec![]),
                Dialect::Postgres if is(Pending) || is(Retry) => c.and(
                    dialect,
                    concat!(not_done_rows!(), " AND status = # AND claim.event_row_id IS NULL"),
                    text(s),
                ),
                _ => c.and(dialect, concat!(not_done_rows!(), " AND status = #"), text(s)),
            }
        }
        if let Some(s) = &self.provider {
            c.and(dialect, "provider = #", text(s));
        }
        if let Some(s) = &self.action {
            c.and(dialect, "action = #", text(s));
        }
        if let Some(s) = &self.source {
            // `source` has two values, so its only index (the `(source, event_id)` dedupe
            // key) never narrows a listing; SQLite, which keeps no statistics, would still
            // take it and sort every match. The unary `+` keeps it on the received_at walk.
            let term = match dialect {
                Dialect::Sqlite => "+source = #",
                Dialect::Postgres => "source = #",
            };
            c.and(dialect, term, text(s));
        }
        if let Some(s) = &self.since {
            c.and(dialect, "received_at >= #", text(s));
        }
        if let Some(s) = &self.until {
            c.and(dialect, "received_at < #", text(s));
        }
        if let Some(q) = &self.q {
            let like = match dialect {
                Dialect::Sqlite => "LIKE",
                Dialect::Postgres => "ILIKE",
            };
            let p = like_pattern(q);
            c.and(
                dialect,
                &format!("(event_id {like} # ESCAPE '\\' OR last_error {like} # ESCAPE '\\')"),
                vec![Bind::Text(p.clone()), Bind::Text(p)],
            );
        }
        c
    }

    /// The clause of a page: the filter plus "older than the cursor".
    pub(crate) fn page_clause(&self, dialect: Dialect, cursor: Option<&Cursor>) -> Clause {
        let mut c = self.clause(dialect);
        if let Some(cur) = cursor {
            c.and(
                dialect,
                "(received_at < # OR (received_at = # AND id < #))",
                vec![
                    Bind::Text(cur.received_at.clone()),
                    Bind::Text(cur.received_at.clone()),
                    Bind::Int(cur.id),
                ],
            );
        }
        c
    }
}

/// A listing page's query: the filter, older than the cursor, newest first; the page size
/// is the last placeholder (SQLite's `+ 0` keeps its planner from reading the bound value,
/// which would re-prepare the statement at every run).
pub(crate) fn page_sql(dialect: Dialect, filter: &EventFilter, cursor: Option<&Cursor>) -> (String, Clause) {
    let c = filter.page_clause(dialect, cursor);
    let limit = match dialect {
        Dialect::Sqlite => format!("{} + 0", c.next_mark(dialect)),
        Dialect::Postgres => c.next_mark(dialect),
    };
    let columns = match dialect {
        Dialect::Sqlite => SUMMARY_COLUMNS,
        Dialect::Postgres => PG_SUMMARY_COLUMNS,
    };
    let sql = format!("{columns} {} ORDER BY received_at DESC, id DESC LIMIT {limit}", c.sql);
    (sql, c)
}

/// Binds `binds` in order to a runtime-checked query.
pub(crate) fn bind_all<'q, DB>(
    mut q: sqlx::query::Query<'q, DB, DB::Arguments>,
    binds: &[Bind],
) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for b in binds {
        q = match b {
            Bind::Text(s) => q.bind(s.clone()),
            Bind::Int(i) => q.bind(*i),
        };
    }
    q
}

/// Columns of a listing (no bodies), plus the raw `received_at` the cursor needs.
pub(crate) const SUMMARY_COLUMNS: &str = "SELECT id, source, event_id, received_at, received_at AS received_at_raw, status, \
     attempt_count, next_attempt_at, processing_started_at, processed_at, last_error, provider, action FROM events";

/// PostgreSQL: `events` with the claim (`claim`) of each claimed event. A claim lives in
/// the narrow `event_queue` (migration 0020) and the events row is written when the attempt
/// ends, so what the API shows of a claimed event — status `processing`, the attempt
/// under way, when it started — is read from here ([`pg_claimed!`]).
pub(crate) const PG_EVENTS_WITH_CLAIMS: &str =
    "events LEFT JOIN event_queue claim ON claim.event_row_id = events.id AND claim.leased_until IS NOT NULL";

/// PostgreSQL: the `status`, `attempt_count` and `processing_started_at` columns of an
/// event read through [`PG_EVENTS_WITH_CLAIMS`], as the API shows them.
macro_rules! pg_claimed {
    () => {
        "CASE WHEN claim.event_row_id IS NOT NULL THEN 'processing' ELSE events.status END AS status, \
         COALESCE(claim.attempt, events.attempt_count) AS attempt_count, next_attempt_at, \
         COALESCE(claim.claimed_at, processing_started_at) AS processing_started_at"
    };
}
pub(crate) use pg_claimed;

/// [`SUMMARY_COLUMNS`] on PostgreSQL.
const PG_SUMMARY_COLUMNS: &str = concat!(
    "SELECT id, source, event_id, received_at, received_at AS received_at_raw, ",
    pg_claimed!(),
    ", processed_at, last_error, provider, action FROM events LEFT JOIN event_queue claim \
     ON claim.event_row_id = events.id AND claim.leased_until IS NOT NULL"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            received_at: "2024-01-01T00:00:00+00:00".into(),
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("not base64 !"), None);
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode("x|y")), None);
    }

    #[test]
    fn clause_numbers_placeholders_per_dialect() {
        let f = EventFilter {
            status: Some("error".into()),
            q: Some("50%_off".into()),
            ..EventFilter::default()
        };
        let c = f.page_clause(
            Dialect::Postgres,
            Some(&Cursor {
                received_at: "t".into(),
                id: 1,
            }),
        );
        assert_eq!(
            c.sql,
            " WHERE status <> 'done' AND status = $1 AND (event_id ILIKE $2 ESCAPE '\\' OR last_error ILIKE $3 ESCAPE '\\') \
             AND (received_at < $4 OR (received_at = $5 AND id < $6))"
        );
        assert!(matches!(&c.binds[1], Bind::Text(p) if p == "%50\\%\\_off%"));
        // PostgreSQL: a claimed event's `processing` is its claim's (PG_EVENTS_WITH_CLAIMS).
        let status = |s: &str| {
            let f = EventFilter {
                status: Some(s.into()),
                ..EventFilter::default()
            };
            f.clause(Dialect::Postgres).sql
        };
        assert_eq!(status("processing"), " WHERE claim.event_row_id IS NOT NULL");
        assert_eq!(
            status("retry"),
            " WHERE status <> 'done' AND status = $1 AND claim.event_row_id IS NULL"
        );
        assert_eq!(c.next_mark(Dialect::Postgres), "$7");
        assert_eq!(EventFilter::default().clause(Dialect::Sqlite).sql, "");
        let s = f.clause(Dialect::Sqlite);
        assert!(
            s.sql
                .starts_with(" WHERE status <> 'done' AND status = ?1 AND (event_id LIKE ?2")
        );
        let done = EventFilter {
            status: Some("done".into()),
            ..EventFilter::default()
        };
        assert_eq!(done.clause(Dialect::Sqlite).sql, " WHERE status = ?1");
    }

    #[test]
    fn from_pairs_validates_normalises_and_skips_other_keys() {
        let f = EventFilter::from_pairs([
            ("status", " error "),
            ("provider", "GitHub"),
            ("limit", "5"),
            ("since", "2024-01-31T01:00:00+01:00"),
            ("q", ""),
        ])
        .unwrap();
        assert_eq!(f.status.as_deref(), Some("error"));
        assert_eq!(f.provider.as_deref(), Some("github"));
        assert_eq!(
            f.since.as_deref(),
            Some(crate::time::format("2024-01-31T00:00:00Z".parse().unwrap()).as_str())
        );
        assert_eq!(f.q, None);
        let err = |pairs: &[(&str, &str)]| EventFilter::from_pairs(pairs.iter().copied()).unwrap_err().0;
        assert!(err(&[("status", "nope")]).starts_with("status must be one of pending, "));
        assert!(err(&[("until", "yesterday")]).starts_with("until must be an RFC 3339 time"));
        assert_eq!(err(&[("q", "a"), ("q", "b")]), "q is given more than once");
        assert_eq!(
            err(&[("action", &"x".repeat(201))]),
            "action is longer than 200 characters"
        );
    }
}
