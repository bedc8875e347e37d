//! The admin API's requests: what handlers parse Rafiki's merged parameters into
//! ([`Params::parse`](crate::params::Params::parse): a JSON body, or form fields, with the query
//! string on top) and what the OpenAPI document shows, from the same types. Field types say
//! the shape (text, integer, object, list); the names, ids and budgets inside are parsed into
//! domain types by the handler that knows which error a bad one is.

use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::params::field;

/// `POST /tokens`
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    #[schema(example = "superadmin@rafiki")]
    #[serde(deserialize_with = "field::text")]
    pub email: String,
    #[serde(deserialize_with = "field::text")]
    pub password: String,
}

/// `POST /users`
#[derive(Deserialize, ToSchema)]
pub struct CreateUserRequest {
    /// An email address, at most 254 bytes.
    #[serde(deserialize_with = "field::text")]
    pub email: String,
    /// At most 1024 bytes.
    #[serde(deserialize_with = "field::text")]
    pub password: String,
    #[schema(
        pattern = "^(ADMIN|MODEL_DEVELOPER|APP_DEVELOPER)$",
        example = "APP_DEVELOPER"
    )]
    #[serde(deserialize_with = "field::text")]
    pub user_type: String,
}

/// `DELETE /users`
#[derive(Deserialize, ToSchema)]
pub struct BanUserRequest {
    #[serde(deserialize_with = "field::text")]
    pub email: String,
}

/// `POST /datasets` (multipart/form-data)
#[derive(Deserialize, ToSchema)]
pub struct CreateDatasetForm {
    #[serde(deserialize_with = "field::text")]
    pub name: String,
    #[schema(example = "TABULAR_CLASSIFICATION")]
    #[serde(deserialize_with = "field::text")]
    pub task: String,
    /// The dataset file; or give `dataset_url` instead. (A file part: read as a stream, not a
    /// parameter.)
    #[schema(value_type = Option<String>, format = Binary)]
    #[serde(skip_deserializing)]
    #[allow(dead_code)]
    pub dataset: Option<Vec<u8>>,
    /// An http(s) URL the admin downloads the dataset from (public addresses only).
    #[serde(default, deserialize_with = "field::opt_text")]
    pub dataset_url: Option<String>,
}

/// `POST /models` (multipart/form-data)
#[derive(Deserialize, ToSchema)]
pub struct CreateModelForm {
    /// Unique among the caller's models; at most 128 bytes.
    #[serde(deserialize_with = "field::text")]
    pub name: String,
    #[serde(deserialize_with = "field::text")]
    pub task: String,
    /// The template class the file defines.
    #[serde(deserialize_with = "field::text")]
    pub model_class: String,
    /// The template's Python source. (A file part: read as a stream, not a parameter.)
    #[schema(value_type = String, format = Binary)]
    #[serde(skip_deserializing)]
    #[allow(dead_code)]
    pub model_file_bytes: Vec<u8>,
    /// A checkpoint (SINGA-Auto's part name): trained parameters of the template, as a trial's
    /// `GET /trials/{id}/parameters` gives them; the model then serves without training
    /// (`POST /inference_jobs` with `model_id`, or `POST /inference_jobs/checkpoint`).
    #[schema(value_type = Option<String>, format = Binary)]
    #[serde(skip_deserializing)]
    #[allow(dead_code)]
    pub checkpoint_id: Option<Vec<u8>>,
    /// JSON text: `{"<PyPI name>": "<version>"}`; null or absent for none.
    #[schema(value_type = Option<String>)]
    #[serde(default, deserialize_with = "field::opt_object")]
    pub dependencies: Option<Map<String, Value>>,
    #[schema(pattern = "^(PRIVATE|PUBLIC)$")]
    #[serde(default, deserialize_with = "field::opt_text")]
    pub access_right: Option<String>,
    /// Stored and shown; templates run in Duma's runner.
    #[serde(default, deserialize_with = "field::opt_text")]
    pub docker_image: Option<String>,
    /// Shown with the model; at most 4096 characters.
    #[serde(default, deserialize_with = "field::opt_text")]
    pub model_description: Option<String>,
    /// An ONNX model whose only input is a `[batch, n]` matrix: the names of its `n` columns
    /// (JSON text of a list), so a query may be `{"<feature>": number}`.
    #[schema(value_type = Option<String>)]
    #[serde(default, deserialize_with = "field::opt_text_list")]
    pub feature_names: Option<Vec<String>>,
    /// SINGA-Auto's entry file of a `zip` model; a `py` model is that file, so none.
    #[serde(default, deserialize_with = "field::opt_text")]
    pub model_file_name: Option<String>,
    /// SINGA-Auto's model kind (`ModelType`): only `py` (one Python file, its default) is
    /// served; `zip` is refused.
    #[schema(pattern = "^py$")]
    #[serde(default, deserialize_with = "field::opt_text")]
    pub model_type: Option<String>,
}

/// `POST /train_jobs`
#[derive(Deserialize, ToSchema)]
pub struct CreateTrainJobRequest {
    /// Any non-empty text up to 255 characters, without `/` or control characters.
    #[serde(deserialize_with = "field::text")]
    pub app: String,
    #[serde(deserialize_with = "field::text")]
    pub task: String,
    #[schema(value_type = Uuid)]
    #[serde(deserialize_with = "field::text")]
    pub train_dataset_id: String,
    #[schema(value_type = Uuid)]
    #[serde(deserialize_with = "field::text")]
    pub val_dataset_id: String,
    /// `MODEL_TRIAL_COUNT`, `TIME_HOURS`, `GPU_COUNT` (see docs/api.md for the ranges).
    #[schema(value_type = Object)]
    #[serde(default, deserialize_with = "field::opt_object")]
    pub budget: Option<Map<String, Value>>,
    /// The models to tune; absent: every model available for the task.
    #[schema(value_type = Option<Vec<Uuid>>)]
    #[serde(default, deserialize_with = "field::opt_text_list")]
    pub model_ids: Option<Vec<String>>,
    /// Passed to the templates' `train`.
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "field::opt_object")]
    pub train_args: Option<Map<String, Value>>,
}

/// `POST /inference_jobs`
#[derive(Deserialize, ToSchema)]
pub struct CreateInferenceJobRequest {
    #[serde(deserialize_with = "field::text")]
    pub app: String,
    /// The train job's version; -1 or absent: the latest.
    #[serde(default, deserialize_with = "field::opt_int")]
    pub app_version: Option<i64>,
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "field::opt_object")]
    pub budget: Option<Map<String, Value>>,
    /// Serve an uploaded model without training (Duma's): an ONNX model, or a template uploaded
    /// with a checkpoint; a new version of `app` is made from it; not with `app_version`.
    #[schema(value_type = Option<Uuid>)]
    #[serde(default, deserialize_with = "field::opt_text")]
    pub model_id: Option<String>,
    /// With a checkpoint: the knob values its template is built with (fixed and policy knobs may
    /// be left out).
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "field::opt_object")]
    pub knobs: Option<Map<String, Value>>,
    /// Sent by SINGA-Auto's client; Duma keeps no description of an inference job: only `null`.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub description: Option<Value>,
}

/// `POST /inference_jobs/checkpoint` (SINGA-Auto's): serve the caller's model `model_name`, a
/// template uploaded with a checkpoint, as a new version of the app of the same name.
#[derive(Deserialize, ToSchema)]
pub struct CreateCheckpointInferenceJobRequest {
    #[serde(deserialize_with = "field::text")]
    pub model_name: String,
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "field::opt_object")]
    pub budget: Option<Map<String, Value>>,
    /// The knob values the template is built with (fixed and policy knobs may be left out).
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "field::opt_object")]
    pub knobs: Option<Map<String, Value>>,
    /// Sent by SINGA-Auto's client; Duma keeps no description of an inference job: only `null`.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub description: Option<Value>,
}

/// `POST /deployments`
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeploymentRequest {
    /// Unique on the platform, a DNS label: 1 to 63 of `a-z`, `0-9` and `-`, starting and ending
    /// with a letter or digit. It is the endpoint's address and never changes.
    #[schema(example = "fraud-scoring")]
    #[serde(deserialize_with = "field::text")]
    pub name: String,
    /// One of the caller's apps.
    #[serde(deserialize_with = "field::text")]
    pub app: String,
    /// The version to serve first; -1 or absent: the latest.
    #[serde(default, deserialize_with = "field::opt_int")]
    pub app_version: Option<i64>,
    #[schema(
        pattern = "^(development|staging|production)$",
        example = "development"
    )]
    #[serde(default, deserialize_with = "field::opt_text")]
    pub service_level: Option<String>,
    /// Replicas of each served model of every version it starts, each on another inference
    /// worker where there are enough (1 to 16; default 1).
    #[serde(default, deserialize_with = "field::opt_int")]
    pub replicas: Option<i64>,
    /// Serve an uploaded model without training (an ONNX model, or a template uploaded with a
    /// checkpoint): a new version of `app` is made from it (instead of `app_version`).
    #[schema(value_type = Option<Uuid>)]
    #[serde(default, deserialize_with = "field::opt_text")]
    pub model_id: Option<String>,
    /// With a checkpoint: the knob values its template is built with.
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "field::opt_object")]
    pub knobs: Option<Map<String, Value>>,
}

/// `PATCH /deployments/{name}`: give `app_version` (all traffic to it) or `weights`, and/or
/// `shadow`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDeploymentRequest {
    /// Send all traffic to this version (switched once it runs; -1: the latest).
    #[serde(default, deserialize_with = "field::opt_int")]
    pub app_version: Option<i64>,
    /// Percent of the traffic per version, e.g. `{"3": 95, "4": 5}`; integers summing to 100.
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "field::opt_object")]
    pub weights: Option<Map<String, Value>>,
    /// A version that gets a copy of the traffic (answers recorded, never returned); `null`
    /// removes the shadow.
    #[schema(value_type = Option<i64>)]
    #[serde(default, deserialize_with = "field::present")]
    pub shadow: Option<Value>,
    /// Replicas of each served model of its versions (1 to 16), changed in place without
    /// stopping traffic; a version another deployment shares keeps the larger number.
    #[serde(default, deserialize_with = "field::opt_int")]
    pub replicas: Option<i64>,
}

/// `GET /datasets`, `GET /models/available`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskFilter {
    /// Only those of this task.
    #[serde(default, deserialize_with = "field::opt_text")]
    pub task: Option<String>,
}

/// `GET /train_jobs`, `GET /inference_jobs`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    /// Whose jobs.
    #[param(value_type = Uuid)]
    #[serde(deserialize_with = "field::text")]
    pub user_id: String,
}

/// `GET /train_jobs/{app}/{app_version}/trials`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrialsQuery {
    /// `best`: the best trials by score (at most `max_count`); else all, newest first.
    #[param(value_type = Option<String>, pattern = "^best$")]
    #[serde(default, rename = "type", deserialize_with = "field::opt_text")]
    pub kind: Option<String>,
    /// With `type=best`; default 2.
    #[serde(default, deserialize_with = "field::opt_int")]
    pub max_count: Option<i64>,
    /// Default 1000, at most 10 000.
    #[serde(default, deserialize_with = "field::opt_int")]
    pub limit: Option<i64>,
    #[serde(default, deserialize_with = "field::opt_int")]
    pub offset: Option<i64>,
}

/// `POST /evaluations`: a labelled dataset and what to score on it — a `deployment` (its
/// primary version, or `app_version` among its versions), an `app` version, or one `trial_id`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEvaluationRequest {
    /// One of the caller's datasets, of the version's task, with the target column it was
    /// trained on.
    #[schema(value_type = Uuid)]
    #[serde(deserialize_with = "field::text")]
    pub dataset_id: String,
    #[serde(default, deserialize_with = "field::opt_text")]
    pub deployment: Option<String>,
    #[serde(default, deserialize_with = "field::opt_text")]
    pub app: Option<String>,
    /// With `app`: the version (-1 or absent: the latest); with `deployment`: one of its
    /// versions (absent: the one with most traffic).
    #[serde(default, deserialize_with = "field::opt_int")]
    pub app_version: Option<i64>,
    #[schema(value_type = Option<Uuid>)]
    #[serde(default, deserialize_with = "field::opt_text")]
    pub trial_id: Option<String>,
}

/// `GET /evaluations` filters.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListEvaluationsQuery {
    /// Only this app's evaluations; with it, `comparison` lines its versions up side by side.
    #[serde(default, deserialize_with = "field::opt_text")]
    pub app: Option<String>,
    /// Only evaluations on this dataset.
    #[serde(default, deserialize_with = "field::opt_text")]
    pub dataset_id: Option<String>,
}

/// `GET /deployments/{name}/metrics`
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeploymentMetricsQuery {
    /// How far back, in minutes: 5 to 10 080 (a week); default 60.
    #[serde(default, deserialize_with = "field::opt_int")]
    pub minutes: Option<i64>,
}
