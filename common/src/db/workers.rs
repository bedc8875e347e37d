//! Worker registrations and the work leases they hold.

use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres_types::Json;
use tokio_postgres::Row;

use super::{DbResult, GenericClient, trials};
use duma_domain::{
    InferenceJobId, LeaseId, LeaseKind, SubTrainJobId, TrainJobId, TrialId, WorkerId, WorkerKind,
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

/// Removes a worker that stopped cleanly: the trials it was still running are ERRORED (nobody
/// will finish them) and its leases become claimable at once.
pub async fn deregister(db: &impl GenericClient, id: WorkerId) -> DbResult<()> {
    for lease in leases_held(db, id).await? {
        abandon(db, &lease, "the worker running this trial stopped").await?;
    }
    db.execute("DELETE FROM workers WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

/// The advisory-lock class of presence locks (the two-key form, a key space of its own).
const PRESENCE_CLASS: i32 = 0x0d0a;
/// The capability a worker that holds a presence lock registers with.
pub const PRESENCE_CAPABILITY: &str = "presence_lock";
/// The capability that says a worker's GPUs: `{"count": n, "devices": [...]}`.
pub const GPUS_CAPABILITY: &str = "gpus";

/// The second key of the presence lock of the worker whose id is in SQL column `id`.
fn presence_key(id: &str) -> String {
    format!("(hashtext({id}::text) & 2147483647)")
}

/// Takes the worker's presence lock on this connection's session. Postgres holds it exactly as
/// long as the connection lives, so a worker that dies is noticed at once, by Postgres itself: its
/// connection closes and the lock is free ([`reclaim_departed`]). False when another session
/// holds the same key (two ids that hash alike): that worker's death then shows by its lease
/// expiry alone.
pub async fn hold_presence(db: &impl GenericClient, id: WorkerId) -> DbResult<bool> {
    let sql = format!(
        "SELECT pg_try_advisory_lock($1, {}) FROM workers WHERE id = $2",
        presence_key("id")
    );
    Ok(db
        .query_opt(&sql, &[&PRESENCE_CLASS, &id])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .unwrap_or(false))
}

/// Like [`reclaim_expired`], for leases whose holder is gone before they expire: it registered
/// with a presence lock and nobody holds that lock any more (its connection to Postgres closed —
/// the process died). Only a worker that has beaten since PostgreSQL last started counts: after a
/// restart every live worker takes its lock anew before its next heartbeat, so until then a free
/// lock says nothing (such a worker, if dead, is found by lease expiry).
pub async fn reclaim_departed(db: &impl GenericClient) -> DbResult<Vec<(Lease, u64)>> {
    let sql = format!(
        "SELECT {LEASE_COLUMNS} FROM work_leases \
         WHERE worker_id IN (SELECT w.id FROM workers w \
               WHERE w.capabilities @> jsonb_build_object($1::text, true) \
                 AND w.last_heartbeat > pg_postmaster_start_time() \
                 AND NOT EXISTS (SELECT 1 FROM pg_locks p WHERE p.locktype = 'advisory' \
                     AND p.granted AND p.objsubid = 2 AND p.classid::bigint = $2 \
                     AND p.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                     AND p.objid::bigint = {})) \
         FOR UPDATE SKIP LOCKED",
        presence_key("w.id")
    );
    let departed = db
        .query(&sql, &[&PRESENCE_CAPABILITY, &i64::from(PRESENCE_CLASS)])
        .await?;
    free_leases_of_gone_holders(
        db,
        &departed,
        "the worker running this trial died (its connection to the database closed)",
    )
    .await
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
    create_lease_slots(db, subject, 0..slots).await
}

/// Creates unclaimed leases of `slots` for a subject (more replicas of a served trial).
pub async fn create_lease_slots(
    db: &impl GenericClient,
    subject: LeaseSubject,
    slots: std::ops::Range<i32>,
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
    for slot in slots {
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

/// Claims one free lease (never claimed, or released) of `kind` for `worker_id`, skipping rows
/// other workers are claiming at the same moment.
///
/// A lease whose holder stopped renewing it is *not* free: the dead holder's work must be
/// cleaned up first, and [`reclaim_expired`] is the only way such a lease becomes free again.
pub async fn claim(
    db: &impl GenericClient,
    kind: LeaseKind,
    worker_id: WorkerId,
    ttl: Duration,
) -> DbResult<Option<Lease>> {
    let sql = format!(
        "UPDATE work_leases SET worker_id = $2, datetime_claimed = now(), ready = false, \
         expires_at = now() + make_interval(secs => $3) \
         WHERE id = (SELECT id FROM work_leases WHERE kind = $1 AND worker_id IS NULL \
                     ORDER BY datetime_claimed NULLS FIRST, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING {LEASE_COLUMNS}"
    );
    db.query_opt(&sql, &[&kind, &worker_id, &ttl.as_secs_f64()])
        .await?
        .map(|r| Lease::from_row(&r))
        .transpose()
}

/// Claims a free SERVE lease for `worker_id` of an inference job at one of `levels` (a job
/// outside any deployment counts as `development`) needing at most `free_gpus` GPUs, never a
/// second replica of a trial the worker already serves: replicas spread over workers, and one
/// that dies costs one replica.
pub async fn claim_serving(
    db: &impl GenericClient,
    worker_id: WorkerId,
    ttl: Duration,
    levels: &[String],
    free_gpus: u32,
) -> DbResult<Option<Lease>> {
    let sql = format!(
        "UPDATE work_leases SET worker_id = $2, datetime_claimed = now(), ready = false, \
         expires_at = now() + make_interval(secs => $3) \
         WHERE id = (SELECT l.id FROM work_leases l \
                     JOIN inference_jobs i ON i.id = l.inference_job_id \
                     JOIN trials tr ON tr.id = l.trial_id \
                     JOIN models m ON m.id = tr.model_id \
                     WHERE l.kind = $1 AND l.worker_id IS NULL \
                       AND coalesce(i.service_level, 'development') = ANY($4) \
                       AND {gpus} <= $5 \
                       AND NOT EXISTS (SELECT 1 FROM work_leases h \
                           WHERE h.kind = $1 AND h.worker_id = $2 \
                             AND h.inference_job_id = l.inference_job_id \
                             AND h.trial_id = l.trial_id) \
                     ORDER BY l.datetime_claimed NULLS FIRST, l.id \
                     LIMIT 1 FOR UPDATE OF l SKIP LOCKED) \
         RETURNING {LEASE_COLUMNS}",
        gpus = gpus_needed_sql("i")
    );
    db.query_opt(
        &sql,
        &[
            &LeaseKind::Serve,
            &worker_id,
            &ttl.as_secs_f64(),
            &levels,
            &i64::from(free_gpus),
        ],
    )
    .await?
    .map(|r| Lease::from_row(&r))
    .transpose()
}

/// Whether a live inference worker (heartbeat within `alive`) serves `level`.
pub async fn serves_level(db: &impl GenericClient, level: &str, alive: Duration) -> DbResult<bool> {
    let row = db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM workers WHERE kind = 'INFERENCE' \
               AND last_heartbeat > now() - make_interval(secs => $2) \
               AND capabilities -> 'service_levels' ? $1)",
            &[&level, &alive.as_secs_f64()],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Claims a TRAIN lease of a job needing at most `free_gpus` GPUs per trial, whose owner holds
/// fewer than `per_user` TRAIN leases (the superadmin has no limit). TRAIN claims take turns
/// platform-wide (a transaction-scoped advisory lock; a slot claims once per sub job, so they
/// are rare), so concurrent claims cannot both pass the count and go past the quota.
pub async fn claim_train(
    db: &mut deadpool_postgres::Object,
    worker_id: WorkerId,
    ttl: Duration,
    per_user: u32,
    free_gpus: u32,
) -> DbResult<Option<Lease>> {
    let tx = db.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&TRAIN_CLAIM_LOCK])
        .await?;
    let sql = format!(
        "UPDATE work_leases SET worker_id = $2, datetime_claimed = now(), ready = false, \
         expires_at = now() + make_interval(secs => $3) \
         WHERE id = ( \
           SELECT l.id FROM work_leases l \
           JOIN sub_train_jobs s ON s.id = l.sub_train_job_id \
           JOIN train_jobs t ON t.id = s.train_job_id \
           JOIN models m ON m.id = s.model_id \
           JOIN users u ON u.id = t.user_id \
           WHERE l.kind = $1 AND l.worker_id IS NULL \
             AND {gpus} <= $5 \
             AND (u.user_type = 'SUPERADMIN' OR ( \
               SELECT count(*) FROM work_leases h \
               JOIN sub_train_jobs hs ON hs.id = h.sub_train_job_id \
               JOIN train_jobs ht ON ht.id = hs.train_job_id \
               WHERE h.kind = $1 AND h.worker_id IS NOT NULL AND ht.user_id = t.user_id) < $4) \
           ORDER BY l.datetime_claimed NULLS FIRST, l.id LIMIT 1 FOR UPDATE OF l SKIP LOCKED) \
         RETURNING {LEASE_COLUMNS}",
        gpus = gpus_needed_sql("t")
    );
    let claimed = tx
        .query_opt(
            &sql,
            &[
                &LeaseKind::Train,
                &worker_id,
                &ttl.as_secs_f64(),
                &i64::from(per_user),
                &i64::from(free_gpus),
            ],
        )
        .await?
        .map(|r| Lease::from_row(&r))
        .transpose()?;
    tx.commit().await?;
    Ok(claimed)
}

/// SQL for the GPUs one trial or served replica needs, given its job's row as `job` and its
/// model's as `m`: the budget's `GPU_COUNT` for a Python template; built-in and ONNX models run
/// in the worker, on CPU, and need none.
fn gpus_needed_sql(job: &str) -> String {
    format!(
        "(CASE WHEN m.template_kind = 'python' \
         THEN coalesce(({job}.budget ->> 'GPU_COUNT')::bigint, 0) ELSE 0 END)"
    )
}

/// The GPUs the work under `lease` needs (see [`gpus_needed_sql`]): each trial's for a TRAIN
/// lease, each replica's for a SERVE lease; 0 for other kinds.
pub async fn gpus_needed(db: &impl GenericClient, lease: &Lease) -> DbResult<u32> {
    let row = match (lease.kind, lease.sub_train_job_id, lease.trial_id) {
        (LeaseKind::Train, Some(sub_job), _) => {
            let sql = format!(
                "SELECT {} FROM sub_train_jobs s JOIN train_jobs t ON t.id = s.train_job_id \
                 JOIN models m ON m.id = s.model_id WHERE s.id = $1",
                gpus_needed_sql("t")
            );
            db.query_opt(&sql, &[&sub_job]).await?
        }
        (LeaseKind::Serve, _, Some(trial)) => {
            let sql = format!(
                "SELECT {} FROM work_leases l JOIN inference_jobs i ON i.id = l.inference_job_id \
                 JOIN trials tr ON tr.id = $2 JOIN models m ON m.id = tr.model_id \
                 WHERE l.id = $1",
                gpus_needed_sql("i")
            );
            db.query_opt(&sql, &[&lease.id, &trial]).await?
        }
        _ => None,
    };
    gpus_of(row)
}

/// The most GPUs any trial of a train job needs (0 when its models are all built-in).
pub async fn train_job_gpus(db: &impl GenericClient, job: TrainJobId) -> DbResult<u32> {
    let sql = format!(
        "SELECT max({}) FROM sub_train_jobs s JOIN train_jobs t ON t.id = s.train_job_id \
         JOIN models m ON m.id = s.model_id WHERE t.id = $1",
        gpus_needed_sql("t")
    );
    gpus_of(db.query_opt(&sql, &[&job]).await?)
}

/// The most GPUs any replica of an inference job needs (0 when it serves no Python template).
pub async fn inference_job_gpus(db: &impl GenericClient, job: InferenceJobId) -> DbResult<u32> {
    let sql = format!(
        "SELECT max({}) FROM work_leases l JOIN inference_jobs i ON i.id = l.inference_job_id \
         JOIN trials tr ON tr.id = l.trial_id JOIN models m ON m.id = tr.model_id \
         WHERE l.inference_job_id = $1",
        gpus_needed_sql("i")
    );
    gpus_of(db.query_opt(&sql, &[&job]).await?)
}

fn gpus_of(row: Option<Row>) -> DbResult<u32> {
    let gpus: Option<i64> = match row {
        Some(row) => row.try_get(0)?,
        None => None,
    };
    Ok(gpus.and_then(|g| u32::try_from(g).ok()).unwrap_or(0))
}

/// The most GPUs any live worker of `kind` (heartbeat within `alive`) has: work needing more
/// waits, and says so.
pub async fn most_gpus(
    db: &impl GenericClient,
    kind: WorkerKind,
    alive: Duration,
) -> DbResult<u32> {
    let row = db
        .query_one(
            "SELECT coalesce(max((capabilities -> 'gpus' ->> 'count')::bigint), 0) FROM workers \
             WHERE kind = $1 AND last_heartbeat > now() - make_interval(secs => $2)",
            &[&kind, &alive.as_secs_f64()],
        )
        .await?;
    let most: i64 = row.try_get(0)?;
    Ok(u32::try_from(most).unwrap_or(0))
}

/// The advisory lock TRAIN claims take turns on (any constant unique to this use).
const TRAIN_CLAIM_LOCK: i64 = 0x0064_756d_6174_726e; // "dumatrn"

/// Frees every lease held past its expiry (its holder died or hangs), after cleaning up the
/// holder's work: the trials it was running for a TRAIN lease become ERRORED. Rows another
/// reclaimer is handling are skipped. Run it inside a transaction so cleanup and freeing land
/// together. Returns the leases freed and, for each, how many trials were ERRORED.
pub async fn reclaim_expired(db: &impl GenericClient) -> DbResult<Vec<(Lease, u64)>> {
    let sql = format!(
        "SELECT {LEASE_COLUMNS} FROM work_leases \
         WHERE worker_id IS NOT NULL AND expires_at < now() FOR UPDATE SKIP LOCKED"
    );
    let expired = db.query(&sql, &[]).await?;
    free_leases_of_gone_holders(
        db,
        &expired,
        "the worker running this trial stopped answering (lease expired)",
    )
    .await
}

/// Cleans up after the holders of the lease rows `rows` (see [`free_lease_of_gone_holder`]).
async fn free_leases_of_gone_holders(
    db: &impl GenericClient,
    rows: &[Row],
    reason: &str,
) -> DbResult<Vec<(Lease, u64)>> {
    let mut freed = Vec::with_capacity(rows.len());
    for row in rows {
        let lease = Lease::from_row(row)?;
        let lost = abandon(db, &lease, reason).await?;
        freed.push((lease, lost));
    }
    Ok(freed)
}

/// The one cleanup of work its holder will not finish (it died, stopped, or failed midway): the
/// holder's RUNNING trials of the lease's sub job are ERRORED with `reason`, then the lease is
/// freed for anyone to claim. Returns how many trials were ERRORED.
pub async fn abandon(db: &impl GenericClient, lease: &Lease, reason: &str) -> DbResult<u64> {
    let Some(holder) = lease.worker_id else {
        return Ok(0);
    };
    let lost = match (lease.kind, lease.sub_train_job_id) {
        (LeaseKind::Train, Some(sub_job)) => {
            trials::error_trials_of_lost_worker(db, holder, sub_job, reason).await?
        }
        _ => 0,
    };
    release(db, lease.id, holder).await?;
    Ok(lost)
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

/// The workers holding a lease of a sub job.
pub async fn holders_of_sub_job(
    db: &impl GenericClient,
    sub_train_job_id: SubTrainJobId,
) -> DbResult<std::collections::HashSet<WorkerId>> {
    db.query(
        "SELECT DISTINCT worker_id FROM work_leases \
         WHERE sub_train_job_id = $1 AND worker_id IS NOT NULL",
        &[&sub_train_job_id],
    )
    .await?
    .iter()
    .map(|r| Ok(r.try_get(0)?))
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
