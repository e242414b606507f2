//! Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:<ts>:" + body)>` with
//! `X-Slack-Request-Timestamp` within the tolerance.

use super::mac::{Algorithm, any_matches};
use super::{BodyFields, Delivery, Reject, Verified, check_age, header, parse_timestamp};

/// The signature header.
pub const HEADER: &str = "x-slack-signature";
/// The timestamp header.
pub const TIMESTAMP: &str = "x-slack-request-timestamp";

/// Decodes `v0=<64 hex>`.
pub fn parse_header(value: &str) -> Result<Vec<u8>, Reject> {
    let hex_part = value.trim().strip_prefix("v0=").ok_or(Reject::Malformed(HEADER))?;
    match hex::decode(hex_part) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => Err(Reject::Malformed(HEADER)),
    }
}

/// Verifies a Slack request; its id is the Events API body's `event_id`.
pub fn verify(keys: &[Vec<u8>], tolerance: i64, d: &Delivery<'_>) -> Result<Verified, Reject> {
    let given = parse_header(header(d.headers, HEADER)?)?;
    let ts_text = header(d.headers, TIMESTAMP)?;
    let ts = parse_timestamp(ts_text, TIMESTAMP)?;
    let parts: [&[u8]; 4] = [b"v0:", ts_text.as_bytes(), b":", d.body];
    if !any_matches(Algorithm::Sha256, keys, &parts, &[given]) {
        return Err(Reject::Mismatch);
    }
    check_age(ts, d.now, tolerance)?;
    Ok(Verified {
        delivery_id: BodyFields::id_string(d.fields.event_id.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::deliver;
    use super::*;

    // slackapi/python-slack-sdk, tests/slack_sdk/signature/test_signature_verifier.py
    // (the example of docs.slack.dev "Verifying requests from Slack").
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const TS: &str = "1531420618";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn check(sig: &str, ts: &str, body: &str, now: i64) -> Result<Verified, Reject> {
        deliver(&[(HEADER, sig), (TIMESTAMP, ts)], body, "/", now, |d| {
            verify(&[SECRET.as_bytes().to_vec()], 300, d)
        })
    }

    #[test]
    fn official_vector() {
        assert!(check(SIG, TS, BODY, 1531420618).is_ok());
        assert_eq!(
            check(SIG, TS, &format!("{BODY}------"), 1531420618),
            Err(Reject::Mismatch)
        );
        assert_eq!(check(SIG, TS, BODY, 1531420618 + 301), Err(Reject::Stale));
        assert_eq!(check(SIG, "1531420619", BODY, 1531420618), Err(Reject::Mismatch));
        assert_eq!(check("v1=a2", TS, BODY, 1531420618), Err(Reject::Malformed(HEADER)));
        assert_eq!(
            check(SIG, "yesterday", BODY, 1531420618),
            Err(Reject::Malformed(TIMESTAMP))
        );
    }
}
