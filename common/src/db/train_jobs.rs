//! Train jobs and their sub train jobs (one per model).

use chrono::{DateTime, Utc};
use postgres_types::Json;
use tokio_postgres::Row;

use super::workers::{self, LeaseSubject};
use super::{DbResult, GenericClient, Transaction};
use duma_domain::{
    Budget, DatasetId, JobStatus, LeaseKind, ModelId, SubTrainJobId, TrainJobId, UserId,
};

/// Violated when a (user, app) already has a STARTED or RUNNING train job.
pub const ONE_LIVE_PER_APP: &str = "train_jobs_one_live_per_app";

#[derive(Debug, Clone, PartialEq)]
pub struct TrainJob {
    pub id: TrainJobId,
    pub user_id: UserId,
    pub app: String,
    pub app_version: i32,
    pub task: String,
    /// `None` for a version served from an uploaded model (nothing trained).
    pub train_dataset_id: Option<DatasetId>,
    pub val_dataset_id: Option<DatasetId>,
    pub budget: Budget,
    pub train_args: serde_json::Map<String, serde_json::Value>,
    pub status: JobStatus,
    pub error: Option<String>,
    pub datetime_started: DateTime<Utc>,
    pub datetime_stopped: Option<DateTime<Utc>>,
    /// What a tabular version takes and answers (features, target, classes), recorded by the
    /// train worker at its first trial.
    pub metadata: Option<serde_json::Value>,
}

impl TrainJob {
    fn from_row(row: &Row) -> DbResult<Self> {
        let Json(budget) = row.try_get("budget")?;
        let Json(train_args) = row.try_get("train_args")?;
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            app: row.try_get("app")?,
            app_version: row.try_get("app_version")?,
            task: row.try_get("task")?,
            train_dataset_id: row.try_get("train_dataset_id")?,
            val_dataset_id: row.try_get("val_dataset_id")?,
            budget,
            train_args,
            status: row.try_get("status")?,
            error: row.try_get("error")?,
            datetime_started: row.try_get("datetime_started")?,
            datetime_stopped: row.try_get("datetime_stopped")?,
            metadata: row
                .try_get::<_, Option<Json<serde_json::Value>>>("metadata")?
                .map(|Json(m)| m),
        })
    }
}

const COLUMNS: &str = "id, user_id, app, app_version, task, train_dataset_id, val_dataset_id, \
    budget, train_args, status, error, datetime_started, datetime_stopped, metadata";

/// Records what a version takes and answers, once (the first worker to know it).
pub async fn record_metadata(
    db: &impl GenericClient,
    id: TrainJobId,
    metadata: &serde_json::Value,
) -> DbResult<()> {
    db.execute(
        "UPDATE train_jobs SET metadata = $2 WHERE id = $1 AND metadata IS NULL",
        &[&id, &Json(metadata)],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubTrainJob {
    pub id: SubTrainJobId,
    pub train_job_id: TrainJobId,
    pub model_id: ModelId,
    pub status: JobStatus,
    pub error: Option<String>,
    pub datetime_started: DateTime<Utc>,
    pub datetime_stopped: Option<DateTime<Utc>>,
}

impl SubTrainJob {
    fn from_row(row: &Row) -> DbResult<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            train_job_id: row.try_get("train_job_id")?,
            model_id: row.try_get("model_id")?,
            status: row.try_get("status")?,
            error: row.try_get("error")?,
            datetime_started: row.try_get("datetime_started")?,
            datetime_stopped: row.try_get("datetime_stopped")?,
        })
    }
}

const SUB_COLUMNS: &str =
    "id, train_job_id, model_id, status, error, datetime_started, datetime_stopped";

#[derive(Debug, Clone)]
pub struct NewTrainJob {
    pub user_id: UserId,
    pub app: String,
    pub task: String,
    pub train_dataset_id: DatasetId,
    pub val_dataset_id: DatasetId,
    pub budget: Budget,
    pub train_args: serde_json::Map<String, serde_json::Value>,
    pub model_ids: Vec<ModelId>,
    /// Trials of one model that may run at once: the TRAIN leases created per sub job.
    pub train_slots: i32,
}

/// Creates the next version of an app with one sub job per model. Concurrent creations for the
/// same (user, app) are serialised by an advisory lock; a live job of the app already existing
/// fails with a duplicate error on [`ONE_LIVE_PER_APP`].
pub async fn create(
    tx: &Transaction<'_>,
    new: &NewTrainJob,
) -> DbResult<(TrainJob, Vec<SubTrainJob>)> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2, 0))",
        &[&new.user_id.0.to_string(), &new.app],
    )
    .await?;
    let version: i32 = tx
        .query_one(
            "SELECT coalesce(max(app_version), 0) + 1 FROM train_jobs WHERE user_id = $1 AND app = $2",
            &[&new.user_id, &new.app],
        )
        .await?
        .try_get(0)?;
    let sql = format!(
        "INSERT INTO train_jobs (id, user_id, app, app_version, task, train_dataset_id, \
         val_dataset_id, budget, train_args) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         RETURNING {COLUMNS}"
    );
    let row = tx
        .query_one(
            &sql,
            &[
                &TrainJobId::new(),
                &new.user_id,
                &new.app,
                &version,
                &new.task,
                &new.train_dataset_id,
                &new.val_dataset_id,
                &Json(&new.budget),
                &Json(&new.train_args),
            ],
        )
        .await?;
    let job = TrainJob::from_row(&row)?;
    let sub_sql = format!(
        "INSERT INTO sub_train_jobs (id, train_job_id, model_id) VALUES ($1, $2, $3) \
         RETURNING {SUB_COLUMNS}"
    );
    let mut subs = Vec::with_capacity(new.model_ids.len());
    for model_id in &new.model_ids {
        let row = tx
            .query_one(&sub_sql, &[&SubTrainJobId::new(), &job.id, model_id])
            .await?;
        let sub = SubTrainJob::from_row(&row)?;
        let advise = LeaseSubject::SubTrainJob(LeaseKind::Advise, sub.id);
        workers::create_leases(tx, advise, 1).await?;
        let train = LeaseSubject::SubTrainJob(LeaseKind::Train, sub.id);
        workers::create_leases(tx, train, new.train_slots.max(1)).await?;
        subs.push(sub);
    }
    Ok((job, subs))
}

/// A new, already STOPPED version of `app` that trained nothing: it serves the uploaded model
/// `model_id`, whose file (`params`: its path, SHA-256 and size) is the parameters of its one
/// COMPLETED trial — so inference jobs, deployments and evaluations serve it like any version.
pub async fn create_from_model(
    tx: &Transaction<'_>,
    user_id: UserId,
    app: &str,
    task: &str,
    model_id: ModelId,
    knobs: &duma_domain::Knobs,
    params: (&str, &str, i64),
) -> DbResult<TrainJob> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2, 0))",
        &[&user_id.0.to_string(), &app],
    )
    .await?;
    let version: i32 = tx
        .query_one(
            "SELECT coalesce(max(app_version), 0) + 1 FROM train_jobs WHERE user_id = $1 AND app = $2",
            &[&user_id, &app],
        )
        .await?
        .try_get(0)?;
    let budget = Budget {
        model_trial_count: 0,
        ..Budget::default()
    };
    let sql = format!(
        "INSERT INTO train_jobs (id, user_id, app, app_version, task, budget, status, \
         datetime_stopped) VALUES ($1, $2, $3, $4, $5, $6, 'STOPPED', now()) RETURNING {COLUMNS}"
    );
    let row = tx
        .query_one(
            &sql,
            &[
                &TrainJobId::new(),
                &user_id,
                &app,
                &version,
                &task,
                &Json(&budget),
            ],
        )
        .await?;
    let job = TrainJob::from_row(&row)?;
    let sub_job = SubTrainJobId::new();
    tx.execute(
        "INSERT INTO sub_train_jobs (id, train_job_id, model_id, status, datetime_stopped) \
         VALUES ($1, $2, $3, 'STOPPED', now())",
        &[&sub_job, &job.id, &model_id],
    )
    .await?;
    let proposal = duma_domain::Proposal {
        trial_no: 1,
        knobs: knobs.clone(),
        to_eval: false,
        to_save_params: true,
        meta: serde_json::Map::new(),
    };
    let (path, sha256, size) = params;
    tx.execute(
        "INSERT INTO trials (id, sub_train_job_id, no, model_id, proposal, status, params_path, \
         params_sha256, params_size_bytes, datetime_stopped) \
         VALUES ($1, $2, 1, $3, $4, 'COMPLETED', $5, $6, $7, now())",
        &[
            &duma_domain::TrialId::new(),
            &sub_job,
            &model_id,
            &Json(&proposal),
            &path,
            &sha256,
            &size,
        ],
    )
    .await?;
    Ok(job)
}

pub async fn by_id(db: &impl GenericClient, id: TrainJobId) -> DbResult<Option<TrainJob>> {
    let sql = format!("SELECT {COLUMNS} FROM train_jobs WHERE id = $1");
    db.query_opt(&sql, &[&id])
        .await?
        .map(|r| TrainJob::from_row(&r))
        .transpose()
}

/// A version of a user's app; `None` as version means the latest.
pub async fn by_app_version(
    db: &impl GenericClient,
    user_id: UserId,
    app: &str,
    app_version: Option<i32>,
) -> DbResult<Option<TrainJob>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM train_jobs WHERE user_id = $1 AND app = $2 \
         AND ($3::integer IS NULL OR app_version = $3) ORDER BY app_version DESC LIMIT 1"
    );
    db.query_opt(&sql, &[&user_id, &app, &app_version])
        .await?
        .map(|r| TrainJob::from_row(&r))
        .transpose()
}

/// A user's train jobs, newest first.
pub async fn list_by_user(db: &impl GenericClient, user_id: UserId) -> DbResult<Vec<TrainJob>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM train_jobs WHERE user_id = $1 ORDER BY datetime_started DESC, id DESC"
    );
    db.query(&sql, &[&user_id])
        .await?
        .iter()
        .map(TrainJob::from_row)
        .collect()
}

/// Every version of a user's app, newest version first.
pub async fn list_by_app(
    db: &impl GenericClient,
    user_id: UserId,
    app: &str,
) -> DbResult<Vec<TrainJob>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM train_jobs WHERE user_id = $1 AND app = $2 ORDER BY app_version DESC"
    );
    db.query(&sql, &[&user_id, &app])
        .await?
        .iter()
        .map(TrainJob::from_row)
        .collect()
}

/// Every STARTED or RUNNING train job.
/// How many of the user's train jobs are STARTED or RUNNING.
pub async fn count_live_of_user(db: &impl GenericClient, user: UserId) -> DbResult<i64> {
    let row = db
        .query_one(
            "SELECT count(*) FROM train_jobs WHERE user_id = $1 AND status IN ('STARTED', 'RUNNING')",
            &[&user],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// The ids of the sub jobs still STARTED or RUNNING.
pub async fn live_sub_job_ids(db: &impl GenericClient) -> DbResult<Vec<SubTrainJobId>> {
    db.query(
        "SELECT id FROM sub_train_jobs WHERE status IN ('STARTED', 'RUNNING')",
        &[],
    )
    .await?
    .iter()
    .map(|row| Ok(row.try_get(0)?))
    .collect()
}

pub async fn list_live(db: &impl GenericClient) -> DbResult<Vec<TrainJob>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM train_jobs WHERE status IN ('STARTED', 'RUNNING') ORDER BY datetime_started"
    );
    db.query(&sql, &[])
        .await?
        .iter()
        .map(TrainJob::from_row)
        .collect()
}

/// Moves a job to `status`; a terminal status also stamps `datetime_stopped`. Only a live job
/// changes; returns the job as it is afterwards if it changed.
pub async fn set_status(
    db: &impl GenericClient,
    id: TrainJobId,
    status: JobStatus,
    error: Option<&str>,
) -> DbResult<Option<TrainJob>> {
    let sql = format!(
        "UPDATE train_jobs SET status = $2::job_status, error = coalesce($3, error), \
         datetime_stopped = CASE WHEN $2::job_status IN ('STOPPED', 'ERRORED') THEN now() ELSE NULL END \
         WHERE id = $1 AND status IN ('STARTED', 'RUNNING') RETURNING {COLUMNS}"
    );
    db.query_opt(&sql, &[&id, &status, &error])
        .await?
        .map(|r| TrainJob::from_row(&r))
        .transpose()
}

/// Stops a live train job and its live sub jobs, drops their work leases, and marks trials in
/// flight ERRORED with a log line saying why (workers learn of the stop by an event and abandon
/// them; a late result no longer changes a finished trial). Returns `None` when the job was not
/// live.
pub async fn stop(tx: &Transaction<'_>, id: TrainJobId) -> DbResult<Option<TrainJob>> {
    let Some(job) = set_status(tx, id, JobStatus::Stopped, None).await? else {
        return Ok(None);
    };
    // The sub jobs first: from here no trial can be added under them (`trials::insert_running`
    // waits on their rows), and the statement below sees every trial added before.
    tx.execute(
        "UPDATE sub_train_jobs SET status = 'STOPPED', datetime_stopped = now() \
         WHERE train_job_id = $1 AND status IN ('STARTED', 'RUNNING')",
        &[&id],
    )
    .await?;
    tx.execute(
        "WITH cancelled AS ( \
             UPDATE trials SET status = 'ERRORED', datetime_stopped = now() \
             WHERE status IN ('PENDING', 'RUNNING') \
             AND sub_train_job_id IN (SELECT id FROM sub_train_jobs WHERE train_job_id = $1) \
             RETURNING id) \
         INSERT INTO trial_logs (trial_id, kind, payload) \
         SELECT id, 'MESSAGE', jsonb_build_object('message', 'cancelled: the train job was stopped') \
         FROM cancelled",
        &[&id],
    )
    .await?;
    tx.execute(
        "DELETE FROM work_leases WHERE sub_train_job_id IN \
         (SELECT id FROM sub_train_jobs WHERE train_job_id = $1)",
        &[&id],
    )
    .await?;
    Ok(Some(job))
}

pub async fn sub_jobs(
    db: &impl GenericClient,
    train_job_id: TrainJobId,
) -> DbResult<Vec<SubTrainJob>> {
    let sql = format!(
        "SELECT {SUB_COLUMNS} FROM sub_train_jobs WHERE train_job_id = $1 ORDER BY datetime_started, id"
    );
    db.query(&sql, &[&train_job_id])
        .await?
        .iter()
        .map(SubTrainJob::from_row)
        .collect()
}

pub async fn sub_job_by_id(
    db: &impl GenericClient,
    id: SubTrainJobId,
) -> DbResult<Option<SubTrainJob>> {
    let sql = format!("SELECT {SUB_COLUMNS} FROM sub_train_jobs WHERE id = $1");
    db.query_opt(&sql, &[&id])
        .await?
        .map(|r| SubTrainJob::from_row(&r))
        .transpose()
}

/// Moves a live sub job to `status`, recording `error` for ERRORED.
pub async fn set_sub_job_status(
    db: &impl GenericClient,
    id: SubTrainJobId,
    status: JobStatus,
    error: Option<&str>,
) -> DbResult<Option<SubTrainJob>> {
    let sql = format!(
        "UPDATE sub_train_jobs SET status = $2::job_status, error = coalesce($3, error), \
         datetime_stopped = CASE WHEN $2::job_status IN ('STOPPED', 'ERRORED') THEN now() ELSE NULL END \
         WHERE id = $1 AND status IN ('STARTED', 'RUNNING') RETURNING {SUB_COLUMNS}"
    );
    db.query_opt(&sql, &[&id, &status, &error])
        .await?
        .map(|r| SubTrainJob::from_row(&r))
        .transpose()
}

/// Derives a train job's status from its sub jobs: RUNNING once a sub job runs; when every sub
/// job has ended, ERRORED if any of them errored (Rafiki's rule; `error` names each failed model
/// and why, and the other models' trials stay listed), else STOPPED. The job row is locked, so concurrent roll-ups of one job are serialised.
pub async fn roll_up(tx: &Transaction<'_>, id: TrainJobId) -> DbResult<Option<TrainJob>> {
    let sql = format!("SELECT {COLUMNS} FROM train_jobs WHERE id = $1 FOR UPDATE");
    let Some(row) = tx.query_opt(&sql, &[&id]).await? else {
        return Ok(None);
    };
    let job = TrainJob::from_row(&row)?;
    if !job.status.is_live() {
        return Ok(Some(job));
    }
    let subs = sub_jobs(tx, id).await?;
    if subs.iter().any(|s| s.status.is_live()) {
        if job.status == JobStatus::Started && subs.iter().any(|s| s.status == JobStatus::Running) {
            return set_status(tx, id, JobStatus::Running, None).await;
        }
        return Ok(Some(job));
    }
    if subs.iter().any(|s| s.status == JobStatus::Errored) {
        // Rafiki's rule: one failed model fails the job; the other models' trials stay listed.
        let failed = tx
            .query(
                "SELECT m.name, s.error FROM sub_train_jobs s JOIN models m ON m.id = s.model_id \
                 WHERE s.train_job_id = $1 AND s.status = 'ERRORED' ORDER BY m.name",
                &[&id],
            )
            .await?;
        let reasons: Vec<String> = failed
            .iter()
            .map(|row| {
                let model: String = row.get(0);
                let error: Option<String> = row.get(1);
                format!(
                    "model {model}: {}",
                    error.unwrap_or_else(|| "failed".into())
                )
            })
            .collect();
        return set_status(tx, id, JobStatus::Errored, Some(&reasons.join("; "))).await;
    }
    set_status(tx, id, JobStatus::Stopped, None).await
}

/// Ends a sub job (STOPPED, or ERRORED with `error`), deletes its leases so nobody works on it
/// any more, and rolls its status up to the train job — in one transaction.
pub async fn end_sub_job(
    db: &mut deadpool_postgres::Object,
    sub_job: SubTrainJobId,
    status: JobStatus,
    error: Option<&str>,
) -> DbResult<()> {
    let tx = db.transaction().await?;
    if let Some(ended) = set_sub_job_status(&tx, sub_job, status, error).await? {
        workers::delete_sub_job_leases(&tx, sub_job).await?;
        roll_up(&tx, ended.train_job_id).await?;
    }
    tx.commit().await?;
    Ok(())
}
