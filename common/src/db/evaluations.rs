//! Evaluations: a version of an app (the trials serving it) scored offline on a labelled
//! dataset by a train worker (`docs/deployments.md`).

use chrono::{DateTime, Utc};
use postgres_types::Json;
use tokio_postgres::Row;

use super::{DbResult, GenericClient};
use duma_domain::evaluation::Metrics;
use duma_domain::{DatasetId, EvaluationId, TrainJobId, TrialId, UserId, WorkerId};

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub id: EvaluationId,
    pub user_id: UserId,
    pub dataset_id: DatasetId,
    pub train_job_id: TrainJobId,
    pub app: String,
    pub app_version: i32,
    pub deployment: Option<String>,
    /// The trials scored together (best per model, ensembled as served), best first.
    pub trial_ids: Vec<TrialId>,
    pub task: String,
    /// `PENDING`, `RUNNING`, `COMPLETED` or `ERRORED`.
    pub status: String,
    pub metrics: Option<Metrics>,
    pub rows: Option<i32>,
    pub duration_secs: Option<f64>,
    pub error: Option<String>,
    pub datetime_created: DateTime<Utc>,
    pub datetime_started: Option<DateTime<Utc>>,
    pub datetime_stopped: Option<DateTime<Utc>>,
}

/// What an evaluation is asked for.
#[derive(Debug, Clone)]
pub struct NewEvaluation<'a> {
    pub user_id: UserId,
    pub dataset_id: DatasetId,
    pub train_job_id: TrainJobId,
    pub app: &'a str,
    pub app_version: i32,
    pub deployment: Option<&'a str>,
    pub trial_ids: &'a [TrialId],
    pub task: &'a str,
}

impl Evaluation {
    fn from_row(row: &Row) -> DbResult<Self> {
        let metrics: Option<Json<Metrics>> = row.try_get("metrics")?;
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            dataset_id: row.try_get("dataset_id")?,
            train_job_id: row.try_get("train_job_id")?,
            app: row.try_get("app")?,
            app_version: row.try_get("app_version")?,
            deployment: row.try_get("deployment")?,
            trial_ids: row.try_get("trial_ids")?,
            task: row.try_get("task")?,
            status: row.try_get("status")?,
            metrics: metrics.map(|Json(m)| m),
            rows: row.try_get("rows")?,
            duration_secs: row.try_get("duration_secs")?,
            error: row.try_get("error")?,
            datetime_created: row.try_get("datetime_created")?,
            datetime_started: row.try_get("datetime_started")?,
            datetime_stopped: row.try_get("datetime_stopped")?,
        })
    }
}

const COLUMNS: &str = "id, user_id, dataset_id, train_job_id, app, app_version, deployment, \
    trial_ids, task, status, metrics, rows, duration_secs, error, datetime_created, \
    datetime_started, datetime_stopped";

/// A PENDING evaluation.
pub async fn insert(db: &impl GenericClient, new: &NewEvaluation<'_>) -> DbResult<Evaluation> {
    let sql = format!(
        "INSERT INTO evaluations (id, user_id, dataset_id, train_job_id, app, app_version, \
         deployment, trial_ids, task) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         RETURNING {COLUMNS}"
    );
    let row = db
        .query_one(
            &sql,
            &[
                &EvaluationId::new(),
                &new.user_id,
                &new.dataset_id,
                &new.train_job_id,
                &new.app,
                &new.app_version,
                &new.deployment,
                &new.trial_ids,
                &new.task,
            ],
        )
        .await?;
    Evaluation::from_row(&row)
}

pub async fn by_id(db: &impl GenericClient, id: EvaluationId) -> DbResult<Option<Evaluation>> {
    let sql = format!("SELECT {COLUMNS} FROM evaluations WHERE id = $1");
    db.query_opt(&sql, &[&id])
        .await?
        .map(|r| Evaluation::from_row(&r))
        .transpose()
}

/// Evaluations of `user` (everyone's when `None`), of `app` and on `dataset` when given, newest
/// first (the latest 1000).
pub async fn list(
    db: &impl GenericClient,
    user: Option<UserId>,
    app: Option<&str>,
    dataset: Option<DatasetId>,
) -> DbResult<Vec<Evaluation>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM evaluations \
         WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::text IS NULL OR app = $2) \
           AND ($3::uuid IS NULL OR dataset_id = $3) \
         ORDER BY datetime_created DESC LIMIT 1000"
    );
    let rows = db.query(&sql, &[&user, &app, &dataset]).await?;
    rows.iter().map(Evaluation::from_row).collect()
}

/// Takes the oldest PENDING evaluation for `worker`, RUNNING from now.
pub async fn claim(db: &impl GenericClient, worker: WorkerId) -> DbResult<Option<Evaluation>> {
    let sql = format!(
        "UPDATE evaluations SET status = 'RUNNING', worker_id = $1, datetime_started = now() \
         WHERE id = (SELECT id FROM evaluations WHERE status = 'PENDING' \
                     ORDER BY datetime_created LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING {COLUMNS}"
    );
    db.query_opt(&sql, &[&worker])
        .await?
        .map(|r| Evaluation::from_row(&r))
        .transpose()
}

/// Ends a RUNNING evaluation with its scores.
pub async fn complete(
    db: &impl GenericClient,
    id: EvaluationId,
    metrics: &Metrics,
    rows: i32,
    duration_secs: f64,
) -> DbResult<bool> {
    let n = db
        .execute(
            "UPDATE evaluations SET status = 'COMPLETED', metrics = $2, rows = $3, \
             duration_secs = $4, datetime_stopped = now() WHERE id = $1 AND status = 'RUNNING'",
            &[&id, &Json(metrics), &rows, &duration_secs],
        )
        .await?;
    Ok(n == 1)
}

/// Ends a RUNNING evaluation with the reason it could not be done.
pub async fn fail(db: &impl GenericClient, id: EvaluationId, error: &str) -> DbResult<bool> {
    let n = db
        .execute(
            "UPDATE evaluations SET status = 'ERRORED', error = $2, datetime_stopped = now() \
             WHERE id = $1 AND status = 'RUNNING'",
            &[&id, &error],
        )
        .await?;
    Ok(n == 1)
}

/// Ends the RUNNING evaluations whose worker is gone (deregistered, or silent for `silence`):
/// they would never finish. Returns how many.
pub async fn fail_orphans(db: &impl GenericClient, silence: std::time::Duration) -> DbResult<u64> {
    Ok(db
        .execute(
            "UPDATE evaluations SET status = 'ERRORED', datetime_stopped = now(), \
             error = 'the train worker running it stopped; ask for it again' \
             WHERE status = 'RUNNING' AND NOT EXISTS (SELECT 1 FROM workers w \
                 WHERE w.id = evaluations.worker_id \
                   AND w.last_heartbeat > now() - make_interval(secs => $1))",
            &[&silence.as_secs_f64()],
        )
        .await?)
}
