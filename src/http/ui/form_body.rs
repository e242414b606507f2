//! The body of every dashboard form, read before any page or session check sees it: at most
//! [`MAX_FORM_BYTES`], within `BODY_READ_TIMEOUT_SECONDS` (CONTRACT §11). A larger declared
//! body is refused before a byte of it is read; a stalled one gets its 408 at the deadline.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::UiState;
use crate::http::body::{BodyLimits, read_body};

/// Largest dashboard form body: the forms hold a few fields and a pasted "try it" payload.
pub const MAX_FORM_BYTES: u64 = 64 * 1024;

/// Reads the body of a non-GET dashboard request within the form limits, then passes it on
/// (as bytes already in memory) to the session check and the handler.
pub async fn read_form(State(state): State<UiState>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let limits = BodyLimits {
        max_bytes: MAX_FORM_BYTES,
        ..BodyLimits::from_settings(&state.app.settings)
    };
    let (parts, body) = request.into_parts();
    match read_body(body, &parts.headers, limits).await {
        Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(refused) => refused.into_response(),
    }
}
