//! The request bodies of the admin API, as the OpenAPI document describes them. Handlers read
//! them through Rafiki's merged parameters (`params.rs`: a JSON body, or form fields, with the
//! query string on top; numbers may come as text), so these types are the documented shape
//! clients and fuzzers build requests from.

// Never built: they exist for their schemas.
#![allow(dead_code)]

use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /tokens`
#[derive(ToSchema)]
pub struct LoginRequest {
    #[schema(example = "superadmin@rafiki")]
    pub email: String,
    pub password: String,
}

/// `POST /users`
#[derive(ToSchema)]
pub struct CreateUserRequest {
    /// An email address, at most 255 characters.
    pub email: String,
    /// At most 1024 bytes.
    pub password: String,
    #[schema(
        pattern = "^(ADMIN|MODEL_DEVELOPER|APP_DEVELOPER)$",
        example = "APP_DEVELOPER"
    )]
    pub user_type: String,
}

/// `DELETE /users`
#[derive(ToSchema)]
pub struct BanUserRequest {
    pub email: String,
}

/// `POST /datasets` (multipart/form-data)
#[derive(ToSchema)]
pub struct CreateDatasetForm {
    pub name: String,
    #[schema(example = "TABULAR_CLASSIFICATION")]
    pub task: String,
    /// The dataset file; or give `dataset_url` instead.
    #[schema(value_type = Option<String>, format = Binary)]
    pub dataset: Option<Vec<u8>>,
    /// An http(s) URL the admin downloads the dataset from (public addresses only).
    pub dataset_url: Option<String>,
}

/// `POST /models` (multipart/form-data)
#[derive(ToSchema)]
pub struct CreateModelForm {
    /// Unique among the caller's models.
    pub name: String,
    pub task: String,
    /// The template class the file defines.
    pub model_class: String,
    /// The template's Python source.
    #[schema(value_type = String, format = Binary)]
    pub model_file_bytes: Vec<u8>,
    /// JSON text: `{"<PyPI name>": "<version>"}`; null or absent for none.
    pub dependencies: Option<String>,
    #[schema(pattern = "^(PRIVATE|PUBLIC)$")]
    pub access_right: Option<String>,
    /// Stored and shown; templates run in Duma's runner.
    pub docker_image: Option<String>,
}

/// `POST /train_jobs`
#[derive(ToSchema)]
pub struct CreateTrainJobRequest {
    /// Any non-empty text up to 255 characters, without `/` or control characters.
    pub app: String,
    pub task: String,
    pub train_dataset_id: Uuid,
    pub val_dataset_id: Uuid,
    /// `MODEL_TRIAL_COUNT`, `TIME_HOURS`, `GPU_COUNT` (see docs/api.md for the ranges).
    #[schema(value_type = Object)]
    pub budget: Map<String, Value>,
    /// The models to tune; absent: every model available for the task.
    pub model_ids: Option<Vec<Uuid>>,
    /// Passed to the templates' `train`.
    #[schema(value_type = Option<Object>)]
    pub train_args: Option<Map<String, Value>>,
}

/// `POST /inference_jobs`
#[derive(ToSchema)]
pub struct CreateInferenceJobRequest {
    pub app: String,
    /// The train job's version; -1 or absent: the latest.
    pub app_version: Option<i32>,
    #[schema(value_type = Option<Object>)]
    pub budget: Option<Map<String, Value>>,
}
