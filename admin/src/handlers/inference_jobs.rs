use actix_web::{HttpResponse, web};
use duma_common::db::inference_jobs::{self, InferenceJob};
use duma_common::db::{models, workers};
use duma_domain::{UserId, WorkerKind};

use crate::auth::{Caller, roles};
use crate::jobs;
use crate::params::{Params, app_version_segments, param_id};
use crate::requests::{CreateCheckpointInferenceJobRequest, CreateInferenceJobRequest, UserFilter};
use crate::state::AppState;
use crate::views::{InferenceJobRefView, InferenceJobView};
use duma_common::api_error::{ApiError, ApiResult, ErrorBody, ErrorCode};

/// Where app users send queries for a job (no scheme): its own `host:port` when it has a port,
/// else `host:port[/path]/inference_jobs/<id>`. Either way `http://{predictor_host}/predict`.
pub fn predictor_host(state: &AppState, job: &InferenceJob) -> String {
    let admin = &state.settings.admin;
    match job.predictor_port {
        Some(port) => format!("{}:{port}", admin.predictor_hostname()),
        None => format!(
            "{}/inference_jobs/{}",
            admin.predictor_host.trim_end_matches('/'),
            job.id
        ),
    }
}

fn reference(state: &AppState, job: &InferenceJob, with_host: bool) -> InferenceJobRefView {
    InferenceJobRefView {
        id: job.id.0,
        train_job_id: job.train_job_id.0,
        app: job.app.clone(),
        app_version: job.app_version,
        predictor_host: with_host.then(|| predictor_host(state, job)),
        model_id: None,
    }
}

/// Serve a STOPPED train job: each model's best trial with saved parameters.
#[utoipa::path(post, path = "/inference_jobs", tag = "inference jobs",
    request_body(content = crate::requests::CreateInferenceJobRequest, content_type = "application/json"),
    responses((status = 200, body = InferenceJobRefView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let request: CreateInferenceJobRequest = params.parse()?;
    refuse_description(request.description.as_ref())?;
    let app = request.app.as_str();
    let budget = jobs::inference_budget(request.budget)?;
    let train_job = match (&request.model_id, request.app_version) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "give app_version (serve a trained version) or model_id (make a version of an \
                 uploaded model), not both",
            ));
        }
        (Some(model_id), None) => {
            jobs::version_from_model(&state, &caller, app, model_id, request.knobs.as_ref()).await?
        }
        (None, _) if request.knobs.is_some() => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "knobs are given only with model_id (a checkpoint's template is built with them); \
                 a trained version keeps its trials' knobs",
            ));
        }
        (None, version) => {
            let version = version.unwrap_or(-1).to_string();
            jobs::find_train_job(&state, &caller, app, &version).await?
        }
    };
    let job =
        jobs::serve_train_job(&state, &caller, &train_job, &budget, jobs::Serving::PLAIN).await?;
    Ok(super::json(reference(&state, &job, true)))
}

/// SINGA-Auto's client sends `description: null`; anything else would be dropped unseen.
fn refuse_description(description: Option<&serde_json::Value>) -> Result<(), ApiError> {
    if description.is_some_and(|d| !d.is_null()) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "Duma keeps no description of an inference job: leave `description` out",
        ));
    }
    Ok(())
}

/// Serve the caller's model `model_name`, a template uploaded with a checkpoint (or an ONNX
/// model), as a new version of the app of the same name (SINGA-Auto's checkpoint flow).
#[utoipa::path(post, path = "/inference_jobs/checkpoint", tag = "inference jobs",
    request_body(content = crate::requests::CreateCheckpointInferenceJobRequest, content_type = "application/json"),
    responses((status = 200, body = InferenceJobRefView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_by_checkpoint(
    state: web::Data<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let request: CreateCheckpointInferenceJobRequest = params.parse()?;
    refuse_description(request.description.as_ref())?;
    let budget = jobs::inference_budget(request.budget)?;
    let model = {
        let db = state.pool.get().await?;
        models::by_user_and_name(&db, caller.id, &request.model_name)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::ModelNotFound,
                    format!("you have no model named {}", request.model_name),
                )
            })?
    };
    let train_job = jobs::serve_model(
        &state,
        &caller,
        &request.model_name,
        &model,
        request.knobs.as_ref(),
    )
    .await?;
    let job =
        jobs::serve_train_job(&state, &caller, &train_job, &budget, jobs::Serving::PLAIN).await?;
    let mut view = reference(&state, &job, true);
    view.model_id = Some(model.id.0);
    Ok(super::json(view))
}

/// A user's inference jobs (non-admins: only their own).
#[utoipa::path(get, path = "/inference_jobs", tag = "inference jobs",
    params(UserFilter),
    responses((status = 200, body = [InferenceJobView]), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let UserFilter { user_id } = params.parse()?;
    let user_id: UserId = param_id(&user_id, "user_id", ErrorCode::InvalidUser)?;
    caller.require_owner_or_admin(user_id, "list of inference jobs")?;
    let db = state.pool.get().await?;
    let jobs = inference_jobs::list_by_user(&db, user_id).await?;
    Ok(super::json(
        jobs.iter()
            .map(|j| InferenceJobView::new(j, None))
            .collect::<Vec<_>>(),
    ))
}

/// Inference jobs of every version of one of the caller's apps, newest first.
#[utoipa::path(get, path = "/inference_jobs/{app}", tag = "inference jobs",
    params(("app" = String, Path)), responses((status = 200, body = [InferenceJobView])), security(("bearer" = [])))]
pub async fn list_by_app(
    state: web::Data<AppState>,
    caller: Caller,
    app: web::Path<String>,
    params: Params,
) -> ApiResult<HttpResponse> {
    let app = params.segment(&app, "app");
    list_app(&state, &caller, &app).await
}

/// The inference jobs of an app named `checkpoint` (this path is also SINGA-Auto's checkpoint
/// route, for POST).
#[utoipa::path(get, path = "/inference_jobs/checkpoint", tag = "inference jobs",
    responses((status = 200, body = [InferenceJobView])), security(("bearer" = [])))]
pub async fn list_checkpoint_app(
    state: web::Data<AppState>,
    caller: Caller,
) -> ApiResult<HttpResponse> {
    list_app(&state, &caller, "checkpoint").await
}

async fn list_app(state: &AppState, caller: &Caller, app: &str) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let db = state.pool.get().await?;
    let jobs = inference_jobs::list_by_app(&db, caller.id, app).await?;
    Ok(super::json(
        jobs.iter()
            .map(|j| InferenceJobView::new(j, None))
            .collect::<Vec<_>>(),
    ))
}

async fn find_running(
    state: &AppState,
    caller: &Caller,
    app: &str,
    version: &str,
) -> Result<InferenceJob, ApiError> {
    let train_job = jobs::find_train_job(state, caller, app, version)
        .await
        .map_err(|e| match e {
            ApiError::Rejected {
                code: ErrorCode::TrainJobNotFound,
                message,
            } => ApiError::new(ErrorCode::RunningInferenceJobNotFound, message),
            other => other,
        })?;
    let db = state.pool.get().await?;
    inference_jobs::live_for_train_job(&db, train_job.id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::RunningInferenceJobNotFound,
                format!(
                    "app {app} v{} has no running inference job",
                    train_job.app_version
                ),
            )
        })
}

/// The running inference job of an app version, with its `predictor_host`.
#[utoipa::path(get, path = "/inference_jobs/{app}/{app_version}", tag = "inference jobs",
    params(("app" = String, Path), ("app_version" = i32, Path, description = "-1 for the latest")),
    responses((status = 200, body = InferenceJobView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let (app, version) = app_version_segments(&params, &path);
    let job = find_running(&state, &caller, &app, &version).await?;
    let host = predictor_host(&state, &job);
    let mut view = InferenceJobView::new(&job, Some(host));
    let asked = serde_json::from_value::<duma_domain::InferenceBudget>(job.budget.clone())
        .map(|budget| budget.gpus())
        .unwrap_or(0);
    if asked > 0 {
        let db = state.pool.get().await?;
        let needed = workers::inference_job_gpus(&db, job.id).await?;
        view.waiting = jobs::gpu_wait(&db, WorkerKind::Inference, needed).await?;
    }
    Ok(super::json(view))
}

/// Stop the running inference job of an app version.
#[utoipa::path(post, path = "/inference_jobs/{app}/{app_version}/stop", tag = "inference jobs",
    params(("app" = String, Path), ("app_version" = i32, Path)),
    responses((status = 200, body = InferenceJobRefView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn stop(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let (app, version) = app_version_segments(&params, &path);
    let job = find_running(&state, &caller, &app, &version).await?;
    let stopped = jobs::stop_inference_job(&state, &job)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::RunningInferenceJobNotFound,
                "the inference job stopped meanwhile",
            )
        })?;
    Ok(super::json(reference(&state, &stopped, false)))
}
