//! What of a request may be stored (CONTRACT §11 "Headers stored") and how URLs are shown.
//!
//! The service's own secret headers authenticate the sender to us; stored, they would reach
//! every handler, every `GET /events` reader and the database's backups. Credentials meant
//! for someone else (`Authorization`, cookies) are kept as a marker so rules can still see
//! that they were sent.

/// Headers carrying this service's own secrets: never stored, shown or passed on.
pub const SECRET_HEADERS: &[&str] = &["x-ingress-secret", "x-cron-secret", "x-admin-secret"];

/// Headers carrying credentials: stored as [`REDACTED`] unless `STORE_SENSITIVE_HEADERS=1`.
pub const SENSITIVE_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization", "set-cookie"];

/// The value stored in place of a sensitive header's.
pub const REDACTED: &str = "[redacted]";

/// What happens to one header when an event is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderPolicy {
    /// Not stored at all.
    Drop,
    /// Stored as [`REDACTED`].
    Redact,
    /// Stored as received.
    Keep,
}

/// The policy for header `name` (any case).
pub fn header_policy(name: &str, store_sensitive: bool) -> HeaderPolicy {
    let is = |list: &[&str]| list.iter().any(|h| h.eq_ignore_ascii_case(name));
    if is(SECRET_HEADERS) {
        HeaderPolicy::Drop
    } else if !store_sensitive && is(SENSITIVE_HEADERS) {
        HeaderPolicy::Redact
    } else {
        HeaderPolicy::Keep
    }
}

/// `url` without its user name, password, query string and fragment, for messages and
/// logs (a `DATABASE_URL` password or a token in a query must not reach them). Text that
/// does not parse as a URL is reduced to what precedes any `@`, `?` or `#`.
pub fn url_for_display(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.has_host() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        _ => {
            let scheme_end = url.find("://").map_or(0, |i| i + 3);
            let (scheme, rest) = url.split_at(scheme_end);
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let end = rest.find(['?', '#']).unwrap_or(rest.len());
            format!("{scheme}{}", &rest[..end])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_headers_dropped_sensitive_redacted() {
        assert_eq!(header_policy("x-ingress-secret", true), HeaderPolicy::Drop);
        assert_eq!(header_policy("X-Admin-Secret", false), HeaderPolicy::Drop);
        assert_eq!(header_policy("x-cron-secret", false), HeaderPolicy::Drop);
        assert_eq!(header_policy("authorization", false), HeaderPolicy::Redact);
        assert_eq!(header_policy("Cookie", false), HeaderPolicy::Redact);
        assert_eq!(header_policy("set-cookie", false), HeaderPolicy::Redact);
        assert_eq!(header_policy("proxy-authorization", false), HeaderPolicy::Redact);
        assert_eq!(header_policy("authorization", true), HeaderPolicy::Keep);
        assert_eq!(header_policy("x-github-event", false), HeaderPolicy::Keep);
    }

    #[test]
    fn urls_lose_credentials_query_and_fragment() {
        assert_eq!(
            url_for_display("postgres://app:hunter2@db.internal:5432/prod?sslmode=require"),
            "postgres://db.internal:5432/prod"
        );
        assert_eq!(
            url_for_display("https://api.example.com/hook?token=abc#x"),
            "https://api.example.com/hook"
        );
        assert_eq!(url_for_display("http://127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(url_for_display("not a url user:pw@host?k=v"), "host");
        assert_eq!(url_for_display("x://u:p@h/p?q"), "x://h/p");
    }
}
