//! Dashboard sessions: a signed cookie, and CSRF tokens bound to it.
//!
//! The cookie is `<expiry>.<nonce>.<mac>`: the HMAC covers expiry and nonce, so a cookie
//! cannot be forged or extended without the key. The key is derived from `ADMIN_SECRET`
//! (sessions survive a restart and are shared by instances), or is random per process when
//! no secret is set. A form's CSRF token is an HMAC of the nonce of the cookie it was
//! rendered for, so a page from another origin cannot produce one.

use std::io::Read;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "sy_session";
/// Name of the pre-login cookie that binds the login form's CSRF token.
pub const LOGIN_COOKIE: &str = "sy_login";
/// How long a session lasts.
pub const SESSION_SECONDS: i64 = 12 * 3600;

/// The signed-in session of a request, put in its extensions by `auth::require_session`.
#[derive(Clone)]
pub struct Session {
    /// The token every form of this session must carry as `_csrf`.
    pub csrf: String,
    /// The cookie's nonce: what a logout revokes in the store.
    pub nonce: String,
    /// When the cookie expires (Unix seconds): how long the revocation must be kept.
    pub expires_at: i64,
}

/// The key that signs sessions and CSRF tokens.
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// Derives the key from the admin secret, or draws a random one when there is none.
    pub fn new(admin_secret: Option<&str>) -> SessionKey {
        match admin_secret {
            Some(secret) => SessionKey(mac(secret.as_bytes(), b"switchyard dashboard session key v1")),
            None => SessionKey(random_bytes()),
        }
    }

    /// A new session cookie value valid until `now + SESSION_SECONDS`.
    pub fn issue(&self, now: i64) -> String {
        let nonce = hex::encode(&random_bytes()[..16]);
        let expiry = now + SESSION_SECONDS;
        let sig = hex::encode(mac(&self.0, format!("session|{expiry}|{nonce}").as_bytes()));
        format!("{expiry}.{nonce}.{sig}")
    }

    /// A fresh nonce for the login form (no session yet).
    pub fn login_nonce(&self) -> String {
        hex::encode(&random_bytes()[..16])
    }

    /// The nonce and expiry of a valid, unexpired session cookie.
    pub fn verify<'c>(&self, cookie: &'c str, now: i64) -> Option<(&'c str, i64)> {
        let mut parts = cookie.splitn(3, '.');
        let (expiry, nonce, sig) = (parts.next()?, parts.next()?, parts.next()?);
        let expiry_at: i64 = expiry.parse().ok()?;
        let expected = hex::encode(mac(&self.0, format!("session|{expiry}|{nonce}").as_bytes()));
        let valid: bool = expected.as_bytes().ct_eq(sig.as_bytes()).into();
        (valid && expiry_at > now).then_some((nonce, expiry_at))
    }

    /// The CSRF token of forms rendered for `nonce`.
    pub fn csrf_token(&self, nonce: &str) -> String {
        hex::encode(mac(&self.0, format!("csrf|{nonce}").as_bytes()))
    }

    /// Whether `token` is the CSRF token for `nonce` (constant time).
    pub fn csrf_ok(&self, nonce: &str, token: Option<&str>) -> bool {
        let Some(token) = token else { return false };
        self.csrf_token(nonce).as_bytes().ct_eq(token.as_bytes()).into()
    }
}

fn mac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// 32 bytes from the kernel's CSPRNG; falls back to time and address entropy mixed
/// through SHA-256 only if `/dev/urandom` cannot be read.
fn random_bytes() -> [u8; 32] {
    let mut buf = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if read.is_err() {
        use sha2::Digest;
        let seed = format!("{:?}{:p}{}", std::time::SystemTime::now(), &buf, std::process::id());
        buf = Sha256::digest(seed.as_bytes()).into();
    }
    buf
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for a dashboard cookie (`max_age` 0 deletes it); `secure` when the
/// service is reached over HTTPS (`PUBLIC_BASE_URL` is `https://…`), so the browser never
/// sends it over plain HTTP.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_session_verifies_until_expiry() {
        let key = SessionKey::new(Some("s3cret"));
        let cookie = key.issue(1_000);
        let (nonce, expires_at) = key.verify(&cookie, 1_001).expect("valid");
        assert_eq!(nonce.len(), 32);
        assert_eq!(expires_at, 1_000 + SESSION_SECONDS);
        assert!(key.verify(&cookie, 1_000 + SESSION_SECONDS).is_none(), "expired");
    }

    #[test]
    fn tampered_or_foreign_cookies_are_refused() {
        let key = SessionKey::new(Some("s3cret"));
        let cookie = key.issue(1_000);
        let (expiry, rest) = cookie.split_once('.').expect("dot");
        let extended = format!("{}.{rest}", expiry.parse::<i64>().expect("n") + 1);
        assert!(key.verify(&extended, 1_001).is_none());
        assert!(SessionKey::new(Some("other")).verify(&cookie, 1_001).is_none());
        assert!(key.verify("garbage", 1_001).is_none());
        assert!(key.verify("", 1_001).is_none());
        // The same secret gives the same key: sessions survive restarts.
        assert!(SessionKey::new(Some("s3cret")).verify(&cookie, 1_001).is_some());
    }

    #[test]
    fn csrf_token_is_bound_to_the_nonce() {
        let key = SessionKey::new(None);
        let token = key.csrf_token("abc");
        assert!(key.csrf_ok("abc", Some(&token)));
        assert!(!key.csrf_ok("abd", Some(&token)));
        assert!(!key.csrf_ok("abc", None));
        assert!(!key.csrf_ok("abc", Some("")));
    }

    #[test]
    fn cookie_header_parsing() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "a=1; sy_session=x.y.z; b=2".parse().expect("hv"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("x.y.z"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn cookies_are_secure_only_behind_https() {
        assert!(set_cookie(SESSION_COOKIE, "v", 60, true).ends_with("; Secure"));
        assert!(!set_cookie(SESSION_COOKIE, "v", 60, false).contains("Secure"));
    }
}
