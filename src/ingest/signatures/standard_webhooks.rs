//! Standard Webhooks / Svix: `webhook-id`, `webhook-timestamp`, `webhook-signature:
//! v1,<base64>[ v1,…]` over `"<id>.<ts>.<body>"`; the key is the base64 after `whsec_`.
//! The `svix-*` header names are accepted too.

use base64::Engine;

use super::mac::{Algorithm, any_matches};
use super::{Delivery, Reject, Verified, check_age, header, parse_timestamp, usable_id};

/// The id header.
pub const ID: &str = "webhook-id";
/// The timestamp header.
pub const TIMESTAMP: &str = "webhook-timestamp";
/// The signature header.
pub const SIGNATURE: &str = "webhook-signature";

/// Decodes a secret: `whsec_<base64>` or bare base64; `None` when not base64.
pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.trim();
    let b64 = b64.strip_prefix("whsec_").unwrap_or(b64);
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .filter(|k| !k.is_empty())
}

/// Decodes every `v1,<base64>` of a space-separated signature list; other versions are
/// skipped. At least one `v1` must decode.
pub fn parse_signatures(value: &str) -> Result<Vec<Vec<u8>>, Reject> {
    let sigs: Vec<Vec<u8>> = value
        .split(' ')
        .filter_map(|item| item.strip_prefix("v1,"))
        .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .collect();
    if sigs.is_empty() {
        return Err(Reject::Malformed(SIGNATURE));
    }
    Ok(sigs)
}

/// `webhook-<name>`, else `svix-<name>`.
fn either<'h>(d: &Delivery<'h>, std: &'static str, svix: &'static str) -> Result<&'h str, Reject> {
    match header(d.headers, std) {
        Err(Reject::Missing(_)) => header(d.headers, svix),
        other => other,
    }
}

/// Verifies a delivery with the decoded `keys`; its id is `webhook-id` (or `svix-id`).
pub fn verify(keys: &[Vec<u8>], tolerance: i64, d: &Delivery<'_>) -> Result<Verified, Reject> {
    let id = either(d, ID, "svix-id")?;
    let ts_text = either(d, TIMESTAMP, "svix-timestamp")?;
    let sigs = parse_signatures(either(d, SIGNATURE, "svix-signature")?)?;
    let ts = parse_timestamp(ts_text, TIMESTAMP)?;
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.as_bytes(), b".", d.body];
    if !any_matches(Algorithm::Sha256, keys, &parts, &sigs) {
        return Err(Reject::Mismatch);
    }
    check_age(ts, d.now, tolerance)?;
    Ok(Verified {
        delivery_id: usable_id(id),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::deliver;
    use super::*;

    // svix/svix-webhooks, python/tests/test_webhooks.py (test_sign_function and the
    // invalid-signature case); the same vector is in the standard-webhooks libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID_: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const BODY: &str = r#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn check(pairs: &[(&str, &str)], body: &str, now: i64) -> Result<Verified, Reject> {
        deliver(pairs, body, "/", now, |d| {
            verify(&[decode_secret(SECRET).unwrap()], 300, d)
        })
    }

    #[test]
    fn official_vector_with_both_header_families() {
        let now = 1614265330;
        let std = [(ID, ID_), (TIMESTAMP, TS), (SIGNATURE, SIG)];
        assert_eq!(check(&std, BODY, now).unwrap().delivery_id.as_deref(), Some(ID_));
        let svix = [("svix-id", ID_), ("svix-timestamp", TS), ("svix-signature", SIG)];
        assert!(check(&svix, BODY, now).is_ok());
        let multi = format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,abc {SIG}");
        assert!(check(&[(ID, ID_), (TIMESTAMP, TS), (SIGNATURE, &multi)], BODY, now).is_ok());
    }

    #[test]
    fn refusals() {
        let now = 1614265330;
        let wrong = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
        assert_eq!(
            check(&[(ID, ID_), (TIMESTAMP, TS), (SIGNATURE, wrong)], BODY, now),
            Err(Reject::Mismatch)
        );
        assert_eq!(
            check(&[(ID, ID_), (TIMESTAMP, TS), (SIGNATURE, SIG)], "{}", now),
            Err(Reject::Mismatch)
        );
        assert_eq!(
            check(&[(ID, ID_), (TIMESTAMP, TS), (SIGNATURE, SIG)], BODY, now + 301),
            Err(Reject::Stale)
        );
        assert_eq!(
            check(&[(ID, ID_), (TIMESTAMP, TS), (SIGNATURE, SIG)], BODY, now - 301),
            Err(Reject::Stale)
        );
        assert_eq!(
            check(&[(TIMESTAMP, TS), (SIGNATURE, SIG)], BODY, now),
            Err(Reject::Missing("svix-id"))
        );
        assert_eq!(
            check(&[(ID, ID_), (TIMESTAMP, "hello"), (SIGNATURE, SIG)], BODY, now),
            Err(Reject::Malformed(TIMESTAMP))
        );
        assert_eq!(
            check(&[(ID, ID_), (TIMESTAMP, TS), (SIGNATURE, "v2,abc")], BODY, now),
            Err(Reject::Malformed(SIGNATURE))
        );
    }

    #[test]
    fn secrets_decode() {
        assert_eq!(decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), decode_secret(SECRET));
        assert_eq!(decode_secret("whsec_not base64"), None);
        assert_eq!(decode_secret("whsec_"), None);
    }
}
