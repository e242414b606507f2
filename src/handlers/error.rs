//! How a handler run fails.

use std::time::Duration;

/// Why an attempt failed; `retry_after` lets an upstream's Retry-After push the next attempt back.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    /// What went wrong, for `last_error` and the action run.
    pub message: String,
    /// Earliest time to retry, when the upstream said so.
    pub retry_after: Option<Duration>,
    /// True when retrying cannot help.
    pub permanent: bool,
    /// Short machine-readable cause (`timeout`, `http_429`, `missing_key`, …) where one is
    /// known; the AI classifier reports it as `ai:error:<kind>`.
    pub kind: Option<String>,
}

impl HandlerError {
    /// A retryable failure.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry_after: None,
            permanent: false,
            kind: None,
        }
    }

    /// A failure that retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            ..Self::new(message)
        }
    }

    /// Sets the earliest retry time.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Sets the machine-readable cause.
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }
}
