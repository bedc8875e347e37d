//! Inference jobs and the trials they serve.

use chrono::{DateTime, Utc};
use postgres_types::Json;
use tokio_postgres::Row;

use super::workers::{self, LeaseSubject};
use super::{DbResult, GenericClient, Transaction};
use duma_domain::{InferenceJobId, JobStatus, TrainJobId, TrialId, UserId};

/// Violated when a train job already has a STARTED or RUNNING inference job.
pub const ONE_LIVE_PER_TRAIN_JOB: &str = "inference_jobs_one_live_per_train_job";

/// An inference job with its train job's app and version.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceJob {
    pub id: InferenceJobId,
    pub user_id: UserId,
    pub train_job_id: TrainJobId,
    pub app: String,
    pub app_version: i32,
    pub budget: serde_json::Value,
    pub status: JobStatus,
    pub error: Option<String>,
    pub datetime_started: DateTime<Utc>,
    pub datetime_stopped: Option<DateTime<Utc>>,
    /// Its own port on nginx, when the platform gives jobs ports (`admin.inference_job_ports`).
    pub predictor_port: Option<u16>,
    /// The deployment service level it serves at (`None`: started outside a deployment).
    pub service_level: Option<String>,
}

impl InferenceJob {
    fn from_row(row: &Row) -> DbResult<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            train_job_id: row.try_get("train_job_id")?,
            app: row.try_get("app")?,
            app_version: row.try_get("app_version")?,
            budget: row.try_get::<_, Json<serde_json::Value>>("budget")?.0,
            status: row.try_get("status")?,
            error: row.try_get("error")?,
            datetime_started: row.try_get("datetime_started")?,
            datetime_stopped: row.try_get("datetime_stopped")?,
            predictor_port: row
                .try_get::<_, Option<i32>>("predictor_port")?
                .and_then(|port| u16::try_from(port).ok()),
            service_level: row.try_get("service_level")?,
        })
    }
}

const SELECT: &str = "SELECT i.id, i.user_id, i.train_job_id, j.app, j.app_version, i.budget, \
    i.status, i.error, i.datetime_started, i.datetime_stopped, i.predictor_port, \
    i.service_level \
    FROM inference_jobs i JOIN train_jobs j ON j.id = i.train_job_id";

/// A trial served by an inference job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedTrial {
    pub trial_id: TrialId,
    pub desired_replicas: i32,
}

/// A port of `ports` that no live inference job holds, for a job about to be created in the same
/// transaction; `None` when every one is taken. The port released longest ago comes first (then
/// ports never used), so a client still calling a stopped job's port is unlikely to reach
/// another job. Allocations are serialised by a transaction-scoped lock.
pub async fn free_port(
    tx: &Transaction<'_>,
    ports: std::ops::RangeInclusive<u16>,
) -> DbResult<Option<u16>> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('inference_job_ports'))",
        &[],
    )
    .await?;
    let row = tx
        .query_opt(
            "SELECT p FROM generate_series($1::int, $2::int) p \
             WHERE NOT EXISTS (SELECT 1 FROM inference_jobs \
                 WHERE predictor_port = p AND status IN ('STARTED', 'RUNNING')) \
             ORDER BY (SELECT max(coalesce(datetime_stopped, datetime_started)) \
                 FROM inference_jobs WHERE predictor_port = p) NULLS FIRST, p \
             LIMIT 1",
            &[&i32::from(*ports.start()), &i32::from(*ports.end())],
        )
        .await?;
    Ok(row
        .map(|row| row.try_get::<_, i32>(0))
        .transpose()?
        .and_then(|port| u16::try_from(port).ok()))
}

/// The live inference job that holds `port`, if any.
pub async fn live_at_port(db: &impl GenericClient, port: u16) -> DbResult<Option<InferenceJobId>> {
    let row = db
        .query_opt(
            "SELECT id FROM inference_jobs \
             WHERE predictor_port = $1 AND status IN ('STARTED', 'RUNNING')",
            &[&i32::from(port)],
        )
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// Creates a STARTED inference job serving `trials`, on its own `predictor_port` if given (see
/// [`free_port`]). A live inference job of the same train job fails with a duplicate error on
/// [`ONE_LIVE_PER_TRAIN_JOB`].
pub async fn create(
    tx: &Transaction<'_>,
    user_id: UserId,
    train_job_id: TrainJobId,
    budget: &serde_json::Value,
    trials: &[ServedTrial],
    predictor_port: Option<u16>,
    service_level: Option<&str>,
) -> DbResult<InferenceJob> {
    let id = InferenceJobId::new();
    tx.execute(
        "INSERT INTO inference_jobs \
         (id, user_id, train_job_id, budget, predictor_port, service_level) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &id,
            &user_id,
            &train_job_id,
            &Json(budget),
            &predictor_port.map(i32::from),
            &service_level,
        ],
    )
    .await?;
    for trial in trials {
        tx.execute(
            "INSERT INTO inference_job_trials (inference_job_id, trial_id, desired_replicas) \
             VALUES ($1, $2, $3)",
            &[&id, &trial.trial_id, &trial.desired_replicas],
        )
        .await?;
        let subject = LeaseSubject::Serving(id, trial.trial_id);
        workers::create_leases(tx, subject, trial.desired_replicas).await?;
    }
    let sql = format!("{SELECT} WHERE i.id = $1");
    InferenceJob::from_row(&tx.query_one(&sql, &[&id]).await?)
}

/// What job `id` serves, for the Open Inference Protocol's metadata: the template kind of its
/// served models (`onnx`, `python`, `native`; the first, best trial's) and, when it serves one
/// ONNX model, that model's signature.
pub async fn served_model_kind(
    db: &impl GenericClient,
    id: InferenceJobId,
) -> DbResult<(Option<String>, Option<serde_json::Value>)> {
    let rows = db
        .query(
            "SELECT m.template_kind::text, m.signature FROM inference_job_trials s \
             JOIN trials t ON t.id = s.trial_id JOIN models m ON m.id = t.model_id \
             WHERE s.inference_job_id = $1 ORDER BY t.score DESC NULLS LAST",
            &[&id],
        )
        .await?;
    let kind: Option<String> = rows.first().map(|r| r.try_get(0)).transpose()?;
    let signature: Option<Json<serde_json::Value>> = match rows.as_slice() {
        [only] => only.try_get(1)?,
        _ => None,
    };
    Ok((kind, signature.map(|Json(s)| s)))
}

/// Replicas of each served trial of job `id` (the most any of them has).
pub async fn replicas(db: &impl GenericClient, id: InferenceJobId) -> DbResult<i32> {
    let row = db
        .query_one(
            "SELECT coalesce(max(desired_replicas), 0) FROM inference_job_trials \
             WHERE inference_job_id = $1",
            &[&id],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Serves each trial of job `id` with `replicas` replicas: leases for the new slots, which free
/// workers claim (each replica on another worker); the leases of slots past it deleted, so their
/// holders drop those replicas at their next check while the rest keep serving.
pub async fn set_replicas(tx: &Transaction<'_>, id: InferenceJobId, replicas: i32) -> DbResult<()> {
    let rows = tx
        .query(
            "SELECT trial_id, desired_replicas FROM inference_job_trials \
             WHERE inference_job_id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    for row in rows {
        let trial: TrialId = row.try_get(0)?;
        let desired: i32 = row.try_get(1)?;
        if replicas > desired {
            let subject = LeaseSubject::Serving(id, trial);
            workers::create_lease_slots(tx, subject, desired..replicas).await?;
        } else if replicas < desired {
            tx.execute(
                "DELETE FROM work_leases WHERE inference_job_id = $1 AND trial_id = $2 \
                 AND slot >= $3",
                &[&id, &trial, &replicas],
            )
            .await?;
        }
        tx.execute(
            "UPDATE inference_job_trials SET desired_replicas = $3 \
             WHERE inference_job_id = $1 AND trial_id = $2",
            &[&id, &trial, &replicas],
        )
        .await?;
    }
    Ok(())
}

pub async fn by_id(db: &impl GenericClient, id: InferenceJobId) -> DbResult<Option<InferenceJob>> {
    let sql = format!("{SELECT} WHERE i.id = $1");
    db.query_opt(&sql, &[&id])
        .await?
        .map(|r| InferenceJob::from_row(&r))
        .transpose()
}

/// The STARTED or RUNNING inference job of a train job, if any.
pub async fn live_for_train_job(
    db: &impl GenericClient,
    train_job_id: TrainJobId,
) -> DbResult<Option<InferenceJob>> {
    let sql = format!("{SELECT} WHERE i.train_job_id = $1 AND i.status IN ('STARTED', 'RUNNING')");
    db.query_opt(&sql, &[&train_job_id])
        .await?
        .map(|r| InferenceJob::from_row(&r))
        .transpose()
}

/// A user's inference jobs, newest first.
pub async fn list_by_user(db: &impl GenericClient, user_id: UserId) -> DbResult<Vec<InferenceJob>> {
    let sql = format!("{SELECT} WHERE i.user_id = $1 ORDER BY i.datetime_started DESC, i.id DESC");
    db.query(&sql, &[&user_id])
        .await?
        .iter()
        .map(InferenceJob::from_row)
        .collect()
}

/// The inference jobs of every version of a user's app, newest first.
pub async fn list_by_app(
    db: &impl GenericClient,
    user_id: UserId,
    app: &str,
) -> DbResult<Vec<InferenceJob>> {
    let sql = format!(
        "{SELECT} WHERE i.user_id = $1 AND j.app = $2 ORDER BY i.datetime_started DESC, i.id DESC"
    );
    db.query(&sql, &[&user_id, &app])
        .await?
        .iter()
        .map(InferenceJob::from_row)
        .collect()
}

/// How many of the user's inference jobs are STARTED or RUNNING.
pub async fn count_live_of_user(db: &impl GenericClient, user: UserId) -> DbResult<i64> {
    let row = db
        .query_one(
            "SELECT count(*) FROM inference_jobs WHERE user_id = $1 AND status IN ('STARTED', 'RUNNING')",
            &[&user],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Every STARTED or RUNNING inference job.
pub async fn list_live(db: &impl GenericClient) -> DbResult<Vec<InferenceJob>> {
    let sql =
        format!("{SELECT} WHERE i.status IN ('STARTED', 'RUNNING') ORDER BY i.datetime_started");
    db.query(&sql, &[])
        .await?
        .iter()
        .map(InferenceJob::from_row)
        .collect()
}

/// The trials an inference job serves, best score first.
pub async fn served_trials(
    db: &impl GenericClient,
    id: InferenceJobId,
) -> DbResult<Vec<ServedTrial>> {
    db.query(
        "SELECT s.trial_id, s.desired_replicas FROM inference_job_trials s \
         JOIN trials t ON t.id = s.trial_id WHERE s.inference_job_id = $1 \
         ORDER BY t.score DESC NULLS LAST, s.trial_id",
        &[&id],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(ServedTrial {
            trial_id: r.try_get(0)?,
            desired_replicas: r.try_get(1)?,
        })
    })
    .collect()
}

/// Moves a live inference job to `status`; terminal statuses stamp `datetime_stopped` and drop
/// the job's serving leases. Returns `None` if the job was not live.
pub async fn set_status(
    db: &impl GenericClient,
    id: InferenceJobId,
    status: JobStatus,
    error: Option<&str>,
) -> DbResult<Option<InferenceJob>> {
    let updated = db
        .execute(
            "UPDATE inference_jobs SET status = $2::job_status, error = coalesce($3, error), \
             datetime_stopped = CASE WHEN $2::job_status IN ('STOPPED', 'ERRORED') THEN now() ELSE NULL END \
             WHERE id = $1 AND status IN ('STARTED', 'RUNNING')",
            &[&id, &status, &error],
        )
        .await?;
    if updated == 0 {
        return Ok(None);
    }
    if !status.is_live() {
        db.execute(
            "DELETE FROM work_leases WHERE inference_job_id = $1",
            &[&id],
        )
        .await?;
    }
    by_id(db, id).await
}

/// Moves a STARTED job to RUNNING once every served trial has a ready (loaded) replica.
pub async fn mark_running_if_ready(db: &impl GenericClient, id: InferenceJobId) -> DbResult<bool> {
    let n = db
        .execute(
            &format!(
                "UPDATE inference_jobs SET status = 'RUNNING' WHERE id = $1 AND status = 'STARTED' \
                 AND NOT {SOME_TRIAL_UNSERVED}"
            ),
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// Moves a live job to the status its replicas warrant: back to STARTED when a served trial has
/// lost every ready replica (its workers died), RUNNING again once each has one. Returns the
/// new status if it changed.
pub async fn roll_up(db: &impl GenericClient, id: InferenceJobId) -> DbResult<Option<JobStatus>> {
    let downgraded = db
        .execute(
            &format!(
                "UPDATE inference_jobs SET status = 'STARTED' WHERE id = $1 AND status = 'RUNNING' \
                 AND {SOME_TRIAL_UNSERVED}"
            ),
            &[&id],
        )
        .await?;
    if downgraded == 1 {
        return Ok(Some(JobStatus::Started));
    }
    Ok(mark_running_if_ready(db, id)
        .await?
        .then_some(JobStatus::Running))
}

/// A served trial of job `$1` without a ready replica on a live lease.
const SOME_TRIAL_UNSERVED: &str = "EXISTS (SELECT 1 FROM inference_job_trials t \
     WHERE t.inference_job_id = $1 AND NOT EXISTS (SELECT 1 FROM work_leases l \
         WHERE l.inference_job_id = $1 AND l.trial_id = t.trial_id AND l.ready \
         AND l.expires_at > now()))";
