//! The Spend page (CONTRACT §14): cost per day per action as a stacked bar chart, the
//! spend by action and by model, and the most expensive runs of the period.

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::Datelike;
use maud::{Markup, html};
use serde::Deserialize;

use super::UiState;
use super::layout::{page, short_time};
use super::session::Session;
use super::timeline::dollars;
use crate::error::ApiError;
use crate::store::{SpendBy, SpendCell, SpendGroup, TopRun, spend};

/// The periods offered, in days.
const PERIODS: &[u32] = &[7, 30];
/// Costliest runs listed.
const TOP_RUNS: u32 = 10;
/// Actions with their own colour in the chart; the others are summed as `other`.
const COLOURED: usize = 8;

/// The Spend page's query.
#[derive(Deserialize)]
pub struct SpendQuery {
    days: Option<u32>,
}

/// Shows the spend of the last 7 (or 30) days.
pub async fn show(
    State(state): State<UiState>,
    Extension(session): Extension<Session>,
    Query(q): Query<SpendQuery>,
) -> Result<Response, ApiError> {
    let days = q.days.filter(|d| PERIODS.contains(d)).unwrap_or(PERIODS[0]);
    let today = chrono::Utc::now().date_naive();
    let first = today - chrono::Days::new(u64::from(days) - 1);
    let since = format!("{first}T00:00:00+00:00");
    let db = &state.app.db;
    let cells = db.spend_cells(since.clone()).await?;
    let top = db.top_runs(since, TOP_RUNS).await?;
    let day_list: Vec<String> = first.iter_days().take(days as usize).map(|d| d.to_string()).collect();
    let by_action = spend::group(&cells, SpendBy::Action);
    let by_model = spend::group(&cells, SpendBy::Model);
    let total: f64 = by_action.iter().map(|g| g.cost_usd).sum();
    let budgets = budget_lines(&state).await?;
    let content = html! {
        div.row {
            h1 { "Spend" }
            span.spacer {}
            @for d in PERIODS {
                a class=[(*d == days).then_some("active")] href={ "/ui/spend?days=" (d) } { "last " (d) " days" } " "
            }
        }
        div.card {
            h2 { "Budgets" }
            @if budgets.is_empty() {
                p.muted { "No budget is set (LLM_DAILY_BUDGET_USD, LLM_MONTHLY_BUDGET_USD, or a route's \"budget\")." }
            }
            @for b in &budgets { (budget_bar(b)) }
        }
        div.card {
            h2 { "Cost per day per action" }
            (chart(&cells, &day_list, &by_action))
            p.muted { "Total " (dollars(total)) " over " (by_action.iter().map(|g| g.runs).sum::<i64>()) " runs (UTC days; unpriced runs count 0)." }
        }
        div.grid {
            div.card { h2 { "By action" } (groups_table("action", &by_action)) }
            div.card { h2 { "By model" } (groups_table("model", &by_model)) }
        }
        div.card { h2 { "Most expensive runs" } (top_table(&top)) }
    };
    Ok(page("Spend", "/ui/spend", &session, content).into_response())
}

/// One budget against the spend of its period.
struct BudgetLine {
    /// What it limits: `all runs` or the action.
    scope: String,
    /// `today` or `this month`.
    period: &'static str,
    spent: f64,
    limit: f64,
}

/// The global budgets, then each action's, with the spend of their UTC day or month.
async fn budget_lines(state: &UiState) -> Result<Vec<BudgetLine>, ApiError> {
    let db = &state.app.db;
    let global = state.app.settings.flow_config().budgets;
    let now = chrono::Utc::now().date_naive();
    let day = format!("{now}T00:00:00+00:00");
    let month = format!("{}T00:00:00+00:00", now.with_day(1).unwrap_or(now));
    let mut wanted: Vec<(String, Option<String>, &'static str, f64)> = Vec::new();
    let all = "all agent and llm runs".to_owned();
    if let Some(limit) = global.daily_usd {
        wanted.push((all.clone(), None, "today", limit));
    }
    if let Some(limit) = global.monthly_usd {
        wanted.push((all, None, "this month", limit));
    }
    for b in db.budgets().await? {
        if let Some(limit) = b.budget.daily_usd {
            wanted.push((b.action.clone(), Some(b.action.clone()), "today", limit));
        }
        if let Some(limit) = b.budget.monthly_usd {
            wanted.push((b.action.clone(), Some(b.action), "this month", limit));
        }
    }
    let mut lines = Vec::with_capacity(wanted.len());
    for (scope, action, period, limit) in wanted {
        let since = if period == "today" { day.clone() } else { month.clone() };
        let spent = db.spent_since(since, action).await?;
        lines.push(BudgetLine {
            scope,
            period,
            spent,
            limit,
        });
    }
    Ok(lines)
}

/// A budget as a bar (SVG, which the page's style policy allows): spent of the limit.
fn budget_bar(b: &BudgetLine) -> Markup {
    let share = (b.spent / b.limit).clamp(0.0, 1.0);
    let over = b.spent >= b.limit;
    html! {
        div.budget {
            div.row {
                span.mono { (b.scope) }
                span.muted { (b.period) }
                span.spacer {}
                span { (dollars(b.spent)) " of " (dollars(b.limit)) @if over { " — reached: new runs are held" } }
            }
            svg.budget-bar viewBox="0 0 100 4" preserveAspectRatio="none" role="img" {
                title { (b.scope) " " (b.period) ": " (dollars(b.spent)) " of " (dollars(b.limit)) }
                rect.track x="0" y="0" width="100" height="4" {}
                rect class=(if over { "fill over" } else { "fill" }) x="0" y="0" width=(share * 100.0) height="4" {}
            }
        }
    }
}

/// A table of groups: key, cost, runs, input and output tokens.
fn groups_table(what: &str, groups: &[SpendGroup]) -> Markup {
    html! {
        @if groups.is_empty() { p.muted { "No agent or llm run in this period." } }
        @else {
            table.spend {
                thead { tr { th { (what) } th { "cost" } th { "runs" } th { "input" } th { "output" } } }
                tbody {
                    @for g in groups {
                        tr {
                            td.mono { (if g.key.is_empty() { "(unknown)" } else { g.key.as_str() }) }
                            td { (dollars(g.cost_usd)) }
                            td { (g.runs) }
                            td { (g.tokens.get("input").copied().unwrap_or(0)) }
                            td { (g.tokens.get("output").copied().unwrap_or(0)) }
                        }
                    }
                }
            }
        }
    }
}

/// The costliest runs, each linking to its event.
fn top_table(top: &[TopRun]) -> Markup {
    html! {
        @if top.is_empty() { p.muted { "No priced run in this period." } }
        @else {
            table.spend.top-runs {
                thead { tr { th { "cost" } th { "action" } th { "model" } th { "stop" } th { "started" } th { "event" } } }
                tbody {
                    @for r in top {
                        tr {
                            td { (dollars(r.cost_usd)) }
                            td.mono { (r.action) }
                            td.mono { (r.model.as_deref().unwrap_or("")) }
                            td.mono { (r.stop.as_deref().unwrap_or("")) }
                            td.mono { (short_time(Some(&r.started_at))) }
                            td { a href={ "/ui/events/" (r.event_row_id) } { "#" (r.event_row_id) } }
                        }
                    }
                }
            }
        }
    }
}

/// Stacked bars: one per day, one segment per action (the costliest [`COLOURED`] keep
/// their colour, the rest are `other`), with a legend and an accessible title.
fn chart(cells: &[SpendCell], days: &[String], by_action: &[SpendGroup]) -> Markup {
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 200.0;
    const LEFT: f64 = 54.0;
    const BOTTOM: f64 = 22.0;
    const TOP: f64 = 12.0;
    let coloured: Vec<&str> = by_action.iter().take(COLOURED).map(|g| g.key.as_str()).collect();
    let series = |action: &str| coloured.iter().position(|a| *a == action).unwrap_or(COLOURED);
    // stacks[day][series] = cost
    let mut stacks = vec![[0.0f64; COLOURED + 1]; days.len()];
    for c in cells {
        if let Some(d) = days.iter().position(|d| *d == c.day) {
            stacks[d][series(&c.action)] += c.cost_usd;
        }
    }
    let top = stacks.iter().map(|s| s.iter().sum::<f64>()).fold(0.0, f64::max);
    let scale = if top > 0.0 { (HEIGHT - TOP - BOTTOM) / top } else { 0.0 };
    let slot = (WIDTH - LEFT) / days.len().max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let has_other = stacks.iter().any(|s| s[COLOURED] > 0.0);
    // (day, series, y, height, cost) of every segment, stacked from the axis up.
    let mut segments = Vec::new();
    for (d, stack) in stacks.iter().enumerate() {
        let mut y = HEIGHT - BOTTOM;
        for (s, cost) in stack.iter().enumerate().filter(|(_, c)| **c > 0.0) {
            y -= cost * scale;
            segments.push((d, s, y, cost * scale, *cost));
        }
    }
    let x = |d: usize| LEFT + slot * d as f64 + (slot - bar) / 2.0;
    html! {
        svg.chart.spend-chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-labelledby="spend-title" {
            title id="spend-title" { "Cost per UTC day per action; the costliest day cost " (dollars(top)) "." }
            line.grid x1=(LEFT) x2=(WIDTH) y1=(HEIGHT - BOTTOM) y2=(HEIGHT - BOTTOM) {}
            text.axis x=(LEFT - 6.0) y=(TOP + 4.0) text-anchor="end" { (dollars(top)) }
            text.axis x=(LEFT - 6.0) y=(HEIGHT - BOTTOM) text-anchor="end" { "$0" }
            @for (d, s, y, h, cost) in &segments {
                rect class={ "bar s" (s) } x=(x(*d)) y=(y) width=(bar) height=(h) {
                    title { (days[*d]) " " (coloured.get(*s).copied().unwrap_or("other")) ": " (dollars(*cost)) }
                }
            }
            @for (d, day) in days.iter().enumerate() {
                @if days.len() <= 10 || d % 5 == 0 || d + 1 == days.len() {
                    text.axis x=(x(d) + bar / 2.0) y=(HEIGHT - 6.0) text-anchor="middle" { (day.get(5..).unwrap_or("")) }
                }
            }
        }
        div.legend {
            @for (i, a) in coloured.iter().enumerate() { span { span class={ "swatch s" (i) } {} (a) } }
            @if has_other { span { span class={ "swatch s" (COLOURED) } {} "other" } }
        }
    }
}
