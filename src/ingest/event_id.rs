//! The event id: the dedupe key of a webhook.

use sha2::{Digest, Sha256};

/// Derives the event id, first match: `X-Event-Id`; `X-GitHub-Delivery`; the top-level
/// JSON `id` when it is a string of at least 8 characters after trimming; else
/// `sha256:<hex of the raw body>`. A JSON `id` holding control characters (NUL cannot be
/// stored in PostgreSQL text) is not used; headers cannot carry them.
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
    if let Some(id) = json.and_then(|j| j.get("id")).and_then(|v| v.as_str()).map(str::trim)
        && id.chars().count() >= 8
        && !id.chars().any(char::is_control)
    {
        return id.to_string();
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
            derive_event_id(None, None, None, b"hello"),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }
}
