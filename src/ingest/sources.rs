//! Sources (CONTRACT §8): a path `/webhook/<name>` bound to a provider's signature
//! scheme, its secrets (a list, for rotation) and the provider routing sees.
//!
//! Built once at start-up from the environment shortcuts and the config file's
//! `"sources"`; the secrets live only in memory and never appear in `Debug` output.

use std::fmt;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use serde_json::{Map, Value, json};

use super::signatures::hmac::{Encoding, HmacSpec};
use super::signatures::mac::Algorithm;
use super::signatures::{
    BodyFields, Delivery, Reject, Verified, discord, github, linear, shopify, slack, standard_webhooks, stripe, twilio,
};

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
    "github",
    "stripe",
    "slack",
    "shopify",
    "standard-webhooks",
    "linear",
    "twilio",
    "discord",
];

impl Scheme {
    /// The scheme of a provider name (`hmac` needs its settings, see [`parse_entry`]).
    pub fn of_provider(name: &str) -> Option<Scheme> {
        Some(match name {
            "github" => Scheme::Github,
            "stripe" => Scheme::Stripe,
            "slack" => Scheme::Slack,
            "shopify" => Scheme::Shopify,
            "standard-webhooks" | "svix" => Scheme::StandardWebhooks,
            "linear" => Scheme::Linear,
            "twilio" => Scheme::Twilio,
            "discord" => Scheme::Discord,
            _ => return None,
        })
    }

    /// The scheme's name.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Github => "github",
            Scheme::Stripe => "stripe",
            Scheme::Slack => "slack",
            Scheme::Shopify => "shopify",
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Linear => "linear",
            Scheme::Twilio => "twilio",
            Scheme::Discord => "discord",
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
        let provider = provider.unwrap_or_else(|| match scheme {
            Scheme::Hmac(_) => name.to_string(),
            _ => scheme.name().to_string(),
        });
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

/// Parses the config file's `"sources"` array; `env` resolves `env:VAR` secrets.
pub fn parse_config(value: &Value, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Source>, String> {
    let entries = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err("'sources' must be an array".into()),
    };
    let mut out: Vec<Source> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let source = parse_entry(entry, env).map_err(|e| format!("sources[{i}]: {e}"))?;
        if out.iter().any(|s| s.name == source.name) {
            return Err(format!("sources[{i}]: source '{}' is defined twice", source.name));
        }
        out.push(source);
    }
    Ok(out)
}

const ENTRY_KEYS: [&str; 9] = [
    "name",
    "scheme",
    "secrets",
    "tolerance_seconds",
    "provider",
    "header",
    "algorithm",
    "encoding",
    "prefix",
];

/// One `"sources"` entry; errors name the source.
pub fn parse_entry(entry: &Value, env: &dyn Fn(&str) -> Option<String>) -> Result<Source, String> {
    let obj = entry.as_object().ok_or("must be an object")?;
    let name = text(obj, "name")?.ok_or("missing 'name'")?;
    let wrap = |e: String| format!("(source '{name}') {e}");
    if let Some(key) = obj.keys().find(|k| !ENTRY_KEYS.contains(&k.as_str())) {
        return Err(wrap(format!(
            "unknown key '{key}' (expected one of {})",
            ENTRY_KEYS.join(", ")
        )));
    }
    let scheme_name = text(obj, "scheme")
        .map_err(wrap)?
        .ok_or_else(|| wrap("missing 'scheme'".into()))?;
    let scheme = match scheme_name.as_str() {
        "hmac" => Scheme::Hmac(hmac_spec(obj).map_err(wrap)?),
        other => Scheme::of_provider(other).ok_or_else(|| {
            wrap(format!(
                "unknown scheme '{other}' (expected {} or hmac)",
                PROVIDER_SCHEMES.join(", ")
            ))
        })?,
    };
    let hmac_only = ["header", "algorithm", "encoding", "prefix"];
    if !matches!(scheme, Scheme::Hmac(_))
        && let Some(key) = hmac_only.iter().find(|k| obj.contains_key(**k))
    {
        return Err(wrap(format!("'{key}' only applies to the hmac scheme")));
    }
    let secrets = secrets(obj, env).map_err(wrap)?;
    let provider = text(obj, "provider").map_err(wrap)?;
    let mut source = Source::new(&name, scheme, &secrets, provider)?;
    if let Some(t) = obj.get("tolerance_seconds").filter(|v| !v.is_null()) {
        if source.tolerance.is_none() {
            return Err(wrap(format!(
                "'tolerance_seconds' does not apply: scheme {} signs no timestamp",
                source.scheme.name()
            )));
        }
        let t = t
            .as_i64()
            .filter(|t| (1..=86_400).contains(t))
            .ok_or_else(|| wrap("'tolerance_seconds' must be an integer from 1 to 86400".into()))?;
        source.tolerance = Some(t);
    }
    Ok(source)
}

fn text(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(format!("'{key}' must not be empty")),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(format!("'{key}' must be a string")),
    }
}

/// The `secrets` list: literals, or `env:VAR` (a comma-separated list in the variable).
fn secrets(obj: &Map<String, Value>, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, String> {
    let items = match obj.get("secrets") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            return Err("missing secret: 'secrets' needs at least one".into());
        }
        Some(_) => return Err("'secrets' must be an array of strings".into()),
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let s = item.as_str().map(str::trim).filter(|s| !s.is_empty());
        let s = s.ok_or_else(|| format!("secrets[{i}] must be a non-empty string"))?;
        match s.strip_prefix("env:") {
            Some(var) => {
                let value = env(var.trim()).filter(|v| !v.trim().is_empty());
                let value =
                    value.ok_or_else(|| format!("secrets[{i}]: environment variable {} is not set", var.trim()))?;
                out.extend(value.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()));
            }
            None => out.push(s.to_string()),
        }
    }
    Ok(out)
}

fn hmac_spec(obj: &Map<String, Value>) -> Result<HmacSpec, String> {
    let header = text(obj, "header")?
        .ok_or("the hmac scheme needs 'header'")?
        .to_ascii_lowercase();
    if axum::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
        return Err(format!("'header' {header:?} is not a valid header name"));
    }
    let algorithm = match text(obj, "algorithm")? {
        None => Algorithm::Sha256,
        Some(a) => {
            Algorithm::parse(&a).ok_or_else(|| format!("unknown algorithm '{a}' (expected sha256, sha512 or sha1)"))?
        }
    };
    let encoding = match text(obj, "encoding")?.as_deref() {
        None | Some("hex") => Encoding::Hex,
        Some("base64") => Encoding::Base64,
        Some(e) => return Err(format!("unknown encoding '{e}' (expected hex or base64)")),
    };
    let prefix = match obj.get("prefix") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(p)) => p.clone(),
        Some(_) => return Err("'prefix' must be a string".into()),
    };
    Ok(HmacSpec {
        header,
        algorithm,
        encoding,
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        (var == "STRIPE_EU").then(|| "whsec_eu1, whsec_eu2".to_string())
    }

    #[test]
    fn config_entries_parse_and_resolve_env() {
        let v: Value = serde_json::from_str(
            r#"[{"name": "stripe-eu", "scheme": "stripe", "secrets": ["env:STRIPE_EU"], "tolerance_seconds": 600},
                {"name": "stripe-us", "scheme": "stripe", "secrets": ["whsec_us"]},
                {"name": "acme", "scheme": "hmac", "header": "X-Acme-Sig", "algorithm": "sha512",
                 "encoding": "base64", "prefix": "v1=", "secrets": ["k"], "provider": "Acme"}]"#,
        )
        .unwrap();
        let s = parse_config(&v, &env).unwrap();
        assert_eq!(
            (s[0].secret_count(), s[0].tolerance, s[0].provider.as_str()),
            (2, Some(600), "stripe")
        );
        assert_eq!((s[1].secret_count(), s[1].tolerance), (1, Some(300)));
        assert_eq!(s[2].provider, "acme");
        assert!(matches!(&s[2].scheme, Scheme::Hmac(h) if h.header == "x-acme-sig" && h.prefix == "v1="));
        assert!(!format!("{:?}", s[0]).contains("whsec"), "Debug never shows secrets");
    }

    #[test]
    fn bad_entries_are_named() {
        let cases = [
            (
                r#"[{"name": "x", "scheme": "paypal", "secrets": ["k"]}]"#,
                "unknown scheme 'paypal'",
            ),
            (
                r#"[{"name": "x", "scheme": "stripe", "secrets": ["env:NOPE"]}]"#,
                "NOPE is not set",
            ),
            (r#"[{"name": "x", "scheme": "stripe"}]"#, "missing secret"),
            (
                r#"[{"name": "x", "scheme": "stripe", "secrets": []}]"#,
                "missing secret",
            ),
            (
                r#"[{"name": "X Y", "scheme": "stripe", "secrets": ["k"]}]"#,
                "source name 'X Y'",
            ),
            (
                r#"[{"name": "x", "scheme": "github", "secrets": ["k"], "tolerance_seconds": 5}]"#,
                "does not apply",
            ),
            (
                r#"[{"name": "x", "scheme": "hmac", "secrets": ["k"]}]"#,
                "needs 'header'",
            ),
            (
                r#"[{"name": "x", "scheme": "hmac", "header": "h", "algorithm": "md5", "secrets": ["k"]}]"#,
                "md5",
            ),
            (r#"[{"name": "x", "scheme": "discord", "secrets": ["zz"]}]"#, "Ed25519"),
            (
                r#"[{"name": "x", "scheme": "standard-webhooks", "secrets": ["whsec_!!"]}]"#,
                "whsec_",
            ),
            (
                r#"[{"name": "x", "scheme": "stripe", "secrets": ["k"], "secret": "k"}]"#,
                "unknown key 'secret'",
            ),
            (
                r#"[{"name": "x", "scheme": "stripe", "secrets": ["k"]}, {"name": "x", "scheme": "github", "secrets": ["k"]}]"#,
                "twice",
            ),
        ];
        for (text, needle) in cases {
            let e = parse_config(&serde_json::from_str(text).unwrap(), &env).unwrap_err();
            assert!(e.contains(needle) && e.contains("sources["), "{text}: {e}");
        }
    }

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
