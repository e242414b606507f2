//! Property tests: no header value, however hostile, makes a parser or a scheme panic.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::hmac::{Encoding, HmacSpec};
use super::mac::Algorithm;
use super::*;

const NAMES: [&str; 16] = [
    github::HEADER,
    "x-github-delivery",
    stripe::HEADER,
    slack::HEADER,
    slack::TIMESTAMP,
    shopify::HEADER,
    standard_webhooks::ID,
    standard_webhooks::TIMESTAMP,
    standard_webhooks::SIGNATURE,
    "svix-signature",
    linear::HEADER,
    twilio::HEADER,
    discord::HEADER,
    discord::TIMESTAMP,
    "x-sig",
    "x-shopify-webhook-id",
];

fn header_map(values: &[Vec<u8>]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in NAMES.iter().zip(values) {
        // Bytes a header value cannot hold are dropped, as the HTTP layer would refuse them.
        if let Ok(v) = HeaderValue::from_bytes(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    h
}

proptest! {
    #[test]
    fn parsers_never_panic(s in any::<String>()) {
        let _ = github::parse_header(&s);
        let _ = stripe::parse_header(&s);
        let _ = slack::parse_header(&s);
        let _ = shopify::parse_header(&s);
        let _ = standard_webhooks::parse_signatures(&s);
        let _ = standard_webhooks::decode_secret(&s);
        let _ = linear::parse_header(&s);
        let _ = twilio::parse_header(&s);
        let _ = twilio::signed_text(&s, s.as_bytes());
        let _ = discord::parse_header(&s);
        let _ = discord::decode_public_key(&s);
        let _ = parse_timestamp(&s, "t");
        let spec = HmacSpec { header: "x-sig".into(), algorithm: Algorithm::Sha1, encoding: Encoding::Base64, prefix: "v=".into() };
        let _ = spec.parse_header(&s);
    }

    #[test]
    fn schemes_never_panic(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 16),
        body in proptest::collection::vec(any::<u8>(), 0..200),
        path in "[ -~]{0,60}",
        now in any::<i64>(),
    ) {
        let h = header_map(&values);
        let fields = BodyFields::parse(&body);
        let d = Delivery { headers: &h, body: &body, fields: &fields, path_and_query: &path, now };
        let keys = vec![b"k".to_vec()];
        let _ = github::verify(&keys, &d);
        let _ = stripe::verify(&keys, 300, &d);
        let _ = slack::verify(&keys, 300, &d);
        let _ = shopify::verify(&keys, &d);
        let _ = standard_webhooks::verify(&keys, 300, &d);
        let _ = linear::verify(&keys, 60, &d);
        let _ = twilio::verify(&keys, "https://x", &d);
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
        let _ = discord::verify(&[key], 300, &d);
        let spec = HmacSpec { header: "x-sig".into(), algorithm: Algorithm::Sha256, encoding: Encoding::Hex, prefix: String::new() };
        let _ = spec.verify(&keys, &d);
    }
}
