use actix_web::{HttpResponse, web};
use duma_common::db::{inference_jobs, train_jobs};
use duma_domain::UserType;

use crate::auth::Caller;
use crate::state::AppState;
use crate::views::{IdView, StoppedJobsView};
use duma_common::api_error::{ApiResult, ErrorBody};

/// Stop every running train and inference job (superadmin only).
#[utoipa::path(post, path = "/actions/stop_all_jobs", tag = "actions",
    responses((status = 200, body = StoppedJobsView), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn stop_all_jobs(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    caller.require(&[UserType::Superadmin])?;
    let db = state.pool.get().await?;
    let live_inference = inference_jobs::list_live(&db).await?;
    let live_train = train_jobs::list_live(&db).await?;
    drop(db);
    let mut stopped = StoppedJobsView {
        train_jobs: Vec::new(),
        inference_jobs: Vec::new(),
    };
    for job in &live_inference {
        if crate::jobs::stop_inference_job(&state, job)
            .await?
            .is_some()
        {
            stopped.inference_jobs.push(IdView { id: job.id.0 });
        }
    }
    for job in &live_train {
        if crate::jobs::stop_train_job(&state, job).await?.is_some() {
            stopped.train_jobs.push(IdView { id: job.id.0 });
        }
    }
    tracing::info!(train_jobs = stopped.train_jobs.len(), inference_jobs = stopped.inference_jobs.len(), by = %caller.id, "stopped all jobs");
    Ok(super::json(stopped))
}
