//! GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`.

use super::mac::{Algorithm, any_matches};
use super::{Delivery, Reject, Verified, header, header_id};

/// The signature header.
pub const HEADER: &str = "x-hub-signature-256";

/// Decodes the header's value: `sha256=` followed by 64 hex digits.
pub fn parse_header(value: &str) -> Result<Vec<u8>, Reject> {
    let hex_part = value.trim().strip_prefix("sha256=").ok_or(Reject::Malformed(HEADER))?;
    match hex::decode(hex_part) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => Err(Reject::Malformed(HEADER)),
    }
}

/// Verifies a GitHub delivery; its id is `X-GitHub-Delivery`.
pub fn verify(keys: &[Vec<u8>], d: &Delivery<'_>) -> Result<Verified, Reject> {
    let given = parse_header(header(d.headers, HEADER)?)?;
    if !any_matches(Algorithm::Sha256, keys, &[d.body], &[given]) {
        return Err(Reject::Mismatch);
    }
    Ok(Verified {
        delivery_id: header_id(d.headers, "x-github-delivery"),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::deliver;
    use super::*;

    fn check(secret: &str, body: &str, sig: &str) -> Result<Verified, Reject> {
        deliver(&[(HEADER, sig), ("x-github-delivery", "72d3162e")], body, "/", 0, |d| {
            verify(&[secret.as_bytes().to_vec()], d)
        })
    }

    #[test]
    fn official_vectors() {
        // octokit/webhooks-methods.js, test/verify.test.ts: secret "mysecret", the payload
        // {"foo":"bar"} as GitHub formats it (2-space indent, trailing newline).
        let body = "{\n  \"foo\": \"bar\"\n}\n";
        let sig = "sha256=e3eccac34c43c7dc1cbb905488b1b81347fcc700a7b025697a9d07862256023f";
        assert_eq!(
            check("mysecret", body, sig).unwrap().delivery_id.as_deref(),
            Some("72d3162e")
        );
        assert_eq!(check("foo", body, sig), Err(Reject::Mismatch));
        // docs.github.com "Validating webhook deliveries": "It's a Secret to Everybody".
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(check("It's a Secret to Everybody", "Hello, World!", sig).is_ok());
        assert_eq!(
            check("It's a Secret to Everybody", "Hello, World?", sig),
            Err(Reject::Mismatch)
        );
    }

    #[test]
    fn malformed_headers() {
        for bad in [
            "foo",
            "sha1=abc",
            "sha256=xxxccac3",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ] {
            assert_eq!(check("s", "b", bad), Err(Reject::Malformed(HEADER)), "{bad}");
        }
    }
}
