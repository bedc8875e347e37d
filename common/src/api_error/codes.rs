//! The error table: every error an HTTP API of Duma answers with has one code here, and the code
//! alone decides the error class clients match on and the HTTP status. Call sites pick a code,
//! never a status. Classes are Rafiki's where Rafiki has one, so its client's `except` clauses
//! keep working; one class may cover several codes, but a code has exactly one status.

use actix_web::http::StatusCode;

/// Declares [`ErrorCode`] from its table, so the enum, its class/status and [`ErrorCode::ALL`]
/// cannot drift apart.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $code:ident => $class:literal, $status:ident;)*) => {
        /// What went wrong, as far as the client is concerned.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $code,)*
        }

        impl ErrorCode {
            /// Every code, for documentation and tests.
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$code,)*];

            /// The error class name of the JSON body, e.g. `InvalidModelError`.
            pub const fn class(self) -> &'static str {
                match self {
                    $(ErrorCode::$code => $class,)*
                }
            }

            pub const fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$code => StatusCode::$status,)*
                }
            }
        }
    };
}

error_codes! {
    // The request as a whole.
    InvalidRequest => "InvalidRequestError", BAD_REQUEST;
    RouteNotFound => "NotFoundError", NOT_FOUND;
    MethodNotAllowed => "MethodNotAllowedError", METHOD_NOT_ALLOWED;
    PayloadTooLarge => "PayloadTooLargeError", PAYLOAD_TOO_LARGE;
    TooManyRequests => "TooManyRequestsError", TOO_MANY_REQUESTS;
    QuotaExceeded => "QuotaExceededError", FORBIDDEN;

    // Who is asking.
    /// No token, or one that is malformed, expired or of a user who is gone or banned.
    Unauthenticated => "UnauthorizedError", UNAUTHORIZED;
    /// The wrong role, or another user's resource.
    Forbidden => "UnauthorizedError", FORBIDDEN;
    UnknownLogin => "InvalidUserError", UNAUTHORIZED;
    WrongPassword => "InvalidPasswordError", UNAUTHORIZED;
    BannedUser => "InvalidUserError", UNAUTHORIZED;

    // Users.
    InvalidUser => "InvalidUserError", BAD_REQUEST;
    InvalidPassword => "InvalidPasswordError", BAD_REQUEST;
    UserNotFound => "InvalidUserError", NOT_FOUND;
    UserExists => "UserExistsError", CONFLICT;
    UserAlreadyBanned => "UserAlreadyBannedError", CONFLICT;

    // Datasets.
    InvalidDataset => "InvalidDatasetError", BAD_REQUEST;
    DatasetNotFound => "InvalidDatasetError", NOT_FOUND;
    DatasetNotOwned => "InvalidDatasetError", FORBIDDEN;

    // Models.
    InvalidModel => "InvalidModelError", BAD_REQUEST;
    ModelNotFound => "InvalidModelError", NOT_FOUND;
    /// Built-in templates cannot be deleted.
    BuiltInModel => "InvalidModelError", FORBIDDEN;
    DuplicateModelName => "DuplicateModelNameError", CONFLICT;
    ModelUsed => "ModelUsedError", CONFLICT;

    // Train jobs and trials.
    InvalidTrainJob => "InvalidTrainJobError", BAD_REQUEST;
    NoModelsForTrainJob => "NoModelsForTrainJobError", BAD_REQUEST;
    TrainJobNotFound => "InvalidTrainJobError", NOT_FOUND;
    TrainJobInProgress => "InvalidTrainJobError", CONFLICT;
    TrialNotFound => "InvalidTrialError", NOT_FOUND;

    // Inference jobs and predictions.
    RunningInferenceJobNotFound => "InvalidRunningInferenceJobError", NOT_FOUND;
    RunningInferenceJobExists => "RunningInferenceJobExistsError", CONFLICT;

    // Deployments.
    InvalidDeployment => "InvalidDeploymentError", BAD_REQUEST;
    DeploymentNotFound => "InvalidDeploymentError", NOT_FOUND;
    DeploymentExists => "DeploymentExistsError", CONFLICT;
    NothingToRollBack => "InvalidDeploymentError", CONFLICT;
    // Evaluations.
    InvalidEvaluation => "InvalidEvaluationError", BAD_REQUEST;
    EvaluationNotFound => "InvalidEvaluationError", NOT_FOUND;
    /// The app has prediction keys and the request carried none of them.
    PredictionKeyRequired => "UnauthorizedError", UNAUTHORIZED;
    PredictionKeyNotFound => "InvalidPredictionKeyError", NOT_FOUND;
    TooManyPredictionKeys => "InvalidPredictionKeyError", CONFLICT;
    /// The model refused the queries: the caller's input is at fault.
    InvalidQuery => "InvalidQueryError", BAD_REQUEST;

    // The platform's side: never the caller's fault.
    /// A stored file the database refers to is gone.
    StoredObjectNotFound => "NotFoundError", NOT_FOUND;
    Internal => "InternalError", INTERNAL_SERVER_ERROR;
    /// Busy, or a dependency is down: retry shortly.
    Unavailable => "ServiceUnavailableError", SERVICE_UNAVAILABLE;
    /// No answer within the deadline.
    Timeout => "TimeoutError", GATEWAY_TIMEOUT;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_an_error_status_with_an_error_class() {
        for code in ErrorCode::ALL {
            let status = code.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code:?}"
            );
            assert!(code.class().ends_with("Error"), "{code:?}");
        }
    }

    #[test]
    fn only_platform_faults_are_5xx() {
        for code in ErrorCode::ALL {
            let platform = matches!(
                code,
                ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::Timeout
            );
            assert_eq!(code.status().is_server_error(), platform, "{code:?}");
        }
    }
}
