//! The event page's attempt history: every attempt ever made, oldest first, kept across
//! replays — the failures an operator most wants to see after a replay succeeded.

use maud::{Markup, html};

use super::layout::{short_time, status_badge};
use crate::store::AttemptRow;

/// The history card: one row per attempt (number, outcome, start, duration, error).
pub fn attempts_card(attempts: &[AttemptRow]) -> Markup {
    html! {
        div.card {
            h2 { "Attempt history " span.muted { "(" (attempts.len()) ", oldest first)" } }
            @if attempts.is_empty() {
                p.muted { "Not attempted yet." }
            } @else {
                table.attempts {
                    thead { tr { th { "#" } th { "Outcome" } th { "Started" } th { "Duration" } th { "Error" } } }
                    tbody {
                        @for a in attempts {
                            tr {
                                td.mono { (a.attempt) }
                                td { (status_badge(&a.outcome)) }
                                td.mono { (short_time(a.started_at.as_deref())) }
                                td.mono { (a.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default()) }
                                td { @if let Some(e) = a.error.as_deref() { pre.error-text { (e) } } }
                            }
                        }
                    }
                }
            }
        }
    }
}
