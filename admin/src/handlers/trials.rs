use actix_web::{HttpResponse, web};
use duma_common::db::trials::{self, Trial};
use duma_domain::{TrialId, TrialLogKind};
use serde_json::Value;

use crate::auth::{Caller, roles};
use crate::params::path_id;
use crate::state::AppState;
use crate::views::{TrialLogsView, TrialView, http_date};
use duma_common::api_error::{ApiError, ApiResult, ErrorBody, ErrorCode};

/// The trial with `id`, if it belongs to one of the caller's train jobs (or the caller is an
/// admin). Rafiki checked nothing here; Duma does.
async fn visible_trial(state: &AppState, caller: &Caller, raw_id: &str) -> Result<Trial, ApiError> {
    let id: TrialId = path_id(raw_id, ErrorCode::TrialNotFound, "trial")?;
    let db = state.pool.get().await?;
    let trial = trials::by_id(&db, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::TrialNotFound, format!("no trial with id {id}")))?;
    caller.require_owner_or_admin(trial.user_id, "trial")?;
    Ok(trial)
}

/// One trial.
#[utoipa::path(get, path = "/trials/{trial_id}", tag = "trials", params(("trial_id" = String, Path)),
    responses((status = 200, body = TrialView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let trial = visible_trial(&state, &caller, &id).await?;
    Ok(super::json(TrialView::from(&trial)))
}

/// A trial's logs: plot definitions, metrics and messages.
#[utoipa::path(get, path = "/trials/{trial_id}/logs", tag = "trials", params(("trial_id" = String, Path)),
    responses((status = 200, body = TrialLogsView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn logs(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let trial = visible_trial(&state, &caller, &id).await?;
    let db = state.pool.get().await?;
    let mut view = TrialLogsView {
        plots: Vec::new(),
        metrics: Vec::new(),
        messages: Vec::new(),
    };
    for log in trials::logs(&db, trial.id).await? {
        let time = Value::String(http_date(&log.datetime));
        match (log.kind, log.payload) {
            (TrialLogKind::Plot, plot) => view.plots.push(plot),
            (TrialLogKind::Metrics, Value::Object(mut metrics)) => {
                metrics.insert("time".into(), time);
                view.metrics.push(Value::Object(metrics));
            }
            (TrialLogKind::Message, payload) => {
                let message = payload.get("message").cloned().unwrap_or(payload);
                view.messages
                    .push(serde_json::json!({"time": time, "message": message}));
            }
            (TrialLogKind::Metrics, other) => {
                tracing::warn!(trial_id = %trial.id, payload = %other, "skipping a malformed metrics record");
            }
        }
    }
    Ok(super::json(view))
}

/// Download a trial's trained parameters.
#[utoipa::path(get, path = "/trials/{trial_id}/parameters", tag = "trials", params(("trial_id" = String, Path)),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn parameters(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let trial = visible_trial(&state, &caller, &id).await?;
    let params = trial.params.ok_or_else(|| {
        ApiError::new(
            ErrorCode::TrialNotFound,
            format!("trial {} has no saved parameters", trial.id),
        )
    })?;
    super::file(&state.store, &params.path).await
}
