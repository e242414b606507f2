//! The `Host` check against DNS rebinding (CONTRACT §11).
//!
//! While `ADMIN_SECRET` is unset, the operator API and the dashboard need no credentials:
//! anyone who can connect may read, replay and cancel events. A web page can make a
//! visitor's browser connect: its own host name, re-resolved to 127.0.0.1 (DNS
//! rebinding), is then same-origin with this service, and the page can read the replies.
//! The browser still sends the page's host name in `Host`, so those routes answer only a
//! loopback `Host` or one listed in `ALLOWED_HOSTS`; others get 403. With `ADMIN_SECRET`
//! set the secret guards them and no check is made. Webhook ingest is never checked.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::HOST;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The host names answered besides loopback (`ALLOWED_HOSTS`).
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    names: Vec<String>,
    any: bool,
}

impl AllowedHosts {
    /// From `ALLOWED_HOSTS`: names compared without port and case; `*` allows any host.
    pub fn new(list: &[String]) -> AllowedHosts {
        let names: Vec<String> = list
            .iter()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        AllowedHosts {
            any: names.iter().any(|h| h == "*"),
            names,
        }
    }

    /// Whether a request whose `Host` header is `host` may be answered.
    pub fn allows(&self, host: Option<&str>) -> bool {
        if self.any {
            return true;
        }
        let Some(name) = host.and_then(host_name) else {
            return false;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        is_loopback(&name) || self.names.contains(&name)
    }
}

/// The host of a `Host` value without its port (`[::1]:80` → `::1`).
fn host_name(host: &str) -> Option<&str> {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map(|(ip, _)| ip);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => Some(name),
        Some(_) => None,
        None => Some(host),
    }
}

fn is_loopback(name: &str) -> bool {
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses a request whose `Host` is neither loopback nor allowed (a middleware, mounted on
/// the operator routes and `/ui` only while `ADMIN_SECRET` is unset).
pub async fn require_allowed_host(State(allowed): State<Arc<AllowedHosts>>, request: Request, next: Next) -> Response {
    let host = request.headers().get(HOST).and_then(|v| v.to_str().ok());
    if allowed.allows(host) {
        return next.run(request).await;
    }
    ApiError::Forbidden(
        "this Host is not allowed: while ADMIN_SECRET is unset, only loopback and the hosts in ALLOWED_HOSTS are answered"
            .into(),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_hosts_pass_others_do_not() {
        let allowed = AllowedHosts::new(&["Switchyard.Internal".into(), " ops.example. ".into()]);
        for ok in [
            "127.0.0.1:8080",
            "127.1.2.3",
            "localhost",
            "LOCALHOST:80",
            "[::1]:8080",
            "switchyard.internal",
            "switchyard.internal:9000",
            "ops.example",
        ] {
            assert!(allowed.allows(Some(ok)), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1:8080",
            "[::2]:80",
            "switchyard.internal:port",
            "",
        ] {
            assert!(!allowed.allows(Some(refused)), "{refused}");
        }
        assert!(!allowed.allows(None));
        assert!(AllowedHosts::new(&["*".into()]).allows(Some("anything.example")));
    }
}
