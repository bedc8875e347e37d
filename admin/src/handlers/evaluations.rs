//! Evaluations: a version of an app scored offline on a labelled dataset by a train worker —
//! the trials that serve it, ensembled as the predictor does — with scikit-learn's metrics
//! (`docs/deployments.md`).

use actix_web::{HttpResponse, web};
use duma_common::db::evaluations::{self, Evaluation, NewEvaluation};
use duma_common::db::train_jobs::TrainJob;
use duma_common::db::{train_jobs, trials};
use duma_common::redis::events::Event;
use duma_domain::evaluation::Metrics;
use duma_domain::{DatasetId, EvaluationId, TrialId, TrialStatus};
use serde_json::{Map, Value};

use crate::auth::{Caller, roles};
use crate::handlers::{deployments, train_jobs::owned_dataset};
use crate::jobs;
use crate::params::{Params, param_id, path_id};
use crate::requests::{CreateEvaluationRequest, ListEvaluationsQuery};
use crate::state::AppState;
use crate::views::{EvaluationComparisonView, EvaluationLineView, EvaluationView};
use duma_common::api_error::{ApiError, ApiResult, ErrorBody, ErrorCode};

/// The tasks whose datasets say what the right answer is in a column evaluations can read.
const EVALUATED_TASKS: [&str; 2] = ["TABULAR_CLASSIFICATION", "TABULAR_REGRESSION"];

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidEvaluation, message)
}

/// What an evaluation scores: a train job and its trials, best first.
struct Target {
    train_job: TrainJob,
    trial_ids: Vec<TrialId>,
    deployment: Option<String>,
}

/// The best completed trial of each model of `train_job` (what serving it serves), best first.
async fn served_trials(state: &AppState, train_job: TrainJob) -> Result<Target, ApiError> {
    let db = state.pool.get().await?;
    let mut best = trials::best_per_sub_job(&db, train_job.id).await?;
    if best.is_empty() {
        return Err(invalid(format!(
            "{} v{} has no completed trial with saved parameters to evaluate",
            train_job.app, train_job.app_version
        )));
    }
    best.sort_by(|a, b| {
        b.score
            .unwrap_or(f64::MIN)
            .total_cmp(&a.score.unwrap_or(f64::MIN))
    });
    Ok(Target {
        trial_ids: best.iter().map(|t| t.id).collect(),
        train_job,
        deployment: None,
    })
}

async fn target(
    state: &AppState,
    caller: &Caller,
    request: &CreateEvaluationRequest,
) -> Result<Target, ApiError> {
    match (&request.deployment, &request.app, &request.trial_id) {
        (Some(name), None, None) => {
            let deployment = deployments::find(state, caller, name).await?;
            let routes = deployment.pending.as_ref().unwrap_or(&deployment.routes);
            let version = match request.app_version {
                Some(version) => routes
                    .iter()
                    .find(|r| i64::from(r.app_version) == version)
                    .map(|r| r.app_version)
                    .ok_or_else(|| {
                        invalid(format!(
                            "deployment {name} has no version {version}; its versions are {}",
                            versions(routes)
                        ))
                    })?,
                None => routes
                    .iter()
                    .filter(|r| !r.shadow)
                    .max_by_key(|r| (r.weight, r.app_version))
                    .map(|r| r.app_version)
                    .ok_or_else(|| invalid(format!("deployment {name} serves no version")))?,
            };
            let train_job =
                jobs::find_train_job(state, caller, &deployment.app, &version.to_string()).await?;
            let mut target = served_trials(state, train_job).await?;
            target.deployment = Some(deployment.name);
            Ok(target)
        }
        (None, Some(app), None) => {
            let version = request.app_version.unwrap_or(-1).to_string();
            let train_job = jobs::find_train_job(state, caller, app, &version).await?;
            served_trials(state, train_job).await
        }
        (None, None, Some(raw)) => {
            if request.app_version.is_some() {
                return Err(invalid("a trial has its version; give trial_id alone"));
            }
            let id: TrialId = param_id(raw, "trial_id", ErrorCode::InvalidEvaluation)?;
            let db = state.pool.get().await?;
            let trial = trials::by_id(&db, id)
                .await?
                .filter(|t| t.user_id == caller.id || caller.is_admin())
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::TrialNotFound, format!("no trial with id {id}"))
                })?;
            if trial.status != TrialStatus::Completed || trial.params.is_none() {
                return Err(invalid(format!(
                    "trial {id} is {}, without saved parameters: only a completed trial can be \
                     evaluated",
                    trial.status
                )));
            }
            let train_job = train_jobs::by_id(&db, trial.train_job_id)
                .await?
                .ok_or_else(|| invalid(format!("trial {id}'s train job is gone")))?;
            Ok(Target {
                train_job,
                trial_ids: vec![id],
                deployment: None,
            })
        }
        _ => Err(invalid(
            "say what to evaluate with exactly one of deployment, app (with app_version) or \
             trial_id",
        )),
    }
}

fn versions(routes: &[duma_common::db::deployments::Route]) -> String {
    let list: Vec<String> = routes.iter().map(|r| r.app_version.to_string()).collect();
    list.join(", ")
}

/// Score a deployment's version, an app version or one trial on a labelled dataset.
#[utoipa::path(post, path = "/evaluations", tag = "evaluations",
    request_body(content = CreateEvaluationRequest, content_type = "application/json"),
    responses((status = 200, body = EvaluationView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let request: CreateEvaluationRequest = params.parse()?;
    let dataset_id: DatasetId = param_id(
        &request.dataset_id,
        "dataset_id",
        ErrorCode::InvalidEvaluation,
    )?;
    let target = target(&state, &caller, &request).await?;
    let task = target.train_job.task.clone();
    if !EVALUATED_TASKS.contains(&task.as_str()) {
        return Err(invalid(format!(
            "evaluations score {} versions; {} v{} is {task}",
            EVALUATED_TASKS.join(" and "),
            target.train_job.app,
            target.train_job.app_version
        )));
    }
    let db = state.pool.get().await?;
    owned_dataset(&db, &caller, dataset_id, &task).await?;
    let evaluation = evaluations::insert(
        &db,
        &NewEvaluation {
            user_id: caller.id,
            dataset_id,
            train_job_id: target.train_job.id,
            app: &target.train_job.app,
            app_version: target.train_job.app_version,
            deployment: target.deployment.as_deref(),
            trial_ids: &target.trial_ids,
            task: &task,
        },
    )
    .await?;
    state.publish(Event::EvaluationCreated).await;
    tracing::info!(evaluation_id = %evaluation.id, app = evaluation.app, app_version = evaluation.app_version, "evaluation asked for");
    Ok(super::json(EvaluationView::from(&evaluation)))
}

/// The caller's evaluations (admins: everyone's), newest first; `app` and `dataset_id` filter.
#[utoipa::path(get, path = "/evaluations", tag = "evaluations", params(ListEvaluationsQuery),
    responses((status = 200, body = [EvaluationView]), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let query: ListEvaluationsQuery = params.parse()?;
    let dataset: Option<DatasetId> = query
        .dataset_id
        .as_deref()
        .map(|raw| param_id(raw, "dataset_id", ErrorCode::InvalidEvaluation))
        .transpose()?;
    let db = state.pool.get().await?;
    let whose = (!caller.is_admin()).then_some(caller.id);
    let list = evaluations::list(&db, whose, query.app.as_deref(), dataset).await?;
    let views: Vec<EvaluationView> = list.iter().map(EvaluationView::from).collect();
    Ok(super::json(views))
}

/// One evaluation.
#[utoipa::path(get, path = "/evaluations/{evaluation_id}", tag = "evaluations", params(("evaluation_id" = String, Path)),
    responses((status = 200, body = EvaluationView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let id: EvaluationId = path_id(&id, ErrorCode::EvaluationNotFound, "evaluation")?;
    let db = state.pool.get().await?;
    let evaluation = evaluations::by_id(&db, id)
        .await?
        // Another user's evaluation does not exist for the caller.
        .filter(|e| e.user_id == caller.id || caller.is_admin())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::EvaluationNotFound,
                format!("no evaluation with id {id}"),
            )
        })?;
    Ok(super::json(EvaluationView::from(&evaluation)))
}

/// An app's versions side by side: the latest completed evaluation of each version on each
/// dataset, with its headline scores.
#[utoipa::path(get, path = "/apps/{app}/evaluations", tag = "evaluations", params(("app" = String, Path)),
    responses((status = 200, body = EvaluationComparisonView)), security(("bearer" = [])))]
pub async fn compare(
    state: web::Data<AppState>,
    caller: Caller,
    app: web::Path<String>,
) -> ApiResult<HttpResponse> {
    caller.require(roles::DEVELOPERS)?;
    let db = state.pool.get().await?;
    // Side by side means one owner's versions, admins included.
    let list = evaluations::list(&db, Some(caller.id), Some(&app), None).await?;
    let mut lines: Vec<EvaluationLineView> = Vec::new();
    // Newest first, so the first of each (version, dataset) is the latest.
    for evaluation in list.iter().filter(|e| e.status == "COMPLETED") {
        let seen = lines.iter().any(|l| {
            l.app_version == evaluation.app_version && l.dataset_id == evaluation.dataset_id.0
        });
        if !seen {
            lines.push(line(evaluation));
        }
    }
    lines.sort_by_key(|l| std::cmp::Reverse(l.app_version));
    Ok(super::json(EvaluationComparisonView {
        app: app.into_inner(),
        versions: lines,
    }))
}

fn line(evaluation: &Evaluation) -> EvaluationLineView {
    let mut scores = Map::new();
    match &evaluation.metrics {
        Some(Metrics::Classification(m)) => {
            scores.insert("accuracy".into(), Value::from(m.accuracy));
            scores.insert("macro_f1".into(), Value::from(m.macro_avg.f1));
            scores.insert("weighted_f1".into(), Value::from(m.weighted_avg.f1));
        }
        Some(Metrics::Regression(m)) => {
            scores.insert("mae".into(), Value::from(m.mae));
            scores.insert("rmse".into(), Value::from(m.rmse));
            scores.insert("r2".into(), Value::from(m.r2));
        }
        None => {}
    }
    EvaluationLineView {
        app_version: evaluation.app_version,
        dataset_id: evaluation.dataset_id.0,
        evaluation_id: evaluation.id.0,
        rows: evaluation.rows,
        scores,
    }
}
