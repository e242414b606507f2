//! Twilio: `X-Twilio-Signature: <base64 HMAC-SHA1(auth token, URL + sorted form params)>`.
//! The URL is `PUBLIC_BASE_URL` + the request path and query (what Twilio was told to
//! call). A JSON body is signed through the URL instead: its SHA-256 rides in the
//! `bodySHA256` query parameter.

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::mac::{Algorithm, any_matches};
use super::{Delivery, Reject, Verified, header, header_id};

/// The signature header.
pub const HEADER: &str = "x-twilio-signature";

/// Decodes the base64 signature (20 bytes of HMAC-SHA1).
pub fn parse_header(value: &str) -> Result<Vec<u8>, Reject> {
    match base64::engine::general_purpose::STANDARD.decode(value.trim()) {
        Ok(bytes) if bytes.len() == 20 => Ok(bytes),
        _ => Err(Reject::Malformed(HEADER)),
    }
}

/// The signed text: `url`, then every form parameter as `name + value`, sorted by name
/// and then value (as Twilio's SDKs do for repeated names).
pub fn signed_text(url: &str, form: &[u8]) -> String {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(form).into_owned().collect();
    params.sort();
    params.dedup();
    let mut text = String::from(url);
    for (k, v) in params {
        text.push_str(&k);
        text.push_str(&v);
    }
    text
}

/// The `bodySHA256` query parameter of `url`, if any.
fn body_sha256(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned())
}

/// Verifies a Twilio request against `base_url` (no trailing slash); its id is
/// `I-Twilio-Idempotency-Token`.
pub fn verify(keys: &[Vec<u8>], base_url: &str, d: &Delivery<'_>) -> Result<Verified, Reject> {
    let given = parse_header(header(d.headers, HEADER)?)?;
    let url = format!("{base_url}{}", d.path_and_query);
    let text = match body_sha256(&url) {
        Some(expected) => {
            let actual = hex::encode(Sha256::digest(d.body));
            if !bool::from(actual.as_bytes().ct_eq(expected.to_ascii_lowercase().as_bytes())) {
                return Err(Reject::Mismatch);
            }
            url
        }
        None => signed_text(&url, d.body),
    };
    if !any_matches(Algorithm::Sha1, keys, &[text.as_bytes()], &[given]) {
        return Err(Reject::Mismatch);
    }
    Ok(Verified {
        delivery_id: header_id(d.headers, "i-twilio-idempotency-token"),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::deliver;
    use super::*;

    // twilio/twilio-python, tests/unit/test_request_validator.py: token "12345".
    const TOKEN: &[u8] = b"12345";
    const BASE: &str = "https://mycompany.com";
    const PATH: &str = "/myapp.php?foo=1&bar=2";
    const FORM: &str =
        "CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309&To=%2B18005551212&Caller=%2B14158675309";

    fn check(sig: &str, path: &str, body: &str) -> Result<Verified, Reject> {
        deliver(
            &[(HEADER, sig), ("i-twilio-idempotency-token", "0b1c6d33-9a55")],
            body,
            path,
            0,
            |d| verify(&[TOKEN.to_vec()], BASE, d),
        )
    }

    #[test]
    fn official_vectors() {
        let v = check("RSOYDt4T1cUTdK1PDd93/VVr8B8=", PATH, FORM).unwrap();
        assert_eq!(v.delivery_id.as_deref(), Some("0b1c6d33-9a55"));
        // Repeated names (test_compute_signature_duplicate_query_dict).
        let dup = "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234";
        assert!(check("IK+Dwps556ElfBT0I3Rgjkr1wJU=", PATH, dup).is_ok());
        // A JSON body signed through bodySHA256 (test_validation_of_body_succeeds).
        let body = "{\"property\": \"value\", \"boolean\": true}";
        let path = format!("{PATH}&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620");
        assert!(check("a9nBmqA0ju/hNViExpshrM61xv4=", &path, body).is_ok());
        assert_eq!(
            check("a9nBmqA0ju/hNViExpshrM61xv4=", &path, "{}"),
            Err(Reject::Mismatch)
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            check("RSOYDt4T1cUTdK1PDd93/VVr8B8=", PATH, &FORM.replace("1234", "1235")),
            Err(Reject::Mismatch)
        );
        assert_eq!(
            check("RSOYDt4T1cUTdK1PDd93/VVr8B8=", "/myapp.php?foo=1", FORM),
            Err(Reject::Mismatch)
        );
        assert_eq!(check("not-base64", PATH, FORM), Err(Reject::Malformed(HEADER)));
    }
}
