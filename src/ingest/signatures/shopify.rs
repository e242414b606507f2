//! Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(secret, body)>`.

use base64::Engine;

use super::mac::{Algorithm, any_matches};
use super::{Delivery, Reject, Verified, header, header_id};

/// The signature header.
pub const HEADER: &str = "x-shopify-hmac-sha256";

/// Decodes the base64 signature.
pub fn parse_header(value: &str) -> Result<Vec<u8>, Reject> {
    match base64::engine::general_purpose::STANDARD.decode(value.trim()) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => Err(Reject::Malformed(HEADER)),
    }
}

/// Verifies a Shopify delivery; its id is `X-Shopify-Webhook-Id`.
pub fn verify(keys: &[Vec<u8>], d: &Delivery<'_>) -> Result<Verified, Reject> {
    let given = parse_header(header(d.headers, HEADER)?)?;
    if !any_matches(Algorithm::Sha256, keys, &[d.body], &[given]) {
        return Err(Reject::Mismatch);
    }
    Ok(Verified {
        delivery_id: header_id(d.headers, "x-shopify-webhook-id"),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::deliver;
    use super::*;

    fn check(secret: &str, body: &str, sig: &str) -> Result<Verified, Reject> {
        deliver(
            &[
                (HEADER, sig),
                ("x-shopify-webhook-id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
            ],
            body,
            "/",
            0,
            |d| verify(&[secret.as_bytes().to_vec()], d),
        )
    }

    #[test]
    fn signed_body_accepted_others_refused() {
        // Shopify's SDK tests (Shopify/shopify-app-js) sign at run time; this is the same
        // algorithm: base64(HMAC-SHA256(secret, raw body)).
        let body = r#"{"id":820982911946154508,"email":"jon@example.com"}"#;
        let sig = base64::engine::general_purpose::STANDARD.encode(super::super::mac::compute(
            Algorithm::Sha256,
            b"hush",
            &[body.as_bytes()],
        ));
        let v = check("hush", body, &sig).unwrap();
        assert_eq!(v.delivery_id.as_deref(), Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"));
        assert_eq!(check("hush", &body.replace("jon", "jan"), &sig), Err(Reject::Mismatch));
        assert_eq!(check("hush", body, "not base64!"), Err(Reject::Malformed(HEADER)));
        assert_eq!(check("hush", body, "c2hvcnQ="), Err(Reject::Malformed(HEADER)));
    }
}
