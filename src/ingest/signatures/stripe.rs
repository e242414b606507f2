//! Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=…]`, HMAC-SHA256(secret as given,
//! `"<t>." + body`); any `v1` may match; `t` within the tolerance.

use super::mac::{Algorithm, any_matches};
use super::{BodyFields, Delivery, Reject, Verified, check_age, header, parse_timestamp};

/// The signature header.
pub const HEADER: &str = "stripe-signature";

/// The parts of a `Stripe-Signature` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The `t` element, as sent (it is signed as text).
    pub timestamp: &'a str,
    /// Every decodable `v1` signature; other schemes (`v0`) are ignored.
    pub v1: Vec<Vec<u8>>,
}

/// Parses the header: comma-separated `key=value` items, one `t`, one or more `v1`.
pub fn parse_header(value: &str) -> Result<Parsed<'_>, Reject> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in value.split(',') {
        let Some((k, v)) = item.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" if timestamp.is_none() => timestamp = Some(v),
            "v1" => {
                if let Ok(sig) = hex::decode(v) {
                    v1.push(sig);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(Reject::Malformed(HEADER))?;
    if v1.is_empty() {
        return Err(Reject::Malformed(HEADER));
    }
    Ok(Parsed { timestamp, v1 })
}

/// Verifies a Stripe delivery; its id is the body's `id`.
pub fn verify(keys: &[Vec<u8>], tolerance: i64, d: &Delivery<'_>) -> Result<Verified, Reject> {
    let parsed = parse_header(header(d.headers, HEADER)?)?;
    let ts = parse_timestamp(parsed.timestamp, HEADER)?;
    let parts: [&[u8]; 3] = [parsed.timestamp.as_bytes(), b".", d.body];
    if !any_matches(Algorithm::Sha256, keys, &parts, &parsed.v1) {
        return Err(Reject::Mismatch);
    }
    check_age(ts, d.now, tolerance)?;
    Ok(Verified {
        delivery_id: BodyFields::id_string(d.fields.id.as_ref()),
    })
}

/// The header a sender would compute (tests and the README's recipe).
pub fn sign(secret: &[u8], ts: i64, body: &[u8]) -> String {
    let ts = ts.to_string();
    let tag = super::mac::compute(Algorithm::Sha256, secret, &[ts.as_bytes(), b".", body]);
    format!("t={ts},v1={}", hex::encode(tag))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::deliver;
    use super::*;

    // stripe-python tests/test_webhook.py sign with "whsec_test_secret" and a current
    // timestamp (Stripe publishes no fixed vector); the same shape here.
    const SECRET: &[u8] = b"whsec_test_secret";
    const BODY: &str = r#"{"id": "evt_test_webhook", "object": "event"}"#;
    const NOW: i64 = 1_700_000_000;

    fn check(sig: &str, body: &str, keys: &[&[u8]]) -> Result<Verified, Reject> {
        deliver(&[(HEADER, sig)], body, "/", NOW, |d| {
            let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
            verify(&keys, 300, d)
        })
    }

    #[test]
    fn signed_now_is_accepted_with_the_event_id() {
        let v = check(&sign(SECRET, NOW, BODY.as_bytes()), BODY, &[SECRET]).unwrap();
        assert_eq!(v.delivery_id.as_deref(), Some("evt_test_webhook"));
    }

    #[test]
    fn any_v1_and_any_secret() {
        let good = sign(SECRET, NOW, BODY.as_bytes());
        let mixed = format!(
            "t={NOW},v1={},v0=6ffbb59b,{}",
            "ab".repeat(32),
            good.split(',').nth(1).unwrap()
        );
        assert!(check(&mixed, BODY, &[SECRET]).is_ok());
        assert!(check(&good, BODY, &[b"whsec_old", SECRET]).is_ok());
        assert_eq!(check(&good, BODY, &[b"whsec_old"]), Err(Reject::Mismatch));
    }

    #[test]
    fn refusals() {
        let good = sign(SECRET, NOW, BODY.as_bytes());
        assert_eq!(
            check(&good, &BODY.replace("evt", "evu"), &[SECRET]),
            Err(Reject::Mismatch)
        );
        let old = sign(SECRET, NOW - 301, BODY.as_bytes());
        assert_eq!(check(&old, BODY, &[SECRET]), Err(Reject::Stale));
        assert!(check(&sign(SECRET, NOW - 300, BODY.as_bytes()), BODY, &[SECRET]).is_ok());
        for bad in ["t=1", "v1=abcd", "garbage", "t=abc,v1=00", "t=,v1=zz"] {
            assert!(
                matches!(check(bad, BODY, &[SECRET]), Err(Reject::Malformed(_))),
                "{bad}"
            );
        }
    }
}
