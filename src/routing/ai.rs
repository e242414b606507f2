//! The AI provider classifier (CONTRACT §4.3): asked only when `MAPPER_USE_AI=1` and the
//! heuristic confidence is below `MAPPER_AI_THRESHOLD`, through the `llm` back-end.
//!
//! It sees a summary (non-secret headers, the names of the others, top-level keys, the
//! body cut to 4 KiB), never secrets. It overrides the provider when its confidence is at
//! least the heuristic's (`ai:provider_override`) and records its answer in
//! `router.ai_detection` and, when its provider is the one routed, `router.event_type`.
//! Any failure only adds `ai:error:<kind>` to the reasons, `<kind>` being the back-end's
//! [`HandlerError::kind`] (`timeout`, `http_429`, `missing_key`, `spawn`, …) or
//! `invalid_response` for an answer without a usable `provider` and `confidence`.

use std::sync::Arc;

use std::sync::LazyLock;

use base64::Engine;
use serde_json::{Map, Value, json};

use super::Detection;
use super::rules::JsonPath;
use crate::handlers::{HandlerConfig, HandlerError, llm};

/// Most bytes of the body shown to the classifier.
pub const MAX_BODY_BYTES: usize = 4096;

/// Most headers shown, and most characters of each value.
const MAX_HEADERS: usize = 64;
const MAX_HEADER_VALUE_CHARS: usize = 256;

/// The answer's shape, enforced where the back-end can (Anthropic tool, CLI `--json-schema`).
pub static ANSWER_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let text = json!({"type": ["string", "null"]});
    json!({
        "type": "object",
        "properties": {
            "provider": {"type": "string"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "event_type": text, "event_type_path": text,
            "event_id": text, "event_id_path": text, "notes": text,
        },
        "required": ["provider", "confidence"],
    })
});

/// Reason added when the classifier's provider wins.
pub const OVERRIDE_REASON: &str = "ai:provider_override";

/// Header name fragments never shown to the classifier.
const SECRET_HEADER_PARTS: &[&str] = &[
    "auth",
    "cookie",
    "secret",
    "signature",
    "token",
    "key",
    "password",
    "session",
];

/// The classifier's instructions.
pub const PROMPT: &str = "You classify incoming webhook requests by the service that sent \
them. The input summarises one request: non-secret headers, the top-level keys of its JSON \
body and the body (possibly cut). Reply with one JSON object only: {\"provider\": \
\"<lower-case service name, e.g. github, stripe, shopify, slack, or unknown>\", \
\"confidence\": <0..1>, \"event_type\": \"<event type or null>\", \"event_type_path\": \
\"<dot path in the body holding the event type, or null>\", \"event_id\": \"<id or null>\", \
\"event_id_path\": \"<dot path or null>\", \"notes\": \"<short reason>\"}.";

/// Asks an LLM for the provider of low-confidence payloads.
#[derive(Debug, Clone)]
pub struct AiClassifier {
    /// Back-end settings (the `llm` handler's).
    pub handlers: Arc<HandlerConfig>,
    /// Confidence below which the classifier is asked (`MAPPER_AI_THRESHOLD`).
    pub threshold: f64,
}

/// What the classifier changed: the raw answer and the event type it found.
#[derive(Debug, Clone, PartialEq)]
pub struct AiOutcome {
    /// The answer as returned (stored as `ai_detection`).
    pub answer: Value,
    /// The event type, from `event_type` or `event_type_path`.
    pub event_type: Option<String>,
}

impl AiClassifier {
    /// True when a detection this confident should be checked by the classifier.
    pub fn wanted(&self, detection: &Detection) -> bool {
        detection.confidence < self.threshold
    }

    /// Classifies `payload`, updating `detection`; failures become an `ai:error:<kind>` reason.
    pub async fn classify(&self, payload: &Value, detection: &mut Detection) -> Option<AiOutcome> {
        let cfg = &self.handlers;
        let summary = summary(payload);
        let answer = llm::complete(
            cfg,
            cfg.llm.provider,
            cfg.llm.model.as_deref(),
            PROMPT,
            &summary,
            &ANSWER_SCHEMA,
        )
        .await;
        let outcome = match answer {
            Ok(a) => apply(payload, a, detection).map_err(|kind| (kind.to_owned(), "unusable answer".to_owned())),
            Err(e) => Err((error_kind(&e), e.message)),
        };
        match outcome {
            Ok(outcome) => Some(outcome),
            Err((kind, error)) => {
                // The message is already scrubbed of API keys by the back-end.
                tracing::warn!(kind, error, "AI classifier failed; keeping the heuristic provider");
                detection.reasons.push(format!("ai:error:{kind}"));
                None
            }
        }
    }
}

/// The back-end's machine-readable cause, `backend` when it gave none.
fn error_kind(e: &HandlerError) -> String {
    e.kind.clone().unwrap_or_else(|| "backend".to_owned())
}

/// Validates an answer and applies it to `detection`; `Err` is the error kind.
pub fn apply(payload: &Value, answer: Value, detection: &mut Detection) -> Result<AiOutcome, &'static str> {
    let provider = answer
        .get("provider")
        .and_then(Value::as_str)
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .ok_or("invalid_response")?;
    let confidence = answer
        .get("confidence")
        .and_then(Value::as_f64)
        .filter(|c| (0.0..=1.0).contains(c))
        .ok_or("invalid_response")?;
    if provider != detection.provider
        && provider != super::detect::UNKNOWN_PROVIDER
        && confidence >= detection.confidence
    {
        detection.provider = provider.clone();
        detection.confidence = confidence;
        detection.reasons.push(OVERRIDE_REASON.to_owned());
    }
    let text = |k: &str| {
        answer
            .get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "null")
    };
    let body = payload.get("json").unwrap_or(&Value::Null);
    let from_path = text("event_type_path")
        .and_then(|p| JsonPath::parse(p).ok())
        .and_then(|p| p.resolve(body).and_then(Value::as_str).map(str::to_owned));
    // An event type read under another provider's assumptions would mislead.
    let event_type = (detection.provider == provider)
        .then(|| text("event_type").map(str::to_owned).or(from_path))
        .flatten();
    Ok(AiOutcome { answer, event_type })
}

/// What the classifier sees: method, path, hint, non-secret headers (and only the names
/// of the others: `stripe-signature` says "Stripe" without its value), top-level keys,
/// and the body — the JSON, or a non-JSON body decoded as text — cut to 4 KiB.
pub fn summary(payload: &Value) -> Value {
    let mut headers = Map::new();
    let mut hidden = Vec::new();
    if let Some(h) = payload.get("headers").and_then(Value::as_object) {
        for (name, value) in h.iter().take(MAX_HEADERS) {
            let n = name.to_ascii_lowercase();
            if SECRET_HEADER_PARTS.iter().any(|p| n.contains(p)) {
                hidden.push(name.clone());
                continue;
            }
            let value = match value {
                Value::String(v) => Value::String(v.chars().take(MAX_HEADER_VALUE_CHARS).collect()),
                other => other.clone(),
            };
            headers.insert(name.clone(), value);
        }
    }
    let body = payload.get("json");
    let keys: Vec<&String> = body
        .and_then(Value::as_object)
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    let (mut text, mut truncated) = match body {
        Some(b) => (b.to_string(), false),
        // Form posts (Slack commands, Twilio) and other non-JSON bodies: show their text.
        None => raw_body_text(payload).unwrap_or_default(),
    };
    if text.len() > MAX_BODY_BYTES {
        truncated = true;
        let mut cut = MAX_BODY_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    json!({
        "method": payload.get("method"),
        "path": payload.get("path"),
        "source_hint": payload.get("source_hint"),
        "content_type": payload.get("content_type"),
        "headers": headers,
        "hidden_headers": hidden,
        "top_level_keys": keys,
        "body": text,
        "body_truncated": truncated,
    })
}

/// The start of a stored non-JSON body (`raw_body_base64`) as lossy UTF-8, and whether
/// the body goes on beyond what was decoded.
fn raw_body_text(payload: &Value) -> Option<(String, bool)> {
    let b64 = payload.get("raw_body_base64")?.as_str()?;
    // Decode only what can be shown: 4 base64 characters carry 3 bytes.
    let take = b64.len().min((MAX_BODY_BYTES / 3 + 2) * 4);
    let prefix = b64.get(..take - take % 4)?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(prefix).ok()?;
    Some((String::from_utf8_lossy(&bytes).into_owned(), b64.len() > prefix.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown() -> Detection {
        Detection {
            provider: "unknown".into(),
            confidence: 0.2,
            reasons: Vec::new(),
        }
    }

    #[test]
    fn summary_hides_secrets_and_cuts_the_body() {
        let big = "x".repeat(10_000);
        let payload = json!({"method": "POST", "headers": {"user-agent": "acme/1", "authorization": "Bearer s",
            "x-acme-signature": "abc", "x-api-key": "k", "content-type": "application/json"},
            "json": {"type": "order.created", "blob": big}});
        let s = summary(&payload);
        let h = s["headers"].as_object().unwrap();
        assert!(h.contains_key("user-agent") && h.contains_key("content-type"));
        assert!(
            !h.contains_key("authorization") && !h.contains_key("x-acme-signature") && !h.contains_key("x-api-key")
        );
        assert_eq!(
            s["hidden_headers"],
            json!(["authorization", "x-acme-signature", "x-api-key"])
        );
        assert!(!s.to_string().contains("Bearer s") && !s.to_string().contains("\"abc\""));
        assert_eq!(s["top_level_keys"], json!(["blob", "type"]));
        assert_eq!(s["body"].as_str().unwrap().len(), MAX_BODY_BYTES);
        assert_eq!(s["body_truncated"], true);
    }

    #[test]
    fn summary_shows_non_json_bodies_as_text() {
        use base64::engine::general_purpose::STANDARD;
        let form = "token=xyz&command=%2Fdeploy&text=prod";
        let s = summary(&json!({"raw_body_base64": STANDARD.encode(form)}));
        assert_eq!(s["body"], form);
        assert_eq!(s["body_truncated"], false);
        assert_eq!(s["top_level_keys"], json!([]));

        let big = "é".repeat(10_000);
        let s = summary(&json!({"raw_body_base64": STANDARD.encode(&big)}));
        let body = s["body"].as_str().unwrap();
        assert!(body.len() <= MAX_BODY_BYTES && body.starts_with("éé"), "{}", body.len());
        assert_eq!(s["body_truncated"], true);
        // Not base64 at all: no body rather than a panic or garbage.
        let s = summary(&json!({"raw_body_base64": "é!*"}));
        assert_eq!(s["body"], "");
    }

    #[test]
    fn overrides_only_when_at_least_as_confident() {
        let payload = json!({"json": {"meta": {"kind": "order.created"}}});
        let mut d = unknown();
        let out = apply(
            &payload,
            json!({"provider": "Acme", "confidence": 0.9, "event_type_path": "meta.kind"}),
            &mut d,
        )
        .unwrap();
        assert_eq!((d.provider.as_str(), d.confidence), ("acme", 0.9));
        assert_eq!(d.reasons, [OVERRIDE_REASON]);
        assert_eq!(out.event_type.as_deref(), Some("order.created"));

        let mut d = Detection {
            provider: "github".into(),
            confidence: 0.6,
            reasons: vec!["path:source_hint".into()],
        };
        let out = apply(
            &payload,
            json!({"provider": "acme", "confidence": 0.5, "event_type": "x"}),
            &mut d,
        )
        .unwrap();
        assert_eq!(d.provider, "github");
        assert_eq!(out.event_type, None);
        assert_eq!(d.reasons, ["path:source_hint"]);

        let mut d = unknown();
        assert_eq!(
            apply(&payload, json!({"provider": "acme"}), &mut d),
            Err("invalid_response")
        );
        assert_eq!(
            apply(&payload, json!({"provider": "", "confidence": 1}), &mut d),
            Err("invalid_response")
        );
        assert_eq!(d.provider, "unknown");
    }

    #[tokio::test]
    async fn failures_only_add_a_reason() {
        let mut cfg = crate::handlers::test_config();
        cfg.llm.provider = crate::domain::LlmProvider::Openai;
        let ai = AiClassifier {
            handlers: Arc::new(cfg),
            threshold: 0.65,
        };
        let mut d = unknown();
        assert!(ai.wanted(&d));
        assert_eq!(ai.classify(&json!({}), &mut d).await, None);
        assert_eq!(d.reasons, ["ai:error:missing_key"]);
        assert_eq!(d.provider, "unknown");
    }
}
