//! Worker registrations and the work leases they hold.

use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres_types::Json;
use tokio_postgres::Row;

use super::{DbResult, GenericClient};
use crate::domain::{
    InferenceJobId, LeaseId, LeaseKind, SubTrainJobId, TrialId, WorkerId, WorkerKind,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    pub id: WorkerId,
    pub kind: WorkerKind,
    pub host: String,
    pub capabilities: serde_json::Value,
    pub datetime_started: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
}

impl Worker {
    fn from_row(row: &Row) -> DbResult<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            kind: row.try_get("kind")?,
            host: row.try_get("host")?,
            capabilities: row.try_get::<_, Json<serde_json::Value>>("capabilities")?.0,
            datetime_started: row.try_get("datetime_started")?,
            last_heartbeat: row.try_get("last_heartbeat")?,
        })
    }
}

const WORKER_COLUMNS: &str = "id, kind, host, capabilities, datetime_started, last_heartbeat";

pub async fn register(
    db: &impl GenericClient,
    kind: WorkerKind,
    host: &str,
    capabilities: &serde_json::Value,
) -> DbResult<Worker> {
    let sql = format!(
        "INSERT INTO workers (id, kind, host, capabilities) VALUES ($1, $2, $3, $4) \
         RETURNING {WORKER_COLUMNS}"
    );
    let row = db
        .query_one(&sql, &[&WorkerId::new(), &kind, &host, &Json(capabilities)])
        .await?;
    Worker::from_row(&row)
}

/// Records that the worker is alive and extends every lease it holds by `lease_ttl`.
/// Returns false if the worker row is gone (it was declared dead and must re-register).
pub async fn heartbeat(
    db: &impl GenericClient,
    id: WorkerId,
    lease_ttl: Duration,
) -> DbResult<bool> {
    let n = db
        .execute(
            "UPDATE workers SET last_heartbeat = now() WHERE id = $1",
            &[&id],
        )
        .await?;
    if n == 0 {
        return Ok(false);
    }
    db.execute(
        "UPDATE work_leases SET expires_at = now() + make_interval(secs => $2) WHERE worker_id = $1",
        &[&id, &lease_ttl.as_secs_f64()],
    )
    .await?;
    Ok(true)
}

pub async fn by_id(db: &impl GenericClient, id: WorkerId) -> DbResult<Option<Worker>> {
    let sql = format!("SELECT {WORKER_COLUMNS} FROM workers WHERE id = $1");
    db.query_opt(&sql, &[&id])
        .await?
        .map(|r| Worker::from_row(&r))
        .transpose()
}

/// Removes a worker that stopped cleanly; its leases become claimable at once.
pub async fn deregister(db: &impl GenericClient, id: WorkerId) -> DbResult<()> {
    db.execute(
        "UPDATE work_leases SET worker_id = NULL, expires_at = NULL, ready = false WHERE worker_id = $1",
        &[&id],
    )
    .await?;
    db.execute("DELETE FROM workers WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

/// Workers whose last heartbeat is older than `silence`.
pub async fn list_silent(db: &impl GenericClient, silence: Duration) -> DbResult<Vec<Worker>> {
    let sql = format!(
        "SELECT {WORKER_COLUMNS} FROM workers \
         WHERE last_heartbeat < now() - make_interval(secs => $1) ORDER BY last_heartbeat"
    );
    db.query(&sql, &[&silence.as_secs_f64()])
        .await?
        .iter()
        .map(Worker::from_row)
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub id: LeaseId,
    pub kind: LeaseKind,
    pub sub_train_job_id: Option<SubTrainJobId>,
    pub inference_job_id: Option<InferenceJobId>,
    pub trial_id: Option<TrialId>,
    pub slot: i32,
    pub worker_id: Option<WorkerId>,
    pub expires_at: Option<DateTime<Utc>>,
    /// For SERVE leases: the holder has loaded the model and serves it.
    pub ready: bool,
}

impl Lease {
    fn from_row(row: &Row) -> DbResult<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            kind: row.try_get("kind")?,
            sub_train_job_id: row.try_get("sub_train_job_id")?,
            inference_job_id: row.try_get("inference_job_id")?,
            trial_id: row.try_get("trial_id")?,
            slot: row.try_get("slot")?,
            worker_id: row.try_get("worker_id")?,
            expires_at: row.try_get("expires_at")?,
            ready: row.try_get("ready")?,
        })
    }
}

const LEASE_COLUMNS: &str =
    "id, kind, sub_train_job_id, inference_job_id, trial_id, slot, worker_id, expires_at, ready";

/// What a lease is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseSubject {
    /// Advising (kind ADVISE) or running trials of (kind TRAIN) a sub train job.
    SubTrainJob(LeaseKind, SubTrainJobId),
    /// Serving one replica of a trial of an inference job.
    Serving(InferenceJobId, TrialId),
}

/// Creates unclaimed leases `0..slots` for a subject.
pub async fn create_leases(
    db: &impl GenericClient,
    subject: LeaseSubject,
    slots: i32,
) -> DbResult<Vec<Lease>> {
    let (kind, sub_job, inference_job, trial) = match subject {
        LeaseSubject::SubTrainJob(kind, id) => (kind, Some(id), None, None),
        LeaseSubject::Serving(job, trial) => (LeaseKind::Serve, None, Some(job), Some(trial)),
    };
    let sql = format!(
        "INSERT INTO work_leases (id, kind, sub_train_job_id, inference_job_id, trial_id, slot) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {LEASE_COLUMNS}"
    );
    let mut leases = Vec::new();
    for slot in 0..slots {
        let row = db
            .query_one(
                &sql,
                &[
                    &LeaseId::new(),
                    &kind,
                    &sub_job,
                    &inference_job,
                    &trial,
                    &slot,
                ],
            )
            .await?;
        leases.push(Lease::from_row(&row)?);
    }
    Ok(leases)
}

/// Claims one free (never claimed, released or expired) lease of `kind` for `worker_id`,
/// skipping rows other workers are claiming at the same moment.
pub async fn claim(
    db: &impl GenericClient,
    kind: LeaseKind,
    worker_id: WorkerId,
    ttl: Duration,
) -> DbResult<Option<Lease>> {
    let sql = format!(
        "UPDATE work_leases SET worker_id = $2, datetime_claimed = now(), ready = false, \
         expires_at = now() + make_interval(secs => $3) \
         WHERE id = (SELECT id FROM work_leases WHERE kind = $1 \
                     AND (worker_id IS NULL OR expires_at IS NULL OR expires_at < now()) \
                     ORDER BY datetime_claimed NULLS FIRST, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING {LEASE_COLUMNS}"
    );
    db.query_opt(&sql, &[&kind, &worker_id, &ttl.as_secs_f64()])
        .await?
        .map(|r| Lease::from_row(&r))
        .transpose()
}

/// Gives a lease back; only its holder can.
pub async fn release(db: &impl GenericClient, id: LeaseId, worker_id: WorkerId) -> DbResult<bool> {
    let n = db
        .execute(
            "UPDATE work_leases SET worker_id = NULL, expires_at = NULL, ready = false \
             WHERE id = $1 AND worker_id = $2",
            &[&id, &worker_id],
        )
        .await?;
    Ok(n == 1)
}

/// Leases held past their expiry: their holders died or hang.
pub async fn list_expired(db: &impl GenericClient) -> DbResult<Vec<Lease>> {
    let sql = format!(
        "SELECT {LEASE_COLUMNS} FROM work_leases WHERE worker_id IS NOT NULL AND expires_at < now()"
    );
    db.query(&sql, &[])
        .await?
        .iter()
        .map(Lease::from_row)
        .collect()
}

/// Deletes a lease: its work is over (e.g. a sub job's trial budget is spent). With
/// `holder`, only that worker's lease is deleted.
pub async fn delete_lease(
    db: &impl GenericClient,
    id: LeaseId,
    holder: Option<WorkerId>,
) -> DbResult<bool> {
    let n = db
        .execute(
            "DELETE FROM work_leases WHERE id = $1 AND ($2::uuid IS NULL OR worker_id = $2)",
            &[&id, &holder],
        )
        .await?;
    Ok(n == 1)
}

/// Every lease a worker holds.
pub async fn leases_held(db: &impl GenericClient, worker_id: WorkerId) -> DbResult<Vec<Lease>> {
    let sql = format!("SELECT {LEASE_COLUMNS} FROM work_leases WHERE worker_id = $1");
    db.query(&sql, &[&worker_id])
        .await?
        .iter()
        .map(Lease::from_row)
        .collect()
}

/// Deletes every lease of a sub job (it ended: nobody should work on it any more).
pub async fn delete_sub_job_leases(
    db: &impl GenericClient,
    sub_train_job_id: SubTrainJobId,
) -> DbResult<u64> {
    Ok(db
        .execute(
            "DELETE FROM work_leases WHERE sub_train_job_id = $1",
            &[&sub_train_job_id],
        )
        .await?)
}

/// Claimable leases by kind: work waiting for a worker.
pub async fn count_waiting(db: &impl GenericClient) -> DbResult<Vec<(LeaseKind, i64)>> {
    db.query(
        "SELECT kind, count(*) FROM work_leases \
         WHERE worker_id IS NULL OR expires_at IS NULL OR expires_at < now() GROUP BY kind",
        &[],
    )
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

/// Removes workers silent for longer than `silence` that hold no lease any more.
pub async fn delete_silent_idle(db: &impl GenericClient, silence: Duration) -> DbResult<u64> {
    Ok(db
        .execute(
            "DELETE FROM workers w WHERE last_heartbeat < now() - make_interval(secs => $1) \
             AND NOT EXISTS (SELECT 1 FROM work_leases l WHERE l.worker_id = w.id)",
            &[&silence.as_secs_f64()],
        )
        .await?)
}

/// Marks a SERVE lease ready (its holder loaded the model) or not.
pub async fn set_ready(
    db: &impl GenericClient,
    id: LeaseId,
    worker_id: WorkerId,
    ready: bool,
) -> DbResult<bool> {
    let n = db
        .execute(
            "UPDATE work_leases SET ready = $3 WHERE id = $1 AND worker_id = $2",
            &[&id, &worker_id, &ready],
        )
        .await?;
    Ok(n == 1)
}
