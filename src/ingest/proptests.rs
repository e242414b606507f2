//! Property tests (issue 12, acceptance 10): for arbitrary headers and bodies the envelope
//! builder, the event-id derivation and the header redaction never panic and never let a
//! secret header's value through.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::envelope::{RequestParts, build, is_json_content_type};
use super::event_id::derive_event_id;
use super::redact::{SECRET_HEADERS, SENSITIVE_HEADERS};

/// Secret values carry this marker, which no other generated text can contain (the other
/// generators use lower-case letters only).
const MARK: &str = "SECRETMARK";

fn header_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,20}"
}

fn header_value() -> impl Strategy<Value = String> {
    "[a-z0-9 =;,._/:-]{0,40}"
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json".to_string())),
        Just(Some("application/vnd.x+json; charset=utf-8".to_string())),
        Just(Some("text/plain".to_string())),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        "[a-z0-9{}\\[\\]\":, ]{0,200}".prop_map(String::into_bytes),
        ("[a-z]{1,10}", "[a-z0-9]{0,20}", "[a-z0-9]{0,12}", "[ \t\r\n]{0,3}").prop_map(|(k, v, m, ws)| format!(
            r#"{ws}{{"{k}":"{v}","id":"{v}","meetingId":"{m}","eventType":"{k}"}}{ws}"#
        )
        .into_bytes()),
    ]
}

fn headers(plain: &[(String, String)], secrets: &[(usize, String)], ct: &Option<String>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in plain {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            map.append(n, v);
        }
    }
    let all: Vec<&str> = SECRET_HEADERS.iter().chain(SENSITIVE_HEADERS).copied().collect();
    for (i, value) in secrets {
        let name = all[i % all.len()];
        // Mixed case on the wire; HeaderName lower-cases it as HTTP/1 parsing does.
        let upper = name.to_ascii_uppercase();
        let n = HeaderName::from_bytes(if i % 2 == 0 { upper.as_bytes() } else { name.as_bytes() });
        if let (Ok(n), Ok(v)) = (n, HeaderValue::from_str(&format!("{MARK}{value}"))) {
            map.append(n, v);
        }
    }
    if let Some(ct) = ct {
        map.insert(
            "content-type",
            HeaderValue::from_str(ct).unwrap_or(HeaderValue::from_static("text/plain")),
        );
    }
    map
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn envelope_never_panics_and_never_leaks_a_secret(
        plain in proptest::collection::vec((header_name(), header_value()), 0..8),
        secrets in proptest::collection::vec((0usize..64, "[a-z0-9]{1,20}"), 1..5),
        ct in content_type(),
        body in body(),
        store_sensitive in any::<bool>(),
        query in proptest::option::of("[a-z0-9=&%]{0,30}"),
    ) {
        let map = headers(&plain, &secrets, &ct);
        let env = build(&RequestParts {
            hint: Some("hint"),
            method: "POST",
            path: "/webhook/hint",
            query: query.as_deref(),
            headers: &map,
            body: &body,
            store_sensitive_headers: store_sensitive,
        });
        // Only an id over 512 bytes is refused (generated headers are UTF-8).
        let env = match env {
            Ok(env) => env,
            Err(e) => {
                prop_assert!(matches!(e, super::event_id::EventIdError::TooLong(_)), "{e}");
                return Ok(());
            }
        };
        let stored: serde_json::Value = serde_json::from_str(&env.payload_json).expect("valid JSON");
        prop_assert!(!env.event_id.is_empty());
        prop_assert!(!env.event_id.contains(MARK));
        for name in SECRET_HEADERS {
            prop_assert!(stored["headers"].get(*name).is_none());
        }
        // A JSON object body is stored as its own text, so it reads back as the same value.
        let parsed = std::str::from_utf8(&body).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok());
        if let Some(object @ serde_json::Value::Object(_)) = parsed
            && is_json_content_type(ct.as_deref())
        {
            prop_assert_eq!(&stored["json"], &object);
        }
        if store_sensitive {
            // Only the credentials may be kept, never the service's own secrets.
            prop_assert_eq!(env.payload_json.matches(MARK).count(), count_kept(&map));
        } else {
            prop_assert!(!env.payload_json.contains(MARK), "{}", env.payload_json);
        }
    }

    #[test]
    fn event_id_never_panics(
        x_event in proptest::option::of(".{0,40}"),
        delivery in proptest::option::of(".{0,40}"),
        json in proptest::option::of(any::<String>().prop_map(|s| serde_json::json!({"id": s, "clientReferenceId": s, "meetingId": s, "eventType": s}))),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let id = derive_event_id(x_event.as_deref(), delivery.as_deref(), json.as_ref(), &body);
        prop_assert!(!id.is_empty());
    }
}

/// How many marked values the envelope may keep: sensitive (not secret) headers' values.
fn count_kept(map: &HeaderMap) -> usize {
    map.iter()
        .filter(|(n, _)| SENSITIVE_HEADERS.contains(&n.as_str()))
        .filter(|(_, v)| v.as_bytes().starts_with(MARK.as_bytes()))
        .count()
}
