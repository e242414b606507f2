//! The provider shortcuts of CONTRACT §8: one comma-separated secret list per scheme.

use clap::Args;

use super::parse::http_url;
use crate::domain::provider;

/// The provider shortcuts (each a comma-separated secret list) and `PUBLIC_BASE_URL`.
#[derive(Clone, Args)]
pub struct ProviderSettings {
    /// The public URL of this service as providers call it (Twilio signs the full URL).
    #[arg(long, env = "PUBLIC_BASE_URL", value_name = "PUBLIC_BASE_URL", value_parser = http_url)]
    pub public_base_url: Option<String>,
    /// Secrets verifying /webhook/github (X-Hub-Signature-256).
    #[arg(
        long,
        env = "GITHUB_WEBHOOK_SECRET",
        value_name = "GITHUB_WEBHOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub github_webhook_secret: Vec<String>,
    /// Secrets verifying /webhook/stripe (Stripe-Signature).
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRET",
        value_name = "STRIPE_WEBHOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub stripe_webhook_secret: Vec<String>,
    /// Signing secrets verifying /webhook/slack (X-Slack-Signature).
    #[arg(
        long,
        env = "SLACK_SIGNING_SECRET",
        value_name = "SLACK_SIGNING_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub slack_signing_secret: Vec<String>,
    /// Secrets verifying /webhook/shopify (X-Shopify-Hmac-Sha256).
    #[arg(
        long,
        env = "SHOPIFY_WEBHOOK_SECRET",
        value_name = "SHOPIFY_WEBHOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub shopify_webhook_secret: Vec<String>,
    /// `whsec_` secrets verifying /webhook/standard-webhooks (Standard Webhooks / Svix).
    #[arg(
        long,
        env = "STANDARD_WEBHOOKS_SECRET",
        value_name = "STANDARD_WEBHOOKS_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub standard_webhooks_secret: Vec<String>,
    /// Secrets verifying /webhook/linear (Linear-Signature).
    #[arg(
        long,
        env = "LINEAR_WEBHOOK_SECRET",
        value_name = "LINEAR_WEBHOOK_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub linear_webhook_secret: Vec<String>,
    /// Auth tokens verifying /webhook/twilio (X-Twilio-Signature; needs PUBLIC_BASE_URL).
    #[arg(
        long,
        env = "TWILIO_AUTH_TOKEN",
        value_name = "TWILIO_AUTH_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub twilio_auth_token: Vec<String>,
    /// Hex Ed25519 public keys verifying /webhook/discord (X-Signature-Ed25519).
    #[arg(
        long,
        env = "DISCORD_PUBLIC_KEY",
        value_name = "DISCORD_PUBLIC_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub discord_public_key: Vec<String>,
}

crate::redacting_debug!(ProviderSettings {
    secret: [
        github_webhook_secret,
        stripe_webhook_secret,
        slack_signing_secret,
        shopify_webhook_secret,
        standard_webhooks_secret,
        linear_webhook_secret,
        twilio_auth_token,
        discord_public_key
    ],
    plain: [public_base_url],
});

impl ProviderSettings {
    /// `(scheme, secrets)` of every shortcut, in CONTRACT §8's order.
    pub fn shortcuts(&self) -> [(&'static str, &[String]); 8] {
        [
            (provider::GITHUB, &self.github_webhook_secret),
            (provider::STRIPE, &self.stripe_webhook_secret),
            (provider::SLACK, &self.slack_signing_secret),
            (provider::SHOPIFY, &self.shopify_webhook_secret),
            (provider::STANDARD_WEBHOOKS, &self.standard_webhooks_secret),
            (provider::LINEAR, &self.linear_webhook_secret),
            (provider::TWILIO, &self.twilio_auth_token),
            (provider::DISCORD, &self.discord_public_key),
        ]
    }
}
