//! A warning when deliveries carry a provider's signature to a path that verifies nothing:
//! GitHub's `X-Hub-Signature-256` on `/webhook/github` while `GITHUB_WEBHOOK_SECRET` is
//! unset (or misspelled) means anyone can post there. Once per provider and hour, so a busy
//! endpoint does not flood the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

/// Signature headers of the built-in schemes: header, provider, the variable that verifies it.
const SIGNATURES: &[(&str, &str, &str)] = &[
    ("x-hub-signature-256", "github", "GITHUB_WEBHOOK_SECRET"),
    ("stripe-signature", "stripe", "STRIPE_WEBHOOK_SECRET"),
    ("x-slack-signature", "slack", "SLACK_SIGNING_SECRET"),
    ("x-shopify-hmac-sha256", "shopify", "SHOPIFY_WEBHOOK_SECRET"),
    ("webhook-signature", "standard-webhooks", "STANDARD_WEBHOOKS_SECRET"),
    ("svix-signature", "standard-webhooks", "STANDARD_WEBHOOKS_SECRET"),
    ("linear-signature", "linear", "LINEAR_WEBHOOK_SECRET"),
    ("x-twilio-signature", "twilio", "TWILIO_AUTH_TOKEN"),
    ("x-signature-ed25519", "discord", "DISCORD_PUBLIC_KEY"),
];

/// How long one provider's warning stays quiet after it was logged.
const QUIET: Duration = Duration::from_secs(3600);

/// When each provider (by its first row in [`SIGNATURES`]) was last warned about.
static LAST_WARNED: Mutex<Vec<(&str, Instant)>> = Mutex::new(Vec::new());

/// Warns (at most once per provider and hour) when `headers` carry a provider's
/// signature that nothing checked on `path`.
pub fn warn_if_signed(headers: &HeaderMap, path: &str) {
    let Some((header, provider, variable)) = SIGNATURES.iter().find(|(h, ..)| headers.contains_key(*h)) else {
        return;
    };
    if !due(provider, Instant::now()) {
        return;
    }
    tracing::warn!(
        path,
        header,
        provider,
        "a delivery carries {provider}'s signature ({header}) but no source verifies {path}: \
         the signature was not checked; set {variable} and send {provider} to /webhook/{provider}, \
         or add a source for this path (the same warning is quiet for an hour)"
    );
}

/// True when `provider` was not warned about within [`QUIET`] of `now`; records `now`.
fn due(provider: &'static str, now: Instant) -> bool {
    let mut last = LAST_WARNED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match last.iter_mut().find(|(p, _)| *p == provider) {
        Some((_, at)) if now.duration_since(*at) < QUIET => false,
        Some((_, at)) => {
            *at = now;
            true
        }
        None => {
            last.push((provider, now));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_is_warned_about_once_an_hour() {
        let start = Instant::now();
        assert!(due("test-provider", start));
        assert!(!due("test-provider", start + Duration::from_secs(60)));
        assert!(due("other-test-provider", start + Duration::from_secs(60)));
        assert!(due("test-provider", start + QUIET));
    }
}
