//! CONTRACT §8: sources verified by their provider's signature (issue 13's acceptance).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use switchyard::ingest::signatures::mac::{Algorithm, compute};
use switchyard::ingest::signatures::stripe;

use crate::helpers::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// The Standard Webhooks secret of svix/svix-webhooks python/tests/test_webhooks.py.
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// RFC 8032 §7.1 TEST 2's secret key; its public key is DISCORD_PUBLIC.
const DISCORD_SECRET: [u8; 32] = [
    0x4c, 0xcd, 0x08, 0x9b, 0x28, 0xff, 0x96, 0xda, 0x9d, 0xb6, 0xc3, 0x46, 0xec, 0x11, 0x4e, 0x0f, 0x5b, 0x8a, 0x31,
    0x9f, 0x35, 0xab, 0xa6, 0x24, 0xda, 0x8c, 0xf6, 0xed, 0x4f, 0xb8, 0xa6, 0xfb,
];
const DISCORD_PUBLIC: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
const BASE_URL: &str = "https://hooks.example.com";

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn hex_mac(key: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(compute(Algorithm::Sha256, key, parts))
}

/// The provider shortcuts, each with one secret (GitHub with two, for rotation).
fn provider_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("GITHUB_WEBHOOK_SECRET", "gh-old, gh-new"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_stripe"),
        ("SLACK_SIGNING_SECRET", "slack-secret"),
        ("SHOPIFY_WEBHOOK_SECRET", "shop-secret"),
        ("STANDARD_WEBHOOKS_SECRET", WHSEC),
        ("LINEAR_WEBHOOK_SECRET", "lin-secret"),
        ("TWILIO_AUTH_TOKEN", "twilio-token"),
        ("DISCORD_PUBLIC_KEY", DISCORD_PUBLIC),
        ("PUBLIC_BASE_URL", BASE_URL),
        ("ADMIN_SECRET", "admin"),
    ]
}

/// A delivery: content type, body and headers.
struct Delivery {
    content_type: &'static str,
    body: String,
    headers: Vec<(String, String)>,
}

impl Delivery {
    fn json(body: String, headers: Vec<(&str, String)>) -> Delivery {
        let headers = headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        Delivery {
            content_type: "application/json",
            body,
            headers,
        }
    }
    fn without(&self, name: &str) -> Delivery {
        let headers = self.headers.iter().filter(|(k, _)| k != name).cloned().collect();
        Delivery {
            content_type: self.content_type,
            body: self.body.clone(),
            headers,
        }
    }
    fn with(&self, name: &str, value: &str) -> Delivery {
        let mut d = self.without(name);
        d.headers.push((name.to_string(), value.to_string()));
        d
    }
    fn tampered(&self) -> Delivery {
        // One body byte changed: the first digit becomes another one.
        let i = self.body.find(|c: char| c.is_ascii_digit()).expect("a digit to change");
        let mut body = self.body.clone().into_bytes();
        body[i] = if body[i] == b'9' { b'8' } else { body[i] + 1 };
        Delivery {
            content_type: self.content_type,
            body: String::from_utf8(body).unwrap(),
            headers: self.headers.clone(),
        }
    }
}

async fn send(app: &App, path: &str, d: &Delivery) -> (u16, Value) {
    let mut req = client()
        .post(format!("{}{path}", app.base))
        .header("content-type", d.content_type)
        .body(d.body.clone());
    for (k, v) in &d.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON reply {status}: {text}")),
    )
}

fn github(secret: &str, delivery: &str, n: u64) -> Delivery {
    let body = format!("{{\"zen\":\"Keep it simple.\",\"hook_id\":{n}}}");
    let sig = format!("sha256={}", hex_mac(secret.as_bytes(), &[body.as_bytes()]));
    Delivery::json(
        body,
        vec![
            ("x-hub-signature-256", sig),
            ("x-github-event", "ping".into()),
            ("x-github-delivery", delivery.into()),
        ],
    )
}

fn stripe_event(secret: &str, ts: i64, id: &str) -> Delivery {
    let body =
        format!("{{\"id\":\"{id}\",\"object\":\"event\",\"type\":\"charge.succeeded\",\"data\":{{\"amount\":2000}}}}");
    let sig = stripe::sign(secret.as_bytes(), ts, body.as_bytes());
    Delivery::json(body, vec![("stripe-signature", sig)])
}

fn slack(body: String, ts: i64) -> Delivery {
    let ts = ts.to_string();
    let sig = format!(
        "v0={}",
        hex_mac(b"slack-secret", &[b"v0:", ts.as_bytes(), b":", body.as_bytes()])
    );
    Delivery::json(
        body,
        vec![("x-slack-signature", sig), ("x-slack-request-timestamp", ts)],
    )
}

fn shopify(id: &str, n: u64) -> Delivery {
    let body = format!("{{\"id\":{n},\"email\":\"jon@example.com\"}}");
    let sig = B64.encode(compute(Algorithm::Sha256, b"shop-secret", &[body.as_bytes()]));
    Delivery::json(
        body,
        vec![
            ("x-shopify-hmac-sha256", sig),
            ("x-shopify-topic", "orders/create".into()),
            ("x-shopify-webhook-id", id.into()),
        ],
    )
}

fn standard(id: &str, ts: i64) -> Delivery {
    let key = B64.decode(WHSEC.trim_start_matches("whsec_")).unwrap();
    let body = r#"{"test": 2432232314}"#.to_string();
    let ts = ts.to_string();
    let sig = B64.encode(compute(
        Algorithm::Sha256,
        &key,
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body.as_bytes()],
    ));
    Delivery::json(
        body,
        vec![
            ("webhook-id", id.into()),
            ("webhook-timestamp", ts),
            ("webhook-signature", format!("v1,{sig}")),
        ],
    )
}

fn linear(ts_ms: i64) -> Delivery {
    let body =
        format!("{{\"action\":\"create\",\"type\":\"Issue\",\"data\":{{\"number\":7}},\"webhookTimestamp\":{ts_ms}}}");
    let sig = hex_mac(b"lin-secret", &[body.as_bytes()]);
    Delivery::json(
        body,
        vec![
            ("linear-signature", sig),
            ("linear-delivery", "234d1a4e-b617-4388-90fe-adc3633d6b72".into()),
        ],
    )
}

fn twilio() -> Delivery {
    let body = "CallSid=CA1234567890ABCDE&From=%2B14158675309&Digits=1234".to_string();
    let signed = format!("{BASE_URL}/webhook/twilio?x=1CallSidCA1234567890ABCDEDigits1234From+14158675309");
    let sig = B64.encode(compute(Algorithm::Sha1, b"twilio-token", &[signed.as_bytes()]));
    Delivery {
        content_type: "application/x-www-form-urlencoded",
        body,
        headers: vec![
            ("x-twilio-signature".into(), sig),
            ("i-twilio-idempotency-token".into(), "0b1c6d33-9a55".into()),
        ],
    }
}

fn discord(body: &str, ts: i64) -> Delivery {
    let ts = ts.to_string();
    let sig = SigningKey::from_bytes(&DISCORD_SECRET).sign(format!("{ts}{body}").as_bytes());
    Delivery::json(
        body.to_string(),
        vec![
            ("x-signature-ed25519", hex::encode(sig.to_bytes())),
            ("x-signature-timestamp", ts),
        ],
    )
}

/// How many events are stored: the next queued row's id minus one (ids are dense here).
async fn stored_count(app: &App) -> i64 {
    let (code, v) = app.post("/webhook", &format!("{{\"probe\":{}}}", now()), &[]).await;
    assert_eq!(code, 200, "{v}");
    v["row_id"].as_i64().unwrap() - 1
}

#[tokio::test]
async fn every_provider_verified_and_every_refusal_stores_nothing() {
    let app = App::spawn("http", &provider_env());
    let t = now();
    let discord_cmd = r#"{"type":2,"id":"787053080478613555","data":{"name":"ping"}}"#;
    // (path, good delivery, header whose absence or garbage must be refused, stale copy)
    let cases: Vec<(&str, Delivery, &str, Option<Delivery>)> = vec![
        (
            "/webhook/github",
            github("gh-new", "d-1", 1),
            "x-hub-signature-256",
            None,
        ),
        (
            "/webhook/stripe",
            stripe_event("whsec_stripe", t, "evt_1"),
            "stripe-signature",
            Some(stripe_event("whsec_stripe", t - 301, "evt_1")),
        ),
        (
            "/webhook/slack",
            slack(format!("{{\"event_id\":\"Ev01\",\"event\":{{\"n\":{t}}}}}"), t),
            "x-slack-signature",
            Some(slack("{\"n\":1}".into(), t - 301)),
        ),
        ("/webhook/shopify", shopify("w-1", 1), "x-shopify-hmac-sha256", None),
        (
            "/webhook/standard-webhooks",
            standard("msg_1", t),
            "webhook-signature",
            Some(standard("msg_1", t - 301)),
        ),
        (
            "/webhook/linear",
            linear(t * 1000),
            "linear-signature",
            Some(linear((t - 61) * 1000)),
        ),
        ("/webhook/twilio?x=1", twilio(), "x-twilio-signature", None),
        (
            "/webhook/discord",
            discord(discord_cmd, t),
            "x-signature-ed25519",
            Some(discord(discord_cmd, t - 301)),
        ),
    ];
    let mut stored = 0;
    for (path, good, sig_header, stale) in &cases {
        let mut bad = vec![
            ("tampered", good.tampered()),
            ("missing", good.without(sig_header)),
            ("malformed", good.with(sig_header, "v9=garbage")),
        ];
        if let Some(stale) = stale {
            bad.push((
                "stale",
                Delivery {
                    content_type: stale.content_type,
                    body: stale.body.clone(),
                    headers: stale.headers.clone(),
                },
            ));
        }
        for (what, d) in &bad {
            let (code, v) = send(&app, path, d).await;
            assert_eq!(
                (code, &v),
                (401, &json!({"ok": false, "error": "invalid signature"})),
                "{path} {what}"
            );
        }
        let (code, v) = send(&app, path, good).await;
        assert_eq!((code, v["status"].as_str()), (200, Some("queued")), "{path}: {v}");
        stored += 1;
        assert_eq!(v["row_id"], stored, "{path}: a refused delivery was stored");
    }
    assert_eq!(stored_count(&app).await, stored);
    // Delivery ids feed event_id (CONTRACT §8's list).
    let (_, v) = send(
        &app,
        "/webhook/stripe",
        &stripe_event("whsec_stripe", t, "evt_abcdef123"),
    )
    .await;
    assert_eq!(v["event_id"], "evt_abcdef123");
    let (_, v) = send(&app, "/webhook/linear", &linear(t * 1000)).await;
    assert_eq!(v["event_id"], "234d1a4e-b617-4388-90fe-adc3633d6b72");
    let (_, v) = send(&app, "/webhook/twilio?x=1", &twilio()).await;
    assert_eq!(
        (v["status"].as_str(), v["event_id"].as_str()),
        (Some("duplicate_ignored"), Some("0b1c6d33-9a55"))
    );
    let (_, v) = send(
        &app,
        "/webhook/slack",
        &slack(format!("{{\"event_id\":\"Ev02\",\"n\":{t}}}"), t),
    )
    .await;
    assert_eq!(v["event_id"], "Ev02");
    // X-Event-Id still comes first.
    let (_, v) = send(
        &app,
        "/webhook/github",
        &github("gh-new", "d-9", 9).with("x-event-id", "mine-1"),
    )
    .await;
    assert_eq!(v["event_id"], "mine-1");
}

#[tokio::test]
async fn rotation_ingress_secret_and_redelivery() {
    let mut env = provider_env();
    env.push(("INGRESS_SECRET", "ingress"));
    let app = App::spawn("http", &env);
    // Two secrets configured: either one verifies.
    for secret in ["gh-old", "gh-new"] {
        let (code, v) = send(&app, "/webhook/github", &github(secret, &format!("rot-{secret}"), 1)).await;
        assert_eq!((code, v["status"].as_str()), (200, Some("queued")), "{secret}: {v}");
    }
    assert_eq!(
        send(&app, "/webhook/github", &github("gh-other", "rot-x", 1)).await.0,
        401
    );
    // Stripe: two v1 entries, one matching.
    let t = now();
    let good = stripe_event("whsec_stripe", t, "evt_rotation1");
    let sig = good.headers[0].1.clone();
    let both = format!("t={t},v1={},{}", "0".repeat(64), sig.split(',').nth(1).unwrap());
    let (code, v) = send(&app, "/webhook/stripe", &good.with("stripe-signature", &both)).await;
    assert_eq!((code, v["status"].as_str()), (200, Some("queued")), "{v}");

    // INGRESS_SECRET does not apply to a source's path; it still guards the others.
    let d = github("gh-new", "ingress-1", 2);
    assert_eq!(send(&app, "/webhook/github", &d).await.1["status"], "queued");
    assert_eq!(send(&app, "/webhook", &d).await.0, 401);
    assert_eq!(send(&app, "/webhook/other", &d).await.0, 401);

    // A redelivery (same id, new signature) is a duplicate.
    let first = send(&app, "/webhook/github", &github("gh-new", "redeliver-1", 3))
        .await
        .1;
    let again = send(&app, "/webhook/github", &github("gh-old", "redeliver-1", 4))
        .await
        .1;
    assert_eq!(
        (again["status"].as_str(), &again["row_id"]),
        (Some("duplicate_ignored"), &first["row_id"])
    );
    let first = send(&app, "/webhook/shopify", &shopify("shop-77", 5)).await.1;
    let again = send(&app, "/webhook/shopify", &shopify("shop-77", 6)).await.1;
    assert_eq!(
        (again["status"].as_str(), &again["row_id"]),
        (Some("duplicate_ignored"), &first["row_id"])
    );
    let first = send(&app, "/webhook/standard-webhooks", &standard("msg_77", t)).await.1;
    let again = send(&app, "/webhook/standard-webhooks", &standard("msg_77", t + 1))
        .await
        .1;
    assert_eq!(first["event_id"], "msg_77");
    assert_eq!(
        (again["status"].as_str(), &again["row_id"]),
        (Some("duplicate_ignored"), &first["row_id"])
    );
}

#[tokio::test]
async fn challenges_are_answered_not_queued() {
    let app = App::spawn("http", &provider_env());
    let t = now();
    let challenge = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let d = slack(challenge.to_string(), t);
    assert_eq!(
        send(&app, "/webhook/slack", &d).await,
        (
            200,
            json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
        )
    );
    assert_eq!(
        send(&app, "/webhook/slack", &d.without("x-slack-signature")).await.0,
        401
    );
    let ping = discord(r#"{"type":1,"id":"787053080478613555","application_id":"7"}"#, t);
    assert_eq!(send(&app, "/webhook/discord", &ping).await, (200, json!({"type": 1})));
    assert_eq!(
        send(&app, "/webhook/discord", &ping.without("x-signature-ed25519"))
            .await
            .0,
        401
    );
    assert_eq!(stored_count(&app).await, 0, "handshakes are not queued");
}

fn write_config(dir: &Path, sources: Value) -> String {
    let path = dir.join("config.json");
    std::fs::write(&path, json!({"version": 1, "sources": sources}).to_string()).unwrap();
    path.display().to_string()
}

/// Runs `switchyard args…` expecting it to stop by itself with an error; returns stderr.
fn refused(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = std::process::Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("APP_DB_PATH", dir.join("data/events.sqlite3"))
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("switchyard {args:?} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn config_sources_two_stripe_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        json!([{"name": "stripe-eu", "scheme": "stripe", "secrets": ["env:STRIPE_EU_SECRET"]},
               {"name": "stripe-us", "scheme": "stripe", "secrets": ["whsec_us"], "tolerance_seconds": 60},
               {"name": "acme", "scheme": "hmac", "header": "X-Acme-Signature", "algorithm": "sha512",
                "encoding": "base64", "prefix": "v1=", "secrets": ["acme-1", "acme-2"], "provider": "acme"}]),
    );
    let env = [
        ("APP_CONFIG_PATH", config.as_str()),
        ("STRIPE_EU_SECRET", "whsec_eu"),
        ("ADMIN_SECRET", "admin"),
    ];
    let list = run_cli(dir.path(), &["sources", "list"], &env);
    let text = stdout(&list);
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(
        text.contains("stripe-eu") && text.contains("/webhook/stripe-us"),
        "{text}"
    );
    assert!(!text.contains("whsec"), "secrets are never shown: {text}");
    let row = text.lines().find(|l| l.starts_with("stripe-eu")).unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["stripe-eu", "/webhook/stripe-eu", "stripe", "stripe", "1"]
    );

    let app = App::spawn_in(dir.path(), "serve", &env);
    let t = now();
    let eu = stripe_event("whsec_eu", t, "evt_eu_000001");
    let us = stripe_event("whsec_us", t, "evt_us_000001");
    assert_eq!(
        send(&app, "/webhook/stripe-eu", &us).await.0,
        401,
        "each account has its own secret"
    );
    assert_eq!(send(&app, "/webhook/stripe-us", &eu).await.0, 401);
    assert_eq!(
        send(
            &app,
            "/webhook/stripe-us",
            &stripe_event("whsec_us", t - 61, "evt_us_old")
        )
        .await
        .0,
        401
    );
    // The generic hmac scheme: sha512, base64, with a prefix; either secret verifies.
    let body = r#"{"order": 42}"#.to_string();
    let acme_sig = |secret: &str| {
        format!(
            "v1={}",
            B64.encode(compute(Algorithm::Sha512, secret.as_bytes(), &[body.as_bytes()]))
        )
    };
    let acme = Delivery::json(body.clone(), vec![("x-acme-signature", acme_sig("acme-2"))]);
    assert_eq!(send(&app, "/webhook/acme", &acme.tampered()).await.0, 401);
    assert_eq!(
        send(
            &app,
            "/webhook/acme",
            &acme.with("x-acme-signature", &acme_sig("acme-3"))
        )
        .await
        .0,
        401
    );
    assert_eq!(
        send(
            &app,
            "/webhook/acme",
            &acme.with("x-acme-signature", &acme_sig("acme-1")[3..])
        )
        .await
        .0,
        401
    );
    let (code, v) = send(&app, "/webhook/acme", &acme).await;
    assert_eq!(code, 200, "{v}");
    let ev = app
        .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(20))
        .await;
    assert_eq!(ev["event"]["result"]["router"]["provider"], "acme");
    for (path, d) in [("/webhook/stripe-eu", &eu), ("/webhook/stripe-us", &us)] {
        let (code, v) = send(&app, path, d).await;
        assert_eq!(code, 200, "{v}");
        let ev = app
            .wait_status(v["row_id"].as_i64().unwrap(), "done", Duration::from_secs(20))
            .await;
        let router = &ev["event"]["result"]["router"];
        assert_eq!(
            (router["provider"].as_str(), router["confidence"].as_f64()),
            (Some("stripe"), Some(1.0)),
            "{ev}"
        );
        let name = path.trim_start_matches("/webhook/");
        assert!(
            router["reasons"]
                .as_array()
                .unwrap()
                .contains(&json!(format!("source:{name}"))),
            "{router}"
        );
    }
}

#[test]
fn bad_sources_stop_start_up_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        json!([{"name": "pay", "scheme": "paypal", "secrets": ["k"]}]),
    );
    let err = refused(dir.path(), &["http"], &[("APP_CONFIG_PATH", &config)]);
    assert!(err.contains("paypal") && err.contains("'pay'"), "{err}");
    let err = refused(dir.path(), &["mapping", "apply-config", "--config", &config], &[]);
    assert!(err.contains("paypal"), "{err}");

    let config = write_config(
        dir.path(),
        json!([{"name": "eu", "scheme": "stripe", "secrets": ["env:STRIPE_EU_SECRET"]}]),
    );
    let err = refused(dir.path(), &["serve"], &[("APP_CONFIG_PATH", &config)]);
    assert!(err.contains("STRIPE_EU_SECRET") && err.contains("'eu'"), "{err}");
    let err = refused(dir.path(), &["sources", "list"], &[("APP_CONFIG_PATH", &config)]);
    assert!(err.contains("STRIPE_EU_SECRET"), "{err}");

    let err = refused(dir.path(), &["http"], &[("TWILIO_AUTH_TOKEN", "t")]);
    assert!(err.contains("PUBLIC_BASE_URL"), "{err}");
    let err = refused(dir.path(), &["http"], &[("DISCORD_PUBLIC_KEY", "not-hex")]);
    assert!(err.contains("discord"), "{err}");
    let out = run_cli(dir.path(), &["sources", "list"], &[]);
    assert_eq!(stdout(&out).trim(), "no sources");
}
