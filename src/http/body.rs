//! Reading a request body from an untrusted client: capped in size and in time.
//!
//! Two attacks shape this file. A client that sends its headers and then stalls would hold
//! a connection (and its memory) forever: the whole body must arrive before a deadline
//! (`BODY_READ_TIMEOUT_SECONDS`). A body over `MAX_BODY_BYTES` is refused; but a client
//! that writes its whole body before reading the reply (Python's `urllib` and `requests`
//! do) would see a connection reset instead of the 413 if we closed on unread data, so
//! after the 413 is sent a bounded amount of the excess is read and thrown away, as HTTP
//! servers' "lingering close" does.

use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderMap;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::ingest::envelope::is_json_content_type;
use crate::ingest::limits::{MAX_JSON_DEPTH, json_too_deep};

/// Most bytes past the limit read and discarded so that the client can read its 413.
const OVERSIZE_DRAIN_BYTES: u64 = 8 * 1024 * 1024;

/// The limits of one body read.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest accepted body (`MAX_BODY_BYTES`).
    pub max_bytes: u64,
    /// Time from the start of the read to its last byte (`BODY_READ_TIMEOUT_SECONDS`).
    pub timeout: Duration,
}

impl BodyLimits {
    /// `MAX_BODY_BYTES` and `BODY_READ_TIMEOUT_SECONDS`.
    pub fn from_settings(s: &crate::settings::Settings) -> BodyLimits {
        BodyLimits {
            max_bytes: s.max_body_bytes,
            timeout: Duration::from_secs_f64(s.body_read_timeout),
        }
    }
}

/// Reads the whole body within `limits`: 413 when too large, 408 when too slow.
pub async fn read_body(body: Body, headers: &HeaderMap, limits: BodyLimits) -> Result<Bytes, ApiError> {
    let deadline = Instant::now() + limits.timeout;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > limits.max_bytes) {
        // A client waiting for `100 Continue` has sent nothing yet: nothing to drain.
        let waits = headers
            .get(axum::http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !waits && n <= limits.max_bytes.saturating_add(OVERSIZE_DRAIN_BYTES) {
            tokio::spawn(drain(body, n, deadline));
        }
        return Err(ApiError::PayloadTooLarge(limits.max_bytes));
    }
    let capacity = declared.map_or(0, |n| usize::try_from(n).unwrap_or(0));
    let mut body = body;
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total: u64 = 0;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ApiError::BodyTimeout(limits.timeout.as_secs_f64())),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ApiError::BadRequest(format!("could not read the request body: {e}"))),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        total += data.len() as u64;
        if total > limits.max_bytes {
            tokio::spawn(drain(body, OVERSIZE_DRAIN_BYTES, deadline));
            return Err(ApiError::PayloadTooLarge(limits.max_bytes));
        }
        // The usual single-chunk body is returned without a copy.
        match (&mut first, &mut joined) {
            (None, None) => first = Some(data),
            (Some(f), None) => {
                let mut buf = BytesMut::with_capacity(capacity.max(f.len() + data.len()));
                buf.extend_from_slice(f);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
            (_, Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(match joined {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// Reads a webhook's body: within `MAX_BODY_BYTES` and `BODY_READ_TIMEOUT_SECONDS`, not
/// empty, and JSON nested at most [`MAX_JSON_DEPTH`] levels deep (stored, deeper JSON could
/// not be read back; CONTRACT §11).
pub async fn read_webhook_body(
    body: Body,
    headers: &HeaderMap,
    settings: &crate::settings::Settings,
) -> Result<Bytes, ApiError> {
    let body = read_body(body, headers, BodyLimits::from_settings(settings)).await?;
    if body.is_empty() {
        return Err(ApiError::BadRequest("empty body".into()));
    }
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if is_json_content_type(ct) && json_too_deep(&body, MAX_JSON_DEPTH) {
        return Err(ApiError::BadRequest(format!(
            "JSON nested deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    Ok(body)
}

/// Reads and discards up to `budget` bytes of `body`, giving up at `deadline`. Spawned
/// beside the 413: the reply goes out at once and the connection stays open until the
/// upload is consumed, so closing it does not reset what the client has yet to read.
async fn drain(mut body: Body, budget: u64, deadline: Instant) {
    let discard = async {
        let mut seen: u64 = 0;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > budget {
                break;
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, discard).await;
}
