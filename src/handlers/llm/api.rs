//! The HTTP exchange shared by the API back-ends: send, classify failures, read JSON
//! (at most 1 MiB of it).

use serde_json::Value;

use super::answer::{scrub, start_of};
use crate::domain::LlmProvider;
use crate::handlers::{HandlerError, outbound};

/// Sends `request`, returning the JSON body of a 2xx reply; errors are scrubbed of `key`.
pub(super) async fn send(
    name: LlmProvider,
    key: &str,
    request: reqwest::RequestBuilder,
) -> Result<Value, HandlerError> {
    let scrubbed = |m: String| scrub(&m, key);
    let failed = |what: &str, e: reqwest::Error| {
        let (how, kind) = if e.is_timeout() {
            ("timed out", "timeout")
        } else {
            ("failed", "request")
        };
        HandlerError::new(scrubbed(format!("{what} {how}: {}", e.without_url()))).with_kind(kind)
    };
    let response = request
        .send()
        .await
        .map_err(|e| failed(&format!("{name} request"), e))?;
    let status = response.status();
    let wait = crate::handlers::http::retry_after(response.headers());
    let bytes = outbound::read_capped(response, outbound::MAX_REPLY_BYTES)
        .await
        .map_err(|e| match e {
            outbound::ReadError::Http(e) => failed(&format!("reading the {name} reply"), e),
            too_large => HandlerError::new(format!("{name} answered HTTP {}, but {too_large}", status.as_u16()))
                .with_kind("invalid_response"),
        })?;
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    if !status.is_success() {
        let message = body
            .as_ref()
            .and_then(|b| {
                b.pointer("/error/message")
                    .or_else(|| b.get("message"))
                    .or_else(|| b.get("error"))
            })
            .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
            .unwrap_or_else(|| start_of(&String::from_utf8_lossy(&bytes)));
        let err = HandlerError::new(scrubbed(format!(
            "{name} answered HTTP {}: {}",
            status.as_u16(),
            start_of(&message)
        )))
        .with_kind(format!("http_{}", status.as_u16()));
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(match wait {
                Some(w) => err.with_retry_after(w),
                None => err,
            });
        }
        return Err(err);
    }
    body.ok_or_else(|| {
        HandlerError::new(scrubbed(format!(
            "malformed reply from {name} (not JSON): {}",
            start_of(&String::from_utf8_lossy(&bytes))
        )))
        .with_kind("invalid_response")
    })
}
