//! API errors: every failure maps, in one place, to a status code and Rafiki's JSON error body
//! `{"error": "<ErrorClassName>", "message": "<human text>"}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use duma_common::db::DbError;
use duma_common::store::StoreError;
use serde::Serialize;

/// Error class names clients match on (Rafiki's, plus a few for transport failures).
pub mod class {
    pub const INVALID_REQUEST: &str = "InvalidRequestError";
    pub const UNAUTHORIZED: &str = "UnauthorizedError";
    pub const NOT_FOUND: &str = "NotFoundError";
    pub const METHOD_NOT_ALLOWED: &str = "MethodNotAllowedError";
    pub const PAYLOAD_TOO_LARGE: &str = "PayloadTooLargeError";
    pub const INTERNAL: &str = "InternalError";
    pub const UNAVAILABLE: &str = "ServiceUnavailableError";
    pub const TOO_MANY_REQUESTS: &str = "TooManyRequestsError";
    pub const QUOTA_EXCEEDED: &str = "QuotaExceededError";
    pub const INVALID_USER: &str = "InvalidUserError";
    pub const INVALID_PASSWORD: &str = "InvalidPasswordError";
    pub const USER_EXISTS: &str = "UserExistsError";
    pub const USER_ALREADY_BANNED: &str = "UserAlreadyBannedError";
    pub const INVALID_DATASET: &str = "InvalidDatasetError";
    pub const INVALID_MODEL: &str = "InvalidModelError";
    pub const DUPLICATE_MODEL_NAME: &str = "DuplicateModelNameError";
    pub const MODEL_USED: &str = "ModelUsedError";
    pub const NO_MODELS_FOR_TRAIN_JOB: &str = "NoModelsForTrainJobError";
    pub const INVALID_TRAIN_JOB: &str = "InvalidTrainJobError";
    pub const INVALID_TRIAL: &str = "InvalidTrialError";
    pub const INVALID_RUNNING_INFERENCE_JOB: &str = "InvalidRunningInferenceJobError";
    pub const RUNNING_INFERENCE_JOB_EXISTS: &str = "RunningInferenceJobExistsError";
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request cannot be served as asked; the client can fix it.
    #[error("{class}: {message}")]
    Rejected {
        status: StatusCode,
        class: &'static str,
        message: String,
    },
    /// Not now: the client may try again after `retry_after` (429, or 503 when we are busy).
    #[error("{class}: {message}")]
    RetryLater {
        status: StatusCode,
        class: &'static str,
        message: String,
        retry_after: std::time::Duration,
    },
    /// Our fault; the cause is logged, the client sees a generic message.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Error class name, e.g. `InvalidModelError`.
    pub error: String,
    pub message: String,
}

impl ApiError {
    fn rejected(status: StatusCode, class: &'static str, message: impl Into<String>) -> Self {
        ApiError::Rejected {
            status,
            class,
            message: message.into(),
        }
    }
    pub fn bad_request(class: &'static str, message: impl Into<String>) -> Self {
        Self::rejected(StatusCode::BAD_REQUEST, class, message)
    }
    pub fn unauthorized(class: &'static str, message: impl Into<String>) -> Self {
        Self::rejected(StatusCode::UNAUTHORIZED, class, message)
    }
    pub fn forbidden(class: &'static str, message: impl Into<String>) -> Self {
        Self::rejected(StatusCode::FORBIDDEN, class, message)
    }
    pub fn not_found(class: &'static str, message: impl Into<String>) -> Self {
        Self::rejected(StatusCode::NOT_FOUND, class, message)
    }
    pub fn conflict(class: &'static str, message: impl Into<String>) -> Self {
        Self::rejected(StatusCode::CONFLICT, class, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::rejected(
            StatusCode::PAYLOAD_TOO_LARGE,
            class::PAYLOAD_TOO_LARGE,
            message,
        )
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::bad_request(class::INVALID_REQUEST, message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Rejected { status, .. } | ApiError::RetryLater { status, .. } => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            ApiError::Rejected { class, message, .. } => ErrorBody {
                error: (*class).to_owned(),
                message: message.clone(),
            },
            ApiError::RetryLater {
                class,
                message,
                retry_after,
                ..
            } => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0);
                return HttpResponse::build(self.status_code())
                    .insert_header(("Retry-After", format!("{seconds:.0}")))
                    .json(ErrorBody {
                        error: (*class).to_owned(),
                        message: message.clone(),
                    });
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed");
                ErrorBody {
                    error: class::INTERNAL.to_owned(),
                    message: "internal error; the admin's logs have the details".to_owned(),
                }
            }
        };
        HttpResponse::build(self.status_code()).json(body)
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Pool(e) => ApiError::rejected(
                StatusCode::SERVICE_UNAVAILABLE,
                class::UNAVAILABLE,
                format!("the database is not answering: {e}"),
            ),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::TooLarge { limit } => {
                ApiError::too_large(format!("the upload exceeds the limit of {limit} bytes"))
            }
            StoreError::Source(reason) => {
                ApiError::invalid_request(format!("reading the upload failed: {reason}"))
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<duma_common::db::PoolError> for ApiError {
    fn from(error: duma_common::db::PoolError) -> Self {
        ApiError::from(DbError::from(error))
    }
}

/// Transactions' begin/commit fail with the driver's error type.
impl From<duma_common::db::PgError> for ApiError {
    fn from(error: duma_common::db::PgError) -> Self {
        ApiError::from(DbError::from(error))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
