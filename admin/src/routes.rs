//! The route table: every route of Rafiki's admin API, in one place.

use actix_web::{HttpResponse, web};

use crate::error::{ApiError, class};
use crate::handlers::{
    actions, datasets, inference_jobs, models, tokens, train_jobs, trials, users,
};
use crate::openapi;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(index))
        .route("/openapi.json", web::get().to(openapi::document))
        .route("/tokens", web::post().to(tokens::create))
        .service(
            web::resource("/users")
                .route(web::post().to(users::create))
                .route(web::get().to(users::list))
                .route(web::delete().to(users::ban)),
        )
        .service(
            web::resource("/datasets")
                .route(web::post().to(datasets::create))
                .route(web::get().to(datasets::list)),
        )
        .route("/models", web::post().to(models::create))
        .route("/models/available", web::get().to(models::available))
        .service(
            web::resource("/models/{model_id}")
                .route(web::get().to(models::get))
                .route(web::delete().to(models::delete)),
        )
        .route(
            "/models/{model_id}/model_file",
            web::get().to(models::model_file),
        )
        .service(
            web::resource("/train_jobs")
                .route(web::post().to(train_jobs::create))
                .route(web::get().to(train_jobs::list)),
        )
        .route("/train_jobs/{app}", web::get().to(train_jobs::list_by_app))
        .route(
            "/train_jobs/{app}/{app_version}",
            web::get().to(train_jobs::get),
        )
        .route(
            "/train_jobs/{app}/{app_version}/stop",
            web::post().to(train_jobs::stop),
        )
        .route(
            "/train_jobs/{app}/{app_version}/trials",
            web::get().to(train_jobs::trials),
        )
        .route("/trials/{trial_id}", web::get().to(trials::get))
        .route("/trials/{trial_id}/logs", web::get().to(trials::logs))
        .route(
            "/trials/{trial_id}/parameters",
            web::get().to(trials::parameters),
        )
        .service(
            web::resource("/inference_jobs")
                .route(web::post().to(inference_jobs::create))
                .route(web::get().to(inference_jobs::list)),
        )
        .route(
            "/inference_jobs/{app}",
            web::get().to(inference_jobs::list_by_app),
        )
        .route(
            "/inference_jobs/{app}/{app_version}",
            web::get().to(inference_jobs::get),
        )
        .route(
            "/inference_jobs/{app}/{app_version}/stop",
            web::post().to(inference_jobs::stop),
        )
        .route(
            "/actions/stop_all_jobs",
            web::post().to(actions::stop_all_jobs),
        );
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain")
        .body("Duma admin is up.")
}

/// Unknown routes and methods: a JSON 404/405 like every other error.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(
        class::NOT_FOUND,
        format!("no route {} {}", req.method(), req.path()),
    ))
}
