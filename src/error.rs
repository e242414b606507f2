//! Error types: `ApiError` becomes `{"ok": false, "error": …}` with a status code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a message the client can act on.
    #[error("{0}")]
    BadRequest(String),
    /// 401 `unauthorized`; the header named is logged and given as `expected_header`,
    /// never its value.
    #[error("unauthorized")]
    Unauthorized(&'static str),
    /// 401 `invalid signature`.
    #[error("invalid signature")]
    InvalidSignature,
    /// 403 with a message (a `Host` not allowed, CONTRACT §11).
    #[error("{0}")]
    Forbidden(String),
    /// 404 with a message.
    #[error("{0}")]
    NotFound(String),
    /// 409: the resource is in a state that refuses the request.
    #[error("{0}")]
    Conflict(String),
    /// 413 `payload too large`.
    #[error("payload too large (limit {0} bytes)")]
    PayloadTooLarge(u64),
    /// 408: the body did not arrive within `BODY_READ_TIMEOUT_SECONDS`.
    #[error("request body not received within {0} seconds")]
    BodyTimeout(f64),
    /// 503: the store failed; details are logged, not leaked.
    #[error("storage unavailable")]
    Store(#[from] StoreError),
}

/// Why a request was refused, attached to the response for the refusal log line.
#[derive(Debug, Clone)]
pub struct Refusal(pub String);

/// The body of every error reply: `{"ok": false, "error": "<message>"}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorReply {
    /// Always false.
    pub ok: bool,
    /// What went wrong, for a person to act on.
    pub error: String,
    /// On a 401 for a missing or wrong secret: the header that must carry it, e.g.
    /// `X-Admin-Secret` (never its value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_header: Option<String>,
}

/// `x-admin-secret` as it is documented: `X-Admin-Secret`.
fn header_title(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

impl ApiError {
    /// The reason logged for a refusal: the client's message, plus which header failed.
    fn reason(&self) -> String {
        match self {
            ApiError::Unauthorized(header) => format!("{header} missing or wrong"),
            other => other.to_string(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::InvalidSignature => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Store(e) = &self {
            tracing::error!(error = %e, "store error while answering a request");
        }
        let expected_header = match &self {
            ApiError::Unauthorized(header) => Some(header_title(header)),
            _ => None,
        };
        let body = ErrorReply {
            ok: false,
            error: self.to_string(),
            expected_header,
        };
        let mut response = (self.status(), axum::Json(body)).into_response();
        if !matches!(self, ApiError::Store(_)) {
            response.extensions_mut().insert(Refusal(self.reason()));
        }
        response
    }
}
