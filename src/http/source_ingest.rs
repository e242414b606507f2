//! Ingest at a source's path (CONTRACT §8): the provider's signature replaces
//! `X-Ingress-Secret` and `WEBHOOK_SECRET`; handshakes are answered, not queued; the
//! provider's delivery id feeds `event_id`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Uri};
use serde_json::json;

use super::AppState;
use super::body::read_webhook_body;
use super::enqueued::{WebhookReply, enqueue_reply};
use crate::error::ApiError;
use crate::ingest::envelope::{self, RequestParts};
use crate::ingest::event_id::check_len;
use crate::ingest::signatures::{BodyFields, Delivery};
use crate::ingest::sources::Source;
use crate::store::NewEvent;

/// Verifies, answers a handshake or enqueues a delivery to `source`'s path.
pub(super) async fn ingest(
    state: AppState,
    source: Arc<Source>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Json<WebhookReply>, ApiError> {
    let body = read_webhook_body(body, headers, &state.settings).await?;
    let fields = BodyFields::parse(&body);
    let delivery = Delivery {
        headers,
        body: &body,
        fields: &fields,
        path_and_query: uri.path_and_query().map_or(uri.path(), |pq| pq.as_str()),
        now: chrono::Utc::now().timestamp(),
    };
    let verified = source.verify(&delivery).map_err(|reason| {
        tracing::info!(source = %crate::escape::escaped(&source.name), ?reason, "delivery refused: invalid signature");
        ApiError::InvalidSignature
    })?;
    if let Some(reply) = source.challenge(&fields) {
        return Ok(Json(WebhookReply::Challenge(reply)));
    }

    let mut env = envelope::build(&RequestParts {
        hint: Some(&source.name),
        method: method.as_str(),
        path: uri.path(),
        query: uri.query(),
        headers,
        body: &body,
        store_sensitive_headers: state.settings.store_sensitive_headers,
    })
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // §8: the provider's delivery id comes after X-Event-Id, before the generic rules.
    let has_event_id_header = headers
        .get("x-event-id")
        .is_some_and(|v| !v.as_bytes().trim_ascii().is_empty());
    if let Some(id) = verified.delivery_id.filter(|_| !has_event_id_header) {
        check_len(&id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        env.event_id = id;
    }
    let payload_json = with_verified_source(&env.payload_json, &source);
    let outcome = state
        .db
        .enqueue(NewEvent {
            source: crate::domain::Source::Webhook,
            event_id: env.event_id.clone(),
            payload_json,
        })
        .await?;
    Ok(Json(WebhookReply::Ingested(enqueue_reply(
        &state,
        outcome,
        &env.event_id,
    ))))
}

/// Adds `"verified_source": {name, provider, scheme}` to the stored payload, which
/// routing takes as the provider. Only this path writes it; a request body cannot,
/// since the body is nested under `json`.
fn with_verified_source(payload_json: &str, source: &Source) -> String {
    let tag = json!({"name": source.name, "provider": source.provider, "scheme": source.scheme.name()});
    match payload_json.strip_prefix('{') {
        // The envelope always serialises a non-empty object.
        Some(rest) => format!("{{\"verified_source\":{tag},{rest}"),
        None => payload_json.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::sources::Scheme;

    #[test]
    fn verified_source_is_spliced_into_the_envelope() {
        let source = Source::new("stripe-eu", Scheme::Stripe, &["k".into()], None).unwrap();
        let out = with_verified_source(r#"{"source_hint":"stripe-eu","json":{}}"#, &source);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["verified_source"],
            json!({"name": "stripe-eu", "provider": "stripe", "scheme": "stripe"})
        );
        assert_eq!(v["source_hint"], "stripe-eu");
    }
}
