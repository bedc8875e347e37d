use actix_web::{HttpResponse, web};
use duma_common::db::train_jobs::NewTrainJob;
use duma_common::db::{datasets, models, train_jobs, trials, workers};
use duma_common::redis::events::Event;
use duma_domain::{
    AppName, Budget, DatasetId, JobStatus, ModelId, TemplateKind, UserId, WorkerKind,
};

use crate::auth::{Caller, roles};
use crate::jobs;
use crate::params::{Params, app_version_segments, param_id};
use crate::requests::{CreateTrainJobRequest, TrialsQuery, UserFilter};
use crate::state::AppState;
use crate::views::{TrainJobRefView, TrainJobView, TrialView};
use duma_common::api_error::{ApiError, ApiResult, ErrorBody, ErrorCode};

const DEFAULT_BEST_COUNT: i64 = 2;
const DEFAULT_TRIAL_LIMIT: i64 = 1000;
const MAX_TRIAL_LIMIT: i64 = 10_000;

pub(crate) async fn owned_dataset(
    db: &impl duma_common::db::GenericClient,
    caller: &Caller,
    id: DatasetId,
    task: &str,
) -> Result<(), ApiError> {
    let dataset = datasets::by_id(db, id).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::DatasetNotFound,
            format!("no dataset with id {id}"),
        )
    })?;
    if dataset.user_id != caller.id {
        return Err(ApiError::new(
            ErrorCode::DatasetNotOwned,
            format!("dataset {id} belongs to another user"),
        ));
    }
    if dataset.task != task {
        return Err(ApiError::new(
            ErrorCode::InvalidDataset,
            format!("dataset {id} is for task {}, not {task}", dataset.task),
        ));
    }
    Ok(())
}

/// Create a train job: the next version of the caller's app, tuning each model on the dataset.
#[utoipa::path(post, path = "/train_jobs", tag = "train jobs",
    request_body(content = crate::requests::CreateTrainJobRequest, content_type = "application/json"),
    responses((status = 200, body = TrainJobRefView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let request: CreateTrainJobRequest = params.parse()?;
    let app = AppName::parse(&request.app)
        .map_err(|e| ApiError::new(ErrorCode::InvalidTrainJob, e.to_string()))?;
    let task = request.task;
    let dataset_id = |raw: &str, key: &str| param_id(raw, key, ErrorCode::InvalidDataset);
    let train_dataset_id: DatasetId = dataset_id(&request.train_dataset_id, "train_dataset_id")?;
    let val_dataset_id: DatasetId = dataset_id(&request.val_dataset_id, "val_dataset_id")?;
    let budget: Budget = match request.budget {
        None => Budget::default(),
        Some(map) => serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| {
            ApiError::new(ErrorCode::InvalidTrainJob, format!("invalid budget: {e}"))
        })?,
    };
    budget
        .validate_for(&task)
        .map_err(|e| ApiError::new(ErrorCode::InvalidTrainJob, e.to_string()))?;
    let train_args = request.train_args.unwrap_or_default();
    let requested: Option<Vec<ModelId>> = request
        .model_ids
        .map(|ids| {
            ids.iter()
                .map(|raw| {
                    raw.parse().map_err(|_| {
                        ApiError::new(
                            ErrorCode::InvalidModel,
                            format!("`{raw}` is not a valid model id"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;

    let mut db = state.pool.get().await?;
    owned_dataset(&db, &caller, train_dataset_id, &task).await?;
    owned_dataset(&db, &caller, val_dataset_id, &task).await?;
    let available = models::list_available(&db, caller.id, Some(&task)).await?;
    // No list means the built-in templates and the caller's own (Rafiki's client names every
    // model it wants); another user's PUBLIC template runs on the caller's data only when named.
    // An explicit empty list is Rafiki's NoModelsForTrainJobError.
    let model_ids = match requested {
        Some(ids) if ids.is_empty() => {
            return Err(ApiError::new(
                ErrorCode::NoModelsForTrainJob,
                "model_ids is empty: a train job needs at least one model",
            ));
        }
        // Uploaded ONNX models serve as they are: there is nothing to tune.
        None => available
            .iter()
            .filter(|m| m.template_kind == TemplateKind::Native || m.user_id == caller.id)
            .filter(|m| m.template_kind != TemplateKind::Onnx)
            .map(|m| m.id)
            .collect(),
        Some(ids) => {
            for id in &ids {
                if !available.iter().any(|m| m.id == *id) {
                    let reason = match models::by_id(&db, *id).await? {
                        None => format!("no model with id {id}"),
                        Some(m) if m.task != task => {
                            format!("model {} is for task {}, not {task}", m.name, m.task)
                        }
                        Some(m) => format!("model {} is private to another user", m.name),
                    };
                    return Err(ApiError::new(ErrorCode::InvalidModel, reason));
                }
                if let Some(m) = available
                    .iter()
                    .find(|m| m.id == *id && m.template_kind == TemplateKind::Onnx)
                {
                    return Err(ApiError::new(
                        ErrorCode::InvalidModel,
                        format!(
                            "model {} is an ONNX model: it is served as uploaded, not trained \
                             (POST /inference_jobs with app and model_id)",
                            m.name
                        ),
                    ));
                }
            }
            let mut unique = ids;
            unique.sort();
            unique.dedup();
            unique
        }
    };
    if model_ids.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidModel,
            format!(
                "no models are available for task {task} among the built-in templates and your \
                 own; name another user's PUBLIC model in model_ids to use it"
            ),
        ));
    }

    let parallelism = state.settings.admin.trial_parallelism;
    let train_slots = budget
        .trial_limit()
        .map_or(parallelism, |limit| limit.min(parallelism));
    let new = NewTrainJob {
        user_id: caller.id,
        app: app.to_string(),
        task,
        train_dataset_id,
        val_dataset_id,
        budget,
        train_args,
        model_ids,
        train_slots: i32::try_from(train_slots).unwrap_or(1),
    };
    crate::quotas::check_live_jobs(&db, &state, &caller, crate::quotas::LiveJobs::Train).await?;
    let tx = db.transaction().await?;
    let (job, subs) = train_jobs::create(&tx, &new).await.map_err(|e| {
        if e.is_duplicate_of(train_jobs::ONE_LIVE_PER_APP) {
            ApiError::new(
                ErrorCode::TrainJobInProgress,
                format!("app {app} already has a train job in progress; stop it first"),
            )
        } else {
            e.into()
        }
    })?;
    tx.commit().await?;
    tracing::info!(train_job_id = %job.id, app = job.app, app_version = job.app_version, models = subs.len(), "train job created");
    state
        .publish(Event::TrainJobCreated {
            train_job_id: job.id,
        })
        .await;
    Ok(super::json(TrainJobRefView::from(&job)))
}

/// A user's train jobs (non-admins: only their own).
#[utoipa::path(get, path = "/train_jobs", tag = "train jobs",
    params(UserFilter),
    responses((status = 200, body = [TrainJobView]), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let UserFilter { user_id } = params.parse()?;
    let user_id: UserId = param_id(&user_id, "user_id", ErrorCode::InvalidUser)?;
    caller.require_owner_or_admin(user_id, "list of train jobs")?;
    let db = state.pool.get().await?;
    let jobs = train_jobs::list_by_user(&db, user_id).await?;
    Ok(super::json(
        jobs.iter().map(TrainJobView::from).collect::<Vec<_>>(),
    ))
}

/// Every version of one of the caller's apps, newest first.
#[utoipa::path(get, path = "/train_jobs/{app}", tag = "train jobs",
    params(("app" = String, Path)), responses((status = 200, body = [TrainJobView])), security(("bearer" = [])))]
pub async fn list_by_app(
    state: web::Data<AppState>,
    caller: Caller,
    app: web::Path<String>,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let app = params.segment(&app, "app");
    let db = state.pool.get().await?;
    let jobs = train_jobs::list_by_app(&db, caller.id, &app).await?;
    Ok(super::json(
        jobs.iter().map(TrainJobView::from).collect::<Vec<_>>(),
    ))
}

/// One version of one of the caller's apps.
#[utoipa::path(get, path = "/train_jobs/{app}/{app_version}", tag = "train jobs",
    params(("app" = String, Path), ("app_version" = i32, Path, description = "-1 for the latest")),
    responses((status = 200, body = TrainJobView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let (app, version) = app_version_segments(&params, &path);
    let job = jobs::find_train_job(&state, &caller, &app, &version).await?;
    let mut view = TrainJobView::from(&job);
    if matches!(job.status, JobStatus::Started | JobStatus::Running) && job.budget.gpus() > 0 {
        let db = state.pool.get().await?;
        let needed = workers::train_job_gpus(&db, job.id).await?;
        view.waiting = jobs::gpu_wait(&db, WorkerKind::Train, needed).await?;
    }
    Ok(super::json(view))
}

/// Stop a train job; it is STOPPED when this returns, and in-flight trials are cancelled.
#[utoipa::path(post, path = "/train_jobs/{app}/{app_version}/stop", tag = "train jobs",
    params(("app" = String, Path), ("app_version" = i32, Path)),
    responses((status = 200, body = TrainJobRefView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn stop(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let (app, version) = app_version_segments(&params, &path);
    let job = jobs::find_train_job(&state, &caller, &app, &version).await?;
    // Stopping a job that already ended changes nothing and is not an error (Rafiki's client
    // stops jobs without looking first).
    let stopped = jobs::stop_train_job(&state, &job).await?.unwrap_or(job);
    Ok(super::json(TrainJobRefView::from(&stopped)))
}

/// Trials of a train job: all (with `limit`/`offset`), or the best (`type=best`, `max_count`).
#[utoipa::path(get, path = "/train_jobs/{app}/{app_version}/trials", tag = "trials",
    params(("app" = String, Path), ("app_version" = i32, Path),
        TrialsQuery),
    responses((status = 200, body = [TrialView]), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn trials(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let (app, version) = app_version_segments(&params, &path);
    let job = jobs::find_train_job(&state, &caller, &app, &version).await?;
    let non_negative = |key: &str, value: i64| {
        if value < 0 {
            Err(ApiError::invalid_request(format!(
                "`{key}` must not be negative"
            )))
        } else {
            Ok(value)
        }
    };
    let db = state.pool.get().await?;
    let query: TrialsQuery = params.parse()?;
    let list = if query.kind.as_deref() == Some("best") {
        let max_count = non_negative("max_count", query.max_count.unwrap_or(DEFAULT_BEST_COUNT))?;
        trials::best_by_train_job(&db, job.id, max_count).await?
    } else {
        let limit =
            non_negative("limit", query.limit.unwrap_or(DEFAULT_TRIAL_LIMIT))?.min(MAX_TRIAL_LIMIT);
        let offset = non_negative("offset", query.offset.unwrap_or(0))?;
        trials::list_by_train_job(&db, job.id, limit, offset).await?
    };
    Ok(super::json(
        list.iter().map(TrialView::from).collect::<Vec<_>>(),
    ))
}
