//! The pages: their paths and templates, rendering, and the static assets.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use minijinja::{Environment, context};

use crate::auth::Caller;
use crate::state::AppState;

/// A page of the dashboard: its route and the template that renders it.
pub struct Page {
    pub path: &'static str,
    pub template: &'static str,
    pub title: &'static str,
    /// The navigation entry it belongs to.
    pub section: &'static str,
}

const fn entry(
    path: &'static str,
    template: &'static str,
    title: &'static str,
    section: &'static str,
) -> Page {
    Page {
        path,
        template,
        title,
        section,
    }
}

pub const PAGES: &[Page] = &[
    entry("/ui/datasets", "datasets.html", "Datasets", "datasets"),
    entry("/ui/models", "models.html", "Models", "models"),
    entry("/ui/models/{model_id}", "model.html", "Model", "models"),
    entry(
        "/ui/train_jobs",
        "train_jobs.html",
        "Train jobs",
        "train_jobs",
    ),
    entry(
        "/ui/train_jobs/new",
        "train_job_new.html",
        "New train job",
        "train_jobs",
    ),
    entry(
        "/ui/train_jobs/{app}/{app_version}",
        "train_job.html",
        "Train job",
        "train_jobs",
    ),
    entry("/ui/trials/{trial_id}", "trial.html", "Trial", "train_jobs"),
    entry(
        "/ui/inference_jobs",
        "inference_jobs.html",
        "Inference jobs",
        "inference_jobs",
    ),
    entry(
        "/ui/deployments",
        "deployments.html",
        "Deployments",
        "deployments",
    ),
    entry(
        "/ui/deployments/{name}",
        "deployment.html",
        "Deployment",
        "deployments",
    ),
    entry(
        "/ui/evaluations",
        "evaluations.html",
        "Evaluations",
        "evaluations",
    ),
    entry("/ui/users", "users.html", "Users", "users"),
];

const TEMPLATES: &[(&str, &str)] = &[
    (
        "layout.html",
        include_str!("../../dashboard/templates/layout.html"),
    ),
    (
        "sign_in.html",
        include_str!("../../dashboard/templates/sign_in.html"),
    ),
    (
        "datasets.html",
        include_str!("../../dashboard/templates/datasets.html"),
    ),
    (
        "models.html",
        include_str!("../../dashboard/templates/models.html"),
    ),
    (
        "model.html",
        include_str!("../../dashboard/templates/model.html"),
    ),
    (
        "train_jobs.html",
        include_str!("../../dashboard/templates/train_jobs.html"),
    ),
    (
        "train_job_new.html",
        include_str!("../../dashboard/templates/train_job_new.html"),
    ),
    (
        "train_job.html",
        include_str!("../../dashboard/templates/train_job.html"),
    ),
    (
        "trial.html",
        include_str!("../../dashboard/templates/trial.html"),
    ),
    (
        "inference_jobs.html",
        include_str!("../../dashboard/templates/inference_jobs.html"),
    ),
    (
        "deployments.html",
        include_str!("../../dashboard/templates/deployments.html"),
    ),
    (
        "deployment.html",
        include_str!("../../dashboard/templates/deployment.html"),
    ),
    (
        "evaluations.html",
        include_str!("../../dashboard/templates/evaluations.html"),
    ),
    (
        "users.html",
        include_str!("../../dashboard/templates/users.html"),
    ),
    (
        "try_it.html",
        include_str!("../../dashboard/templates/try_it.html"),
    ),
];

/// Scripts and styles, served from the binary.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("../../dashboard/static/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../../dashboard/static/dashboard.css"),
    ),
];

fn templates() -> &'static Environment<'static> {
    static ENVIRONMENT: OnceLock<Environment<'static>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut environment = Environment::new();
        environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            environment
                .add_template(name, source)
                .unwrap_or_else(|e| panic!("dashboard template {name}: {e:#}"));
        }
        environment
    })
}

pub fn render(template: &str, context: minijinja::Value) -> Result<String, minijinja::Error> {
    templates().get_template(template)?.render(context)
}

/// A page for the signed-in `caller`; the route's parameters become the page's data attributes.
pub fn show(
    page: &Page,
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    csrf: &str,
) -> HttpResponse {
    let params: BTreeMap<&str, &str> = req.match_info().iter().collect();
    let context = context! {
        title => page.title,
        section => page.section,
        params => params,
        csrf => csrf,
        user => context! {
            id => caller.id.to_string(),
            email => caller.email,
            user_type => caller.user_type.to_string(),
            is_admin => caller.is_admin(),
        },
    };
    html(render(page.template, context), state)
}

pub fn sign_in(next: &str, error: Option<&str>, email: &str) -> HttpResponse {
    let context = context! { title => "Sign in", next => next, error => error, email => email };
    let mut response = secured(if error.is_some() {
        HttpResponse::Unauthorized()
    } else {
        HttpResponse::Ok()
    });
    match render("sign_in.html", context) {
        Ok(body) => response.content_type("text/html; charset=utf-8").body(body),
        Err(e) => failed(&e),
    }
}

fn html(rendered: Result<String, minijinja::Error>, state: &AppState) -> HttpResponse {
    match rendered {
        Ok(body) => secured(HttpResponse::Ok())
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                content_security_policy(state.settings.admin.predictor_hostname()),
            ))
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(e) => failed(&e),
    }
}

fn failed(error: &minijinja::Error) -> HttpResponse {
    tracing::error!(error = format!("{error:#}"), "rendering a dashboard page");
    HttpResponse::InternalServerError()
        .content_type("text/plain; charset=utf-8")
        .body("the dashboard failed to render this page; the admin's log has the details")
}

/// Pages run only this origin's script, are never framed and never cached; the "try it" box
/// may reach the predictors' host.
fn content_security_policy(predictor_host: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' http://{predictor_host}:* https://{predictor_host}:*; \
         frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    )
}

fn secured(mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
    builder
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; \
             form-action 'self'; base-uri 'none'; object-src 'none'",
        ));
    builder
}

pub async fn asset(file: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(name, ..)| *name == file.as_str()) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .content_type(*content_type)
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(*body),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body("no such dashboard file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every page renders for a user (a template error would otherwise surface only when the
    /// page is opened), with its route's parameters escaped into its data attributes.
    #[test]
    fn every_page_renders_and_escapes_what_it_is_given() {
        for page in PAGES {
            let context = context! {
                title => page.title,
                section => page.section,
                params => BTreeMap::from([("app", "<b>\"x\"</b>"), ("app_version", "1"), ("name", "n"), ("model_id", "m"), ("trial_id", "t")]),
                csrf => "c5rf",
                user => context! { id => "u", email => "a@b", user_type => "ADMIN", is_admin => true },
            };
            let html = render(page.template, context)
                .unwrap_or_else(|e| panic!("{}: {e:#}", page.template));
            assert!(
                html.contains("<meta name=\"csrf-token\" content=\"c5rf\">"),
                "{}",
                page.template
            );
            assert!(
                html.contains("data-app=\"&lt;b&gt;&quot;x&quot;&lt;&#x2f;b&gt;\""),
                "{}",
                page.template
            );
            assert!(!html.contains("<b>\"x\"</b>"), "{}", page.template);
        }
        let html = render(
            "sign_in.html",
            context! { title => "Sign in", next => "/ui/", error => "wrong <password>", email => "" },
        )
        .unwrap();
        assert!(html.contains("wrong &lt;password&gt;"));
    }
}
