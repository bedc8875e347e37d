//! The reconciler: notices dead workers through their expired leases and makes sure no job
//! stays RUNNING with nobody able to progress it.
//!
//! Every tick, one admin replica (an advisory lock elects it):
//! - reclaims the leases of workers that died (`workers::reclaim_departed`: their presence lock
//!   is free, noticed within a tick) or stopped renewing them (`workers::reclaim_expired`) — the
//!   only paths by which such a lease becomes claimable: the trials its holder was running are
//!   ERRORED first, so another worker continues the sub job and the advisor stops waiting;
//! - rolls up the status of live train jobs (sub jobs → job), and of live inference jobs (STARTED
//!   while a served trial has no ready replica, RUNNING once each has one);
//! - forgets workers that have been silent for long and hold nothing;
//! - exports how much work waits for a worker;
//! - about once a minute, deletes the Redis request streams no live job owns (a stopped job's,
//!   or one a late request re-created), so Redis holds only live work;
//! - moves deployments' traffic to their pending versions once every one of them runs (or
//!   gives the change up, naming the version that cannot be served), and stops the inference
//!   jobs that lost their traffic once their requests in flight are done (`drain`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use duma_common::db::deployments::{self, Retiring};
use duma_common::db::{PgPool, evaluations, inference_jobs, train_jobs, workers};
use duma_common::ops::Probe;
use duma_common::redis::Redis;
use duma_common::redis::events::{self, Event};
use duma_common::redis::rpc::{SERVING_GROUP, requeue_orphans};
use duma_domain::JobStatus;
use duma_domain::protocol::Target;
use duma_domain::protocol::serving_target;
use prometheus::{IntGaugeVec, Registry};
use tokio_util::sync::CancellationToken;

/// Arbitrary key of the advisory lock that elects the reconciling replica.
const RECONCILER_LOCK: i64 = 0x0d0a_7ec0;
const FORGET_WORKERS_AFTER: Duration = Duration::from_secs(600);
/// A tick taking longer is abandoned (its transaction rolls back) and the next one starts.
const TICK_DEADLINE: Duration = Duration::from_secs(30);
/// A worker silent for longer no longer counts as live: not serving its levels, not offering
/// its GPUs, not running the evaluations it claimed.
pub(crate) const NO_WORKER_AFTER: Duration = Duration::from_secs(30);
/// How often the elected replica sweeps Redis for streams no live job owns.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Reconciler {
    pool: PgPool,
    redis: Redis,
    waiting: IntGaugeVec,
    /// How long an inference job that lost a deployment's traffic keeps serving the requests
    /// already sent to it (the predictors' deadline, and a margin).
    drain: Duration,
}

impl Reconciler {
    pub fn new(
        pool: PgPool,
        redis: Redis,
        registry: &Registry,
        drain: Duration,
    ) -> prometheus::Result<Self> {
        let waiting = prometheus::register_int_gauge_vec_with_registry!(
            "duma_work_waiting",
            "Work leases no live worker holds, by kind",
            &["kind"],
            registry
        )?;
        Ok(Self {
            pool,
            redis,
            waiting,
            drain,
        })
    }

    /// Ticks every `interval` until `shutdown`, beating `probe` after each tick.
    pub async fn run(self, interval: Duration, probe: &Probe, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sweep = Instant::now();
        loop {
            probe.beat();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match tokio::time::timeout(TICK_DEADLINE, self.tick()).await {
                Ok(Ok(true)) if last_sweep.elapsed() >= SWEEP_EVERY => {
                    last_sweep = Instant::now();
                    match tokio::time::timeout(TICK_DEADLINE, self.sweep_streams()).await {
                        Ok(Ok(0)) => {}
                        Ok(Ok(deleted)) => {
                            tracing::info!(deleted, "deleted request streams no live job owns");
                        }
                        Ok(Err(error)) => {
                            tracing::warn!(error = format!("{error:#}"), "sweeping streams failed");
                        }
                        Err(_) => tracing::warn!("sweeping streams took too long; abandoned"),
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(error = format!("{error:#}"), "reconciler tick failed");
                }
                Err(_) => tracing::warn!(
                    "a reconciler tick took longer than {TICK_DEADLINE:?}; abandoned"
                ),
            }
        }
    }

    /// Deletes the request streams that no live job owns; returns how many.
    pub async fn sweep_streams(&self) -> anyhow::Result<usize> {
        let db = self.pool.get().await?;
        let inference: HashSet<_> = inference_jobs::list_live(&db)
            .await?
            .into_iter()
            .map(|job| job.id)
            .collect();
        let sub_jobs: HashSet<_> = train_jobs::live_sub_job_ids(&db)
            .await?
            .into_iter()
            .collect();
        drop(db);
        let deleted = self
            .redis
            .delete_request_streams(|target| match Target::parse(target) {
                Some(Target::Advisor(sub_job)) => !sub_jobs.contains(&sub_job),
                Some(Target::Serving(job, _)) => !inference.contains(&job),
                None => false, // not ours to judge
            })
            .await?;
        Ok(deleted)
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
        let departed = workers::reclaim_departed(&tx).await?;
        let expired = workers::reclaim_expired(&tx).await?;
        let mut orphaned = Vec::new();
        for (why, (lease, lost)) in std::iter::repeat("its database connection closed")
            .zip(departed)
            .chain(std::iter::repeat("it stopped renewing its lease").zip(expired))
        {
            if let (Some(worker), Some(job), Some(trial)) =
                (lease.worker_id, lease.inference_job_id, lease.trial_id)
            {
                orphaned.push((worker, serving_target(job, trial)));
            }
            tracing::warn!(
                worker_id = ?lease.worker_id,
                lease_id = %lease.id,
                kind = lease.kind.as_str(),
                trials_errored = lost,
                "a worker is gone ({why}); its work is cleaned up and the lease is free"
            );
        }
        for job in train_jobs::list_live(&tx).await? {
            train_jobs::roll_up(&tx, job.id).await?;
        }
        for job in inference_jobs::list_live(&tx).await? {
            if let Some(status) = inference_jobs::roll_up(&tx, job.id).await? {
                tracing::info!(inference_job_id = %job.id, %status, "inference job status follows its replicas");
            }
        }
        let orphans = evaluations::fail_orphans(&tx, NO_WORKER_AFTER).await?;
        if orphans > 0 {
            tracing::warn!(
                orphans,
                "evaluations whose train worker is gone are ERRORED"
            );
        }
        workers::delete_silent_idle(&tx, FORGET_WORKERS_AFTER).await?;
        // Every kind, zero included: a dashboard's query of it always finds a series.
        for kind in duma_domain::LeaseKind::ALL {
            self.waiting.with_label_values(&[kind.as_str()]).set(0);
        }
        for (kind, count) in workers::count_waiting(&tx).await? {
            self.waiting.with_label_values(&[kind.as_str()]).set(count);
        }
        tx.commit().await?;
        // Their requests read but unanswered go to the live replicas now, not after an idle time.
        for (worker, target) in orphaned {
            let stream = self.redis.keys().request_stream(&target);
            match requeue_orphans(&self.redis, &stream, SERVING_GROUP, &worker.to_string()).await {
                Ok(0) => {}
                Ok(moved) => {
                    tracing::info!(
                        stream,
                        moved,
                        "requests of a dead replica handed to the live ones"
                    )
                }
                Err(error) => {
                    tracing::warn!(stream, %error, "cannot hand a dead replica's requests over")
                }
            }
        }
        self.advance_deployments().await?;
        Ok(true)
    }

    /// Moves each deployment with a pending change as far as it can go now.
    pub async fn advance_deployments(&self) -> anyhow::Result<()> {
        let db = self.pool.get().await?;
        let in_motion = deployments::list_in_motion(&db).await?;
        drop(db);
        for deployment in in_motion {
            let mut db = self.pool.get().await?;
            let tx = db.transaction().await?;
            let Some(mut deployment) =
                deployments::by_name_for_update(&tx, &deployment.name).await?
            else {
                continue;
            };
            let mut switched = false;
            if let Some(pending) = deployment.pending.clone() {
                let mut running = true;
                let mut failed = None;
                for route in &pending {
                    let job = inference_jobs::by_id(&tx, route.inference_job_id).await?;
                    match job.as_ref().map(|j| j.status) {
                        Some(JobStatus::Running) => {}
                        Some(JobStatus::Started) => running = false,
                        _ => {
                            failed = Some(format!(
                                "version {} could not be served: {}",
                                route.app_version,
                                job.and_then(|j| j.error)
                                    .unwrap_or_else(|| "its inference job stopped".to_owned())
                            ));
                            break;
                        }
                    }
                }
                // A level no live inference worker serves would wait forever: say so.
                if failed.is_none()
                    && !running
                    && !workers::serves_level(&tx, &deployment.service_level, NO_WORKER_AFTER)
                        .await?
                {
                    let why = format!(
                        "no inference worker serves service level {}: start one whose \
                         inference_worker.service_levels includes it",
                        deployment.service_level
                    );
                    if deployment.error.as_deref() != Some(why.as_str()) {
                        tracing::warn!(deployment = deployment.name, why, "deployment waits");
                        deployment.error = Some(why);
                    }
                } else if let Some(why) = failed {
                    tracing::warn!(
                        deployment = deployment.name,
                        why,
                        "deployment change given up"
                    );
                    deployment.pending = None;
                    deployment.error = Some(why);
                } else if running {
                    let old = std::mem::replace(&mut deployment.routes, pending);
                    let after =
                        Utc::now() + chrono::Duration::from_std(self.drain).unwrap_or_default();
                    for route in &old {
                        let kept = deployment
                            .routes
                            .iter()
                            .any(|r| r.inference_job_id == route.inference_job_id);
                        if !kept {
                            deployment.retiring.push(Retiring {
                                inference_job_id: route.inference_job_id,
                                after,
                            });
                        }
                    }
                    if !old.is_empty() {
                        deployment.previous = Some(old);
                    }
                    deployment.pending = None;
                    deployment.error = None;
                    switched = true;
                    tracing::info!(deployment = deployment.name, "deployment switched");
                }
            }
            let now = Utc::now();
            let (due, waiting): (Vec<Retiring>, Vec<Retiring>) =
                std::mem::take(&mut deployment.retiring)
                    .into_iter()
                    .partition(|r| r.after <= now);
            deployment.retiring = waiting;
            let mut stopped = Vec::new();
            for retired in due {
                let still_used = deployment
                    .routes
                    .iter()
                    .chain(deployment.pending.iter().flatten())
                    .any(|r| r.inference_job_id == retired.inference_job_id);
                if !still_used
                    && !deployments::routes_elsewhere(&tx, retired.inference_job_id, deployment.id)
                        .await?
                    && inference_jobs::set_status(
                        &tx,
                        retired.inference_job_id,
                        JobStatus::Stopped,
                        None,
                    )
                    .await?
                    .is_some()
                {
                    stopped.push(retired.inference_job_id);
                }
            }
            deployments::save_routing(&tx, &deployment).await?;
            tx.commit().await?;
            if switched {
                self.publish(Event::DeploymentChanged {
                    name: deployment.name.clone(),
                })
                .await;
            }
            for inference_job_id in stopped {
                tracing::info!(deployment = deployment.name, %inference_job_id, "drained version stopped");
                self.publish(Event::InferenceJobStopped { inference_job_id })
                    .await;
            }
        }
        Ok(())
    }

    async fn publish(&self, event: Event) {
        if let Err(error) = events::publish(&self.redis, &event).await {
            tracing::warn!(%error, ?event, "could not publish an event");
        }
    }
}
