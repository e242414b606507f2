//! HMAC-SHA256 request signatures, compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// True when `header` is `sha256=<hex>` or bare 64-hex of HMAC-SHA256(`secret`, `body`).
pub fn verify_hmac_sha256(secret: &[u8], body: &[u8], header: &str) -> bool {
    let header = header.trim();
    let hex_part = header.strip_prefix("sha256=").unwrap_or(header);
    let Ok(given) = hex::decode(hex_part) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    // verify_slice compares in constant time and rejects a wrong length.
    mac.verify_slice(&given).is_ok()
}

/// Hex HMAC-SHA256 of `body`, as a sender would compute it (tests, docs, the CLI).
pub fn sign_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time comparison of a presented secret with the configured one.
pub fn secret_matches(expected: &str, given: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    let Some(given) = given else { return false };
    // Compare digests so the length of the secret does not leak through timing either.
    use sha2::Digest;
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(given.as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_and_bare_hex_accepted_wrong_refused() {
        let sig = sign_hex(b"k", b"body");
        assert_eq!(sig.len(), 64);
        assert!(verify_hmac_sha256(b"k", b"body", &format!("sha256={sig}")));
        assert!(verify_hmac_sha256(b"k", b"body", &sig));
        assert!(!verify_hmac_sha256(b"k", b"body2", &sig));
        assert!(!verify_hmac_sha256(b"other", b"body", &sig));
        assert!(!verify_hmac_sha256(b"k", b"body", "sha256=zz"));
        assert!(!verify_hmac_sha256(b"k", b"body", &sig[..62]));
        assert!(!verify_hmac_sha256(b"k", b"body", ""));
    }

    #[test]
    fn secrets_compare() {
        assert!(secret_matches("abc", Some("abc")));
        assert!(!secret_matches("abc", Some("abd")));
        assert!(!secret_matches("abc", Some("")));
        assert!(!secret_matches("abc", None));
    }
}
