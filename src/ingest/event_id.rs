//! The event id: the dedupe key of a webhook.

use sha2::{Digest, Sha256};

/// Longest event id accepted, in bytes (CONTRACT §11): an id is stored, indexed, shown and
/// logged on every attempt, so a megabyte-long one is refused, not kept.
pub const MAX_EVENT_ID_BYTES: usize = 512;

/// Why a request's event id cannot be used (a 400: the sender must fix it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventIdError {
    /// An id header whose bytes are not UTF-8: refused rather than replaced by the body
    /// hash, which would merge two deliveries that differ only in their id.
    #[error("the {0} header is not valid UTF-8")]
    NotUtf8(&'static str),
    /// An id over [`MAX_EVENT_ID_BYTES`].
    #[error("the event id is {0} bytes long; at most 512 are accepted")]
    TooLong(usize),
}

/// Refuses an id over [`MAX_EVENT_ID_BYTES`].
pub fn check_len(id: &str) -> Result<(), EventIdError> {
    if id.len() > MAX_EVENT_ID_BYTES {
        return Err(EventIdError::TooLong(id.len()));
    }
    Ok(())
}

/// The value of id header `name` as text: `None` when absent, an error when not UTF-8.
/// (Bidi and zero-width characters are kept: the id must match the sender's exactly to
/// dedupe; logs and pages show it escaped, by the `escape` module.)
pub fn id_header<'h>(headers: &'h axum::http::HeaderMap, name: &'static str) -> Result<Option<&'h str>, EventIdError> {
    headers
        .get(name)
        .map(|v| std::str::from_utf8(v.as_bytes()).map_err(|_| EventIdError::NotUtf8(name)))
        .transpose()
}

/// Derives the event id, first match: `X-Event-Id`; `X-GitHub-Delivery`; the top-level
/// JSON `id` when it is a string of at least 8 characters after trimming; Fireflies'
/// `clientReferenceId` (`fireflies_ref:<id>`), else its `meetingId` and `eventType`
/// (`fireflies:<meetingId>:<eventType>`), as the seed derived them; else
/// `sha256:<hex of the raw body>`. JSON strings holding control characters (NUL cannot be
/// stored in PostgreSQL text) are not used; headers cannot carry them.
pub fn derive_event_id(
    x_event_id: Option<&str>,
    github_delivery: Option<&str>,
    json: Option<&serde_json::Value>,
    body: &[u8],
) -> String {
    let header = |v: Option<&str>| v.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(id) = header(x_event_id).or_else(|| header(github_delivery)) {
        return id;
    }
    let field = |name: &str| {
        json.and_then(|j| j.get(name))
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
    };
    if let Some(id) = field("id")
        && id.chars().count() >= 8
    {
        return id.to_string();
    }
    if let Some(reference) = field("clientReferenceId") {
        return format!("fireflies_ref:{reference}");
    }
    if let (Some(meeting), Some(kind)) = (field("meetingId"), field("eventType")) {
        return format!("fireflies:{meeting}:{kind}");
    }
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_then_delivery_then_json_id_then_hash() {
        let j = json!({"id": "evt_12345678"});
        assert_eq!(derive_event_id(Some("a"), Some("b"), Some(&j), b"x"), "a");
        assert_eq!(derive_event_id(Some("  "), Some("b"), Some(&j), b"x"), "b");
        assert_eq!(derive_event_id(None, None, Some(&j), b"x"), "evt_12345678");
        assert_eq!(
            derive_event_id(None, None, Some(&json!({"id": "  abc1234 "})), b"x").len(),
            71
        );
        assert_eq!(
            derive_event_id(None, None, Some(&json!({"id": " evt_12345678 "})), b"x"),
            "evt_12345678"
        );
        assert_eq!(
            derive_event_id(None, None, Some(&json!({"id": 1234567890})), b"x").len(),
            71
        );
        assert!(derive_event_id(None, None, Some(&json!({"id": "evt_\u{0}_12345"})), b"x").starts_with("sha256:"));
        assert_eq!(
            derive_event_id(None, None, Some(&json!({"id": "short", "n": 1})), b"x").len(),
            71
        );
        assert_eq!(
            derive_event_id(None, None, None, b"hello"),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn fireflies_ids_as_the_seed_derives_them() {
        let both = json!({"meetingId": "m-1", "eventType": "Transcription completed", "clientReferenceId": "ref-9"});
        assert_eq!(derive_event_id(None, None, Some(&both), b"x"), "fireflies_ref:ref-9");
        let meeting = json!({"meetingId": "m-1", "eventType": "Transcription completed"});
        assert_eq!(
            derive_event_id(None, None, Some(&meeting), b"x"),
            "fireflies:m-1:Transcription completed"
        );
        // Header and a long JSON id still come first; half a pair falls through to the hash.
        assert_eq!(derive_event_id(Some("E"), None, Some(&both), b"x"), "E");
        let with_id = json!({"id": "evt_12345678", "meetingId": "m-1", "eventType": "t"});
        assert_eq!(derive_event_id(None, None, Some(&with_id), b"x"), "evt_12345678");
        let half = json!({"meetingId": "m-1"});
        assert!(derive_event_id(None, None, Some(&half), b"x").starts_with("sha256:"));
        let blank = json!({"clientReferenceId": "  ", "meetingId": "m", "eventType": 3});
        assert!(derive_event_id(None, None, Some(&blank), b"x").starts_with("sha256:"));
    }
}
