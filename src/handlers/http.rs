//! The `http` handler: POST the event to a URL, signed the Standard Webhooks way.
//!
//! Headers `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256
//! of "{id}.{timestamp}.{body}">` let the receiver verify and dedupe (the id is stable across
//! retries of the same event and action). 2xx is success; 429 and 5xx are retryable and
//! honour `Retry-After`; other statuses (3xx included: redirects are never followed) fail the
//! attempt with the start of the reply. Destinations are limited by [`outbound`]: public
//! addresses only unless `HTTP_HANDLER_ALLOW_PRIVATE=1`, replies capped at 1 MiB.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::outbound::{self, MAX_REPLY_BYTES};
use super::{HandlerError, HandlerInput};

/// Most bytes of a reply quoted in an error message.
const ERROR_REPLY_CHARS: usize = 500;

/// Settings of the `http` handler (the signing key is redacted from `Debug`).
#[derive(Clone)]
pub struct HttpHandlerConfig {
    /// Signing key (`HTTP_HANDLER_SECRET`): `whsec_<base64>` or raw text.
    pub secret: Option<String>,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Whether loopback, private and link-local destinations are allowed
    /// (`HTTP_HANDLER_ALLOW_PRIVATE`).
    pub allow_private: bool,
    /// The client: no redirects, no proxies, the address policy in its resolver.
    pub client: reqwest::Client,
}

crate::redacting_debug!(HttpHandlerConfig {
    secret: [secret],
    plain: [timeout, allow_private, client],
});

impl HttpHandlerConfig {
    /// Settings with a client that enforces `allow_private`.
    pub fn new(secret: Option<String>, timeout: Duration, allow_private: bool) -> Self {
        Self {
            secret,
            timeout,
            allow_private,
            client: outbound::handler_client(allow_private),
        }
    }
}

/// Decodes a Standard Webhooks secret: `whsec_<base64>` is decoded, anything else is raw bytes.
pub fn secret_bytes(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_").map(|b64| STANDARD.decode(b64)) {
        Some(Ok(bytes)) => bytes,
        _ => secret.as_bytes().to_vec(),
    }
}

/// The `webhook-signature` value for a message.
pub fn sign(secret: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Reads `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// POSTs the handler input to `target` and returns the receiver's answer.
pub async fn run(
    cfg: &HttpHandlerConfig,
    target: Option<&str>,
    input: &HandlerInput<'_>,
) -> Result<Value, HandlerError> {
    let (url, shown) = destination(cfg, target)?;
    let secret = cfg.secret.as_deref().ok_or_else(|| {
        HandlerError::permanent("HTTP_HANDLER_SECRET must be set to sign requests of the http handler")
    })?;
    let body = super::encode_json("the event", input)?;
    let id = message_id(input);
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let signature = sign(&secret_bytes(secret), &id, timestamp, &body);

    let response = cfg
        .client
        .post(url)
        .timeout(cfg.timeout)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| match outbound::refusal(&e) {
            Some(r) => refused(&shown, r),
            None => {
                let kind = if e.is_timeout() { "timed out" } else { "failed" };
                HandlerError::new(format!("POST {shown} {kind}: {}", e.without_url()))
            }
        })?;
    let status = response.status();
    let wait = retry_after(response.headers());
    let bytes = outbound::read_capped(response, MAX_REPLY_BYTES)
        .await
        .map_err(|e| HandlerError::new(format!("POST {shown} answered HTTP {}, but {e}", status.as_u16())))?;
    answer(&shown, status, wait, &bytes)
}

/// The target as a URL the handler may post to, and its text without credentials (for
/// messages); a missing, malformed, non-HTTP or (by the address policy) refused target is
/// a permanent failure.
fn destination(cfg: &HttpHandlerConfig, target: Option<&str>) -> Result<(reqwest::Url, String), HandlerError> {
    let url = target
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| HandlerError::permanent("http handler needs a handler_target URL (http:// or https://)"))?;
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        let shown = outbound::scrub_url_credentials(url);
        HandlerError::permanent(format!("invalid http target '{shown}': {e}"))
    })?;
    let shown = outbound::display_url(&parsed);
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(HandlerError::permanent(format!(
            "http target '{shown}' must use http or https"
        )));
    }
    if !cfg.allow_private {
        outbound::check_literal(&parsed).map_err(|r| refused(&shown, &r))?;
    }
    Ok((parsed, shown))
}

/// The `webhook-id`: stable across retries of one event's action, so receivers can dedupe.
fn message_id(input: &HandlerInput<'_>) -> String {
    let mut id_hash = Sha256::new();
    id_hash.update(input.action.as_bytes());
    id_hash.update(b"\0");
    id_hash.update(serde_json::to_vec(input.payload).unwrap_or_default());
    format!("msg_{}", &hex::encode(id_hash.finalize())[..32])
}

/// The handler's result from the receiver's reply: a 2xx reply's JSON object (or its status
/// and text); 429 and 5xx a retryable failure honouring `Retry-After`; anything else a
/// failure quoting the start of the reply.
fn answer(
    shown: &str,
    status: reqwest::StatusCode,
    wait: Option<Duration>,
    bytes: &[u8],
) -> Result<Value, HandlerError> {
    if status.is_success() {
        return Ok(match serde_json::from_slice::<Value>(bytes) {
            Ok(v @ Value::Object(_)) => v,
            _ => json!({"status": status.as_u16(), "body": String::from_utf8_lossy(bytes)}),
        });
    }
    let text = String::from_utf8_lossy(bytes);
    let mut message = format!(
        "POST {shown} answered HTTP {}: {}",
        status.as_u16(),
        text.chars().take(ERROR_REPLY_CHARS).collect::<String>()
    );
    if status.is_redirection() {
        message.push_str(" (redirects are not followed; use the final URL as the target)");
    }
    // The kind names the status: a 429 or 503 pauses the route's flow pool (CONTRACT §13).
    let err = HandlerError::new(message).with_kind(format!("http_{}", status.as_u16()));
    if status.as_u16() == 429 || status.is_server_error() {
        return Err(match wait {
            Some(w) => err.with_retry_after(w),
            None => err,
        });
    }
    Err(err)
}

/// The failure for a destination the address policy refused: permanent, since the
/// address will not become public by retrying.
fn refused(shown: &str, r: &outbound::Refused) -> HandlerError {
    HandlerError::permanent(format!("POST {shown} refused: {r}")).with_kind("refused_address")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_signature_vector() {
        // The test vector of the Standard Webhooks specification.
        let secret = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn retry_after_forms() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
