//! The names of the providers switchyard knows by itself.
//!
//! A provider is open-ended text: a path hint or a configured source may name any sender,
//! and mappings and rules are keyed by that text. These are the names detection reports
//! and the signature schemes use, so each is spelled in one place.

/// GitHub.
pub const GITHUB: &str = "github";
/// Stripe.
pub const STRIPE: &str = "stripe";
/// Shopify.
pub const SHOPIFY: &str = "shopify";
/// Slack.
pub const SLACK: &str = "slack";
/// Twilio.
pub const TWILIO: &str = "twilio";
/// Fireflies.ai (its `x-hub-signature` header).
pub const FIREFLIES: &str = "fireflies";
/// GitLab.
pub const GITLAB: &str = "gitlab";
/// Linear.
pub const LINEAR: &str = "linear";
/// Discord (Ed25519-signed interactions).
pub const DISCORD: &str = "discord";
/// Any sender of the Standard Webhooks format (Svix and others).
pub const STANDARD_WEBHOOKS: &str = "standard-webhooks";
/// What detection reports when nothing matched.
pub const UNKNOWN: &str = "unknown";
