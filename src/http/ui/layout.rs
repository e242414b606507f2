//! The page shell (navigation, stylesheet, script), shared fragments (status badges,
//! pretty JSON, times) and the security headers of every dashboard response.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{Html, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::Session;
use crate::domain::{EventStatus, RunStatus};

/// Where the stylesheet is served (versioned so a new build is never served stale CSS).
pub const CSS_PATH: &str = concat!("/ui/static/app.css?v=", env!("CARGO_PKG_VERSION"));
/// Where the script is served.
pub const JS_PATH: &str = concat!("/ui/static/app.js?v=", env!("CARGO_PKG_VERSION"));

/// The navigation entries: path, label.
const NAV: &[(&str, &str)] = &[
    ("/ui/overview", "Overview"),
    ("/ui/events", "Events"),
    ("/ui/routing", "Routing"),
    ("/ui/schedules", "Schedules"),
    ("/ui/spend", "Spend"),
];

/// A full dashboard page with navigation; `active` is the nav path to highlight.
pub fn page(title: &str, active: &str, session: &Session, content: Markup) -> Html<String> {
    let body = html! {
        header.top {
            a.brand href="/ui/overview" { "switchyard" }
            nav {
                @for (path, label) in NAV {
                    a href=(path) class=[(*path == active).then_some("active")] { (label) }
                }
            }
            form.logout method="post" action="/ui/logout" {
                (csrf_field(session))
                button.link type="submit" { "Sign out" }
            }
        }
        main { (content) }
    };
    document(title, body)
}

/// A page without navigation (login, errors).
pub fn page_bare(title: &str, content: Markup) -> Html<String> {
    document(title, html! { main.narrow { (content) } })
}

fn document(title: &str, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · switchyard" }
                link rel="stylesheet" href=(CSS_PATH);
                link rel="icon" href="data:,";
                script src=(JS_PATH) defer {}
            }
            body { (body) }
        }
    };
    Html(markup.into_string())
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="_csrf" value=(session.csrf); }
}

/// A coloured badge for an event or run status.
pub fn status_badge(status: &str) -> Markup {
    // Only known statuses become CSS classes; anything else read from a row is shown as is.
    let known = status.parse::<EventStatus>().is_ok() || status.parse::<RunStatus>().is_ok();
    let class = if known { status } else { "other" };
    html! { span class={ "badge " (class) } { (status) } }
}

/// JSON text pretty-printed for reading (kept as given when it does not parse).
pub fn pretty_json(text: &str) -> Markup {
    let pretty = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned());
    html! { pre.json { (pretty) } }
}

/// A stored timestamp shortened for tables: `2026-01-02 03:04:05` (UTC).
pub fn short_time(ts: Option<&str>) -> String {
    match ts {
        Some(t) if t.len() >= 19 => format!("{} {}", &t[..10], &t[11..19]),
        Some(t) => t.to_owned(),
        None => String::new(),
    }
}

/// Adds the headers that keep the dashboard's pages from being framed, sniffed or
/// running any script but its own.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
               connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_escaped() {
        let m = pretty_json(r#"{"x":"<script>alert(1)</script>"}"#).into_string();
        assert!(m.contains("&lt;script&gt;"), "{m}");
        assert!(!m.contains("<script>"));
        let b = status_badge("<b>").into_string();
        assert!(b.contains("badge other") && b.contains("&lt;b&gt;"), "{b}");
    }

    #[test]
    fn times_are_shortened() {
        assert_eq!(
            short_time(Some("2026-01-02T03:04:05.123456+00:00")),
            "2026-01-02 03:04:05"
        );
        assert_eq!(short_time(Some("odd")), "odd");
        assert_eq!(short_time(None), "");
    }
}
