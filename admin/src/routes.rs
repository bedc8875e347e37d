//! The route table: every route of Rafiki's admin API, in one place.

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, Resource, Route, web};

use crate::handlers::{
    actions, datasets, deployments, evaluations, inference_jobs, models, prediction_keys, tokens,
    train_jobs, trials, users,
};
use crate::openapi;
use duma_common::api_error::{ApiError, ErrorCode};

pub fn configure(config: &mut web::ServiceConfig) {
    for (path, routes) in table() {
        config.service(resource(path, routes));
    }
    config.configure(crate::dashboard::configure);
}

/// Every path and the handler of each of its methods.
fn table() -> Vec<(&'static str, Vec<(Method, Route)>)> {
    vec![
        ("/", vec![(Method::GET, web::to(index))]),
        (
            "/openapi.json",
            vec![(Method::GET, web::to(openapi::document))],
        ),
        ("/tokens", vec![(Method::POST, web::to(tokens::create))]),
        (
            "/users",
            vec![
                (Method::POST, web::to(users::create)),
                (Method::GET, web::to(users::list)),
                (Method::DELETE, web::to(users::ban)),
            ],
        ),
        (
            "/datasets",
            vec![
                (Method::POST, web::to(datasets::create)),
                (Method::GET, web::to(datasets::list)),
            ],
        ),
        ("/models", vec![(Method::POST, web::to(models::create))]),
        (
            "/models/available",
            vec![(Method::GET, web::to(models::available))],
        ),
        (
            "/models/{model_id}",
            vec![
                (Method::GET, web::to(models::get)),
                (Method::DELETE, web::to(models::delete)),
            ],
        ),
        (
            "/models/{model_id}/model_file",
            vec![(Method::GET, web::to(models::model_file))],
        ),
        (
            "/train_jobs",
            vec![
                (Method::POST, web::to(train_jobs::create)),
                (Method::GET, web::to(train_jobs::list)),
            ],
        ),
        (
            "/train_jobs/{app}",
            vec![(Method::GET, web::to(train_jobs::list_by_app))],
        ),
        (
            "/train_jobs/{app}/{app_version}",
            vec![(Method::GET, web::to(train_jobs::get))],
        ),
        (
            "/train_jobs/{app}/{app_version}/stop",
            vec![(Method::POST, web::to(train_jobs::stop))],
        ),
        (
            "/train_jobs/{app}/{app_version}/trials",
            vec![(Method::GET, web::to(train_jobs::trials))],
        ),
        (
            "/trials/{trial_id}",
            vec![(Method::GET, web::to(trials::get))],
        ),
        (
            "/trials/{trial_id}/logs",
            vec![(Method::GET, web::to(trials::logs))],
        ),
        (
            "/trials/{trial_id}/parameters",
            vec![(Method::GET, web::to(trials::parameters))],
        ),
        (
            "/inference_jobs",
            vec![
                (Method::POST, web::to(inference_jobs::create)),
                (Method::GET, web::to(inference_jobs::list)),
            ],
        ),
        (
            // SINGA-Auto's checkpoint route; an app named `checkpoint` is still listed here.
            "/inference_jobs/checkpoint",
            vec![
                (Method::POST, web::to(inference_jobs::create_by_checkpoint)),
                (Method::GET, web::to(inference_jobs::list_checkpoint_app)),
            ],
        ),
        (
            "/inference_jobs/{app}",
            vec![(Method::GET, web::to(inference_jobs::list_by_app))],
        ),
        (
            "/inference_jobs/{app}/{app_version}",
            vec![(Method::GET, web::to(inference_jobs::get))],
        ),
        (
            "/inference_jobs/{app}/{app_version}/stop",
            vec![(Method::POST, web::to(inference_jobs::stop))],
        ),
        (
            "/deployments",
            vec![
                (Method::POST, web::to(deployments::create)),
                (Method::GET, web::to(deployments::list)),
            ],
        ),
        (
            "/deployments/{name}",
            vec![
                (Method::GET, web::to(deployments::get)),
                (Method::PATCH, web::to(deployments::update)),
                (Method::DELETE, web::to(deployments::delete)),
            ],
        ),
        (
            "/deployments/{name}/metrics",
            vec![(Method::GET, web::to(deployments::metrics))],
        ),
        (
            "/deployments/{name}/rollback",
            vec![(Method::POST, web::to(deployments::rollback))],
        ),
        (
            "/evaluations",
            vec![
                (Method::POST, web::to(evaluations::create)),
                (Method::GET, web::to(evaluations::list)),
            ],
        ),
        (
            "/evaluations/{evaluation_id}",
            vec![(Method::GET, web::to(evaluations::get))],
        ),
        (
            "/apps/{app}/evaluations",
            vec![(Method::GET, web::to(evaluations::compare))],
        ),
        (
            "/apps/{app}/prediction_keys",
            vec![
                (Method::POST, web::to(prediction_keys::create)),
                (Method::GET, web::to(prediction_keys::list)),
            ],
        ),
        (
            "/apps/{app}/prediction_keys/{key_id}",
            vec![(Method::DELETE, web::to(prediction_keys::delete))],
        ),
        (
            "/actions/stop_all_jobs",
            vec![(Method::POST, web::to(actions::stop_all_jobs))],
        ),
    ]
}

/// A resource answering `routes`, and 405 with an `Allow` header to any other method.
fn resource(path: &str, routes: Vec<(Method, Route)>) -> Resource {
    let allow = routes
        .iter()
        .map(|(method, _)| method.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut resource = web::resource(path);
    for (method, route) in routes {
        resource = resource.route(route.method(method));
    }
    resource.default_service(web::to(move |req: HttpRequest| {
        let allow = allow.clone();
        async move {
            let refused = ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{} {} is not a route; {allow} is", req.method(), req.path()),
            );
            let mut response = HttpResponse::build(refused.code().status());
            response.insert_header((header::ALLOW, allow));
            refused.respond(response)
        }
    }))
}

/// Browsers are sent to the dashboard; API clients get a plain answer.
async fn index(req: HttpRequest) -> HttpResponse {
    if crate::dashboard::wants_html(&req) {
        return crate::dashboard::redirect("/ui/");
    }
    HttpResponse::Ok()
        .content_type("text/plain")
        .body("Duma admin is up.")
}

/// Unknown routes and methods: a JSON 404/405 like every other error.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::RouteNotFound,
        format!("no route {} {}", req.method(), req.path()),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use utoipa::OpenApi;

    use super::*;

    /// Paths served but not part of the documented API.
    const UNDOCUMENTED: [&str; 2] = ["/", "/openapi.json"];

    /// The OpenAPI document is generated from the handlers' annotations; this keeps it and the
    /// route table from drifting apart, in both directions.
    #[test]
    fn the_openapi_document_describes_exactly_the_route_table() {
        let served: BTreeSet<(String, String)> = table()
            .into_iter()
            .filter(|(path, _)| !UNDOCUMENTED.contains(path))
            .flat_map(|(path, routes)| {
                routes
                    .into_iter()
                    .map(move |(method, _)| (path.to_owned(), method.as_str().to_lowercase()))
            })
            .collect();
        let document = serde_json::to_value(openapi::ApiDoc::openapi()).unwrap();
        let documented: BTreeSet<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|key| ["get", "post", "put", "patch", "delete"].contains(&key.as_str()))
                    .map(move |method| (path.clone(), method.clone()))
            })
            .collect();
        let missing: Vec<_> = served.difference(&documented).collect();
        assert!(missing.is_empty(), "served but not documented: {missing:?}");
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(extra.is_empty(), "documented but not served: {extra:?}");
    }
}
