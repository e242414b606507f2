//! Sources (CONTRACT §8): a path `/webhook/<name>` bound to a provider's signature
//! scheme, its secrets (a list, for rotation) and the provider routing sees.
//!
//! Built once at start-up from the environment shortcuts and the config file's
//! `"sources"`; the secrets live only in memory and never appear in `Debug` output.

mod config;

use std::fmt;
use std::sync::Arc;

pub use config::{ENTRY_KEYS, parse_config, parse_entry};

use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};

use super::signatures::hmac::HmacSpec;
use super::signatures::{
    BodyFields, Delivery, Reject, Verified, discord, github, linear, shopify, slack, standard_webhooks, stripe, twilio,
};
use crate::domain::provider;

/// A provider's signature scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `X-Hub-Signature-256`.
    Github,
    /// `Stripe-Signature`.
    Stripe,
    /// `X-Slack-Signature` + timestamp.
    Slack,
    /// `X-Shopify-Hmac-Sha256`.
    Shopify,
    /// Standard Webhooks / Svix.
    StandardWebhooks,
    /// `Linear-Signature` + body timestamp.
    Linear,
    /// `X-Twilio-Signature` over `PUBLIC_BASE_URL` + path.
    Twilio,
    /// Ed25519 `X-Signature-Ed25519`.
    Discord,
    /// A configurable HMAC header.
    Hmac(HmacSpec),
}

/// The scheme names of the shortcuts, in the order of CONTRACT §8's table.
pub const PROVIDER_SCHEMES: [&str; 8] = [
    provider::GITHUB,
    provider::STRIPE,
    provider::SLACK,
    provider::SHOPIFY,
    provider::STANDARD_WEBHOOKS,
    provider::LINEAR,
    provider::TWILIO,
    provider::DISCORD,
];

impl Scheme {
    /// The scheme of a provider name (`hmac` needs its settings, see [`parse_entry`]).
    pub fn of_provider(name: &str) -> Option<Scheme> {
        Some(match name {
            provider::GITHUB => Scheme::Github,
            provider::STRIPE => Scheme::Stripe,
            provider::SLACK => Scheme::Slack,
            provider::SHOPIFY => Scheme::Shopify,
            provider::STANDARD_WEBHOOKS | "svix" => Scheme::StandardWebhooks,
            provider::LINEAR => Scheme::Linear,
            provider::TWILIO => Scheme::Twilio,
            provider::DISCORD => Scheme::Discord,
            _ => return None,
        })
    }

    /// The scheme's name.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Github => provider::GITHUB,
            Scheme::Stripe => provider::STRIPE,
            Scheme::Slack => provider::SLACK,
            Scheme::Shopify => provider::SHOPIFY,
            Scheme::StandardWebhooks => provider::STANDARD_WEBHOOKS,
            Scheme::Linear => provider::LINEAR,
            Scheme::Twilio => provider::TWILIO,
            Scheme::Discord => provider::DISCORD,
            Scheme::Hmac(_) => "hmac",
        }
    }

    /// The default timestamp tolerance in seconds; `None` for schemes without a timestamp.
    pub fn default_tolerance(&self) -> Option<i64> {
        match self {
            Scheme::Stripe | Scheme::Slack | Scheme::StandardWebhooks | Scheme::Discord => Some(300),
            Scheme::Linear => Some(60),
            _ => None,
        }
    }
}

/// Verification keys, decoded once.
enum Keys {
    Mac(Vec<Vec<u8>>),
    Ed25519(Vec<VerifyingKey>),
}

/// One configured source.
pub struct Source {
    /// The path segment: requests to `/webhook/<name>` are verified by this source.
    pub name: String,
    /// What routing sees as the provider.
    pub provider: String,
    /// The signature scheme.
    pub scheme: Scheme,
    /// Timestamp tolerance in seconds (timestamped schemes).
    pub tolerance: Option<i64>,
    /// `PUBLIC_BASE_URL` (Twilio signs the full URL).
    pub public_base_url: Option<String>,
    keys: Keys,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("provider", &self.provider)
            .field("scheme", &self.scheme.name())
            .field("secrets", &self.secret_count())
            .finish()
    }
}

impl Source {
    /// Builds a source, decoding every secret; the error names what is wrong (never the secret).
    pub fn new(name: &str, scheme: Scheme, secrets: &[String], provider: Option<String>) -> Result<Source, String> {
        validate_name(name)?;
        let secrets: Vec<&str> = secrets.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
        if secrets.is_empty() {
            return Err(format!("source '{name}': no secret given"));
        }
        let keys = match &scheme {
            Scheme::Discord => Keys::Ed25519(decode_each(
                &secrets,
                discord::decode_public_key,
                &format!("source '{name}': key {{}} is not a 64-hex Ed25519 public key"),
            )?),
            Scheme::StandardWebhooks => Keys::Mac(decode_each(
                &secrets,
                standard_webhooks::decode_secret,
                &format!("source '{name}': secret {{}} is not whsec_<base64>"),
            )?),
            _ => Keys::Mac(secrets.iter().map(|s| s.as_bytes().to_vec()).collect()),
        };
        let provider = provider.unwrap_or_else(|| scheme.name().to_string());
        Ok(Source {
            name: name.to_string(),
            provider: provider.to_lowercase(),
            tolerance: scheme.default_tolerance(),
            scheme,
            public_base_url: None,
            keys,
        })
    }

    /// How many secrets (or public keys) verify this source.
    pub fn secret_count(&self) -> usize {
        match &self.keys {
            Keys::Mac(k) => k.len(),
            Keys::Ed25519(k) => k.len(),
        }
    }

    /// The request path of this source.
    pub fn path(&self) -> String {
        format!("/webhook/{}", self.name)
    }

    /// Verifies a delivery by this source's scheme.
    pub fn verify(&self, d: &Delivery<'_>) -> Result<Verified, Reject> {
        let tolerance = self.tolerance.unwrap_or(300);
        match (&self.scheme, &self.keys) {
            (Scheme::Discord, Keys::Ed25519(keys)) => discord::verify(keys, tolerance, d),
            (Scheme::Github, Keys::Mac(keys)) => github::verify(keys, d),
            (Scheme::Stripe, Keys::Mac(keys)) => stripe::verify(keys, tolerance, d),
            (Scheme::Slack, Keys::Mac(keys)) => slack::verify(keys, tolerance, d),
            (Scheme::Shopify, Keys::Mac(keys)) => shopify::verify(keys, d),
            (Scheme::StandardWebhooks, Keys::Mac(keys)) => standard_webhooks::verify(keys, tolerance, d),
            (Scheme::Linear, Keys::Mac(keys)) => linear::verify(keys, tolerance, d),
            (Scheme::Twilio, Keys::Mac(keys)) => {
                let base = self
                    .public_base_url
                    .as_deref()
                    .ok_or(Reject::Missing("PUBLIC_BASE_URL"))?;
                twilio::verify(keys, base, d)
            }
            (Scheme::Hmac(spec), Keys::Mac(keys)) => spec.verify(keys, d),
            // Keys are decoded for their scheme in `new`; no other pairing is built.
            _ => Err(Reject::Mismatch),
        }
    }

    /// The reply to a provider's handshake, answered instead of queueing: Slack
    /// `url_verification` → `{"challenge": …}`, Discord PING (`"type": 1`) → `{"type": 1}`.
    pub fn challenge(&self, fields: &BodyFields) -> Option<Value> {
        match self.scheme {
            Scheme::Slack if fields.kind.as_ref().and_then(Value::as_str) == Some("url_verification") => {
                let challenge = fields.challenge.as_ref().and_then(Value::as_str).unwrap_or_default();
                Some(json!({ "challenge": challenge }))
            }
            Scheme::Discord if fields.kind.as_ref().and_then(Value::as_i64) == Some(1) => Some(json!({"type": 1})),
            _ => None,
        }
    }
}

/// Decodes every secret; `message` (with `{}` for the 1-based position) names a bad one.
fn decode_each<K>(secrets: &[&str], decode: impl Fn(&str) -> Option<K>, message: &str) -> Result<Vec<K>, String> {
    secrets
        .iter()
        .enumerate()
        .map(|(i, s)| decode(s).ok_or_else(|| message.replace("{}", &(i + 1).to_string())))
        .collect()
}

/// Source names are path segments: lower-case letters, digits, `-` and `_`, 1–64 long.
fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "source name '{name}' must be 1-64 characters of a-z, 0-9, '-' or '_'"
        ))
    }
}

/// Every configured source, looked up by name.
#[derive(Debug, Default)]
pub struct Sources {
    list: Vec<Arc<Source>>,
}

impl Sources {
    /// Combines the environment shortcuts and the config file's sources; a name defined
    /// twice, or a Twilio source without `PUBLIC_BASE_URL`, is refused.
    pub fn build(
        shortcuts: &[(&str, &[String])],
        configured: Vec<Source>,
        public_base_url: Option<&str>,
    ) -> Result<Sources, String> {
        let mut list: Vec<Source> = Vec::new();
        for (scheme_name, secrets) in shortcuts {
            if secrets.iter().all(|s| s.trim().is_empty()) {
                continue;
            }
            let scheme = Scheme::of_provider(scheme_name).ok_or_else(|| format!("unknown scheme '{scheme_name}'"))?;
            list.push(Source::new(scheme_name, scheme, secrets, None)?);
        }
        for source in configured {
            if list.iter().any(|s| s.name == source.name) {
                return Err(format!(
                    "source '{}' is defined twice (an environment shortcut and the config file, or two entries)",
                    source.name
                ));
            }
            list.push(source);
        }
        for source in &mut list {
            if source.scheme == Scheme::Twilio {
                let base = public_base_url.ok_or_else(|| {
                    format!(
                        "source '{}' (twilio) needs PUBLIC_BASE_URL, the URL Twilio calls",
                        source.name
                    )
                })?;
                source.public_base_url = Some(base.trim_end_matches('/').to_string());
            }
        }
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Sources {
            list: list.into_iter().map(Arc::new).collect(),
        })
    }

    /// The source named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Source>> {
        self.list.iter().find(|s| s.name == name)
    }

    /// Every source, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Source>> {
        self.list.iter()
    }

    /// True when no source is configured.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcuts_and_config_combine() {
        let gh = vec!["a".to_string(), " b ".to_string()];
        let none: Vec<String> = Vec::new();
        let tw = vec!["tok".to_string()];
        let shortcuts: [(&str, &[String]); 3] = [("github", &gh), ("stripe", &none), ("twilio", &tw)];
        let s = Sources::build(&shortcuts, Vec::new(), Some("https://hooks.example.com/")).unwrap();
        assert_eq!(
            s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["github", "twilio"]
        );
        assert_eq!(s.get("github").unwrap().secret_count(), 2);
        assert_eq!(
            s.get("twilio").unwrap().public_base_url.as_deref(),
            Some("https://hooks.example.com")
        );
        assert!(
            Sources::build(&shortcuts, Vec::new(), None)
                .unwrap_err()
                .contains("PUBLIC_BASE_URL")
        );
        let dup = Source::new("github", Scheme::Github, &gh, None).unwrap();
        assert!(
            Sources::build(&shortcuts, vec![dup], Some("https://x"))
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn challenges_only_for_their_scheme() {
        let slack = Source::new("slack", Scheme::Slack, &["k".into()], None).unwrap();
        let discord_key = hex::encode(
            ed25519_dalek::SigningKey::from_bytes(&[1; 32])
                .verifying_key()
                .to_bytes(),
        );
        let discord = Source::new("discord", Scheme::Discord, &[discord_key], None).unwrap();
        let f = BodyFields::parse(
            br#"{"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#,
        );
        assert_eq!(
            slack.challenge(&f),
            Some(json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}))
        );
        assert_eq!(discord.challenge(&f), None);
        let ping = BodyFields::parse(br#"{"type": 1, "id": "1"}"#);
        assert_eq!(discord.challenge(&ping), Some(json!({"type": 1})));
        assert_eq!(slack.challenge(&ping), None);
        assert_eq!(discord.challenge(&BodyFields::parse(br#"{"type": 2}"#)), None);
    }
}
