//! Linear: `Linear-Signature: <hex HMAC-SHA256(secret, body)>`; the body's
//! `webhookTimestamp` (milliseconds) within the tolerance.

use super::mac::{Algorithm, any_matches};
use super::{Delivery, Reject, Verified, check_age, header, header_id};

/// The signature header.
pub const HEADER: &str = "linear-signature";

/// Decodes the 64-hex signature.
pub fn parse_header(value: &str) -> Result<Vec<u8>, Reject> {
    match hex::decode(value.trim()) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => Err(Reject::Malformed(HEADER)),
    }
}

/// Verifies a Linear delivery; its id is `Linear-Delivery`.
///
/// Linear's SDK skips the time check when the body has no `webhookTimestamp`; Linear
/// always sends it, so here its absence is a refusal (no replay without a clock).
pub fn verify(keys: &[Vec<u8>], tolerance: i64, d: &Delivery<'_>) -> Result<Verified, Reject> {
    let given = parse_header(header(d.headers, HEADER)?)?;
    if !any_matches(Algorithm::Sha256, keys, &[d.body], &[given]) {
        return Err(Reject::Mismatch);
    }
    let ms = d
        .fields
        .webhook_timestamp
        .as_ref()
        .ok_or(Reject::Missing("webhookTimestamp"))?
        .as_i64()
        .ok_or(Reject::Malformed("webhookTimestamp"))?;
    check_age(ms / 1000, d.now, tolerance)?;
    Ok(Verified {
        delivery_id: header_id(d.headers, "linear-delivery"),
    })
}

#[cfg(test)]
mod tests {
    use super::super::mac::compute;
    use super::super::test_support::deliver;
    use super::*;

    // linear/linear, packages/sdk/src/_tests/LinearWebhooks.test.ts: secret "SECRET", a
    // Comment payload with webhookTimestamp 1677611643000, hex HMAC-SHA256 of the raw body.
    const BODY: &str = r#"{"action":"create","data":{"id":"2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9","body":"Indeed"},"type":"Comment","webhookTimestamp":1677611643000}"#;
    const NOW: i64 = 1677611643;

    fn check(secret: &str, body: &str, sig: &str, now: i64) -> Result<Verified, Reject> {
        deliver(
            &[
                (HEADER, sig),
                ("linear-delivery", "234d1a4e-b617-4388-90fe-adc3633d6b72"),
            ],
            body,
            "/",
            now,
            |d| verify(&[secret.as_bytes().to_vec()], 60, d),
        )
    }

    fn sig(secret: &str, body: &str) -> String {
        hex::encode(compute(Algorithm::Sha256, secret.as_bytes(), &[body.as_bytes()]))
    }

    #[test]
    fn signed_and_fresh() {
        let v = check("SECRET", BODY, &sig("SECRET", BODY), NOW + 59).unwrap();
        assert_eq!(v.delivery_id.as_deref(), Some("234d1a4e-b617-4388-90fe-adc3633d6b72"));
        assert_eq!(
            check("SECRET", BODY, &sig("WRONG_SECRET", BODY), NOW),
            Err(Reject::Mismatch)
        );
        assert_eq!(
            check("SECRET", BODY, &sig("SECRET", BODY), NOW + 61),
            Err(Reject::Stale)
        );
        let no_ts = r#"{"action":"create"}"#;
        assert_eq!(
            check("SECRET", no_ts, &sig("SECRET", no_ts), NOW),
            Err(Reject::Missing("webhookTimestamp"))
        );
        assert_eq!(check("SECRET", BODY, "sha256=00", NOW), Err(Reject::Malformed(HEADER)));
    }
}
