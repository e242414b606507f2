//! `POST /webhook` and `POST /webhook/{hint}`: auth, body limit, signature, envelope, enqueue.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use serde_json::{Value, json};

use super::body::{BodyLimits, read_body};
use super::{AppState, require_secret};
use crate::domain::Source;
use crate::error::ApiError;
use crate::ingest::envelope::{self, RequestParts};
use crate::ingest::limits::{MAX_JSON_DEPTH, json_too_deep};
use crate::ingest::signature::verify_hmac_sha256;
use crate::store::{Enqueued, NewEvent};

/// `POST /webhook`.
pub async fn webhook(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    ingest(state, None, method, uri, headers, body).await
}

/// `POST /webhook/{hint}`.
pub async fn webhook_hint(
    State(state): State<AppState>,
    Path(hint): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    ingest(state, Some(hint), method, uri, headers, body).await
}

async fn ingest(
    state: AppState,
    hint: Option<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    // A source's path is authenticated by its provider's scheme instead (CONTRACT §8).
    if let Some(source) = hint.as_deref().and_then(|h| state.sources.get(h)).cloned() {
        return super::source_ingest::ingest(state, source, &method, &uri, &headers, body).await;
    }
    let s = &state.settings;
    require_secret(s.ingress_secret.as_deref(), &headers, "x-ingress-secret")?;
    let body = read_body(body, &headers, BodyLimits::from_settings(s)).await?;
    if body.is_empty() {
        return Err(ApiError::BadRequest("empty body".into()));
    }
    refuse_deep_json(&headers, &body)?;
    if let Some(secret) = &s.webhook_secret {
        let sig = headers.get("x-signature").and_then(|v| v.to_str().ok());
        if !sig.is_some_and(|sig| verify_hmac_sha256(secret.as_bytes(), &body, sig)) {
            return Err(ApiError::InvalidSignature);
        }
    }
    if let Some(secret) = &s.fireflies_webhook_secret
        && let Some(sig) = headers.get("x-hub-signature")
        && !is_github_sha1(sig)
    {
        let sig = sig.to_str().unwrap_or("");
        if !verify_hmac_sha256(secret.as_bytes(), &body, sig) {
            return Err(ApiError::InvalidSignature);
        }
    }

    let env = envelope::build(&RequestParts {
        hint: hint.as_deref(),
        method: method.as_str(),
        path: uri.path(),
        query: uri.query(),
        headers: &headers,
        body: &body,
        store_sensitive_headers: s.store_sensitive_headers,
    });
    let outcome = state
        .db
        .enqueue(NewEvent {
            source: Source::Webhook,
            event_id: env.event_id.clone(),
            payload_json: env.payload_json,
        })
        .await?;
    Ok(Json(enqueue_reply(&state, outcome, &env.event_id)))
}

/// GitHub still sends its legacy `X-Hub-Signature: sha1=…` next to `X-Hub-Signature-256`;
/// it is not a Fireflies signature and is left to GitHub's own source scheme.
fn is_github_sha1(sig: &axum::http::HeaderValue) -> bool {
    sig.as_bytes().trim_ascii_start().starts_with(b"sha1=")
}

/// 400 for a JSON body nested deeper than [`MAX_JSON_DEPTH`]: stored, it could not be read
/// back (CONTRACT §11).
pub(super) fn refuse_deep_json(headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if envelope::is_json_content_type(ct) && json_too_deep(body, MAX_JSON_DEPTH) {
        return Err(ApiError::BadRequest(format!(
            "JSON nested deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    Ok(())
}

/// The reply to an enqueue (webhook or cron), waking workers for a new event.
pub(super) fn enqueue_reply(state: &AppState, outcome: Enqueued, event_id: &str) -> Value {
    match outcome {
        Enqueued::Queued(row_id) => {
            state.wake.notify_one();
            json!({"ok": true, "status": "queued", "row_id": row_id, "event_id": event_id})
        }
        Enqueued::Duplicate(row_id) => {
            json!({"ok": true, "status": "duplicate_ignored", "row_id": row_id, "event_id": event_id})
        }
    }
}
