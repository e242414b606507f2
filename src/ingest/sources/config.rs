//! The config file's `"sources"` entries (CONTRACT §8): parsed, secrets resolved, every
//! error naming its entry.

use serde_json::{Map, Value};

use super::{PROVIDER_SCHEMES, Scheme, Source};
use crate::ingest::signatures::hmac::{Encoding, HmacSpec};
use crate::ingest::signatures::mac::Algorithm;

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

/// The keys a `"sources"` entry may hold.
pub const ENTRY_KEYS: &[&str] = &[
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
        let plain = r#"{"name": "x", "scheme": "hmac", "header": "h", "secrets": ["k"]}"#;
        assert_eq!(
            parse_entry(&serde_json::from_str(plain).unwrap(), &env)
                .unwrap()
                .provider,
            "hmac"
        );
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
}
