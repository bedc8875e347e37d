//! Trials and their logs.

use chrono::{DateTime, Utc};
use postgres_types::Json;
use tokio_postgres::Row;

use super::{DbResult, GenericClient};
use duma_domain::{
    LeaseId, ModelId, Proposal, SubTrainJobId, TrainJobId, TrialId, TrialLog, TrialLogKind,
    TrialStatus, UserId, WorkerId,
};

/// Violated when a sub job gets a second trial with the same number.
pub const NUMBER_TAKEN: &str = "trials_no_key";

/// Where a trial's trained parameters are stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedParams {
    pub path: String,
    pub sha256: String,
    pub size_bytes: i64,
}

/// A trial with what the API shows alongside it: its model's name and its train job and owner.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub id: TrialId,
    pub sub_train_job_id: SubTrainJobId,
    pub train_job_id: TrainJobId,
    pub user_id: UserId,
    pub no: i32,
    pub model_id: ModelId,
    pub model_name: String,
    pub worker_id: Option<WorkerId>,
    /// The TRAIN lease (the worker's slot) the trial was handed to.
    pub lease_id: Option<LeaseId>,
    pub proposal: Proposal,
    pub status: TrialStatus,
    pub score: Option<f64>,
    pub params: Option<SavedParams>,
    pub datetime_started: DateTime<Utc>,
    pub datetime_stopped: Option<DateTime<Utc>>,
}

impl Trial {
    fn from_row(row: &Row) -> DbResult<Self> {
        let Json(proposal) = row.try_get("proposal")?;
        let params_path: Option<String> = row.try_get("params_path")?;
        let params = match params_path {
            Some(path) => Some(SavedParams {
                path,
                sha256: row
                    .try_get::<_, Option<String>>("params_sha256")?
                    .unwrap_or_default(),
                size_bytes: row
                    .try_get::<_, Option<i64>>("params_size_bytes")?
                    .unwrap_or_default(),
            }),
            None => None,
        };
        Ok(Self {
            id: row.try_get("id")?,
            sub_train_job_id: row.try_get("sub_train_job_id")?,
            train_job_id: row.try_get("train_job_id")?,
            user_id: row.try_get("user_id")?,
            no: row.try_get("no")?,
            model_id: row.try_get("model_id")?,
            model_name: row.try_get("model_name")?,
            worker_id: row.try_get("worker_id")?,
            lease_id: row.try_get("lease_id")?,
            proposal,
            status: row.try_get("status")?,
            score: row.try_get("score")?,
            params,
            datetime_started: row.try_get("datetime_started")?,
            datetime_stopped: row.try_get("datetime_stopped")?,
        })
    }

    pub fn is_params_saved(&self) -> bool {
        self.params.is_some()
    }
}

const SELECT: &str = "SELECT t.id, t.sub_train_job_id, s.train_job_id, j.user_id, t.no, \
    t.model_id, m.name AS model_name, t.worker_id, t.lease_id, t.proposal, t.status, t.score, t.params_path, \
    t.params_sha256, t.params_size_bytes, t.datetime_started, t.datetime_stopped \
    FROM trials t JOIN sub_train_jobs s ON s.id = t.sub_train_job_id \
    JOIN train_jobs j ON j.id = s.train_job_id JOIN models m ON m.id = t.model_id";

/// Creates a RUNNING trial for a proposal, if its sub job is still live (`None` once it was
/// stopped: the check and the insert hold the sub job's row, so a trial never appears RUNNING
/// under a job whose stop already ended its trials — see [`super::train_jobs::stop`]). A repeated
/// number fails with [`NUMBER_TAKEN`].
pub async fn insert_running(
    db: &impl GenericClient,
    sub_train_job_id: SubTrainJobId,
    model_id: ModelId,
    worker_id: Option<WorkerId>,
    lease_id: Option<LeaseId>,
    proposal: &Proposal,
) -> DbResult<Option<Trial>> {
    let id = TrialId::new();
    let no = i32::try_from(proposal.trial_no).unwrap_or(i32::MAX);
    let inserted = db
        .execute(
            "WITH live AS (SELECT id FROM sub_train_jobs WHERE id = $2 \
                 AND status IN ('STARTED', 'RUNNING') FOR SHARE) \
             INSERT INTO trials (id, sub_train_job_id, no, model_id, worker_id, lease_id, \
             proposal, status) SELECT $1, live.id, $3, $4, $5, $6, $7, 'RUNNING' FROM live",
            &[
                &id,
                &sub_train_job_id,
                &no,
                &model_id,
                &worker_id,
                &lease_id,
                &Json(proposal),
            ],
        )
        .await?;
    if inserted == 0 {
        return Ok(None);
    }
    let sql = format!("{SELECT} WHERE t.id = $1");
    Ok(Some(Trial::from_row(&db.query_one(&sql, &[&id]).await?)?))
}

pub async fn by_id(db: &impl GenericClient, id: TrialId) -> DbResult<Option<Trial>> {
    let sql = format!("{SELECT} WHERE t.id = $1");
    db.query_opt(&sql, &[&id])
        .await?
        .map(|r| Trial::from_row(&r))
        .transpose()
}

/// A train job's trials in the order they started.
pub async fn list_by_train_job(
    db: &impl GenericClient,
    train_job_id: TrainJobId,
    limit: i64,
    offset: i64,
) -> DbResult<Vec<Trial>> {
    let sql = format!(
        "{SELECT} WHERE s.train_job_id = $1 ORDER BY t.datetime_started, t.no, t.id LIMIT $2 OFFSET $3"
    );
    db.query(&sql, &[&train_job_id, &limit, &offset])
        .await?
        .iter()
        .map(Trial::from_row)
        .collect()
}

/// A train job's best trials: completed with saved parameters, highest score first.
pub async fn best_by_train_job(
    db: &impl GenericClient,
    train_job_id: TrainJobId,
    max_count: i64,
) -> DbResult<Vec<Trial>> {
    let sql = format!(
        "{SELECT} WHERE s.train_job_id = $1 AND t.status = 'COMPLETED' AND t.params_path IS NOT NULL \
         ORDER BY t.score DESC NULLS LAST, t.datetime_started LIMIT $2"
    );
    db.query(&sql, &[&train_job_id, &max_count])
        .await?
        .iter()
        .map(Trial::from_row)
        .collect()
}

/// For each sub job of a train job, its best completed trial with saved parameters.
pub async fn best_per_sub_job(
    db: &impl GenericClient,
    train_job_id: TrainJobId,
) -> DbResult<Vec<Trial>> {
    let sql = format!(
        "SELECT DISTINCT ON (t.sub_train_job_id) * FROM ({SELECT} WHERE s.train_job_id = $1 \
         AND t.status = 'COMPLETED' AND t.params_path IS NOT NULL) t \
         ORDER BY t.sub_train_job_id, t.score DESC NULLS LAST, t.datetime_started"
    );
    db.query(&sql, &[&train_job_id])
        .await?
        .iter()
        .map(Trial::from_row)
        .collect()
}

/// Trials of a sub job in trial-number order (what an advisor rebuilds its state from).
/// The best-scoring COMPLETED trial of a sub job whose parameters were saved (what Rafiki's
/// `SHARE_PARAMS` hands to the next trials).
pub async fn best_with_params(
    db: &impl GenericClient,
    id: SubTrainJobId,
) -> DbResult<Option<Trial>> {
    let sql = format!(
        "{SELECT} WHERE t.sub_train_job_id = $1 AND t.status = 'COMPLETED' \
         AND t.params_path IS NOT NULL AND t.score IS NOT NULL ORDER BY t.score DESC, t.no LIMIT 1"
    );
    db.query_opt(&sql, &[&id])
        .await?
        .map(|r| Trial::from_row(&r))
        .transpose()
}

pub async fn list_by_sub_job(db: &impl GenericClient, id: SubTrainJobId) -> DbResult<Vec<Trial>> {
    let sql = format!("{SELECT} WHERE t.sub_train_job_id = $1 ORDER BY t.no");
    db.query(&sql, &[&id])
        .await?
        .iter()
        .map(Trial::from_row)
        .collect()
}

/// Marks a running trial COMPLETED with its score and, if kept, its parameters.
pub async fn complete(
    db: &impl GenericClient,
    id: TrialId,
    score: Option<f64>,
    params: Option<&SavedParams>,
) -> DbResult<bool> {
    let n = db
        .execute(
            "UPDATE trials SET status = 'COMPLETED', score = $2, params_path = $3, \
             params_sha256 = $4, params_size_bytes = $5, datetime_stopped = now() \
             WHERE id = $1 AND status IN ('PENDING', 'RUNNING')",
            &[
                &id,
                &score,
                &params.map(|p| &p.path),
                &params.map(|p| &p.sha256),
                &params.map(|p| p.size_bytes),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Marks a running trial STOPPED (ended early by the budget's `EARLY_STOPPING`) with the score
/// of its last report; no parameters are kept.
pub async fn stop(db: &impl GenericClient, id: TrialId, score: f64) -> DbResult<bool> {
    let n = db
        .execute(
            "UPDATE trials SET status = 'STOPPED', score = $2, datetime_stopped = now() \
             WHERE id = $1 AND status IN ('PENDING', 'RUNNING')",
            &[&id, &score],
        )
        .await?;
    Ok(n == 1)
}

/// The intermediate scores (`(step, score)`, in the order written) that each COMPLETED trial of
/// a sub job reported (see [`duma_domain::report`]); trials without reports are left out.
pub async fn reports_of_completed(
    db: &impl GenericClient,
    sub_job: SubTrainJobId,
) -> DbResult<Vec<Vec<(f64, f64)>>> {
    let rows = db
        .query(
            "SELECT l.trial_id, (l.payload->>$2::text)::float8 AS step, \
                    (l.payload->>$3::text)::float8 AS score \
             FROM trial_logs l JOIN trials t ON t.id = l.trial_id \
             WHERE t.sub_train_job_id = $1 AND t.status = 'COMPLETED' AND l.kind = 'METRICS' \
               AND jsonb_typeof(l.payload->$2::text) = 'number' \
               AND jsonb_typeof(l.payload->$3::text) = 'number' \
             ORDER BY l.trial_id, l.id",
            &[
                &sub_job,
                &duma_domain::report::STEP,
                &duma_domain::report::SCORE,
            ],
        )
        .await?;
    let mut curves: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Option<TrialId> = None;
    for row in rows {
        let trial: TrialId = row.try_get("trial_id")?;
        let point = (row.try_get("step")?, row.try_get("score")?);
        match curves.last_mut() {
            Some(curve) if current == Some(trial) => curve.push(point),
            _ => {
                curves.push(vec![point]);
                current = Some(trial);
            }
        }
    }
    Ok(curves)
}

/// Marks an unfinished trial ERRORED.
pub async fn mark_errored(db: &impl GenericClient, id: TrialId) -> DbResult<bool> {
    let n = db
        .execute(
            "UPDATE trials SET status = 'ERRORED', datetime_stopped = now() \
             WHERE id = $1 AND status IN ('PENDING', 'RUNNING')",
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// Appends log records in one statement, however many there are.
pub async fn insert_logs(
    db: &impl GenericClient,
    trial_id: TrialId,
    logs: &[TrialLog],
) -> DbResult<()> {
    if logs.is_empty() {
        return Ok(());
    }
    let datetimes: Vec<DateTime<Utc>> = logs.iter().map(|l| l.datetime).collect();
    let kinds: Vec<TrialLogKind> = logs.iter().map(|l| l.kind).collect();
    let payloads: Vec<Json<&serde_json::Value>> = logs.iter().map(|l| Json(&l.payload)).collect();
    db.execute(
        "INSERT INTO trial_logs (trial_id, datetime, kind, payload) \
         SELECT $1, * FROM unnest($2::timestamptz[], $3::trial_log_kind[], $4::jsonb[])",
        &[&trial_id, &datetimes, &kinds, &payloads],
    )
    .await?;
    Ok(())
}

/// A trial's log records in the order they were written.
pub async fn logs(db: &impl GenericClient, trial_id: TrialId) -> DbResult<Vec<TrialLog>> {
    db.query(
        "SELECT datetime, kind, payload FROM trial_logs WHERE trial_id = $1 ORDER BY id",
        &[&trial_id],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(TrialLog {
            datetime: row.try_get("datetime")?,
            kind: row.try_get("kind")?,
            payload: row.try_get::<_, Json<serde_json::Value>>("payload")?.0,
        })
    })
    .collect()
}

/// Marks an unfinished trial ERRORED and records why in its logs.
pub async fn mark_errored_because(
    db: &impl GenericClient,
    id: TrialId,
    reason: &str,
) -> DbResult<bool> {
    let changed = mark_errored(db, id).await?;
    if changed {
        insert_logs(db, id, &[TrialLog::message(reason)]).await?;
    }
    Ok(changed)
}

/// Marks ERRORED the trials a lost worker was running for a sub job, logging `reason` on each;
/// returns how many.
pub async fn error_trials_of_lost_worker(
    db: &impl GenericClient,
    worker_id: WorkerId,
    sub_train_job_id: SubTrainJobId,
    reason: &str,
) -> DbResult<u64> {
    Ok(db
        .execute(
            "WITH lost AS ( \
                 UPDATE trials SET status = 'ERRORED', datetime_stopped = now() \
                 WHERE worker_id = $1 AND sub_train_job_id = $2 AND status IN ('PENDING', 'RUNNING') \
                 RETURNING id) \
             INSERT INTO trial_logs (trial_id, kind, payload) \
             SELECT id, 'MESSAGE', jsonb_build_object('message', $3::text) FROM lost",
            &[&worker_id, &sub_train_job_id, &reason],
        )
        .await?)
}
