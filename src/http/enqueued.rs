//! What an enqueue answers (webhook, a source's path, cron): the reply types and the
//! wake-up of this process's workers for a new event.

use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Ref, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::AppState;
use crate::store::Enqueued;

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
