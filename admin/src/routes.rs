//! The route table: every route of Rafiki's admin API, in one place.

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, Resource, Route, web};

use crate::handlers::{
    actions, datasets, inference_jobs, models, tokens, train_jobs, trials, users,
};
use crate::openapi;
use duma_common::api_error::{ApiError, ErrorCode};

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(resource("/", vec![(Method::GET, web::to(index))]))
        .service(resource(
            "/openapi.json",
            vec![(Method::GET, web::to(openapi::document))],
        ))
        .service(resource(
            "/tokens",
            vec![(Method::POST, web::to(tokens::create))],
        ))
        .service(resource(
            "/users",
            vec![
                (Method::POST, web::to(users::create)),
                (Method::GET, web::to(users::list)),
                (Method::DELETE, web::to(users::ban)),
            ],
        ))
        .service(resource(
            "/datasets",
            vec![
                (Method::POST, web::to(datasets::create)),
                (Method::GET, web::to(datasets::list)),
            ],
        ))
        .service(resource(
            "/models",
            vec![(Method::POST, web::to(models::create))],
        ))
        .service(resource(
            "/models/available",
            vec![(Method::GET, web::to(models::available))],
        ))
        .service(resource(
            "/models/{model_id}",
            vec![
                (Method::GET, web::to(models::get)),
                (Method::DELETE, web::to(models::delete)),
            ],
        ))
        .service(resource(
            "/models/{model_id}/model_file",
            vec![(Method::GET, web::to(models::model_file))],
        ))
        .service(resource(
            "/train_jobs",
            vec![
                (Method::POST, web::to(train_jobs::create)),
                (Method::GET, web::to(train_jobs::list)),
            ],
        ))
        .service(resource(
            "/train_jobs/{app}",
            vec![(Method::GET, web::to(train_jobs::list_by_app))],
        ))
        .service(resource(
            "/train_jobs/{app}/{app_version}",
            vec![(Method::GET, web::to(train_jobs::get))],
        ))
        .service(resource(
            "/train_jobs/{app}/{app_version}/stop",
            vec![(Method::POST, web::to(train_jobs::stop))],
        ))
        .service(resource(
            "/train_jobs/{app}/{app_version}/trials",
            vec![(Method::GET, web::to(train_jobs::trials))],
        ))
        .service(resource(
            "/trials/{trial_id}",
            vec![(Method::GET, web::to(trials::get))],
        ))
        .service(resource(
            "/trials/{trial_id}/logs",
            vec![(Method::GET, web::to(trials::logs))],
        ))
        .service(resource(
            "/trials/{trial_id}/parameters",
            vec![(Method::GET, web::to(trials::parameters))],
        ))
        .service(resource(
            "/inference_jobs",
            vec![
                (Method::POST, web::to(inference_jobs::create)),
                (Method::GET, web::to(inference_jobs::list)),
            ],
        ))
        .service(resource(
            "/inference_jobs/{app}",
            vec![(Method::GET, web::to(inference_jobs::list_by_app))],
        ))
        .service(resource(
            "/inference_jobs/{app}/{app_version}",
            vec![(Method::GET, web::to(inference_jobs::get))],
        ))
        .service(resource(
            "/inference_jobs/{app}/{app_version}/stop",
            vec![(Method::POST, web::to(inference_jobs::stop))],
        ))
        .service(resource(
            "/actions/stop_all_jobs",
            vec![(Method::POST, web::to(actions::stop_all_jobs))],
        ));
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

async fn index() -> HttpResponse {
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
