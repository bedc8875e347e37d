//! The dashboard's session: sign-in through the form, the HttpOnly cookie, CSRF on every unsafe
//! request made with it, sign-out, and a ban ending the session at once. (The pages themselves
//! are driven in Chromium by scripts/smoke/dashboard.py.)

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

use duma_e2e::admin::{TestApp, spawn_app};
use duma_e2e::client::{PASSWORD, SUPERADMIN};

/// A browser-like client: no redirects followed, cookies sent by hand.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(headers: &HeaderMap) -> &str {
    headers.get(LOCATION).unwrap().to_str().unwrap()
}

/// Signs in through the form; returns the `Cookie` header value and the page's CSRF value.
async fn sign_in(app: &TestApp, email: &str) -> (String, String) {
    let response = browser()
        .post(app.url("/ui/sign-in"))
        .form(&[
            ("email", email),
            ("password", PASSWORD),
            ("next", "/ui/datasets"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(response.headers()), "/ui/datasets");
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attribute), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = browser()
        .get(app.url("/ui/datasets"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
    let html = page.text().await.unwrap();
    let csrf = html
        .split("<meta name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    assert_eq!(csrf.len(), 32, "{html}");
    (cookie, csrf)
}

#[tokio::test]
async fn a_session_cookie_reads_the_api_but_writes_only_with_its_csrf_value() {
    let app = spawn_app().await;
    let (cookie, csrf) = sign_in(&app, SUPERADMIN).await;
    let client = browser();
    let users = client
        .get(app.url("/users"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), StatusCode::OK);

    let create = |header: Option<&str>| {
        let mut request = client
            .post(app.url("/users"))
            .header("cookie", &cookie)
            .json(&json!({"email": format!("u{}@x.io", header.map_or(0, str::len)), "password": "pw-12345678", "user_type": "APP_DEVELOPER"}));
        if let Some(value) = header {
            request = request.header("x-csrf-token", value);
        }
        request.send()
    };
    let forged = create(None).await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.text().await.unwrap().contains("X-CSRF-Token"));
    let wrong = create(Some(&"0".repeat(32))).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert!(wrong.text().await.unwrap().contains("does not match"));
    assert_eq!(create(Some(&csrf)).await.unwrap().status(), StatusCode::OK);

    // A bearer token needs no CSRF value: no browser sends it on its own.
    let bearer = app
        .post(
            Some(&app.superadmin),
            "/users",
            json!({"email": "bearer@x.io", "password": "pw-12345678", "user_type": "APP_DEVELOPER"}),
        )
        .await;
    assert_eq!(bearer.status(), StatusCode::OK);
}

#[tokio::test]
async fn signing_in_and_out_refuses_other_sites_and_foreign_redirects() {
    let app = spawn_app().await;
    let client = browser();
    // Pages need a session; the sign-in link brings the user back to the page asked for.
    let page = client.get(app.url("/ui/models")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(page.headers()), "/ui/sign-in?next=%2Fui%2Fmodels");
    // A browser at `/` is sent to the dashboard; an API client still gets the plain answer.
    let root = client
        .get(app.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(location(root.headers()), "/ui/");
    let plain = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(plain.text().await.unwrap(), "Duma admin is up.");

    let form = |password: &'static str, next: &'static str| {
        client.post(app.url("/ui/sign-in")).form(&[
            ("email", SUPERADMIN),
            ("password", password),
            ("next", next),
        ])
    };
    let wrong = form("wrong", "/ui/").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(wrong.text().await.unwrap().contains("wrong password"));
    // Only the dashboard's own paths are followed after signing in.
    for next in [
        "https://evil.example/",
        "//evil.example/ui/",
        "/ui//evil.example",
    ] {
        let response = form(PASSWORD, next).send().await.unwrap();
        assert_eq!(location(response.headers()), "/ui/", "{next}");
    }
    // A form on another site cannot sign the browser in.
    let cross = form(PASSWORD, "/ui/")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::UNAUTHORIZED);
    assert!(cross.headers().get(SET_COOKIE).is_none());
    let cross_site = form(PASSWORD, "/ui/")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::UNAUTHORIZED);

    // Signing out needs the session's CSRF value and removes the cookie.
    let (cookie, csrf) = sign_in(&app, SUPERADMIN).await;
    let sign_out = |value: &str| {
        client
            .post(app.url("/ui/sign-out"))
            .header("cookie", &cookie)
            .form(&[("csrf", value.to_owned())])
            .send()
    };
    assert_eq!(
        sign_out("forged").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let out = sign_out(&csrf).await.unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let removal = out.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        removal.starts_with("duma_session=;") && removal.contains("Max-Age=0"),
        "{removal}"
    );
}

#[tokio::test]
async fn a_ban_ends_the_users_dashboard_session_at_once() {
    let app = spawn_app().await;
    let user = app.user("APP_DEVELOPER").await;
    let (cookie, _) = sign_in(&app, &user.email).await;
    let banned = app
        .delete(
            Some(&app.superadmin),
            "/users",
            Some(json!({"email": user.email})),
        )
        .await;
    assert_eq!(banned.status(), StatusCode::OK);
    let client = browser();
    let page = client
        .get(app.url("/ui/datasets"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    let api = client
        .get(app.url("/datasets"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn deployment_metrics_check_the_window_and_the_deployment_before_asking_prometheus() {
    let app = spawn_app().await;
    let user = app.user("APP_DEVELOPER").await;
    let too_long = app
        .get(Some(&user.token), "/deployments/web/metrics?minutes=100000")
        .await;
    assert_eq!(too_long.status(), StatusCode::BAD_REQUEST);
    assert!(
        too_long
            .text()
            .await
            .unwrap()
            .contains("minutes must be from 5")
    );
    let unknown = app.get(Some(&user.token), "/deployments/web/metrics").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}
