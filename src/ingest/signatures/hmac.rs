//! The generic `hmac` scheme of config-file sources: a named header carrying
//! `[prefix]<hex|base64 HMAC(secret, body)>`.

use base64::Engine;

use super::mac::{Algorithm, any_matches};
use super::{Delivery, Reject, Verified};

/// How the signature is written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Hexadecimal (either case).
    Hex,
    /// Standard base64.
    Base64,
}

/// A generic HMAC scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacSpec {
    /// Lower-case header name.
    pub header: String,
    /// The hash.
    pub algorithm: Algorithm,
    /// How the signature is written.
    pub encoding: Encoding,
    /// Text before the signature (such as `sha256=`), required when set.
    pub prefix: String,
}

impl HmacSpec {
    /// Decodes a header value into signature bytes.
    pub fn parse_header(&self, value: &str) -> Result<Vec<u8>, Reject> {
        let malformed = Reject::Malformed("hmac signature header");
        let body = value.trim().strip_prefix(self.prefix.as_str()).ok_or(malformed)?;
        match self.encoding {
            Encoding::Hex => hex::decode(body).map_err(|_| malformed),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|_| malformed),
        }
    }

    /// Verifies a delivery (no delivery id: the generic rules of §2 apply).
    pub fn verify(&self, keys: &[Vec<u8>], d: &Delivery<'_>) -> Result<Verified, Reject> {
        let value = d
            .headers
            .get(self.header.as_str())
            .ok_or(Reject::Missing("hmac signature header"))?
            .to_str()
            .map_err(|_| Reject::Malformed("hmac signature header"))?;
        let given = self.parse_header(value)?;
        if !any_matches(self.algorithm, keys, &[d.body], &[given]) {
            return Err(Reject::Mismatch);
        }
        Ok(Verified::default())
    }
}

#[cfg(test)]
mod tests {
    use super::super::mac::compute;
    use super::super::test_support::deliver;
    use super::*;

    fn check(spec: &HmacSpec, value: &str, body: &str) -> Result<Verified, Reject> {
        deliver(&[(spec.header.as_str(), value)], body, "/", 0, |d| {
            spec.verify(&[b"k".to_vec()], d)
        })
    }

    #[test]
    fn every_algorithm_and_encoding() {
        for alg in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            let tag = compute(alg, b"k", &[b"body"]);
            let hex_spec = HmacSpec {
                header: "x-sig".into(),
                algorithm: alg,
                encoding: Encoding::Hex,
                prefix: "v=".into(),
            };
            assert!(check(&hex_spec, &format!("v={}", hex::encode(&tag)), "body").is_ok());
            assert_eq!(
                check(&hex_spec, &hex::encode(&tag), "body"),
                Err(Reject::Malformed("hmac signature header"))
            );
            assert_eq!(
                check(&hex_spec, &format!("v={}", hex::encode(&tag)), "bodY"),
                Err(Reject::Mismatch)
            );
            let b64_spec = HmacSpec {
                encoding: Encoding::Base64,
                prefix: String::new(),
                ..hex_spec
            };
            let b64 = base64::engine::general_purpose::STANDARD.encode(&tag);
            assert!(check(&b64_spec, &b64, "body").is_ok());
        }
    }
}
