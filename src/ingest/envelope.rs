//! The stored payload envelope of a webhook (CONTRACT §2 "The stored payload").

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use axum::http::HeaderMap;
use base64::Engine;
use serde::Serialize;

use super::event_id::{EventIdError, check_len, derive_event_id, id_header};
use super::json_scan::{self, ID_FIELDS, Scanned};
use super::redact::{HeaderPolicy, REDACTED, header_policy};
use crate::store::stored_payload;

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
    /// `STORE_SENSITIVE_HEADERS`: keep credential headers instead of redacting them.
    pub store_sensitive_headers: bool,
}

/// A webhook ready to store.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The dedupe key.
    pub event_id: String,
    /// The payload envelope as JSON text.
    pub payload_json: String,
}

/// The envelope as stored: the contract's fields in its order, without those that
/// [`stored_payload::expand`] puts back on every read (issue 18).
#[derive(Serialize)]
struct Stored<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    source_hint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    query: BTreeMap<String, String>,
    /// `None`: left out; `Some(None)`: null.
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<Option<&'a str>>,
    headers: BTreeMap<&'a str, Cow<'a, str>>,
    // `json` comes here: spliced in as the body's own text by `build`.
    #[serde(skip_serializing_if = "Option::is_none")]
    parse_error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_body_base64: Option<String>,
}

/// What a JSON body that is not an object is stored as (CONTRACT §2).
const NON_OBJECT: &str = r#"{"_non_object_json":true}"#;

/// How the body was understood.
enum Body<'a> {
    /// A JSON object: its text without the whitespace around it, and its id fields.
    Object {
        text: &'a str,
        ids: Option<serde_json::Value>,
    },
    NonObject,
    Invalid,
    NotJson,
}

/// True for `application/json` and `application/*+json` (parameters ignored).
pub fn is_json_content_type(ct: Option<&str>) -> bool {
    let Some(ct) = ct else { return false };
    // Compared in place: this runs twice per webhook, and lower-casing allocated.
    let mime = ct.split(';').next().unwrap_or("").trim().as_bytes();
    let is = |text: &[u8], lower: &[u8]| text.eq_ignore_ascii_case(lower);
    mime.len() >= 12
        && is(&mime[..12], b"application/")
        && (is(&mime[12..], b"json") || mime.len() >= 17 && is(&mime[mime.len() - 5..], b"+json"))
}

fn classify(body: &[u8], json_type: bool) -> Body<'_> {
    if !json_type {
        return Body::NotJson;
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Body::Invalid;
    };
    match json_scan::scan(text) {
        Some(Scanned::Object(ids)) => Body::Object {
            text: text.trim_matches(is_json_whitespace),
            ids: id_fields(ids),
        },
        Some(Scanned::Other) => Body::NonObject,
        None => Body::Invalid,
    }
}

/// The id fields found as a small JSON object for [`derive_event_id`].
fn id_fields(values: [Option<String>; 4]) -> Option<serde_json::Value> {
    let fields: serde_json::Map<String, serde_json::Value> = ID_FIELDS
        .iter()
        .zip(values)
        .filter_map(|(name, value)| Some((name.to_string(), serde_json::Value::String(value?))))
        .collect();
    (!fields.is_empty()).then_some(serde_json::Value::Object(fields))
}

/// The four characters JSON allows around a value (RFC 8259 §2).
fn is_json_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The headers as stored: lower-cased names, repeated headers joined with `", "`, the
/// service's secret headers left out and credentials redacted (CONTRACT §11).
/// Values are borrowed from the request unless joined or not UTF-8.
fn stored_headers(headers: &HeaderMap, store_sensitive: bool) -> BTreeMap<&str, Cow<'_, str>> {
    let mut stored: BTreeMap<&str, Cow<'_, str>> = BTreeMap::new();
    for (name, value) in headers {
        let value = match header_policy(name.as_str(), store_sensitive) {
            HeaderPolicy::Drop => continue,
            // One marker for a repeated credential header, not "[redacted], [redacted]".
            HeaderPolicy::Redact => {
                stored.insert(name.as_str(), Cow::Borrowed(REDACTED));
                continue;
            }
            HeaderPolicy::Keep => String::from_utf8_lossy(value.as_bytes()),
        };
        match stored.entry(name.as_str()) {
            Entry::Occupied(mut joined) => {
                let joined = joined.get_mut().to_mut();
                joined.push_str(", ");
                joined.push_str(&value);
            }
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
        }
    }
    stored
}

/// Builds the stored envelope and the event id of a webhook request; an id header that is
/// not UTF-8, or an id over 512 bytes, is an error (CONTRACT §11).
pub fn build(parts: &RequestParts<'_>) -> Result<Envelope, EventIdError> {
    let content_type = header_str(parts.headers, "content-type");
    let body = classify(parts.body, is_json_content_type(content_type));

    let ids = match &body {
        Body::Object { ids, .. } => ids.as_ref(),
        _ => None,
    };
    let event_id = derive_event_id(
        id_header(parts.headers, "x-event-id")?,
        id_header(parts.headers, "x-github-delivery")?,
        ids,
        parts.body,
    );
    check_len(&event_id)?;
    let headers = stored_headers(parts.headers, parts.store_sensitive_headers);
    let query = parts
        .query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();

    let b64 = || Some(base64::engine::general_purpose::STANDARD.encode(parts.body));
    let (json, parse_error, raw_body_base64) = match &body {
        Body::Object { text, .. } => (Some(*text), None, None),
        Body::NonObject => (Some(NON_OBJECT), None, None),
        Body::Invalid => (None, Some("invalid_json"), b64()),
        Body::NotJson => (None, None, b64()),
    };
    let header = headers.get("content-type").map(|v| &**v);
    let omits = stored_payload::omits(parts.method, parts.path, parts.hint, content_type, header);
    let stored = Stored {
        source_hint: parts.hint,
        method: (!omits.method).then_some(parts.method),
        path: (!omits.path).then_some(parts.path),
        query,
        content_type: (!omits.content_type).then_some(content_type),
        headers,
        parse_error,
        raw_body_base64,
    };
    let mut out = Vec::with_capacity(json.map_or(0, str::len) + 512);
    // Serialising strings and maps of strings into memory cannot fail.
    let _ = serde_json::to_writer(&mut out, &stored);
    if let Some(json) = json {
        // `headers` is always written and nothing follows it here: the body goes in last,
        // as its own text, already validated by the scan in `classify`.
        out.pop();
        out.extend_from_slice(b",\"json\":");
        out.extend_from_slice(json.as_bytes());
        out.push(b'}');
    }
    // Only UTF-8 went in: JSON from serde_json, and text that was a `&str`.
    let payload_json = String::from_utf8(out).unwrap_or_else(|_| "{}".to_string());
    Ok(Envelope { event_id, payload_json })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Source;
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
            store_sensitive_headers: false,
        })
        .unwrap();
        // What is read back: the contract's envelope.
        let full = stored_payload::expand(&e.payload_json, Some(Source::Webhook));
        let v: Value = serde_json::from_str(&full).unwrap();
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
    fn stored_without_defaults_and_read_back_in_the_contracts_order() {
        let (e, _) = env(
            Some("application/json"),
            br#"{"id":"evt_abcdefgh", "n":1}"#,
            &[("x-github-event", "push")],
        );
        let headers = r#"{"content-type":"application/json","x-github-event":"push"}"#;
        let json = r#"{"id":"evt_abcdefgh", "n":1}"#;
        // The hint and the query are not defaults; method, path and content type are.
        assert_eq!(
            e.payload_json,
            format!(r#"{{"source_hint":"github","query":{{"a":"1","b":"x y"}},"headers":{headers},"json":{json}}}"#)
        );
        assert_eq!(
            stored_payload::expand(&e.payload_json, Some(Source::Webhook)),
            format!(
                r#"{{"source_hint":"github","method":"POST","path":"/webhook/github","query":{{"a":"1","b":"x y"}},"content_type":"application/json","headers":{headers},"json":{json}}}"#
            )
        );
    }

    #[test]
    fn an_object_is_stored_as_its_own_text_without_the_whitespace_around_it() {
        let body = b" \r\n\t{\"b\": [1.50, \"\\u00e9\"], \"a\":{}} \n";
        let (e, v) = env(Some("application/json"), body, &[]);
        assert!(
            e.payload_json.ends_with(r#","json":{"b": [1.50, "\u00e9"], "a":{}}}"#),
            "{}",
            e.payload_json
        );
        assert_eq!(v["json"], json!({"b": [1.5, "é"], "a": {}}));
        // Text after the object, an object that is not JSON, or one that serde_json cannot
        // read back (a lone surrogate, a number beyond f64) is not an object body.
        let unreadable = [&br#"{"s":"\ud800"}"#[..], br#"{"n":1e400}"#];
        for bad in [&b"{\"a\":1} x"[..], b"{\"a\":1}}", b"{\"a\":01}", b"{\"a\":\"\x01\"}"]
            .into_iter()
            .chain(unreadable)
        {
            let (_, v) = env(Some("application/json"), bad, &[]);
            assert_eq!(v["parse_error"], "invalid_json", "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn json_content_types() {
        let lowered = |ct: &str| {
            let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        };
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ",
            "application/vnd.github+json",
            "application/+json",
            "APPLICATION/LD+JSON;q=1",
            "application/jsonx",
            "application/xjson",
            "application/",
            "application",
            "text/json",
            "text/plain",
            "application/json+x",
            "",
            "é/json",
            "applicatioé/json",
        ] {
            assert_eq!(is_json_content_type(Some(ct)), lowered(ct), "{ct:?}");
        }
        assert!(!is_json_content_type(None));
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

    #[test]
    fn secret_headers_dropped_and_credentials_redacted() {
        let extra = [
            ("x-ingress-secret", "s3cret-ingress"),
            ("x-admin-secret", "s3cret-admin"),
            ("x-cron-secret", "s3cret-cron"),
            ("authorization", "Bearer t0k"),
            ("cookie", "s=1"),
            ("cookie", "t=2"),
            ("x-github-event", "push"),
        ];
        let (_, v) = env(Some("application/json"), b"{}", &extra);
        let text = v.to_string();
        for secret in ["s3cret", "t0k", "s=1", "t=2"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(v["headers"].get("x-ingress-secret").is_none());
        assert_eq!(v["headers"]["authorization"], "[redacted]");
        assert_eq!(v["headers"]["cookie"], "[redacted]");
        assert_eq!(v["headers"]["x-github-event"], "push");
    }

    #[test]
    fn fireflies_body_gives_the_seed_id() {
        let body = br#"{"meetingId":"m-42","eventType":"Transcription completed"}"#;
        let (e, _) = env(Some("application/json"), body, &[("x-hub-signature", "sha256=00")]);
        assert_eq!(e.event_id, "fireflies:m-42:Transcription completed");
        let body = br#"{"meetingId":"m-42","eventType":"x","clientReferenceId":"r-1","clientReferenceId":"r-2"}"#;
        let (e, _) = env(Some("application/json"), body, &[]);
        assert_eq!(e.event_id, "fireflies_ref:r-2");
    }
}
