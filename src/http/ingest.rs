//! `POST /webhook` and `POST /webhook/{hint}`: auth, body limit, signature, envelope, enqueue.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;

use super::body::read_webhook_body;
use super::enqueued::{WebhookReply, enqueue_reply};
use super::{AppState, require_secret};
use crate::domain::Source;
use crate::error::{ApiError, ErrorReply};
use crate::ingest::envelope::{self, RequestParts};
use crate::ingest::signature::verify_hmac_sha256;
use crate::store::NewEvent;

/// Queues a webhook (any body; JSON objects are parsed for routing).
#[utoipa::path(post, path = "/webhook", tag = "ingest",
    request_body(content = Object, content_type = "application/json", description = "The webhook body, stored as received"),
    security((), ("ingress_secret" = [])),
    responses(
        (status = 200, description = "Queued, a duplicate ignored, or a provider handshake answered", body = WebhookReply),
        (status = 400, description = "Empty body, JSON nested too deeply, or an event id over 512 bytes or not UTF-8", body = ErrorReply),
        (status = 401, description = "Missing or wrong secret or signature", body = ErrorReply),
        (status = 413, description = "Body over MAX_BODY_BYTES", body = ErrorReply),
        (status = 503, description = "The database is unavailable", body = ErrorReply),
    ))]
pub async fn webhook(State(state): State<AppState>, request: Request) -> Result<Json<WebhookReply>, ApiError> {
    counted(ingest(state, None, request).await)
}

/// Queues a webhook with a source hint (or for a configured source, verified by its scheme).
#[utoipa::path(post, path = "/webhook/{hint}", tag = "ingest",
    params(("hint" = String, Path, description = "Source hint (provider name) or source name")),
    request_body(content = Object, content_type = "application/json", description = "The webhook body, stored as received"),
    security((), ("ingress_secret" = [])),
    responses(
        (status = 200, description = "Queued, a duplicate ignored, or a provider handshake answered", body = WebhookReply),
        (status = 400, description = "Empty body, JSON nested too deeply, or an event id over 512 bytes or not UTF-8", body = ErrorReply),
        (status = 401, description = "Missing or wrong secret or signature", body = ErrorReply),
        (status = 413, description = "Body over MAX_BODY_BYTES", body = ErrorReply),
        (status = 503, description = "The database is unavailable", body = ErrorReply),
    ))]
pub async fn webhook_hint(
    State(state): State<AppState>,
    Path(hint): Path<String>,
    request: Request,
) -> Result<Json<WebhookReply>, ApiError> {
    counted(ingest(state, Some(hint), request).await)
}

/// Counts an ingest by outcome (`switchyard_ingested_total`).
fn counted(reply: Result<Json<WebhookReply>, ApiError>) -> Result<Json<WebhookReply>, ApiError> {
    let outcome = match &reply {
        Ok(Json(WebhookReply::Ingested(r))) if r.status == "queued" => "queued",
        Ok(Json(WebhookReply::Ingested(_))) => "duplicate",
        Ok(Json(WebhookReply::Challenge(_))) => "challenge",
        Err(ApiError::Unauthorized(_)) => "unauthorized",
        Err(ApiError::InvalidSignature) => "invalid_signature",
        Err(ApiError::PayloadTooLarge(_)) => "too_large",
        Err(ApiError::Store(_)) => "store_error",
        Err(_) => "bad_request",
    };
    crate::metrics::ingested(outcome);
    reply
}

/// Takes the whole request rather than axum's `HeaderMap` extractor, which clones the headers.
async fn ingest(state: AppState, hint: Option<String>, request: Request) -> Result<Json<WebhookReply>, ApiError> {
    let (
        Parts {
            method, uri, headers, ..
        },
        body,
    ) = request.into_parts();
    // A source's path is authenticated by its provider's scheme instead (CONTRACT §8).
    if let Some(source) = hint.as_deref().and_then(|h| state.sources.get(h)).cloned() {
        return super::source_ingest::ingest(state, source, &method, &uri, &headers, body).await;
    }
    // Before the ingress secret: a provider's delivery refused for want of it is worth
    // the same warning (rate-limited, so strangers cannot flood the log with it).
    super::unverified::warn_if_signed(&headers, uri.path());
    let s = &state.settings;
    require_secret(s.ingress_secret.as_deref(), &headers, "x-ingress-secret")?;
    let body = read_webhook_body(body, &headers, s).await?;
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
    })
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let outcome = state
        .db
        .enqueue(NewEvent {
            source: Source::Webhook,
            event_id: env.event_id.clone(),
            payload_json: env.payload_json,
        })
        .await?;
    Ok(Json(WebhookReply::Ingested(enqueue_reply(
        &state,
        outcome,
        &env.event_id,
    ))))
}

/// GitHub still sends its legacy `X-Hub-Signature: sha1=…` next to `X-Hub-Signature-256`;
/// it is not a Fireflies signature and is left to GitHub's own source scheme.
fn is_github_sha1(sig: &axum::http::HeaderValue) -> bool {
    sig.as_bytes().trim_ascii_start().starts_with(b"sha1=")
}
