//! The OpenAPI document, generated from the handlers' annotations and served at `/openapi.json`.

use actix_web::HttpResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::handlers::{
    actions, datasets, deployments, evaluations, inference_jobs, models, prediction_keys, tokens,
    train_jobs, trials, users,
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
        inference_jobs::create, inference_jobs::create_by_checkpoint, inference_jobs::list_checkpoint_app, inference_jobs::list, inference_jobs::list_by_app, inference_jobs::get, inference_jobs::stop,
        deployments::create, deployments::list, deployments::get, deployments::update, deployments::rollback, deployments::delete, deployments::metrics,
        evaluations::create, evaluations::list, evaluations::get, evaluations::compare,
        prediction_keys::create, prediction_keys::list, prediction_keys::delete,
        actions::stop_all_jobs,
    ),
    modifiers(&BearerAuth, &Operations),
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

/// Every operation gets an id unique in the document (the handlers' names repeat: `create`,
/// `list`, …), derived from its method and path; every secured operation declares the 401 the
/// authentication extractor answers, so clients and fuzzers know it.
struct Operations;

impl Modify for Operations {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            for (method, operation) in operations {
                if let Some(operation) = operation {
                    describe(method, path, operation);
                }
            }
        }
    }
}

fn describe(method: &str, path: &str, operation: &mut Operation) {
    let words: Vec<String> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| match segment.strip_prefix('{') {
            Some(parameter) => format!("by_{}", parameter.trim_end_matches('}')),
            None => segment.to_owned(),
        })
        .collect();
    operation.operation_id = Some(format!("{method}_{}", words.join("_")));
    // Any request can be malformed (a body that is not JSON, a NUL character, a bad id).
    if !operation.responses.responses.contains_key("400") {
        operation.responses.responses.insert(
            "400".to_owned(),
            RefOr::T(error_response(
                "malformed request: body, parameters or path",
            )),
        );
    }
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    if secured && !operation.responses.responses.contains_key("401") {
        operation.responses.responses.insert(
            "401".to_owned(),
            RefOr::T(error_response(
                "no, invalid or expired token, or a banned user",
            )),
        );
    }
}

/// A documented error response with the `ErrorBody` schema.
fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "ErrorBody",
                ))))
                .build(),
        )
        .build()
}

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
