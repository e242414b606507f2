//! A webhook's stored payload envelope (`payload_json`), written without its defaults.
//!
//! CONTRACT §2's envelope is `{["verified_source"], "source_hint", "method", "path",
//! "query", "content_type", "headers", "json" | "parse_error" + "raw_body_base64" |
//! "raw_body_base64"}`, in that order. Ingest leaves out what a webhook nearly always has
//! ([`omits`]): a null `source_hint`, `"method":"POST"`, the path the route implies
//! (`/webhook` or `/webhook/<hint>`), an empty `query` and a `content_type` equal to the
//! stored `content-type` header: ~100 of a small webhook's ~300 bytes (issue 18). Every read
//! puts them back — [`expand`] to exactly the text that was stored before, [`expand_value`]
//! in a parsed payload for routing and handlers — so rules, handlers and the API see the
//! contract's envelope. An envelope with `method` (written by the seed or an earlier
//! version) and any payload of another source (cron's) read as they are stored.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::domain::Source;

/// The method every webhook route takes, left out of a stored envelope.
pub const METHOD: &str = "POST";

/// The fields ingest may leave out of a webhook's envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Omits {
    /// `"method": "POST"`.
    pub method: bool,
    /// The path the route implies for the hint.
    pub path: bool,
    /// `"content_type"` equal to the stored `content-type` header (or null without one).
    pub content_type: bool,
}

/// Which of a webhook's fields ingest leaves out: those [`expand`] restores exactly. A null
/// hint and an empty query are left out whatever these say.
pub fn omits(method: &str, path: &str, hint: Option<&str>, content_type: Option<&str>, header: Option<&str>) -> Omits {
    Omits {
        method: method == METHOD,
        path: is_route_path(path, hint),
        content_type: content_type == header,
    }
}

/// Whether `path` is the one the route implies: `/webhook`, or `/webhook/<hint>`.
fn is_route_path(path: &str, hint: Option<&str>) -> bool {
    match hint {
        None => path == "/webhook",
        Some(h) => path.strip_prefix("/webhook/") == Some(h),
    }
}

fn route_path(hint: Option<&str>) -> String {
    match hint {
        None => "/webhook".to_string(),
        Some(h) => format!("/webhook/{h}"),
    }
}

/// Whether a stored payload of `source` is a compact webhook envelope.
fn is_compact(source: Option<Source>, has_method: bool, has_headers: bool) -> bool {
    source == Some(Source::Webhook) && !has_method && has_headers
}

/// The envelope's fields after `headers`, in the order ingest writes them.
const TAIL: [&str; 3] = ["json", "parse_error", "raw_body_base64"];

/// The contract's text of a payload stored as `stored` by an event of `source`.
pub fn expand(stored: &str, source: Option<Source>) -> String {
    if source != Some(Source::Webhook) {
        return stored.to_string();
    }
    let Ok(fields) = serde_json::from_str::<BTreeMap<&str, &RawValue>>(stored) else {
        return stored.to_string();
    };
    if !is_compact(source, fields.contains_key("method"), fields.contains_key("headers")) {
        return stored.to_string();
    }
    let raw = |key: &str| fields.get(key).map(|v| v.get());
    let hint = raw("source_hint").and_then(|h| serde_json::from_str::<Option<String>>(h).ok().flatten());
    let path = match raw("path") {
        Some(p) => p.to_string(),
        None => Value::String(route_path(hint.as_deref())).to_string(),
    };
    let content_type = match raw("content_type") {
        Some(c) => c.to_string(),
        None => header_content_type(raw("headers").unwrap_or("{}")).to_string(),
    };
    let mut out = String::with_capacity(stored.len() + 160);
    let mut put = |key: &str, value: &str| {
        out.push(if out.is_empty() { '{' } else { ',' });
        out.push_str(&Value::String(key.to_string()).to_string());
        out.push(':');
        out.push_str(value);
    };
    if let Some(v) = raw("verified_source") {
        put("verified_source", v);
    }
    put("source_hint", raw("source_hint").unwrap_or("null"));
    put("method", &Value::String(METHOD.into()).to_string());
    put("path", &path);
    put("query", raw("query").unwrap_or("{}"));
    put("content_type", &content_type);
    put("headers", raw("headers").unwrap_or("{}"));
    const HEAD: [&str; 7] = [
        "verified_source",
        "source_hint",
        "method",
        "path",
        "query",
        "content_type",
        "headers",
    ];
    for key in TAIL {
        if let Some(v) = raw(key) {
            put(key, v);
        }
    }
    // Nothing else is written by ingest; anything that is keeps its value (sorted last).
    for (key, v) in &fields {
        if !HEAD.contains(key) && !TAIL.contains(key) {
            put(key, v.get());
        }
    }
    out.push('}');
    out
}

/// The `content-type` of a stored headers object, as a JSON value.
fn header_content_type(headers: &str) -> Value {
    serde_json::from_str::<Map<String, Value>>(headers)
        .ok()
        .and_then(|mut h| h.remove("content-type"))
        .unwrap_or(Value::Null)
}

/// Puts the left-out fields back into a parsed payload of an event of `source` (what
/// routing and handlers read; its keys are sorted, so only the values matter).
pub fn expand_value(payload: &mut Value, source: Source) {
    let Value::Object(map) = payload else { return };
    if !is_compact(Some(source), map.contains_key("method"), map.contains_key("headers")) {
        return;
    }
    let hint = map.get("source_hint").and_then(Value::as_str).map(str::to_string);
    map.entry("source_hint").or_insert(Value::Null);
    map.insert("method".into(), Value::String(METHOD.into()));
    map.entry("path")
        .or_insert_with(|| Value::String(route_path(hint.as_deref())));
    map.entry("query").or_insert_with(|| Value::Object(Map::new()));
    if !map.contains_key("content_type") {
        let header = map
            .get("headers")
            .and_then(|h| h.get("content-type"))
            .cloned()
            .unwrap_or(Value::Null);
        map.insert("content_type".into(), header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADERS: &str = r#"{"content-type":"application/json","x-github-event":"push"}"#;

    #[test]
    fn a_compact_envelope_expands_to_the_contracts_text() {
        let cases = [
            (
                format!(r#"{{"headers":{HEADERS},"json":{{"b": 1, "a":[1.50]}}}}"#),
                format!(
                    r#"{{"source_hint":null,"method":"POST","path":"/webhook","query":{{}},"content_type":"application/json","headers":{HEADERS},"json":{{"b": 1, "a":[1.50]}}}}"#
                ),
            ),
            (
                format!(r#"{{"source_hint":"git\"hub","query":{{"a":"1"}},"headers":{HEADERS},"json":{{}}}}"#),
                format!(
                    r#"{{"source_hint":"git\"hub","method":"POST","path":"/webhook/git\"hub","query":{{"a":"1"}},"content_type":"application/json","headers":{HEADERS},"json":{{}}}}"#
                ),
            ),
            (
                r#"{"verified_source":{"name":"s"},"source_hint":"s","method_x":1,"path":"/other","content_type":null,"headers":{},"parse_error":"invalid_json","raw_body_base64":"e30="}"#.into(),
                r#"{"verified_source":{"name":"s"},"source_hint":"s","method":"POST","path":"/other","query":{},"content_type":null,"headers":{},"parse_error":"invalid_json","raw_body_base64":"e30=","method_x":1}"#.into(),
            ),
            (
                r#"{"headers":{"x":"1"},"raw_body_base64":"aGk="}"#.into(),
                r#"{"source_hint":null,"method":"POST","path":"/webhook","query":{},"content_type":null,"headers":{"x":"1"},"raw_body_base64":"aGk="}"#.into(),
            ),
        ];
        for (stored, full) in &cases {
            assert_eq!(&expand(stored, Some(Source::Webhook)), full);
            // The parsed view agrees with the text.
            let mut v: Value = serde_json::from_str(stored).unwrap();
            expand_value(&mut v, Source::Webhook);
            assert_eq!(v, serde_json::from_str::<Value>(full).unwrap());
        }
    }

    #[test]
    fn full_envelopes_and_other_sources_read_as_stored() {
        let full = format!(
            r#"{{"source_hint":null,"method":"PUT","path":"/webhook","query":{{}},"content_type":null,"headers":{HEADERS},"json":{{}}}}"#
        );
        let cron = r#"{"job":"digest","source_hint":"cron","scheduled_at":"2026-01-01T00:00:00+00:00"}"#;
        let compact = format!(r#"{{"headers":{HEADERS}}}"#);
        for (stored, source) in [
            (full.as_str(), Some(Source::Webhook)),
            (cron, Some(Source::Cron)),
            (cron, Some(Source::Webhook)),
            (compact.as_str(), Some(Source::Cron)),
            (compact.as_str(), None),
            ("not json", Some(Source::Webhook)),
            ("[]", Some(Source::Webhook)),
        ] {
            assert_eq!(expand(stored, source), stored);
            if let (Ok(mut v), Some(source)) = (serde_json::from_str::<Value>(stored), source) {
                let before = v.clone();
                expand_value(&mut v, source);
                assert_eq!(v, before);
            }
        }
    }

    #[test]
    fn only_what_expand_restores_is_left_out() {
        let o = omits("POST", "/webhook/github", Some("github"), Some("a/b"), Some("a/b"));
        assert_eq!(
            o,
            Omits {
                method: true,
                path: true,
                content_type: true
            }
        );
        let o = omits("PUT", "/webhook/x%20y", Some("x y"), None, Some("a/b"));
        assert_eq!(
            o,
            Omits {
                method: false,
                path: false,
                content_type: false
            }
        );
        assert!(omits("POST", "/webhook", None, None, None).path);
        assert!(!omits("POST", "/webhook/", None, None, None).path);
        assert!(omits("POST", "/webhook", None, None, None).content_type);
    }
}
