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

/// `base_url` as given plus, like Twilio's SDKs, the same URL with its port removed (when
/// it has one) or with the scheme's default port added (when it has none).
pub fn base_variants(base_url: &str) -> Vec<String> {
    let mut out = vec![base_url.to_string()];
    let Some((scheme, rest)) = base_url.split_once("://") else {
        return out;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // An IPv6 literal's colons are inside brackets; a port follows the last `]`.
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    match authority[host_end..].rfind(':') {
        Some(i) => out.push(format!("{scheme}://{}{path}", &authority[..host_end + i])),
        None => match scheme.to_ascii_lowercase().as_str() {
            "https" => out.push(format!("{scheme}://{authority}:443{path}")),
            "http" => out.push(format!("{scheme}://{authority}:80{path}")),
            _ => {}
        },
    }
    out
}

/// Verifies a Twilio request against `base_url` (no trailing slash); its id is
/// `I-Twilio-Idempotency-Token`.
pub fn verify(keys: &[Vec<u8>], base_url: &str, d: &Delivery<'_>) -> Result<Verified, Reject> {
    let given = parse_header(header(d.headers, HEADER)?)?;
    for base in base_variants(base_url) {
        let url = format!("{base}{}", d.path_and_query);
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
        if any_matches(Algorithm::Sha1, keys, &[text.as_bytes()], std::slice::from_ref(&given)) {
            return Ok(Verified {
                delivery_id: header_id(d.headers, "i-twilio-idempotency-token"),
            });
        }
    }
    Err(Reject::Mismatch)
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
        check_at(BASE, sig, path, body)
    }

    fn check_at(base: &str, sig: &str, path: &str, body: &str) -> Result<Verified, Reject> {
        deliver(
            &[(HEADER, sig), ("i-twilio-idempotency-token", "0b1c6d33-9a55")],
            body,
            path,
            0,
            |d| verify(&[TOKEN.to_vec()], base, d),
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
    fn ports_as_the_sdks_treat_them() {
        // Same file: test_validation_removes_port_on_https, _adds_port_on_https,
        // _adds_port_on_http and _removes_port_on_http.
        assert!(check_at("https://mycompany.com:1234", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", PATH, FORM).is_ok());
        assert!(check_at(BASE, "kvajT1Ptam85bY51eRf/AJRuM3w=", PATH, FORM).is_ok());
        assert!(check_at("http://mycompany.com", "0ZXoZLH/DfblKGATFgpif+LLRf4=", PATH, FORM).is_ok());
        assert!(check_at("http://mycompany.com:1234", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", PATH, FORM).is_ok());
        assert_eq!(
            base_variants("https://[::1]:8443/hooks"),
            ["https://[::1]:8443/hooks", "https://[::1]/hooks"]
        );
        assert_eq!(base_variants("ftp://x"), ["ftp://x"]);
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
