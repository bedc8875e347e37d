//! The reconciler: notices dead workers through their expired leases and makes sure no job
//! stays RUNNING with nobody able to progress it.
//!
//! Every tick, one admin replica (an advisory lock elects it):
//! - for each expired TRAIN lease, marks ERRORED the trials its holder was running and frees the
//!   lease, so another worker continues the sub job; expired ADVISE and SERVE leases are freed;
//! - rolls up the status of live train jobs (sub jobs → job), and of live inference jobs (STARTED
//!   while a served trial has no ready replica, RUNNING once each has one);
//! - forgets workers that have been silent for long and hold nothing;
//! - exports how much work waits for a worker.

use std::time::Duration;

use duma_common::db::{PgPool, inference_jobs, train_jobs, trials, workers};
use duma_common::domain::LeaseKind;
use prometheus::{IntGaugeVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

/// Arbitrary key of the advisory lock that elects the reconciling replica.
const RECONCILER_LOCK: i64 = 0x0d0a_7ec0;
const FORGET_WORKERS_AFTER: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct Reconciler {
    pool: PgPool,
    waiting: IntGaugeVec,
}

impl Reconciler {
    pub fn new(pool: PgPool, registry: &Registry) -> prometheus::Result<Self> {
        let waiting = IntGaugeVec::new(
            Opts::new(
                "duma_work_waiting",
                "Work leases no live worker holds, by kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(waiting.clone()))?;
        Ok(Self { pool, waiting })
    }

    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if let Err(error) = self.tick().await {
                tracing::warn!(error = format!("{error:#}"), "reconciler tick failed");
            }
        }
    }

    /// One pass; returns whether this replica held the lock.
    pub async fn tick(&self) -> anyhow::Result<bool> {
        let mut db = self.pool.get().await?;
        let tx = db.transaction().await?;
        let elected: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&RECONCILER_LOCK])
            .await?
            .get(0);
        if !elected {
            return Ok(false);
        }
        for lease in workers::list_expired(&tx).await? {
            if let (LeaseKind::Train, Some(worker), Some(sub_job)) =
                (lease.kind, lease.worker_id, lease.sub_train_job_id)
            {
                let lost = trials::error_trials_of_lost_worker(&tx, worker, sub_job).await?;
                tracing::warn!(%worker, sub_train_job_id = %sub_job, trials = lost, "train worker lost; its lease is free again");
            }
            if let Some(worker) = lease.worker_id {
                workers::release(&tx, lease.id, worker).await?;
            }
        }
        for job in train_jobs::list_live(&tx).await? {
            train_jobs::roll_up(&tx, job.id).await?;
        }
        for job in inference_jobs::list_live(&tx).await? {
            if let Some(status) = inference_jobs::roll_up(&tx, job.id).await? {
                tracing::info!(inference_job_id = %job.id, %status, "inference job status follows its replicas");
            }
        }
        workers::delete_silent_idle(&tx, FORGET_WORKERS_AFTER).await?;
        self.waiting.reset();
        for (kind, count) in workers::count_waiting(&tx).await? {
            self.waiting.with_label_values(&[kind.as_str()]).set(count);
        }
        tx.commit().await?;
        Ok(true)
    }
}
