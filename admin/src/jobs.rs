//! Operations on jobs that several handlers share: finding the caller's train job of an app
//! version, and stopping train and inference jobs (by their owner, on a ban, or all at once).

use duma_common::api_error::{ApiError, ErrorCode};
use duma_common::db::inference_jobs::{self, InferenceJob, ServedTrial};
use duma_common::db::models;
use duma_common::db::train_jobs::{self, TrainJob};
use duma_common::db::trials;
use duma_common::redis::events::Event;
use duma_domain::{AccessRight, JobStatus, Knobs, ModelId, TemplateKind};

use crate::auth::Caller;
use crate::params::{app_version, param_id};
use crate::state::AppState;

/// The caller's train job of `app` at `app_version` (-1: the latest).
pub async fn find_train_job(
    state: &AppState,
    caller: &Caller,
    app: &str,
    version: &str,
) -> Result<TrainJob, ApiError> {
    let version = app_version(version)?;
    let db = state.pool.get().await?;
    train_jobs::by_app_version(&db, caller.id, app, version)
        .await?
        .ok_or_else(|| {
            let which = version.map_or("any version".to_owned(), |v| format!("version {v}"));
            ApiError::new(
                ErrorCode::TrainJobNotFound,
                format!("you have no train job for app {app} at {which}"),
            )
        })
}

/// A new version of the caller's `app` that serves the uploaded model `model_id` (the caller's,
/// or public) without training: an ONNX model, whose one trial's parameters are the file itself,
/// or a template uploaded with a checkpoint, built with `knobs` and loaded with the checkpoint.
pub async fn version_from_model(
    state: &AppState,
    caller: &Caller,
    app: &str,
    model_id: &str,
    knobs: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<TrainJob, ApiError> {
    let id: ModelId = param_id(model_id, "model_id", ErrorCode::InvalidModel)?;
    let db = state.pool.get().await?;
    let model = models::by_id(&db, id)
        .await?
        .filter(|m| {
            m.user_id == caller.id || m.access_right == AccessRight::Public || caller.is_admin()
        })
        .ok_or_else(|| ApiError::new(ErrorCode::ModelNotFound, format!("no model with id {id}")))?;
    drop(db);
    serve_model(state, caller, app, &model, knobs).await
}

/// [`version_from_model`] for a model already found.
pub async fn serve_model(
    state: &AppState,
    caller: &Caller,
    app: &str,
    model: &models::Model,
    knobs: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<TrainJob, ApiError> {
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidModel, message);
    let (file, knobs) = match (model.template_kind, &model.checkpoint) {
        (TemplateKind::Onnx, _) => {
            if knobs.is_some_and(|k| !k.is_empty()) {
                return Err(invalid(format!(
                    "model {} is an ONNX model: it has no knobs",
                    model.name
                )));
            }
            let (Some(path), Some(sha256)) = (&model.source_path, &model.source_sha256) else {
                return Err(invalid(format!("model {} has no stored file", model.name)));
            };
            let size = model.source_size_bytes.unwrap_or(0);
            ((path.clone(), sha256.clone(), size), Knobs::default())
        }
        (_, Some(checkpoint)) => {
            let knobs: Knobs = serde_json::from_value(serde_json::Value::Object(
                knobs.cloned().unwrap_or_default(),
            ))
            .map_err(|e| invalid(format!("knobs: {e}")))?;
            let file = (
                checkpoint.path.clone(),
                checkpoint.sha256.clone(),
                checkpoint.size_bytes,
            );
            (file, knobs)
        }
        (TemplateKind::Native, None) => {
            return Err(invalid(format!(
                "model {} is a built-in template: train it first (start a train job)",
                model.name
            )));
        }
        (TemplateKind::Python, None) => {
            return Err(invalid(format!(
                "model {} is a Python template without a checkpoint: train it first (start a \
                 train job), or upload it again with its trained parameters in file part \
                 `checkpoint_id`",
                model.name
            )));
        }
    };
    let app = duma_domain::AppName::parse(app)
        .map_err(|e| ApiError::new(ErrorCode::InvalidTrainJob, e.to_string()))?;
    let app = app.as_str();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let job = train_jobs::create_from_model(
        &tx,
        caller.id,
        app,
        &model.task,
        model.id,
        &knobs,
        (&file.0, &file.1, file.2),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(app, app_version = job.app_version, model_id = %model.id, "version made from an uploaded model");
    Ok(job)
}

/// Stops a live job and tells the workers; `None` if it was not live.
pub async fn stop_train_job(
    state: &AppState,
    job: &TrainJob,
) -> Result<Option<TrainJob>, ApiError> {
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let stopped = train_jobs::stop(&tx, job.id).await?;
    tx.commit().await?;
    if stopped.is_some() {
        tracing::info!(train_job_id = %job.id, "train job stopped");
        state
            .publish(Event::TrainJobStopped {
                train_job_id: job.id,
            })
            .await;
    }
    Ok(stopped)
}

/// Stops a live job and tells predictors and workers; `None` if it was not live.
pub async fn stop_inference_job(
    state: &AppState,
    job: &InferenceJob,
) -> Result<Option<InferenceJob>, ApiError> {
    let db = state.pool.get().await?;
    let stopped = inference_jobs::set_status(&db, job.id, JobStatus::Stopped, None).await?;
    if stopped.is_some() {
        tracing::info!(inference_job_id = %job.id, "inference job stopped");
        state
            .publish(Event::InferenceJobStopped {
                inference_job_id: job.id,
            })
            .await;
    }
    Ok(stopped)
}

/// How a new inference job serves: at which deployment service level (`None`: outside any
/// deployment) and with how many replicas of each trial.
#[derive(Debug, Clone, Copy)]
pub struct Serving<'a> {
    pub service_level: Option<&'a str>,
    pub replicas: i32,
}

impl Serving<'_> {
    /// Rafiki's inference jobs: no level, one replica.
    pub const PLAIN: Serving<'static> = Serving {
        service_level: None,
        replicas: 1,
    };
}

/// An inference job's budget from a request: Rafiki's `GPU_COUNT` only (GPUs per replica).
pub fn inference_budget(
    budget: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<serde_json::Value, ApiError> {
    let budget = serde_json::Value::Object(budget.unwrap_or_default());
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidRequest, message);
    let parsed: duma_domain::InferenceBudget =
        serde_json::from_value(budget.clone()).map_err(|e| {
            invalid(format!(
                "budget: {e} (an inference job's budget has GPU_COUNT only)"
            ))
        })?;
    parsed
        .validate()
        .map_err(|e| invalid(format!("budget: {e}")))?;
    Ok(budget)
}

/// Serves a STOPPED train job: a new inference job for each model's best trial with saved
/// parameters (on its own port when the platform gives jobs ports), within the caller's quota.
pub async fn serve_train_job(
    state: &AppState,
    caller: &Caller,
    train_job: &TrainJob,
    budget: &serde_json::Value,
    serving: Serving<'_>,
) -> Result<InferenceJob, ApiError> {
    let app = &train_job.app;
    if train_job.status != JobStatus::Stopped {
        return Err(ApiError::new(
            ErrorCode::InvalidTrainJob,
            format!(
                "train job {app} v{} is {}; it must be STOPPED before it can be served",
                train_job.app_version, train_job.status
            ),
        ));
    }
    let mut db = state.pool.get().await?;
    crate::quotas::check_live_jobs(&db, state, caller, crate::quotas::LiveJobs::Inference).await?;
    let best = trials::best_per_sub_job(&db, train_job.id).await?;
    if best.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidTrainJob,
            format!(
                "train job {app} v{} has no completed trial with saved parameters",
                train_job.app_version
            ),
        ));
    }
    let served: Vec<ServedTrial> = best
        .iter()
        .map(|t| ServedTrial {
            trial_id: t.id,
            desired_replicas: serving.replicas,
        })
        .collect();
    let tx = db.transaction().await?;
    let port = match state.settings.admin.inference_job_port_range() {
        Ok(Some(ports)) => Some(
            inference_jobs::free_port(&tx, ports.clone())
                .await?
                .ok_or_else(|| no_free_port(&ports))?,
        ),
        // Validated at start-up.
        Ok(None) | Err(_) => None,
    };
    let job = inference_jobs::create(
        &tx,
        caller.id,
        train_job.id,
        budget,
        &served,
        port,
        serving.service_level,
    )
    .await
    .map_err(|e| {
        if e.is_duplicate_of(inference_jobs::ONE_LIVE_PER_TRAIN_JOB) {
            ApiError::new(
                ErrorCode::RunningInferenceJobExists,
                format!(
                    "train job {app} v{} is already being served",
                    train_job.app_version
                ),
            )
        } else {
            e.into()
        }
    })?;
    tx.commit().await?;
    tracing::info!(inference_job_id = %job.id, trials = served.len(), "inference job created");
    state
        .publish(Event::InferenceJobCreated {
            inference_job_id: job.id,
        })
        .await;
    Ok(job)
}

/// The live inference job of a train job at the same service level, or a new one.
pub async fn live_or_new_inference_job(
    state: &AppState,
    caller: &Caller,
    train_job: &TrainJob,
    serving: Serving<'_>,
) -> Result<InferenceJob, ApiError> {
    let db = state.pool.get().await?;
    if let Some(job) = inference_jobs::live_for_train_job(&db, train_job.id).await? {
        let level = |l: Option<&str>| l.unwrap_or("development").to_owned();
        if level(job.service_level.as_deref()) != level(serving.service_level) {
            return Err(ApiError::new(
                ErrorCode::RunningInferenceJobExists,
                format!(
                    "{} v{} is served at service level {} already; stop that inference job, or \
                     deploy it at that level",
                    train_job.app,
                    train_job.app_version,
                    level(job.service_level.as_deref())
                ),
            ));
        }
        // Shared with another deployment (or a Rafiki inference job): never fewer replicas
        // than either asks for.
        if inference_jobs::replicas(&db, job.id).await? < serving.replicas {
            let mut db = db;
            let tx = db.transaction().await?;
            inference_jobs::set_replicas(&tx, job.id, serving.replicas).await?;
            tx.commit().await?;
        }
        return Ok(job);
    }
    drop(db);
    serve_train_job(state, caller, train_job, &serde_json::json!({}), serving).await
}

fn no_free_port(ports: &std::ops::RangeInclusive<u16>) -> ApiError {
    ApiError::retry_later(
        ErrorCode::Unavailable,
        format!(
            "every predictor port ({}-{}) is held by a live inference job; stop one, or ask the \
             operator to widen admin.inference_job_ports",
            ports.start(),
            ports.end()
        ),
        std::time::Duration::from_secs(60),
    )
}

/// Why the work of a live job waits, if it does: it needs `needed` GPUs (per trial or per
/// replica) and no live worker of `kind` has that many. Work is never run on fewer, nor on CPU.
pub async fn gpu_wait(
    db: &impl duma_common::db::GenericClient,
    kind: duma_domain::WorkerKind,
    needed: u32,
) -> Result<Option<String>, ApiError> {
    if needed == 0 {
        return Ok(None);
    }
    let most =
        duma_common::db::workers::most_gpus(db, kind, crate::reconciler::NO_WORKER_AFTER).await?;
    Ok((most < needed).then(|| {
        format!(
            "waiting for a {} worker with {needed} GPUs (GPU_COUNT): the most any live one has \
             is {most}; start one on a machine with enough GPUs (its `gpus` setting)",
            kind.to_string().to_lowercase()
        )
    }))
}
