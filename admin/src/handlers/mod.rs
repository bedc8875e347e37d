//! Request handlers, one module per resource. Each handler: authorise → parse parameters into
//! domain values → call repositories → map to a view.

pub mod actions;
pub mod datasets;
pub mod inference_jobs;
pub mod models;
pub mod tokens;
pub mod train_jobs;
pub mod trials;
pub mod users;

use actix_web::HttpResponse;
use serde::Serialize;

/// 200 with `Content-Type: application/json` exactly (Rafiki's client rejects a charset suffix).
pub fn json<T: Serialize>(body: T) -> HttpResponse {
    HttpResponse::Ok().json(body)
}
