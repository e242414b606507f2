//! Provider detection (CONTRACT §4.1, §4.2): a first-match table of heuristics over the
//! lower-cased request headers and the JSON body, plus the path-hint override.
//!
//! Signals added to `reasons`:
//! - `header:<name>` — the named header is present (any value);
//! - `json:fireflies_meeting` — with `x-hub-signature`: the body has `meetingId` and `eventType`;
//! - `json:stripe_event_shape` — the body is `{"object": "event", "type": …, "data": …}`;
//! - `json:github_ping` — the body has `zen` and `hook_id` (GitHub's ping event);
//! - `json:slack_url_verification` — the body has `challenge` and a string `token`
//!   containing `slack`;
//! - `path:source_hint` — added by [`apply_hint`] when the hint wins.
//!
//! Nothing is added for the `unknown` fallback.

use serde_json::{Map, Value};

use crate::domain::provider;

/// Result of provider detection.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Lower-case provider name, `unknown` when nothing matched.
    pub provider: String,
    /// Confidence in `provider`, 0.0–1.0.
    pub confidence: f64,
    /// Signals that led to the decision, in the order they were found.
    pub reasons: Vec<String>,
}

/// Provider reported when no heuristic matches.
pub const UNKNOWN_PROVIDER: &str = provider::UNKNOWN;
/// Confidence of the `unknown` fallback.
pub const UNKNOWN_CONFIDENCE: f64 = 0.2;
/// Confidence given to a usable path hint.
pub const HINT_CONFIDENCE: f64 = 0.6;
/// Reason added when the path hint wins.
pub const HINT_SIGNAL: &str = "path:source_hint";

/// What a detection entry looks at.
#[derive(Debug, Clone, Copy)]
pub enum Matcher {
    /// The header (lower-case name) is present, whatever its value.
    Header(&'static str),
    /// The header is present and the JSON body has all these top-level keys.
    HeaderAndJsonKeys(&'static str, &'static [&'static str]),
    /// The JSON body has all these top-level keys.
    JsonKeys(&'static [&'static str]),
    /// A predicate over the JSON body (only called when the body is an object).
    Json(fn(&Map<String, Value>) -> bool),
}

/// One row of the detection table.
#[derive(Debug, Clone, Copy)]
pub struct DetectRule {
    /// What must hold for this row to match.
    pub matcher: Matcher,
    /// Provider reported on a match.
    pub provider: &'static str,
    /// Confidence reported on a match.
    pub confidence: f64,
    /// Signals added to `reasons` on a match.
    pub signals: &'static [&'static str],
}

const fn rule(
    matcher: Matcher,
    provider: &'static str,
    confidence: f64,
    signals: &'static [&'static str],
) -> DetectRule {
    DetectRule {
        matcher,
        provider,
        confidence,
        signals,
    }
}

/// The detection table, evaluated top to bottom; the first matching row wins.
///
/// The order up to the Slack challenge row is the contract's and must not change (GitHub
/// comes before `x-hub-signature` because GitHub sends that header too). Extra providers
/// (*beyond* the contract) use headers none of the contract rows look at, so they can
/// never change a contract result; they sit after the contract's header rows and before
/// the weaker JSON-shape guesses, because a dedicated header is the stronger signal.
pub static RULES: &[DetectRule] = &[
    rule(
        Matcher::Header("x-github-event"),
        provider::GITHUB,
        0.98,
        &["header:x-github-event"],
    ),
    rule(
        Matcher::Header("x-github-delivery"),
        provider::GITHUB,
        0.98,
        &["header:x-github-delivery"],
    ),
    rule(
        Matcher::Header("stripe-signature"),
        provider::STRIPE,
        0.98,
        &["header:stripe-signature"],
    ),
    rule(
        Matcher::Header("x-shopify-topic"),
        provider::SHOPIFY,
        0.98,
        &["header:x-shopify-topic"],
    ),
    rule(
        Matcher::Header("x-slack-signature"),
        provider::SLACK,
        0.95,
        &["header:x-slack-signature"],
    ),
    rule(
        Matcher::Header("x-twilio-signature"),
        provider::TWILIO,
        0.95,
        &["header:x-twilio-signature"],
    ),
    rule(
        Matcher::HeaderAndJsonKeys("x-hub-signature", &["meetingId", "eventType"]),
        provider::FIREFLIES,
        0.98,
        &["header:x-hub-signature", "json:fireflies_meeting"],
    ),
    rule(
        Matcher::Header("x-hub-signature"),
        provider::FIREFLIES,
        0.8,
        &["header:x-hub-signature"],
    ),
    // Beyond the contract: other well-known senders with a dedicated header.
    rule(
        Matcher::Header("x-gitlab-event"),
        provider::GITLAB,
        0.98,
        &["header:x-gitlab-event"],
    ),
    rule(
        Matcher::Header("linear-signature"),
        provider::LINEAR,
        0.95,
        &["header:linear-signature"],
    ),
    rule(
        Matcher::Header("x-signature-ed25519"),
        provider::DISCORD,
        0.95,
        &["header:x-signature-ed25519"],
    ),
    // Standard Webhooks is a format many senders share; at a source's path the source
    // names the real provider (see `apply_verified_source`).
    rule(
        Matcher::Header("webhook-id"),
        provider::STANDARD_WEBHOOKS,
        0.9,
        &["header:webhook-id"],
    ),
    rule(
        Matcher::Header("svix-id"),
        provider::STANDARD_WEBHOOKS,
        0.9,
        &["header:svix-id"],
    ),
    // JSON-shape guesses (contract order).
    rule(
        Matcher::Json(is_stripe_event),
        provider::STRIPE,
        0.85,
        &["json:stripe_event_shape"],
    ),
    rule(
        Matcher::JsonKeys(&["zen", "hook_id"]),
        provider::GITHUB,
        0.75,
        &["json:github_ping"],
    ),
    rule(
        Matcher::Json(is_slack_challenge),
        provider::SLACK,
        0.65,
        &["json:slack_url_verification"],
    ),
];

/// `{"object": "event", "type": …, "data": …}`: the shape of every Stripe event.
fn is_stripe_event(json: &Map<String, Value>) -> bool {
    json.get("object").and_then(Value::as_str) == Some("event")
        && json.contains_key("type")
        && json.contains_key("data")
}

/// Slack's URL-verification handshake: a `challenge` and a verification `token`.
fn is_slack_challenge(json: &Map<String, Value>) -> bool {
    json.contains_key("challenge")
        && json
            .get("token")
            .and_then(Value::as_str)
            .is_some_and(|t| t.contains("slack"))
}

impl Matcher {
    fn matches(&self, headers: &Map<String, Value>, json: Option<&Map<String, Value>>) -> bool {
        let has_keys = |keys: &[&str]| json.is_some_and(|j| keys.iter().all(|k| j.contains_key(*k)));
        match *self {
            Matcher::Header(name) => headers.contains_key(name),
            Matcher::HeaderAndJsonKeys(name, keys) => headers.contains_key(name) && has_keys(keys),
            Matcher::JsonKeys(keys) => has_keys(keys),
            Matcher::Json(pred) => json.is_some_and(pred),
        }
    }
}

/// Heuristic detection; `headers` keys are lower-cased header names with string values; `json` is the parsed JSON body if it was an object.
///
/// A `json` that is not an object is treated as absent. Falls back to `unknown` with
/// confidence 0.2 and no reasons.
pub fn detect(headers: &Map<String, Value>, json: Option<&Value>) -> Detection {
    let json = json.and_then(Value::as_object);
    match RULES.iter().find(|r| r.matcher.matches(headers, json)) {
        Some(r) => Detection {
            provider: r.provider.to_owned(),
            confidence: r.confidence,
            reasons: r.signals.iter().map(|s| (*s).to_owned()).collect(),
        },
        None => Detection {
            provider: UNKNOWN_PROVIDER.to_owned(),
            confidence: UNKNOWN_CONFIDENCE,
            reasons: Vec::new(),
        },
    }
}

/// Applies the path hint (§4.2): unless empty/"unknown"/"test" (case-insensitive, trimmed), hint counts as provider (lower-cased) with confidence 0.6 and wins when higher than the heuristic; adds reason "path:source_hint" when it wins.
///
/// When the hint wins, the heuristic's reasons are kept (they record what was seen).
pub fn apply_hint(detection: &mut Detection, hint: Option<&str>) {
    let Some(hint) = hint.map(str::trim) else {
        return;
    };
    // "test" is what the seed's curl examples post to; it names no provider.
    if hint.is_empty() || hint.eq_ignore_ascii_case(UNKNOWN_PROVIDER) || hint.eq_ignore_ascii_case("test") {
        return;
    }
    if HINT_CONFIDENCE > detection.confidence {
        detection.provider = hint.to_lowercase();
        detection.confidence = HINT_CONFIDENCE;
        detection.reasons.push(HINT_SIGNAL.to_owned());
    }
}

/// Confidence of a provider named by a verified source.
pub const SOURCE_CONFIDENCE: f64 = 1.0;

/// Applies the payload's `verified_source` (CONTRACT §8): a delivery whose signature a
/// source verified is that source's provider, with reason `source:<name>`.
pub fn apply_verified_source(detection: &mut Detection, verified_source: Option<&Value>) {
    let Some(tag) = verified_source.and_then(Value::as_object) else {
        return;
    };
    let (Some(provider), Some(name)) = (
        tag.get("provider").and_then(Value::as_str),
        tag.get("name").and_then(Value::as_str),
    ) else {
        return;
    };
    detection.provider = provider.to_lowercase();
    detection.confidence = SOURCE_CONFIDENCE;
    detection.reasons.push(format!("source:{name}"));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn headers(names: &[&str]) -> Map<String, Value> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), Value::String("v".into())))
            .collect()
    }

    fn det(provider: &str, confidence: f64, reasons: &[&str]) -> Detection {
        Detection {
            provider: provider.into(),
            confidence,
            reasons: reasons.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn github_by_event_header() {
        let d = detect(&headers(&["x-github-event"]), None);
        assert_eq!(d, det("github", 0.98, &["header:x-github-event"]));
    }

    #[test]
    fn github_by_delivery_header_names_that_header() {
        let d = detect(&headers(&["x-github-delivery", "content-type"]), None);
        assert_eq!(d, det("github", 0.98, &["header:x-github-delivery"]));
    }

    #[test]
    fn github_push_with_hub_signature_is_github_not_fireflies() {
        let body = json!({"ref": "refs/heads/main", "meetingId": "x", "eventType": "y"});
        let d = detect(
            &headers(&[
                "x-hub-signature",
                "x-hub-signature-256",
                "x-github-event",
                "x-github-delivery",
            ]),
            Some(&body),
        );
        assert_eq!(d, det("github", 0.98, &["header:x-github-event"]));
    }

    #[test]
    fn stripe_by_signature_header() {
        let d = detect(&headers(&["stripe-signature"]), Some(&json!({"object": "event"})));
        assert_eq!(d, det("stripe", 0.98, &["header:stripe-signature"]));
    }

    #[test]
    fn shopify_slack_twilio_headers() {
        assert_eq!(
            detect(&headers(&["x-shopify-topic"]), None),
            det("shopify", 0.98, &["header:x-shopify-topic"])
        );
        assert_eq!(
            detect(&headers(&["x-slack-signature"]), None),
            det("slack", 0.95, &["header:x-slack-signature"])
        );
        assert_eq!(
            detect(&headers(&["x-twilio-signature"]), None),
            det("twilio", 0.95, &["header:x-twilio-signature"])
        );
    }

    #[test]
    fn header_order_is_the_contracts() {
        // stripe-signature beats shopify, slack, twilio and hub-signature.
        let d = detect(
            &headers(&[
                "x-hub-signature",
                "x-twilio-signature",
                "x-slack-signature",
                "x-shopify-topic",
                "stripe-signature",
            ]),
            None,
        );
        assert_eq!(d.provider, "stripe");
        let d = detect(&headers(&["x-hub-signature", "x-twilio-signature"]), None);
        assert_eq!(d.provider, "twilio");
    }

    #[test]
    fn fireflies_strong_with_meeting_fields() {
        let body = json!({"meetingId": "m1", "eventType": "Transcription completed"});
        let d = detect(&headers(&["x-hub-signature"]), Some(&body));
        assert_eq!(
            d,
            det("fireflies", 0.98, &["header:x-hub-signature", "json:fireflies_meeting"])
        );
    }

    #[test]
    fn fireflies_weak_without_meeting_fields() {
        let d = detect(&headers(&["x-hub-signature"]), Some(&json!({"meetingId": "m1"})));
        assert_eq!(d, det("fireflies", 0.8, &["header:x-hub-signature"]));
        let d = detect(&headers(&["x-hub-signature"]), None);
        assert_eq!(d, det("fireflies", 0.8, &["header:x-hub-signature"]));
    }

    #[test]
    fn stripe_by_event_shape() {
        let body = json!({"id": "evt_1", "object": "event", "type": "charge.succeeded", "data": {}});
        assert_eq!(
            detect(&Map::new(), Some(&body)),
            det("stripe", 0.85, &["json:stripe_event_shape"])
        );
        // Wrong object kind or missing data: not Stripe.
        let body = json!({"object": "charge", "type": "x", "data": {}});
        assert_eq!(detect(&Map::new(), Some(&body)).provider, "unknown");
        let body = json!({"object": "event", "type": "x"});
        assert_eq!(detect(&Map::new(), Some(&body)).provider, "unknown");
    }

    #[test]
    fn github_ping_by_shape() {
        let body = json!({"zen": "Keep it logically awesome.", "hook_id": 1});
        assert_eq!(
            detect(&Map::new(), Some(&body)),
            det("github", 0.75, &["json:github_ping"])
        );
        assert_eq!(detect(&Map::new(), Some(&json!({"zen": "x"}))).provider, "unknown");
    }

    #[test]
    fn slack_challenge_by_shape() {
        let body = json!({"challenge": "abc", "token": "slack-verification", "type": "url_verification"});
        assert_eq!(
            detect(&Map::new(), Some(&body)),
            det("slack", 0.65, &["json:slack_url_verification"])
        );
        // Token must be a string containing "slack".
        let body = json!({"challenge": "abc", "token": "xyz"});
        assert_eq!(detect(&Map::new(), Some(&body)).provider, "unknown");
        let body = json!({"challenge": "abc", "token": ["slack"]});
        assert_eq!(detect(&Map::new(), Some(&body)).provider, "unknown");
    }

    #[test]
    fn unknown_fallback() {
        assert_eq!(detect(&Map::new(), None), det("unknown", 0.2, &[]));
        assert_eq!(
            detect(&headers(&["content-type"]), Some(&json!({"a": 1}))),
            det("unknown", 0.2, &[])
        );
        // A non-object body is treated as absent rather than misread.
        assert_eq!(
            detect(&Map::new(), Some(&json!(["zen", "hook_id"]))),
            det("unknown", 0.2, &[])
        );
    }

    #[test]
    fn beyond_contract_providers() {
        assert_eq!(
            detect(&headers(&["x-gitlab-event"]), None),
            det("gitlab", 0.98, &["header:x-gitlab-event"])
        );
        assert_eq!(
            detect(&headers(&["linear-signature"]), None),
            det("linear", 0.95, &["header:linear-signature"])
        );
        // A contract header still wins over an extra provider's header.
        assert_eq!(
            detect(&headers(&["x-gitlab-event", "x-hub-signature"]), None).provider,
            "fireflies"
        );
    }

    #[test]
    fn new_provider_headers() {
        let d = detect(&headers(&["x-signature-ed25519", "x-signature-timestamp"]), None);
        assert_eq!(d, det("discord", 0.95, &["header:x-signature-ed25519"]));
        assert_eq!(detect(&headers(&["webhook-id"]), None).provider, "standard-webhooks");
        assert_eq!(detect(&headers(&["svix-id"]), None).reasons, ["header:svix-id"]);
        // A contract header keeps winning.
        assert_eq!(
            detect(&headers(&["webhook-id", "stripe-signature"]), None).provider,
            "stripe"
        );
    }

    #[test]
    fn verified_source_names_the_provider() {
        let mut d = detect(&headers(&["stripe-signature"]), None);
        apply_hint(&mut d, Some("stripe-eu"));
        let tag = json!({"name": "stripe-eu", "provider": "stripe", "scheme": "stripe"});
        apply_verified_source(&mut d, Some(&tag));
        assert_eq!(d, det("stripe", 1.0, &["header:stripe-signature", "source:stripe-eu"]));
        let mut d = detect(&headers(&["webhook-id"]), None);
        apply_verified_source(&mut d, Some(&json!({"name": "clerk", "provider": "Clerk"})));
        assert_eq!(d.provider, "clerk");
        let mut d = detect(&Map::new(), None);
        apply_verified_source(&mut d, Some(&json!("stripe")));
        assert_eq!(d.provider, "unknown");
    }

    #[test]
    fn hint_wins_over_unknown() {
        let mut d = detect(&Map::new(), None);
        apply_hint(&mut d, Some("  Fireflies "));
        assert_eq!(d, det("fireflies", 0.6, &["path:source_hint"]));
    }

    #[test]
    fn hint_loses_to_strong_heuristic() {
        let mut d = detect(&headers(&["x-github-event"]), None);
        apply_hint(&mut d, Some("stripe"));
        assert_eq!(d, det("github", 0.98, &["header:x-github-event"]));
        // 0.65 (Slack challenge) is also higher than the hint's 0.6.
        let mut d = det("slack", 0.65, &["json:slack_url_verification"]);
        apply_hint(&mut d, Some("custom"));
        assert_eq!(d.provider, "slack");
    }

    #[test]
    fn hint_ignored_when_meaningless() {
        for hint in [
            None,
            Some(""),
            Some("   "),
            Some("test"),
            Some("TEST"),
            Some("unknown"),
            Some(" Unknown "),
        ] {
            let mut d = detect(&Map::new(), None);
            apply_hint(&mut d, hint);
            assert_eq!(d, det("unknown", 0.2, &[]), "hint {hint:?}");
        }
    }

    /// Arbitrary JSON with bounded depth and size.
    pub(crate) fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z0-9 ._-]{0,8}".prop_map(Value::String),
            prop::sample::select(vec!["slack", "event", "push", "7"]).prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((arb_key(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Keys that sometimes hit the detection table and sometimes do not.
    pub(crate) fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "object",
                "type",
                "data",
                "zen",
                "hook_id",
                "challenge",
                "token",
                "meetingId",
                "eventType",
                "action",
                "0",
                "1",
                "a",
            ])
            .prop_map(String::from),
            "[a-zA-Z0-9_]{0,6}",
        ]
    }

    /// Header maps mixing the table's header names with random ones and random values.
    pub(crate) fn arb_headers() -> impl Strategy<Value = Map<String, Value>> {
        let name = prop_oneof![
            prop::sample::select(
                RULES
                    .iter()
                    .filter_map(|r| match r.matcher {
                        Matcher::Header(h) | Matcher::HeaderAndJsonKeys(h, _) => Some(h),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            )
            .prop_map(String::from),
            "[a-z-]{0,12}",
        ];
        prop::collection::vec((name, arb_json()), 0..6).prop_map(|kv| kv.into_iter().collect())
    }

    proptest! {
        #[test]
        fn detect_never_panics_and_is_well_formed(h in arb_headers(), j in proptest::option::of(arb_json()), hint in proptest::option::of(".{0,8}")) {
            let mut d = detect(&h, j.as_ref());
            prop_assert!(d.confidence > 0.0 && d.confidence <= 1.0);
            prop_assert!(d.provider == "unknown" || !d.reasons.is_empty());
            let before = d.confidence;
            apply_hint(&mut d, hint.as_deref());
            prop_assert!(d.confidence >= before);
        }

        #[test]
        fn a_contract_header_always_wins_over_json(j in arb_json()) {
            let d = detect(&headers(&["stripe-signature"]), Some(&j));
            prop_assert_eq!(d.provider.as_str(), "stripe");
            prop_assert_eq!(d.confidence, 0.98);
        }
    }
}
