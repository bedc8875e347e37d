//! Response bodies, field for field as Rafiki's client expects them.

use chrono::{DateTime, Utc};
use duma_common::db::{
    datasets::Dataset, inference_jobs::InferenceJob, models::Model, train_jobs::TrainJob,
    trials::Trial, users::User,
};
use duma_domain::{AccessRight, JobStatus, TrialStatus, UserType};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// Datetimes as RFC 1123 in GMT ("Tue, 07 May 2019 10:00:00 GMT").
pub fn http_date(datetime: &DateTime<Utc>) -> String {
    datetime.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn opt_http_date(datetime: &Option<DateTime<Utc>>) -> Option<String> {
    datetime.as_ref().map(http_date)
}

#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub user_id: Uuid,
    #[schema(value_type = String)]
    pub user_type: UserType,
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    #[schema(value_type = String)]
    pub user_type: UserType,
    /// RFC 1123, or null when not banned.
    pub banned_date: Option<String>,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.0,
            email: user.email.clone(),
            user_type: user.user_type,
            banned_date: opt_http_date(&user.banned_date),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DatasetView {
    pub id: Uuid,
    pub name: String,
    pub task: String,
    pub datetime_created: String,
    pub size_bytes: i64,
    /// SHA-256 of the stored file (hex): compare it with the file you uploaded.
    pub sha256: String,
}

impl From<&Dataset> for DatasetView {
    fn from(d: &Dataset) -> Self {
        Self {
            id: d.id.0,
            name: d.name.clone(),
            task: d.task.clone(),
            datetime_created: http_date(&d.datetime_created),
            size_bytes: d.size_bytes,
            sha256: d.sha256.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedModelView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
}

impl From<&Model> for CreatedModelView {
    fn from(m: &Model) -> Self {
        Self {
            id: m.id.0,
            user_id: m.user_id.0,
            name: m.name.clone(),
        }
    }
}

/// A model in `GET /models/available`.
#[derive(Serialize, ToSchema)]
pub struct AvailableModelView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub task: String,
    pub datetime_created: String,
    pub dependencies: std::collections::BTreeMap<String, String>,
    #[schema(value_type = String)]
    pub access_right: AccessRight,
    /// The template's knob space (`{"knob": {"type": "FloatKnob", "min", "max", ...}}`), known
    /// once a train worker has read the template (built-ins: always); null before, and for ONNX
    /// models.
    #[schema(value_type = Option<Object>)]
    pub knob_config: Option<Value>,
}

impl From<&Model> for AvailableModelView {
    fn from(m: &Model) -> Self {
        Self {
            id: m.id.0,
            user_id: m.user_id.0,
            name: m.name.clone(),
            task: m.task.clone(),
            datetime_created: http_date(&m.datetime_created),
            dependencies: m.dependencies.clone(),
            access_right: m.access_right,
            knob_config: m
                .knob_config
                .as_ref()
                .and_then(|c| serde_json::to_value(c).ok()),
        }
    }
}

/// A model in `GET /models/{id}`: the summary plus its class and image.
#[derive(Serialize, ToSchema)]
pub struct ModelView {
    #[serde(flatten)]
    pub summary: AvailableModelView,
    pub model_class: String,
    pub docker_image: Option<String>,
    /// What its developer says about it (`model_description` at upload).
    pub model_description: Option<String>,
    /// `native` (built in), `python` (an uploaded template) or `onnx` (an uploaded ONNX model,
    /// served without training).
    pub template_kind: String,
    /// An ONNX model's tensors: `{"inputs": [{"name", "datatype", "shape"}], "outputs": [...]}`
    /// (`-1`: any size).
    #[schema(value_type = Option<Object>)]
    pub signature: Option<Value>,
    /// The trained parameters uploaded with a template, if any: it then serves without training.
    pub checkpoint: Option<CheckpointView>,
}

#[derive(Serialize, ToSchema)]
pub struct CheckpointView {
    pub sha256: String,
    pub size_bytes: i64,
}

impl From<&Model> for ModelView {
    fn from(m: &Model) -> Self {
        Self {
            summary: AvailableModelView::from(m),
            model_class: m.model_class.clone(),
            docker_image: m.docker_image.clone(),
            model_description: m.description.clone(),
            template_kind: m.template_kind.as_str().to_owned(),
            signature: m.signature.clone(),
            checkpoint: m.checkpoint.as_ref().map(|c| CheckpointView {
                sha256: c.sha256.clone(),
                size_bytes: c.size_bytes,
            }),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TrainJobRefView {
    pub id: Uuid,
    pub app: String,
    pub app_version: i32,
}

impl From<&TrainJob> for TrainJobRefView {
    fn from(j: &TrainJob) -> Self {
        Self {
            id: j.id.0,
            app: j.app.clone(),
            app_version: j.app_version,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TrainJobView {
    pub id: Uuid,
    #[schema(value_type = String)]
    pub status: JobStatus,
    pub app: String,
    pub app_version: i32,
    pub task: String,
    /// `null` for a version served from an uploaded model (nothing trained).
    pub train_dataset_id: Option<Uuid>,
    pub val_dataset_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub train_args: serde_json::Map<String, Value>,
    pub datetime_started: String,
    pub datetime_stopped: Option<String>,
    #[schema(value_type = Object)]
    pub budget: Value,
    /// Why the job is ERRORED (a Duma extension).
    pub error: Option<String>,
    /// Why a live job's trials wait (no live train worker has the GPUs its budget asks for): a
    /// Duma extension, present only then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// What a tabular version takes and answers: `{"task", "features": [{"name", "datatype"}],
    /// "target", "classes"}` (classes in the order of predicted probabilities), once its first
    /// trial has read the training data (a Duma extension).
    #[schema(value_type = Option<Object>)]
    pub model_metadata: Option<Value>,
}

impl From<&TrainJob> for TrainJobView {
    fn from(j: &TrainJob) -> Self {
        Self {
            id: j.id.0,
            status: j.status,
            app: j.app.clone(),
            app_version: j.app_version,
            task: j.task.clone(),
            train_dataset_id: j.train_dataset_id.map(|d| d.0),
            val_dataset_id: j.val_dataset_id.map(|d| d.0),
            train_args: j.train_args.clone(),
            datetime_started: http_date(&j.datetime_started),
            datetime_stopped: opt_http_date(&j.datetime_stopped),
            budget: serde_json::to_value(j.budget).unwrap_or(Value::Null),
            error: j.error.clone(),
            waiting: None,
            model_metadata: j.metadata.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TrialView {
    pub id: Uuid,
    pub no: i32,
    pub worker_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub proposal: Value,
    pub datetime_started: String,
    #[schema(value_type = String)]
    pub status: TrialStatus,
    pub datetime_stopped: Option<String>,
    pub model_name: String,
    pub score: Option<f64>,
    pub is_params_saved: bool,
}

impl From<&Trial> for TrialView {
    fn from(t: &Trial) -> Self {
        Self {
            id: t.id.0,
            no: t.no,
            worker_id: t.worker_id.map(|w| w.0),
            proposal: serde_json::to_value(&t.proposal).unwrap_or(Value::Null),
            datetime_started: http_date(&t.datetime_started),
            status: t.status,
            datetime_stopped: opt_http_date(&t.datetime_stopped),
            model_name: t.model_name.clone(),
            score: t.score,
            is_params_saved: t.is_params_saved(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TrialLogsView {
    #[schema(value_type = Vec<Object>)]
    pub plots: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub metrics: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct InferenceJobView {
    pub id: Uuid,
    #[schema(value_type = String)]
    pub status: JobStatus,
    pub train_job_id: Uuid,
    pub app: String,
    pub app_version: i32,
    pub datetime_started: String,
    pub datetime_stopped: Option<String>,
    /// Only for STARTED/RUNNING jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictor_host: Option<String>,
    /// Why the job is ERRORED (a Duma extension).
    pub error: Option<String>,
    /// Why a live job's models wait (no live inference worker has the GPUs its budget asks
    /// for): a Duma extension, present only then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

impl InferenceJobView {
    pub fn new(job: &InferenceJob, predictor_host: Option<String>) -> Self {
        Self {
            id: job.id.0,
            status: job.status,
            train_job_id: job.train_job_id.0,
            app: job.app.clone(),
            app_version: job.app_version,
            datetime_started: http_date(&job.datetime_started),
            datetime_stopped: opt_http_date(&job.datetime_stopped),
            predictor_host,
            error: job.error.clone(),
            waiting: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct InferenceJobRefView {
    pub id: Uuid,
    pub train_job_id: Uuid,
    pub app: String,
    pub app_version: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictor_host: Option<String>,
    /// The model served, for SINGA-Auto's checkpoint route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<Uuid>,
}

/// One share of a deployment's traffic.
#[derive(Serialize, ToSchema)]
pub struct DeploymentRouteView {
    pub app_version: i32,
    pub inference_job_id: Uuid,
    /// Percent of the traffic (0 for the shadow).
    pub weight: u32,
    /// Gets a copy of the traffic; its answers are recorded, never returned.
    pub shadow: bool,
}

impl From<&duma_common::db::deployments::Route> for DeploymentRouteView {
    fn from(route: &duma_common::db::deployments::Route) -> Self {
        Self {
            app_version: route.app_version,
            inference_job_id: route.inference_job_id.0,
            weight: route.weight,
            shadow: route.shadow,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeploymentView {
    pub id: Uuid,
    pub name: String,
    pub user_id: Uuid,
    pub app: String,
    pub service_level: String,
    /// Replicas of each served model of the versions it starts.
    pub replicas: i32,
    /// `STARTING` (nothing serves yet), `SERVING`, `SWITCHING` (serving; a change waits for its
    /// versions to run) or `FAILED` (nothing serves; see `error`).
    pub status: String,
    /// Where its predictions are asked for; it never changes.
    pub url: String,
    /// What takes the traffic now.
    pub routes: Vec<DeploymentRouteView>,
    /// What will once its versions run.
    pub pending: Option<Vec<DeploymentRouteView>>,
    /// What took the traffic before the last switch (`rollback` returns to it).
    pub previous: Option<Vec<DeploymentRouteView>>,
    /// Why the last change did not happen.
    pub error: Option<String>,
    pub datetime_created: String,
    pub datetime_updated: String,
}

impl DeploymentView {
    pub fn new(
        deployment: &duma_common::db::deployments::Deployment,
        predictor_host: &str,
    ) -> Self {
        let routes = |routes: &[duma_common::db::deployments::Route]| {
            routes
                .iter()
                .map(DeploymentRouteView::from)
                .collect::<Vec<_>>()
        };
        let status = match (&deployment.pending, deployment.routes.is_empty()) {
            (Some(_), true) => "STARTING",
            (Some(_), false) => "SWITCHING",
            (None, false) => "SERVING",
            (None, true) => "FAILED",
        };
        Self {
            id: deployment.id.0,
            name: deployment.name.clone(),
            user_id: deployment.user_id.0,
            app: deployment.app.clone(),
            service_level: deployment.service_level.clone(),
            replicas: deployment.replicas,
            status: status.to_owned(),
            url: format!(
                "http://{}/deployments/{}/predict",
                predictor_host.trim_end_matches('/'),
                deployment.name
            ),
            routes: routes(&deployment.routes),
            pending: deployment.pending.as_deref().map(routes),
            previous: deployment.previous.as_deref().map(routes),
            error: deployment.error.clone(),
            datetime_created: http_date(&deployment.datetime_created),
            datetime_updated: http_date(&deployment.datetime_updated),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct IdView {
    pub id: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct StoppedJobsView {
    pub train_jobs: Vec<IdView>,
    pub inference_jobs: Vec<IdView>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn datetimes_are_rfc_1123_gmt() {
        let datetime = Utc.with_ymd_and_hms(2019, 5, 7, 10, 0, 0).unwrap();
        assert_eq!(http_date(&datetime), "Tue, 07 May 2019 10:00:00 GMT");
    }
}

/// A prediction key as listed: never the key itself.
#[derive(Serialize, ToSchema)]
pub struct PredictionKeyView {
    pub id: Uuid,
    pub app: String,
    /// The key's first characters.
    pub prefix: String,
    pub datetime_created: String,
}

impl From<&duma_common::db::prediction_keys::PredictionKey> for PredictionKeyView {
    fn from(key: &duma_common::db::prediction_keys::PredictionKey) -> Self {
        Self {
            id: key.id.0,
            app: key.app.clone(),
            prefix: key.prefix.clone(),
            datetime_created: http_date(&key.datetime_created),
        }
    }
}

/// A prediction key just created: the only time the key is shown.
#[derive(Serialize, ToSchema)]
pub struct CreatedPredictionKeyView {
    #[serde(flatten)]
    pub view: PredictionKeyView,
    /// Send it as `Authorization: Bearer <key>` or `X-API-Key: <key>` with predictions.
    pub key: String,
}

/// An evaluation: what was scored, on which dataset, and the scores.
#[derive(Serialize, ToSchema)]
pub struct EvaluationView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub dataset_id: Uuid,
    pub app: String,
    pub app_version: i32,
    /// The deployment it was asked for by, if any.
    pub deployment: Option<String>,
    /// The trials scored together (ensembled as the predictor serves them), best first.
    pub trial_ids: Vec<Uuid>,
    pub task: String,
    /// `PENDING`, `RUNNING`, `COMPLETED` or `ERRORED` (see `error`).
    pub status: String,
    /// `{"classification": {accuracy, labels, per_label, macro_avg, weighted_avg,
    /// confusion_matrix}}` or `{"regression": {mae, rmse, r2}}`, with scikit-learn's
    /// definitions.
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<duma_domain::evaluation::Metrics>,
    /// Rows scored (those with a target value).
    pub rows: Option<i32>,
    pub duration_secs: Option<f64>,
    pub error: Option<String>,
    pub datetime_created: String,
    pub datetime_started: Option<String>,
    pub datetime_stopped: Option<String>,
}

impl From<&duma_common::db::evaluations::Evaluation> for EvaluationView {
    fn from(e: &duma_common::db::evaluations::Evaluation) -> Self {
        Self {
            id: e.id.0,
            user_id: e.user_id.0,
            dataset_id: e.dataset_id.0,
            app: e.app.clone(),
            app_version: e.app_version,
            deployment: e.deployment.clone(),
            trial_ids: e.trial_ids.iter().map(|t| t.0).collect(),
            task: e.task.clone(),
            status: e.status.clone(),
            metrics: e.metrics.clone(),
            rows: e.rows,
            duration_secs: e.duration_secs,
            error: e.error.clone(),
            datetime_created: http_date(&e.datetime_created),
            datetime_started: e.datetime_started.as_ref().map(http_date),
            datetime_stopped: e.datetime_stopped.as_ref().map(http_date),
        }
    }
}

/// `GET /evaluations?app=A`: the app's latest completed evaluation per version and dataset,
/// side by side.
#[derive(Serialize, ToSchema)]
pub struct EvaluationComparisonView {
    pub app: String,
    /// One line per version and dataset, newest version first.
    pub versions: Vec<EvaluationLineView>,
}

#[derive(Serialize, ToSchema)]
pub struct EvaluationLineView {
    pub app_version: i32,
    pub dataset_id: Uuid,
    pub evaluation_id: Uuid,
    pub rows: Option<i32>,
    /// The headline scores: accuracy, macro_f1 and weighted_f1, or mae, rmse and r2.
    #[schema(value_type = Object)]
    pub scores: serde_json::Map<String, serde_json::Value>,
}

/// `(unix seconds, value)` points of each version of a deployment (keyed `"1"`, `"2"`, …).
pub type VersionSeries = std::collections::BTreeMap<String, Vec<(f64, f64)>>;

/// A deployment's traffic over time, per version, from Prometheus.
#[derive(Serialize, ToSchema)]
pub struct DeploymentMetricsView {
    pub deployment: String,
    /// The window, in unix seconds, and the time between points.
    pub start: f64,
    pub end: f64,
    pub step_seconds: f64,
    /// Requests answered per second (any status).
    #[schema(value_type = Object)]
    pub requests_per_second: VersionSeries,
    /// Requests answered with a 5xx status, per second.
    #[schema(value_type = Object)]
    pub errors_per_second: VersionSeries,
    /// Latency percentiles of the deployment's predict route, in seconds.
    #[schema(value_type = Object)]
    pub latency_p50_seconds: VersionSeries,
    #[schema(value_type = Object)]
    pub latency_p99_seconds: VersionSeries,
}
