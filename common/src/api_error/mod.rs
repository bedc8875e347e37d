//! The errors of Duma's HTTP APIs (admin and predictor): an [`ErrorCode`] from the one table in
//! [`codes`] plus a message, answered as Rafiki's JSON error body
//! `{"error": "<ErrorClassName>", "message": "<human text>"}`.

mod codes;

pub use codes::ErrorCode;

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use serde::Serialize;

use crate::db::DbError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request cannot be served as asked; `code` says why.
    #[error("{}: {message}", code.class())]
    Rejected { code: ErrorCode, message: String },
    /// Not now: the client may try again after `retry_after` (sent as `Retry-After`).
    #[error("{}: {message}", code.class())]
    RetryLater {
        code: ErrorCode,
        message: String,
        retry_after: Duration,
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
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::Rejected {
            code,
            message: message.into(),
        }
    }

    pub fn retry_later(code: ErrorCode, message: impl Into<String>, retry_after: Duration) -> Self {
        ApiError::RetryLater {
            code,
            message: message.into(),
            retry_after,
        }
    }

    /// The most common rejection: the request itself is malformed.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PayloadTooLarge, message)
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Rejected { code, .. } | ApiError::RetryLater { code, .. } => *code,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The response, on a builder the caller may add headers to first.
    pub fn respond(&self, mut builder: HttpResponseBuilder) -> HttpResponse {
        let message = match self {
            ApiError::Rejected { message, .. } => message.clone(),
            ApiError::RetryLater {
                message,
                retry_after,
                ..
            } => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0);
                builder.insert_header(("Retry-After", format!("{seconds:.0}")));
                message.clone()
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed");
                "internal error; the service's logs have the details".to_owned()
            }
        };
        builder.json(ErrorBody {
            error: self.code().class().to_owned(),
            message,
        })
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        self.respond(HttpResponse::build(self.status_code()))
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Pool(e) => ApiError::new(
                ErrorCode::Unavailable,
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
            StoreError::NotFound(what) => ApiError::new(
                ErrorCode::StoredObjectNotFound,
                format!("stored object {what} is missing"),
            ),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<crate::db::PoolError> for ApiError {
    fn from(error: crate::db::PoolError) -> Self {
        ApiError::from(DbError::from(error))
    }
}

/// Transactions' begin/commit fail with the driver's error type.
impl From<crate::db::PgError> for ApiError {
    fn from(error: crate::db::PgError) -> Self {
        ApiError::from(DbError::from(error))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
