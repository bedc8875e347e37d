//! The OpenAPI document, generated from the handlers' annotations and served at `/openapi.json`.

use actix_web::HttpResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::handlers::{
    actions, datasets, inference_jobs, models, tokens, train_jobs, trials, users,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Duma admin API", description = "Rafiki-compatible control plane of Duma. Errors are `{\"error\": \"<ErrorClassName>\", \"message\": \"...\"}` with a real status code; datetimes are RFC 1123 GMT. Parameters may come from a JSON body, form fields or the query string (query wins)."),
    paths(
        tokens::create,
        users::create, users::list, users::ban,
        datasets::create, datasets::list,
        models::create, models::available, models::get, models::delete, models::model_file,
        train_jobs::create, train_jobs::list, train_jobs::list_by_app, train_jobs::get, train_jobs::stop, train_jobs::trials,
        trials::get, trials::logs, trials::parameters,
        inference_jobs::create, inference_jobs::list, inference_jobs::list_by_app, inference_jobs::get, inference_jobs::stop,
        actions::stop_all_jobs,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
