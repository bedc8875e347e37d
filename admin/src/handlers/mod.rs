//! Request handlers, one module per resource. Each handler: authorise → parse parameters into
//! domain values → call repositories → map to a view.

pub mod actions;
pub mod datasets;
pub mod deployments;
pub mod evaluations;
pub mod inference_jobs;
pub mod models;
pub mod prediction_keys;
pub mod tokens;
pub mod train_jobs;
pub mod trials;
pub mod users;

use actix_web::HttpResponse;
use actix_web::http::header;
use duma_common::store::ObjectStore;
use serde::Serialize;

use duma_common::api_error::ApiError;

/// 200 with `Content-Type: application/json` exactly (Rafiki's client rejects a charset suffix).
pub fn json<T: Serialize>(body: T) -> HttpResponse {
    HttpResponse::Ok().json(body)
}

/// 200 with `Content-Type: application/octet-stream`, streaming an object from the store.
pub async fn file(store: &ObjectStore, path: &str) -> Result<HttpResponse, ApiError> {
    let body = store.get_stream(path).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/octet-stream"))
        .streaming(body))
}
