//! HMAC over several message parts, verified in constant time against any of several keys.

use hmac::{Hmac, Mac};

/// The hash under an HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA1 (Twilio).
    Sha1,
    /// HMAC-SHA256 (most providers).
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    /// Parses `sha1`, `sha256` or `sha512`.
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sha1" => Some(Algorithm::Sha1),
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
}

fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> M {
    // HMAC accepts keys of any length, so this never falls back.
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in parts {
        mac.update(part);
    }
    mac
}

/// HMAC(`key`, concatenation of `parts`).
pub fn compute(alg: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match alg {
        Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts).finalize().into_bytes().to_vec(),
        Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts).finalize().into_bytes().to_vec(),
        Algorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts).finalize().into_bytes().to_vec(),
    }
}

/// True when `given` equals HMAC(`key`, `parts`); constant time, wrong lengths refused.
pub fn verify(alg: Algorithm, key: &[u8], parts: &[&[u8]], given: &[u8]) -> bool {
    match alg {
        Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts).verify_slice(given).is_ok(),
        Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts).verify_slice(given).is_ok(),
        Algorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts).verify_slice(given).is_ok(),
    }
}

/// True when any key verifies any of the `given` signatures.
pub fn any_matches(alg: Algorithm, keys: &[Vec<u8>], parts: &[&[u8]], given: &[Vec<u8>]) -> bool {
    keys.iter()
        .any(|key| given.iter().any(|sig| verify(alg, key, parts, sig)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_case_2() {
        // RFC 4231 test case 2 (key "Jefe").
        let tag = compute(Algorithm::Sha256, b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(&tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify(
            Algorithm::Sha256,
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &tag
        ));
        assert!(!verify(
            Algorithm::Sha256,
            b"Jefe",
            &[b"what do ya want for nothing!"],
            &tag
        ));
        assert!(!verify(
            Algorithm::Sha256,
            b"Jefe",
            &[b"what do ya want for nothing?"],
            &tag[..31]
        ));
        // RFC 2202 test case 2 for HMAC-SHA1.
        assert_eq!(
            hex::encode(compute(Algorithm::Sha1, b"Jefe", &[b"what do ya want for nothing?"])),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(compute(Algorithm::Sha512, b"k", &[b"m"]).len(), 64);
    }

    #[test]
    fn any_key_any_signature() {
        let good = compute(Algorithm::Sha256, b"new", &[b"body"]);
        let keys = vec![b"old".to_vec(), b"new".to_vec()];
        assert!(any_matches(
            Algorithm::Sha256,
            &keys,
            &[b"body"],
            &[vec![1, 2], good.clone()]
        ));
        assert!(!any_matches(Algorithm::Sha256, &keys[..1], &[b"body"], &[good]));
    }
}
