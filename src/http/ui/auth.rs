//! Login, logout, and the middleware that guards every dashboard page and form.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use axum::Extension;
use axum::body::{Body, to_bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::UiState;
use super::form_body::MAX_FORM_BYTES;
use super::layout::page_bare;
use super::login_throttle::Attempt;
use super::session::{LOGIN_COOKIE, SESSION_COOKIE, SESSION_SECONDS, Session, cookie, set_cookie};
use crate::http::server::ClientAddr;
use crate::ingest::signature::secret_matches;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Only paths inside the dashboard may be redirected to (no open redirect).
fn local_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with("/ui")
                && n.bytes().all(|b| b.is_ascii_graphic())
                && !n
                    .split('?')
                    .next()
                    .is_some_and(|p| p.contains('\\') || p.contains("//")) =>
        {
            n
        }
        _ => "/ui",
    }
}

/// Lets a request through only with a valid session; forms also need its CSRF token.
///
/// A page without a session redirects to the login; a form without one, or without the
/// right `_csrf` field, is refused with 403 before any handler runs, so no handler can
/// forget the check. A session ended by a logout (in the store, so on every process) is
/// no session.
pub async fn require_session(State(state): State<UiState>, request: Request, next: Next) -> Response {
    let verified = cookie(request.headers(), SESSION_COOKIE)
        .and_then(|c| state.key.verify(c, now()))
        .map(|(nonce, expires_at)| (nonce.to_owned(), expires_at));
    let verified = match verified {
        Some((nonce, expires_at)) => match state.app.db.session_revoked(&nonce).await {
            Ok(false) => Some((nonce, expires_at)),
            Ok(true) => None,
            Err(e) => return crate::error::ApiError::Store(e).into_response(),
        },
        None => None,
    };
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    let Some((nonce, expires_at)) = verified else {
        if !is_read {
            return forbidden("your session has expired; sign in again");
        }
        let target = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/ui");
        let to = format!(
            "/ui/login?next={}",
            form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
        );
        return Redirect::to(&to).into_response();
    };
    let (mut parts, body) = request.into_parts();
    let body = if is_read {
        body
    } else {
        // `form_body::read_form` has read the body already, capped and within the
        // deadline; the form is parsed again by the handler.
        let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES as usize).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
        };
        let token = form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "_csrf")
            .map(|(_, v)| v);
        if !state.key.csrf_ok(&nonce, token.as_deref()) {
            return forbidden("this form is missing its security token; reload the page and try again");
        }
        Body::from(bytes)
    };
    parts.extensions.insert(Session {
        csrf: state.key.csrf_token(&nonce),
        nonce,
        expires_at,
    });
    next.run(Request::from_parts(parts, body)).await
}

fn forbidden(message: &str) -> Response {
    let body = page_bare(
        "Forbidden",
        html! { div.card { h1 { "Forbidden" } p { (message) } a href="/ui/login" { "Sign in" } } },
    );
    (StatusCode::FORBIDDEN, body).into_response()
}

/// Query of the login page.
#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// The login form; without `ADMIN_SECRET` there is nothing to ask, so it signs in at once.
pub async fn login_form(State(state): State<UiState>, Query(q): Query<LoginQuery>) -> Response {
    let next = local_next(q.next.as_deref()).to_owned();
    if state.app.settings.admin_secret.is_none() {
        return signed_in(&state, &next);
    }
    login_page(&state, &next, None)
}

fn login_page(state: &UiState, next: &str, error: Option<&str>) -> Response {
    let nonce = state.key.login_nonce();
    let csrf = state.key.csrf_token(&nonce);
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let body = page_bare(
        "Sign in",
        html! {
            form.card.login method="post" action="/ui/login" {
                h1 { "switchyard" }
                p.muted { "Enter the service's ADMIN_SECRET." }
                @if let Some(e) = error { p.flash.error { (e) } }
                input type="hidden" name="_csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label { "Admin secret" input type="password" name="secret" autocomplete="current-password" autofocus; }
                button.primary type="submit" { "Sign in" }
            }
        },
    );
    let mut response = (status, body).into_response();
    add_cookie(
        response.headers_mut(),
        &set_cookie(LOGIN_COOKIE, &nonce, 600, state.secure_cookies),
    );
    response
}

/// The login form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    secret: Option<String>,
    next: Option<String>,
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
}

/// Checks the secret and the form's token, then starts a session. Failures are logged and
/// throttled per client (`login_throttle`): past the limit, 429 with `Retry-After`.
pub async fn login(
    State(state): State<UiState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let next = local_next(form.next.as_deref()).to_owned();
    let nonce = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if nonce.is_empty() || !state.key.csrf_ok(nonce, form.csrf.as_deref()) {
        return forbidden("this form is missing its security token; reload the page and try again");
    }
    let Some(expected) = state.app.settings.admin_secret.as_deref() else {
        return signed_in(&state, &next);
    };
    let ip = client.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |Extension(ClientAddr(a))| a.ip());
    if let Attempt::Throttled(wait) = state.throttle.begin(ip, Instant::now()) {
        let seconds = wait.as_secs().max(1);
        tracing::warn!(remote = %ip, retry_after_s = seconds, "dashboard login throttled: too many failed attempts");
        return too_many_attempts(seconds);
    }
    if !secret_matches(expected, form.secret.as_deref()) {
        tracing::warn!(remote = %ip, "dashboard login failed: wrong admin secret");
        // Slows guessing down; the comparison itself is constant time.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        return login_page(&state, &next, Some("That is not the admin secret."));
    }
    state.throttle.succeeded(ip);
    signed_in(&state, &next)
}

fn too_many_attempts(retry_after: u64) -> Response {
    let body = page_bare(
        "Too many attempts",
        html! { div.card { h1 { "Too many attempts" } p { "Too many failed sign-ins from your address; try again in " (retry_after) " s." } } },
    );
    let mut response = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

fn signed_in(state: &UiState, next: &str) -> Response {
    let mut response = Redirect::to(next).into_response();
    let session = state.key.issue(now());
    let secure = state.secure_cookies;
    add_cookie(
        response.headers_mut(),
        &set_cookie(SESSION_COOKIE, &session, SESSION_SECONDS, secure),
    );
    add_cookie(response.headers_mut(), &set_cookie(LOGIN_COOKIE, "", 0, secure));
    response
}

/// Ends the session: its nonce is revoked in the store, so the cookie is refused by every
/// process even if the browser (or a thief) keeps it.
pub async fn logout(State(state): State<UiState>, Extension(session): Extension<Session>) -> Response {
    if let Err(e) = state.app.db.revoke_session(&session.nonce, session.expires_at).await {
        return crate::error::ApiError::Store(e).into_response();
    }
    let mut response = Redirect::to("/ui/login").into_response();
    add_cookie(
        response.headers_mut(),
        &set_cookie(SESSION_COOKIE, "", 0, state.secure_cookies),
    );
    response
}

fn add_cookie(headers: &mut HeaderMap, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.append(header::SET_COOKIE, v);
    }
}

/// Convenience for handlers: a 303 back to a dashboard page after a form.
pub fn see_other(to: &str) -> Response {
    Redirect::to(local_next(Some(to))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_inside_the_dashboard() {
        assert_eq!(local_next(Some("/ui/events?status=error")), "/ui/events?status=error");
        assert_eq!(local_next(Some("https://evil.example/")), "/ui");
        assert_eq!(local_next(Some("/ui//evil.example")), "/ui");
        assert_eq!(local_next(Some("/ui\\@evil")), "/ui");
        assert_eq!(local_next(Some("/ui\r\nSet-Cookie: x")), "/ui");
        assert_eq!(local_next(None), "/ui");
    }
}
