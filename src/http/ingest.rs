//! `POST /webhook` and `POST /webhook/{hint}`: auth, body limit, signature, envelope, enqueue.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Ref, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::body::{BodyLimits, read_body};
use super::{AppState, require_secret};
use crate::domain::Source;
use crate::error::{ApiError, ErrorReply};
use crate::ingest::envelope::{self, RequestParts};
use crate::ingest::limits::{MAX_JSON_DEPTH, json_too_deep};
use crate::ingest::signature::verify_hmac_sha256;
use crate::store::{Enqueued, NewEvent};

/// What an accepted webhook or cron event got.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestReply {
    /// Always true.
    pub ok: bool,
    /// `queued`, or `duplicate_ignored` when `(source, event_id)` was seen before.
    pub status: String,
    /// The event's row id (the original's for a duplicate).
    pub row_id: i64,
    /// The dedupe key.
    pub event_id: String,
}

/// A webhook's reply: the ingest outcome, or a provider handshake's answer (a source's
/// Slack `url_verification` or Discord PING, CONTRACT §8), which is not queued.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum WebhookReply {
    /// The event was queued or was a duplicate.
    Ingested(IngestReply),
    /// The provider's handshake answer.
    Challenge(serde_json::Value),
}

// Written by hand: derived, the handshake would be "any value", which an ingest reply also
// matches, so `oneOf` would reject every reply. Handshakes have exactly one member.
impl utoipa::PartialSchema for WebhookReply {
    fn schema() -> RefOr<Schema> {
        let handshake = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A provider handshake's answer: Slack `{\"challenge\": …}` or Discord `{\"type\": 1}`.",
            ))
            .property("challenge", ObjectBuilder::new().schema_type(Type::String))
            .property("type", ObjectBuilder::new().schema_type(Type::Integer))
            .min_properties(Some(1))
            .max_properties(Some(1));
        OneOfBuilder::new()
            .item(Ref::from_schema_name(IngestReply::name()))
            .item(handshake)
            .description(Some(
                "The ingest outcome, or a provider handshake's answer (not queued).",
            ))
            .into()
    }
}

impl ToSchema for WebhookReply {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((IngestReply::name().into(), IngestReply::schema()));
        IngestReply::schemas(schemas);
    }
}

/// Queues a webhook (any body; JSON objects are parsed for routing).
#[utoipa::path(post, path = "/webhook", tag = "ingest",
    request_body(content = Object, content_type = "application/json", description = "The webhook body, stored as received"),
    security((), ("ingress_secret" = [])),
    responses(
        (status = 200, description = "Queued, a duplicate ignored, or a provider handshake answered", body = WebhookReply),
        (status = 400, description = "Empty body or JSON nested too deeply", body = ErrorReply),
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
        (status = 400, description = "Empty body or JSON nested too deeply", body = ErrorReply),
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
pub(super) fn enqueue_reply(state: &AppState, outcome: Enqueued, event_id: &str) -> IngestReply {
    let status = match outcome {
        Enqueued::Queued(_) => {
            state.wake.notify_one();
            "queued"
        }
        Enqueued::Duplicate(_) => "duplicate_ignored",
    };
    IngestReply {
        ok: true,
        status: status.into(),
        row_id: outcome.row_id(),
        event_id: event_id.to_string(),
    }
}
