//! The web dashboard at `/ui`: server-rendered pages over the JSON API.
//!
//! A page is a template rendered for the signed-in user; its data comes from the JSON API, fetched
//! by `dashboard.js` with the session cookie, so every page sees and refuses exactly what the API
//! does. The session is a token in an HttpOnly, SameSite=Strict cookie; unsafe API requests made
//! with it must echo the session's CSRF value (see `auth`), and so must the sign-out form.

mod pages;

use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::auth::{self, Caller, SESSION_COOKIE};
use crate::handlers::tokens::log_in;
use crate::state::AppState;
use duma_common::api_error::ApiError;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/ui", web::get().to(home))
        .route("/ui/", web::get().to(home))
        .route("/ui/sign-in", web::get().to(sign_in_form))
        .route("/ui/sign-in", web::post().to(sign_in))
        .route("/ui/sign-out", web::post().to(sign_out))
        .route("/ui/static/{file}", web::get().to(pages::asset));
    for page in pages::PAGES {
        config.route(
            page.path,
            web::get().to(move |req, state| show(page, req, state)),
        );
    }
}

/// Browsers asking for `/` get the dashboard; API clients keep the plain answer.
pub fn wants_html(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

async fn home() -> HttpResponse {
    redirect("/ui/train_jobs")
}

/// The signed-in user of a page request, and the session's CSRF value.
struct Session {
    caller: Caller,
    csrf: String,
}

async fn session(req: &HttpRequest, state: &AppState) -> Option<Session> {
    let cookie = req.cookie(SESSION_COOKIE)?;
    let (caller, claims) = auth::authenticate(state, cookie.value()).await.ok()?;
    Some(Session {
        caller,
        csrf: claims.csrf?,
    })
}

async fn show(
    page: &'static pages::Page,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> HttpResponse {
    match session(&req, &state).await {
        Some(session) => pages::show(page, &req, &state, &session.caller, &session.csrf),
        None => {
            let next = req.uri().path_and_query().map_or("/ui/", |p| p.as_str());
            redirect(&format!(
                "/ui/sign-in?next={}",
                url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            ))
        }
    }
}

#[derive(Deserialize)]
struct SignInQuery {
    next: Option<String>,
}

/// Only a path of the dashboard: a sign-in link cannot send the browser elsewhere.
fn next_page(next: Option<&str>) -> &str {
    match next {
        Some(next) if next.starts_with("/ui/") && !next.starts_with("/ui//") => next,
        _ => "/ui/",
    }
}

async fn sign_in_form(query: web::Query<SignInQuery>) -> HttpResponse {
    pages::sign_in(next_page(query.next.as_deref()), None, "")
}

#[derive(Deserialize)]
struct SignInForm {
    email: String,
    password: String,
    next: Option<String>,
}

async fn sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: Result<web::Form<SignInForm>, actix_web::Error>,
) -> HttpResponse {
    let Ok(form) = form else {
        return pages::sign_in("/ui/", Some("enter an email and a password"), "");
    };
    let next = next_page(form.next.as_deref());
    if !same_origin(&req) {
        return pages::sign_in(
            next,
            Some("sign in from the dashboard's own page"),
            &form.email,
        );
    }
    let address = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let signed_in = log_in(&state, &address, &form.email, &form.password)
        .await
        .and_then(|user| state.tokens.issue_session(user.id, user.user_type));
    match signed_in {
        Ok(token) => {
            let max_age = time::Duration::seconds(
                i64::try_from(state.tokens.ttl().as_secs()).unwrap_or(i64::MAX / 2),
            );
            let cookie = session_cookie(&req, token).max_age(max_age).finish();
            HttpResponse::SeeOther()
                .cookie(cookie)
                .insert_header((header::LOCATION, next))
                .finish()
        }
        Err(error) => pages::sign_in(next, Some(&message(&error)), &form.email),
    }
}

#[derive(Deserialize)]
struct SignOutForm {
    csrf: String,
}

async fn sign_out(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: Result<web::Form<SignOutForm>, actix_web::Error>,
) -> HttpResponse {
    // Signing out is refused to a form of another site (it would know no CSRF value).
    let known = match (session(&req, &state).await, form) {
        (Some(session), Ok(form)) => auth::same_secret(&session.csrf, &form.csrf),
        (None, _) => true,
        (Some(_), Err(_)) => false,
    };
    if !known {
        return HttpResponse::Forbidden()
            .content_type("text/plain; charset=utf-8")
            .body("sign out from the dashboard's own page");
    }
    let mut cookie = session_cookie(&req, String::new()).finish();
    cookie.make_removal();
    HttpResponse::SeeOther()
        .cookie(cookie)
        .insert_header((header::LOCATION, "/ui/sign-in"))
        .finish()
}

fn session_cookie(req: &HttpRequest, token: String) -> actix_web::cookie::CookieBuilder<'static> {
    Cookie::build(SESSION_COOKIE, token)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
}

/// A form post must come from a page of this origin when the browser says where it came from
/// (`Sec-Fetch-Site`, then `Origin`).
fn same_origin(req: &HttpRequest) -> bool {
    let fetch_site = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|site| site == "cross-site" || site == "same-site") {
        return false;
    }
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let host = req.connection_info().host().to_owned();
    origin
        .to_str()
        .ok()
        .and_then(|origin| url::Url::parse(origin).ok())
        .is_some_and(|origin| {
            let port = origin.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}{port}", origin.host_str().unwrap_or_default()) == host
        })
}

fn message(error: &ApiError) -> String {
    match error {
        ApiError::Rejected { message, .. } | ApiError::RetryLater { message, .. } => {
            message.clone()
        }
        ApiError::Internal(cause) => {
            tracing::error!(error = format!("{cause:#}"), "dashboard sign-in failed");
            "the server failed; its log has the details".to_owned()
        }
    }
}
