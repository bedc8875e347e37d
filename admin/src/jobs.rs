//! Operations on jobs that several handlers share: finding the caller's train job of an app
//! version, and stopping train and inference jobs (by their owner, on a ban, or all at once).

use duma_common::api_error::{ApiError, ErrorCode};
use duma_common::db::inference_jobs::{self, InferenceJob};
use duma_common::db::train_jobs::{self, TrainJob};
use duma_common::redis::events::Event;
use duma_domain::JobStatus;

use crate::auth::Caller;
use crate::params::app_version;
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
