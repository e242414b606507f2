//! Provider signature schemes (CONTRACT §8): one module per scheme, each a pure function
//! of the request headers, the raw body and the clock.
//!
//! Every comparison of a signature runs in constant time (`hmac`'s `verify_slice` or
//! `subtle`); a request is accepted when any configured key verifies it, so secrets
//! rotate without downtime.

pub mod discord;
pub mod github;
pub mod hmac;
pub mod linear;
pub mod mac;
#[cfg(test)]
mod proptests;
pub mod shopify;
pub mod slack;
pub mod standard_webhooks;
pub mod stripe;
pub mod twilio;

use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

/// What a scheme is given to verify.
pub struct Delivery<'a> {
    /// Request headers (names are case-insensitive).
    pub headers: &'a HeaderMap,
    /// The raw body, exactly as received.
    pub body: &'a [u8],
    /// The top-level fields of a JSON object body that some schemes read.
    pub fields: &'a BodyFields,
    /// Request path and query (`/webhook/twilio?x=1`), for schemes that sign the URL.
    pub path_and_query: &'a str,
    /// Now, in Unix seconds.
    pub now: i64,
}

/// A verified delivery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verified {
    /// The provider's own id of this delivery, when it sends one (feeds `event_id`).
    pub delivery_id: Option<String>,
}

/// Why a delivery was refused; only logged, the client always sees "invalid signature".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// A required header (or body field) is absent.
    Missing(&'static str),
    /// A header or field is present but not in the scheme's format.
    Malformed(&'static str),
    /// The timestamp is outside the tolerance.
    Stale,
    /// No configured key produced a matching signature.
    Mismatch,
}

/// The top-level fields of a JSON object body that schemes and challenges look at.
///
/// Each is kept as raw JSON so a field of an unexpected type never fails the parse.
#[derive(Debug, Default, Deserialize)]
pub struct BodyFields {
    /// Stripe's event id, Discord's interaction id.
    pub id: Option<Value>,
    /// Slack's Events API id.
    pub event_id: Option<Value>,
    /// Slack `url_verification`, Discord `1` (PING).
    #[serde(rename = "type")]
    pub kind: Option<Value>,
    /// Slack's challenge string.
    pub challenge: Option<Value>,
    /// Linear's send time in milliseconds.
    #[serde(rename = "webhookTimestamp")]
    pub webhook_timestamp: Option<Value>,
}

impl BodyFields {
    /// Reads the fields of a JSON object body; any other body gives no fields.
    pub fn parse(body: &[u8]) -> BodyFields {
        let starts_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if !starts_object {
            return BodyFields::default();
        }
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// A string field, trimmed, usable as an event id: non-empty, at most 256 characters,
    /// no control characters (PostgreSQL text cannot hold NUL).
    pub fn id_string(value: Option<&Value>) -> Option<String> {
        usable_id(value?.as_str()?)
    }
}

/// `s` trimmed when it can serve as an event id.
pub fn usable_id(s: &str) -> Option<String> {
    let s = s.trim();
    let ok = !s.is_empty() && s.chars().count() <= 256 && !s.chars().any(char::is_control);
    ok.then(|| s.to_string())
}

/// The value of header `name`, or why it is unusable.
pub fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, Reject> {
    let value = headers.get(name).ok_or(Reject::Missing(name))?;
    let text = value.to_str().map_err(|_| Reject::Malformed(name))?.trim();
    if text.is_empty() {
        return Err(Reject::Missing(name));
    }
    Ok(text)
}

/// The delivery id carried in header `name`, if usable.
pub fn header_id(headers: &HeaderMap, name: &'static str) -> Option<String> {
    header(headers, name).ok().and_then(usable_id)
}

/// Parses a Unix timestamp made of ASCII digits only (no sign, no spaces, at most 15 digits).
pub fn parse_timestamp(text: &str, name: &'static str) -> Result<i64, Reject> {
    if text.is_empty() || text.len() > 15 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reject::Malformed(name));
    }
    text.parse().map_err(|_| Reject::Malformed(name))
}

/// Accepts `ts` when it is at most `tolerance` seconds away from `now`, either way.
pub fn check_age(ts: i64, now: i64, tolerance: i64) -> Result<(), Reject> {
    if now.abs_diff(ts) <= tolerance.unsigned_abs() {
        Ok(())
    } else {
        Err(Reject::Stale)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    use super::{BodyFields, Delivery};

    /// Runs `f` on a delivery of `body` with header `pairs` to `path` at `now`.
    pub fn deliver<T>(
        pairs: &[(&str, &str)],
        body: &str,
        path: &str,
        now: i64,
        f: impl FnOnce(&Delivery<'_>) -> T,
    ) -> T {
        let h = headers(pairs);
        let fields = BodyFields::parse(body.as_bytes());
        f(&Delivery {
            headers: &h,
            body: body.as_bytes(),
            fields: &fields,
            path_and_query: path,
            now,
        })
    }

    /// A header map from `(name, value)` pairs.
    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_ages() {
        assert_eq!(parse_timestamp("1531420618", "t"), Ok(1531420618));
        for bad in ["", "-1", "+1", " 1", "1.5", "12345678901234567", "1e9"] {
            assert_eq!(parse_timestamp(bad, "t"), Err(Reject::Malformed("t")), "{bad}");
        }
        assert!(check_age(100, 400, 300).is_ok());
        assert!(check_age(700, 400, 300).is_ok());
        assert_eq!(check_age(99, 400, 300), Err(Reject::Stale));
        assert_eq!(check_age(701, 400, 300), Err(Reject::Stale));
        assert_eq!(check_age(i64::MAX, i64::MIN, 300), Err(Reject::Stale));
    }

    #[test]
    fn body_fields_and_ids() {
        let f = BodyFields::parse(br#" {"id": "evt_1", "type": 1, "id2": [1]}"#);
        assert_eq!(BodyFields::id_string(f.id.as_ref()).as_deref(), Some("evt_1"));
        assert_eq!(f.kind, Some(Value::from(1)));
        assert!(BodyFields::parse(b"[1]").id.is_none());
        assert!(BodyFields::parse(b"{broken").id.is_none());
        assert!(BodyFields::parse(br#"{"id": 5}"#).id.is_some());
        assert_eq!(BodyFields::id_string(Some(&Value::from(5))), None);
        assert_eq!(usable_id(" a\u{0}b "), None);
        assert_eq!(usable_id(&"x".repeat(257)), None);
    }
}
