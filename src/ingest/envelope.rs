//! The stored payload envelope of a webhook (CONTRACT §2 "The stored payload").

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::event_id::derive_event_id;

/// The parts of an HTTP request the envelope is made from.
pub struct RequestParts<'a> {
    /// The `{hint}` of `/webhook/{hint}`.
    pub hint: Option<&'a str>,
    /// HTTP method.
    pub method: &'a str,
    /// Request path.
    pub path: &'a str,
    /// Raw query string.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Raw body.
    pub body: &'a [u8],
}

/// A webhook ready to store.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The dedupe key.
    pub event_id: String,
    /// The payload envelope as JSON text.
    pub payload_json: String,
}

#[derive(Serialize)]
struct Stored<'a> {
    source_hint: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    query: BTreeMap<String, String>,
    content_type: Option<&'a str>,
    headers: BTreeMap<&'a str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parse_error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_body_base64: Option<String>,
}

/// Only the `id` of a JSON object; parsing into it still validates the whole body
/// without building a tree.
#[derive(Deserialize)]
struct IdProbe<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

/// How the body was understood.
enum Body<'a> {
    Object { raw: &'a RawValue, id: Option<String> },
    NonObject,
    Invalid,
    NotJson,
}

fn is_json_content_type(ct: Option<&str>) -> bool {
    let Some(ct) = ct else { return false };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn classify(body: &[u8], json_type: bool) -> Body<'_> {
    if !json_type {
        return Body::NotJson;
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Body::Invalid;
    };
    if text.trim_start().starts_with('{') {
        if let Ok(probe) = serde_json::from_str::<IdProbe>(text)
            && let Ok(raw) = serde_json::from_str::<&RawValue>(text)
        {
            let id = probe.id.and_then(|v| serde_json::from_str::<String>(v.get()).ok());
            return Body::Object { raw, id };
        }
        // A valid object the probe refused (a repeated "id" key): read it the slow way,
        // last key winning as in most JSON parsers.
        if let Ok(raw) = serde_json::from_str::<&RawValue>(text) {
            let id = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string));
            return Body::Object { raw, id };
        }
        return Body::Invalid;
    }
    match serde_json::from_str::<&RawValue>(text) {
        Ok(_) => Body::NonObject,
        Err(_) => Body::Invalid,
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Builds the stored envelope and the event id of a webhook request.
pub fn build(parts: &RequestParts<'_>) -> Envelope {
    let content_type = header_str(parts.headers, "content-type");
    let body = classify(parts.body, is_json_content_type(content_type));

    let json_id = match &body {
        Body::Object { id: Some(id), .. } => Some(serde_json::Value::String(id.clone())),
        _ => None,
    };
    let event_id = derive_event_id(
        header_str(parts.headers, "x-event-id"),
        header_str(parts.headers, "x-github-delivery"),
        json_id.as_ref().map(|id| serde_json::json!({ "id": id })).as_ref(),
        parts.body,
    );

    let mut headers: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let query = parts
        .query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();

    let non_object = RawValue::from_string(r#"{"_non_object_json":true}"#.to_string()).ok();
    let b64 = || Some(base64::engine::general_purpose::STANDARD.encode(parts.body));
    let (json, parse_error, raw_body_base64) = match &body {
        Body::Object { raw, .. } => (Some(*raw), None, None),
        Body::NonObject => (non_object.as_deref(), None, None),
        Body::Invalid => (None, Some("invalid_json"), b64()),
        Body::NotJson => (None, None, b64()),
    };
    let stored = Stored {
        source_hint: parts.hint,
        method: parts.method,
        path: parts.path,
        query,
        content_type,
        headers,
        json,
        parse_error,
        raw_body_base64,
    };
    // Serialising plain strings and already-valid raw JSON cannot fail.
    let payload_json = serde_json::to_string(&stored).unwrap_or_else(|_| "{}".to_string());
    Envelope { event_id, payload_json }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::{Value, json};

    fn env(ct: Option<&str>, body: &[u8], extra: &[(&'static str, &str)]) -> (Envelope, Value) {
        let mut headers = HeaderMap::new();
        if let Some(ct) = ct {
            headers.insert("content-type", HeaderValue::from_str(ct).unwrap());
        }
        for (k, v) in extra {
            headers.append(*k, HeaderValue::from_str(v).unwrap());
        }
        let e = build(&RequestParts {
            hint: Some("github"),
            method: "POST",
            path: "/webhook/github",
            query: Some("a=1&b=x%20y"),
            headers: &headers,
            body,
        });
        let v: Value = serde_json::from_str(&e.payload_json).unwrap();
        (e, v)
    }

    #[test]
    fn object_body_is_embedded() {
        let (e, v) = env(
            Some("application/json"),
            br#"{"id":"evt_abcdefgh","n":[1,2]}"#,
            &[("x-github-event", "push")],
        );
        assert_eq!(e.event_id, "evt_abcdefgh");
        assert_eq!(v["json"], json!({"id":"evt_abcdefgh","n":[1,2]}));
        assert_eq!(v["source_hint"], "github");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/webhook/github");
        assert_eq!(v["query"], json!({"a":"1","b":"x y"}));
        assert_eq!(v["content_type"], "application/json");
        assert_eq!(v["headers"]["x-github-event"], "push");
        assert!(v.get("raw_body_base64").is_none());
    }

    #[test]
    fn non_object_invalid_and_non_json() {
        let (_, v) = env(Some("application/json; charset=utf-8"), b"[1,2]", &[]);
        assert_eq!(v["json"], json!({"_non_object_json": true}));
        let (e, v) = env(Some("application/json"), b"{nope", &[]);
        assert_eq!(v["parse_error"], "invalid_json");
        assert_eq!(v["raw_body_base64"], "e25vcGU=");
        assert!(e.event_id.starts_with("sha256:"));
        let (_, v) = env(Some("text/plain"), b"hi", &[]);
        assert_eq!(v["raw_body_base64"], "aGk=");
        assert!(v.get("json").is_none() && v.get("parse_error").is_none());
        let (_, v) = env(None, b"{\"a\":1}", &[]);
        assert!(v["content_type"].is_null());
        assert_eq!(v["raw_body_base64"], "eyJhIjoxfQ==");
    }

    #[test]
    fn duplicate_id_keys_and_repeated_headers() {
        let (e, v) = env(
            Some("application/json"),
            br#"{"id":"first-id-1","id":"second-id-2"}"#,
            &[("x-a", "1"), ("x-a", "2")],
        );
        assert_eq!(e.event_id, "second-id-2");
        assert_eq!(v["headers"]["x-a"], "1, 2");
    }

    #[test]
    fn event_id_header_wins() {
        let (e, _) = env(
            Some("application/json"),
            br#"{"id":"evt_abcdefgh"}"#,
            &[("x-event-id", "E1")],
        );
        assert_eq!(e.event_id, "E1");
    }
}
