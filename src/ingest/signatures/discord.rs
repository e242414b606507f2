//! Discord interactions: Ed25519 `X-Signature-Ed25519` (hex) over
//! `X-Signature-Timestamp + body`, verified with the application's hex public key.

use ed25519_dalek::{Signature, VerifyingKey};

use super::{Delivery, Reject, Verified, check_age, header, parse_timestamp};

/// The signature header.
pub const HEADER: &str = "x-signature-ed25519";
/// The timestamp header.
pub const TIMESTAMP: &str = "x-signature-timestamp";

/// Decodes a hex public key (32 bytes); `None` when it is not one.
pub fn decode_public_key(hex_key: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// Decodes the hex signature (64 bytes).
pub fn parse_header(value: &str) -> Result<Signature, Reject> {
    let bytes: [u8; 64] = hex::decode(value.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(Reject::Malformed(HEADER))?;
    Ok(Signature::from_bytes(&bytes))
}

/// True when any key verifies `sig` over `message` (strict: no malleable signatures).
pub fn any_verifies(keys: &[VerifyingKey], message: &[u8], sig: &Signature) -> bool {
    keys.iter().any(|k| k.verify_strict(message, sig).is_ok())
}

/// Verifies a Discord interaction; the timestamp must be within the tolerance.
pub fn verify(keys: &[VerifyingKey], tolerance: i64, d: &Delivery<'_>) -> Result<Verified, Reject> {
    let sig = parse_header(header(d.headers, HEADER)?)?;
    let ts_text = header(d.headers, TIMESTAMP)?;
    let ts = parse_timestamp(ts_text, TIMESTAMP)?;
    let mut message = Vec::with_capacity(ts_text.len() + d.body.len());
    message.extend_from_slice(ts_text.as_bytes());
    message.extend_from_slice(d.body);
    if !any_verifies(keys, &message, &sig) {
        return Err(Reject::Mismatch);
    }
    check_age(ts, d.now, tolerance)?;
    // Interactions carry their id in the body; the generic JSON `id` rule picks it up.
    Ok(Verified::default())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::deliver;
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    // RFC 8032 §7.1, TEST 2 (discord-interactions-js's tests generate keys at run time,
    // so the RFC's vector pins the primitive).
    const RFC_SECRET: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
    const RFC_PUBLIC: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const RFC_SIG: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

    #[test]
    fn rfc_8032_test_2() {
        let key = decode_public_key(RFC_PUBLIC).unwrap();
        let sig = parse_header(RFC_SIG).unwrap();
        assert!(any_verifies(&[key], &[0x72], &sig));
        assert!(!any_verifies(&[key], &[0x73], &sig));
    }

    fn check(sig: &str, ts: &str, body: &str, now: i64) -> Result<Verified, Reject> {
        deliver(&[(HEADER, sig), (TIMESTAMP, ts)], body, "/", now, |d| {
            let other = SigningKey::from_bytes(&[7; 32]).verifying_key();
            verify(&[other, decode_public_key(RFC_PUBLIC).unwrap()], 300, d)
        })
    }

    #[test]
    fn interaction_signed_with_the_rfc_key() {
        let signer = SigningKey::from_bytes(&hex::decode(RFC_SECRET).unwrap().try_into().unwrap());
        let body = r#"{"type":1,"id":"787053080478613555"}"#;
        let sig = hex::encode(signer.sign(format!("1700000000{body}").as_bytes()).to_bytes());
        assert!(check(&sig, "1700000000", body, 1_700_000_100).is_ok());
        assert_eq!(
            check(&sig, "1700000000", &body.replace('1', "2"), 1_700_000_000),
            Err(Reject::Mismatch)
        );
        assert_eq!(check(&sig, "1700000001", body, 1_700_000_000), Err(Reject::Mismatch));
        assert_eq!(check(&sig, "1700000000", body, 1_700_000_301), Err(Reject::Stale));
        assert_eq!(
            check("abcd", "1700000000", body, 1_700_000_000),
            Err(Reject::Malformed(HEADER))
        );
        assert_eq!(decode_public_key("zz"), None);
    }
}
