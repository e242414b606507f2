//! The dashboard's guards over real HTTP (the browser tests in tests/browser/ walk the
//! pages themselves): login, session cookie, CSRF, escaping, DASHBOARD=0.

use crate::helpers::*;

pub(crate) fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Value of `name` in the response's Set-Cookie headers.
pub(crate) fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The value attribute of the hidden `_csrf` input of a page.
pub(crate) fn csrf_of(html: &str) -> String {
    let i = html.find(r#"name="_csrf" value=""#).expect("csrf field") + r#"name="_csrf" value=""#.len();
    html[i..].chars().take_while(|c| *c != '"').collect()
}

pub(crate) fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

/// A dashboard page of `app`, which runs without `ADMIN_SECRET` (so the login form signs
/// in at once).
pub(crate) async fn open_page(app: &App, path: &str) -> String {
    let c = no_redirects();
    let signed_in = c.get(format!("{}/ui/login", app.base)).send().await.unwrap();
    let cookie = cookie_pair(&set_cookie(&signed_in, "sy_session").expect("session cookie"));
    let page = c
        .get(format!("{}{path}", app.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "{path}");
    page.text().await.unwrap()
}

/// Logs in through the form and returns the session's `Cookie` header value.
pub(crate) async fn login(app: &App, secret: &str) -> reqwest::Response {
    let c = no_redirects();
    let form = c.get(format!("{}/ui/login", app.base)).send().await.unwrap();
    let pre = cookie_pair(&set_cookie(&form, "sy_login").expect("login cookie"));
    let csrf = csrf_of(&form.text().await.unwrap());
    c.post(format!("{}/ui/login", app.base))
        .header("cookie", pre)
        .form(&[("_csrf", csrf.as_str()), ("secret", secret), ("next", "/ui/events")])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn pages_need_a_session_and_forms_need_the_token() {
    let app = App::spawn("http", &[("ADMIN_SECRET", "s3cret")]);
    let c = no_redirects();
    for path in ["/ui", "/ui/events", "/ui/events/1", "/ui/routing", "/ui/schedules"] {
        let r = c.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
        let to = r.headers()["location"].to_str().unwrap();
        assert!(to.starts_with("/ui/login?next="), "{path} -> {to}");
    }

    let wrong = login(&app, "nope").await;
    assert_eq!(wrong.status(), 401);
    assert!(set_cookie(&wrong, "sy_session").is_none());

    let ok = login(&app, "s3cret").await;
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/ui/events");
    let session = set_cookie(&ok, "sy_session").expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(session.contains(attr), "{session} lacks {attr}");
    }
    let cookie = cookie_pair(&session);

    let page = c
        .get(format!("{}/ui/events", app.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let csrf = csrf_of(&page.text().await.unwrap());

    let (_, queued) = app.post("/webhook", r#"{"x": "<script>alert(1)</script>"}"#, &[]).await;
    let id = queued["row_id"].as_i64().unwrap();
    let replay = format!("{}/ui/events/{id}/replay", app.base);
    for form in [vec![], vec![("_csrf", "0".repeat(64))]] {
        let r = c
            .post(&replay)
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "form {form:?}");
    }
    let r = c.post(&replay).form(&[("_csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 403, "a token without its session");
    let r = c
        .post(&replay)
        .header("cookie", &cookie)
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);

    let html = c
        .get(format!("{}/ui/events/{id}", app.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script>alert"));

    // A forged or tampered session is no session.
    let forged = cookie.replace('0', "1");
    let r = c
        .get(format!("{}/ui/events", app.base))
        .header("cookie", forged + "f")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn dashboard_off_serves_nothing() {
    let app = App::spawn("http", &[("DASHBOARD", "0")]);
    let r = no_redirects()
        .get(format!("{}/ui/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
