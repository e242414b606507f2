//! The Overview's throughput chart as server-rendered SVG: one line per series over the
//! last hour's minutes, with axis labels, a legend and an accessible title (no script).

use maud::{Markup, html};

use crate::domain::EventStatus;
use crate::store::MinuteCounts;

/// Drawing area, in SVG user units (the element scales to its container).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 12.0;
/// Room above the plot for the axis title, clear of the top gridline.
const TOP: f64 = 24.0;
const BOTTOM: f64 = 26.0;

/// Minutes between labels on the time axis.
const LABEL_EVERY: usize = 10;

/// A plotted series: CSS class (its colour), legend label, value of a minute.
type Series = (&'static str, &'static str, fn(&MinuteCounts) -> i64);

const SERIES: &[Series] = &[
    ("ingest", "received", |m| m.received),
    (EventStatus::Done.as_str(), EventStatus::Done.as_str(), |m| m.done),
    ("failed", "failed", |m| m.failed),
];

/// The chart of `minutes` (oldest first), titled `title`.
pub fn throughput(title: &str, minutes: &[MinuteCounts]) -> Markup {
    let busiest = minutes
        .iter()
        .flat_map(|m| SERIES.iter().map(move |(_, _, value)| value(m)))
        .max()
        .unwrap_or(0);
    let (top, tick) = y_axis(busiest);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let step = plot_w / (minutes.len().max(2) - 1) as f64;
    let x = |i: usize| LEFT + step * i as f64;
    let y = |v: i64| TOP + plot_h - plot_h * v as f64 / top as f64;
    let totals: Vec<i64> = SERIES
        .iter()
        .map(|(_, _, value)| minutes.iter().map(value).sum())
        .collect();
    let summary = SERIES
        .iter()
        .zip(&totals)
        .map(|((_, label, _), n)| format!("{n} {label}"))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-labelledby="chart-title chart-desc" {
            title id="chart-title" { (title) }
            desc id="chart-desc" { "Events per minute; in total " (summary) "; the busiest minute had " (busiest) "." }
            @for v in (0..=top).step_by(tick as usize) {
                line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(v)) y2=(y(v)) {}
                text.axis.y x=(LEFT - 6.0) y=(y(v) + 3.0) text-anchor="end" { (v) }
            }
            @for (i, m) in minutes.iter().enumerate() {
                @if (minutes.len() - 1 - i).is_multiple_of(LABEL_EVERY) {
                    // The last label ends at the last point so it is not cut off.
                    text.axis x=(x(i)) y=(HEIGHT - 8.0) text-anchor=(if i + 1 == minutes.len() { "end" } else { "middle" }) {
                        (m.minute.get(11..16).unwrap_or(""))
                    }
                }
            }
            text.axis.title x=(LEFT) y=(TOP - 12.0) { "per minute (UTC)" }
            @for (class, _, value) in SERIES {
                polyline class={ "line " (class) } points=(points(minutes, x, y, *value)) {}
            }
        }
        div.legend {
            @for ((class, label, _), n) in SERIES.iter().zip(&totals) {
                span { span class={ "swatch " (class) } {} (label) " (" (n) ")" }
            }
        }
    }
}

/// The y axis for a busiest minute of `busiest`: its top and the step between ticks, a
/// whole 1, 2 or 5 × 10ⁿ giving at most five intervals, the top a multiple of it (so
/// 7 → 0, 2, 4, 6, 8 rather than 0, 3, 7).
fn y_axis(busiest: i64) -> (i64, i64) {
    let busiest = busiest.max(1);
    let mut magnitude = 1;
    loop {
        for unit in [1, 2, 5] {
            let step = unit * magnitude;
            if busiest <= step * 5 {
                return ((busiest + step - 1) / step * step, step);
            }
        }
        magnitude *= 10;
    }
}

fn points(
    minutes: &[MinuteCounts],
    x: impl Fn(usize) -> f64,
    y: impl Fn(i64) -> f64,
    value: fn(&MinuteCounts) -> i64,
) -> String {
    minutes
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{:.1},{:.1}", x(i), y(value(m))))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(i: usize, received: i64, done: i64) -> MinuteCounts {
        MinuteCounts {
            minute: format!("2026-01-02T03:{i:02}:00+00:00"),
            received,
            done,
            failed: 0,
        }
    }

    #[test]
    fn chart_has_title_axes_legend_and_one_line_per_series() {
        let minutes: Vec<_> = (0..60).map(|i| minute(i, (i % 7) as i64, 2)).collect();
        let svg = throughput("Last hour <b>", &minutes).into_string();
        assert!(
            svg.contains(r#"<title id="chart-title">Last hour &lt;b&gt;</title>"#),
            "{svg}"
        );
        assert_eq!(svg.matches("<polyline").count(), 3);
        // The top of the y axis is the busiest minute; the x axis labels every tenth minute
        // counted back from the last.
        assert!(svg.contains(">6</text>"), "{svg}");
        assert!(svg.contains(">03:59</text>") && svg.contains(">03:09</text>"), "{svg}");
        assert!(!svg.contains(">03:08</text>"));
        assert!(svg.contains("received (174)"), "{svg}");
        // The first point of "done" sits at the left edge, at height 2 of 6.
        assert!(svg.contains(&format!("44.0,{:.1}", TOP + (HEIGHT - TOP - BOTTOM) * 4.0 / 6.0)));
    }

    #[test]
    fn y_ticks_are_whole_round_steps() {
        assert_eq!(y_axis(0), (1, 1));
        assert_eq!(y_axis(3), (3, 1));
        assert_eq!(y_axis(5), (5, 1));
        assert_eq!(y_axis(7), (8, 2));
        assert_eq!(y_axis(23), (25, 5));
        assert_eq!(y_axis(100), (100, 20));
        assert_eq!(y_axis(4321), (5000, 1000));
        let minutes: Vec<_> = (0..60).map(|i| minute(i, if i == 5 { 7 } else { 0 }, 0)).collect();
        let svg = throughput("t", &minutes).into_string();
        for tick in ["0", "2", "4", "6", "8"] {
            assert!(
                svg.contains(&format!(r#"text-anchor="end">{tick}</text>"#)),
                "{tick}: {svg}"
            );
        }
        assert!(!svg.contains(r#"text-anchor="end">3</text>"#), "{svg}");
    }

    #[test]
    fn an_empty_hour_still_draws_flat_lines() {
        let minutes: Vec<_> = (0..60).map(|i| minute(i, 0, 0)).collect();
        let svg = throughput("t", &minutes).into_string();
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("received (0)"));
    }
}
