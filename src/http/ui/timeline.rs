//! An agent run's transcript as a timeline (CONTRACT §14): the session start, the agent's
//! text, each tool call with its input, each tool result, and the final result with its
//! cost. Every value comes from a model fed hostile payloads: maud escapes all of it, and
//! long values are cut.

use maud::{Markup, html};
use serde_json::Value;

use crate::domain::Usage;

/// Entries shown at most (a capped transcript has a few hundred).
const MAX_ENTRIES: usize = 400;
/// Characters of one text, input or result shown at most.
const MAX_CHARS: usize = 4000;

/// `text` cut to [`MAX_CHARS`] characters, saying how much was left out.
fn cut(text: &str) -> String {
    let mut chars = text.char_indices();
    match chars.nth(MAX_CHARS) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}… ({} more bytes)", &text[..at], text.len() - at),
    }
}

/// A dollar amount for display: cents from a dollar up, more digits below.
pub fn dollars(usd: f64) -> String {
    match usd.abs() {
        a if a == 0.0 || a >= 1.0 => format!("${usd:.2}"),
        a if a >= 0.01 => format!("${usd:.4}"),
        _ => format!("${usd:.6}"),
    }
}

/// The usage of a run in one line: cost, tokens, turns, model, stop reason.
pub fn usage_line(u: &Usage) -> Markup {
    let tokens = |n: Option<u64>| n.map_or_else(|| "—".to_owned(), |n| n.to_string());
    html! {
        span.usage {
            span.cost { (u.cost_usd.map_or_else(|| "cost unknown".to_owned(), dollars)) }
            " · in " (tokens(u.input_tokens)) " / out " (tokens(u.output_tokens))
            " / cache " (tokens(u.cache_read_tokens)) "+" (tokens(u.cache_creation_tokens))
            @if let Some(t) = u.num_turns { " · " (t) " turns" }
            @if let Some(m) = &u.model { " · " span.mono { (m) } }
            @if let Some(s) = &u.stop { " · " span.mono { (s) } }
        }
    }
}

/// The timeline of a JSONL transcript.
pub fn timeline(transcript: &str) -> Markup {
    let lines: Vec<&str> = transcript.lines().filter(|l| !l.trim().is_empty()).collect();
    html! {
        ol.timeline {
            @for line in lines.iter().take(MAX_ENTRIES) {
                @match serde_json::from_str::<Value>(line) {
                    Ok(message) => (entry(&message)),
                    Err(_) => li.t-raw { pre { (cut(line)) } },
                }
            }
            @if lines.len() > MAX_ENTRIES {
                li.t-elided { (lines.len() - MAX_ENTRIES) " more lines (see the transcript)" }
            }
        }
    }
}

/// One transcript line.
fn entry(m: &Value) -> Markup {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    match m.get("type").and_then(Value::as_str).unwrap_or("") {
        "system" => html! {
            li.t-system {
                span.t-kind { "session" } " " (s(m, "subtype"))
                @if let Some(model) = m.get("model").and_then(Value::as_str) { " · model " span.mono { (model) } }
                @if let Some(tools) = m.get("tools").and_then(Value::as_array) {
                    " · tools: " span.mono { (cut(&tools.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))) }
                }
            }
        },
        "assistant" | "user" => html! {
            @for block in m.pointer("/message/content").and_then(Value::as_array).into_iter().flatten() {
                (content_block(block))
            }
            @if let Some(text) = m.pointer("/message/content").and_then(Value::as_str) {
                li.t-text { p { (cut(text)) } }
            }
        },
        "result" => result(m),
        "switchyard_elided" => html! {
            li.t-elided { "… " (m.get("bytes").and_then(Value::as_u64).unwrap_or(0)) " bytes left out …" }
        },
        other => html! { li.t-raw { span.t-kind { (cut(other)) } } },
    }
}

/// A content block of an assistant or user message.
fn content_block(b: &Value) -> Markup {
    let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    match b.get("type").and_then(Value::as_str).unwrap_or("") {
        "text" => html! { li.t-text { p { (cut(&s("text"))) } } },
        "tool_use" => {
            let input = b
                .get("input")
                .map(|i| serde_json::to_string_pretty(i).unwrap_or_default())
                .unwrap_or_default();
            html! {
                li.t-tool {
                    span.t-kind { "tool call" } " " span.mono { (s("name")) }
                    pre { (cut(&input)) }
                }
            }
        }
        "tool_result" => {
            let content = match b.get("content") {
                Some(Value::String(t)) => t.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let failed = b.get("is_error").and_then(Value::as_bool) == Some(true);
            html! {
                li class=(if failed { "t-result t-failed" } else { "t-result" }) {
                    span.t-kind { (if failed { "tool error" } else { "tool result" }) }
                    pre { (cut(&content)) }
                }
            }
        }
        "thinking" => html! { li.t-text { p.muted { (cut(&s("thinking"))) } } },
        other => html! { li.t-raw { span.t-kind { (cut(other)) } } },
    }
}

/// The final result line: how it ended, what it cost, what was denied.
fn result(m: &Value) -> Markup {
    let usage = crate::handlers::llm::cli_usage(m);
    let denied: Vec<&str> = m
        .get("permission_denials")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("tool_name").and_then(Value::as_str))
        .collect();
    html! {
        li.t-final {
            span.t-kind { "result" } " " (usage_line(&usage))
            @if !denied.is_empty() { p.error-text { "Denied: " (cut(&denied.join(", "))) } }
            @if let Some(text) = m.get("result").and_then(Value::as_str) { pre { (cut(text)) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_escaped_and_cut() {
        let lines = [
            r#"{"type":"system","subtype":"init","model":"<b>m</b>","tools":["Read"]}"#.to_owned(),
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"<script>alert(1)</script>"},{"type":"tool_use","name":"Bash","input":{"command":"\"><img src=x onerror=alert(2)>"}}]}}"#.to_owned(),
            format!(r#"{{"type":"user","message":{{"content":[{{"type":"tool_result","content":"{}","is_error":true}}]}}}}"#, "x".repeat(10_000)),
            r#"{"type":"result","subtype":"success","total_cost_usd":0.5,"num_turns":2,"permission_denials":[{"tool_name":"Write"}]}"#.to_owned(),
            r#"{"type":"switchyard_elided","bytes":42}"#.to_owned(),
            "not json <i>".to_owned(),
        ];
        let html = timeline(&lines.join("\n")).into_string();
        assert!(
            !html.contains("<script>") && !html.contains("<img") && !html.contains("<b>m"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("tool error") && html.contains("more bytes"), "{html}");
        assert!(html.contains("$0.50") && html.contains("Denied: Write"), "{html}");
        assert!(
            html.contains("42 bytes left out") && html.contains("not json &lt;i&gt;"),
            "{html}"
        );
        assert_eq!(dollars(0.000375), "$0.000375");
        assert_eq!(dollars(12.5), "$12.50");
        assert_eq!(dollars(0.0123), "$0.0123");
    }
}
