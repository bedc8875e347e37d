//! The advisor worker's loop: hold ADVISE leases of sub jobs, serve their request streams in
//! batches, and end sub jobs whose budget is spent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use duma_common::config::WorkerSettings;
use duma_common::db::{PgPool, train_jobs, workers};
use duma_common::domain::{JobStatus, LeaseKind, SubTrainJobId, WorkerId};
use duma_common::protocol::{AdvisorReply, AdvisorRequest, advisor_target};
use duma_common::redis::rpc::{Reply, Request, RpcServer, ServeLoop, StreamService};
use prometheus::{Histogram, HistogramOpts, IntGauge, Registry};
use tokio_util::sync::CancellationToken;

use crate::sub_job::{Loaded, SubJobAdvisor};

/// How often leases are claimed and sub jobs reconciled.
const TICK: Duration = Duration::from_millis(250);
/// How long one read waits for requests.
const READ_BLOCK: Duration = Duration::from_millis(200);
const READ_BATCH: usize = 64;
/// Entries another advisor read but did not answer for this long are taken over.
const RECLAIM_IDLE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct AdvisorMetrics {
    pub suggestion_latency: Histogram,
    pub sub_jobs_held: IntGauge,
}

impl AdvisorMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let suggestion_latency = Histogram::with_opts(
            HistogramOpts::new(
                "duma_advisor_suggestion_seconds",
                "Time to answer a proposal request",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16)?),
        )?;
        let sub_jobs_held =
            IntGauge::new("duma_advisor_sub_jobs", "Sub train jobs this advisor holds")?;
        registry.register(Box::new(suggestion_latency.clone()))?;
        registry.register(Box::new(sub_jobs_held.clone()))?;
        Ok(Self {
            suggestion_latency,
            sub_jobs_held,
        })
    }
}

pub struct AdvisorService {
    pub id: WorkerId,
    pub pool: PgPool,
    pub settings: WorkerSettings,
    pub server: RpcServer,
    pub metrics: AdvisorMetrics,
    held: HashMap<SubTrainJobId, SubJobAdvisor>,
    by_stream: HashMap<String, SubTrainJobId>,
}

impl AdvisorService {
    pub fn new(
        id: WorkerId,
        pool: PgPool,
        settings: WorkerSettings,
        server: RpcServer,
        metrics: AdvisorMetrics,
    ) -> Self {
        Self {
            id,
            pool,
            settings,
            server,
            metrics,
            held: HashMap::new(),
            by_stream: HashMap::new(),
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let every = ServeLoop {
            tick: TICK,
            block: READ_BLOCK,
            batch: READ_BATCH,
        };
        every.run(&mut self, "advisor", &shutdown).await;
        Ok(())
    }

    async fn serve_requests(&mut self, requests: Vec<Request>) {
        if requests.is_empty() {
            return;
        }
        let mut replies = Vec::with_capacity(requests.len());
        for request in requests {
            let started = Instant::now();
            let reply = match self.handle(&request).await {
                Ok(reply) => Reply::Ok(serde_json::to_vec(&reply).unwrap_or_default().into()),
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "advisor request failed");
                    Reply::Error(format!("{error:#}"))
                }
            };
            self.metrics
                .suggestion_latency
                .observe(started.elapsed().as_secs_f64());
            replies.push((request, reply));
        }
        if let Err(error) = self.server.respond(replies).await {
            tracing::warn!(%error, "replying failed");
        }
    }

    async fn handle(&mut self, request: &Request) -> anyhow::Result<AdvisorReply> {
        let Some(&sub_job_id) = self.by_stream.get(&request.stream) else {
            return Ok(AdvisorReply::Done);
        };
        let message: AdvisorRequest = serde_json::from_slice(&request.payload)?;
        let Some(sub_job) = self.held.get_mut(&sub_job_id) else {
            return Ok(AdvisorReply::Done);
        };
        match message {
            AdvisorRequest::Propose { worker_id } => sub_job.propose(&self.pool, worker_id).await,
            AdvisorRequest::Feedback {
                trial_id,
                knobs,
                outcome,
            } => {
                sub_job.feedback(trial_id, &knobs, &outcome);
                // The last trial in flight may have just ended the sub job.
                if !sub_job.reconcile(&self.pool).await? {
                    self.drop_sub_job(sub_job_id);
                }
                Ok(AdvisorReply::Ack)
            }
        }
    }

    fn drop_sub_job(&mut self, id: SubTrainJobId) {
        self.held.remove(&id);
        self.by_stream.retain(|_, held| *held != id);
        self.metrics.sub_jobs_held.set(self.held.len() as i64);
    }

    async fn housekeeping(&mut self) -> anyhow::Result<()> {
        // Leases we lost (expired while we stalled) belong to someone else now.
        let db = self.pool.get().await?;
        let leases: Vec<_> = workers::leases_held(&db, self.id)
            .await?
            .into_iter()
            .map(|l| l.id)
            .collect();
        drop(db);
        let lost: Vec<SubTrainJobId> = self
            .held
            .iter()
            .filter(|(_, s)| !leases.contains(&s.lease_id))
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            tracing::warn!(sub_train_job_id = %id, "lost the lease of a sub job");
            self.drop_sub_job(id);
        }
        let ids: Vec<SubTrainJobId> = self.held.keys().copied().collect();
        for id in ids {
            let keep = match self.held.get_mut(&id) {
                Some(sub_job) => sub_job.reconcile(&self.pool).await?,
                None => continue,
            };
            if !keep {
                self.drop_sub_job(id);
            }
        }
        while self.held.len() < self.settings.capacity {
            let db = self.pool.get().await?;
            let Some(lease) =
                workers::claim(&db, LeaseKind::Advise, self.id, self.settings.lease_ttl()).await?
            else {
                break;
            };
            let Some(sub_job_id) = lease.sub_train_job_id else {
                continue;
            };
            match SubJobAdvisor::load(&db, lease.id, sub_job_id).await? {
                Loaded::Ready(sub_job) => {
                    drop(db);
                    self.take(*sub_job).await?;
                }
                Loaded::Gone => {
                    workers::delete_lease(&db, lease.id, Some(self.id)).await?;
                }
                Loaded::AwaitingKnobConfig => {
                    // A train worker reads an uploaded template's knob config first; try later.
                    workers::release(&db, lease.id, self.id).await?;
                    break;
                }
                Loaded::Unadvisable(reason) => {
                    tracing::warn!(sub_train_job_id = %sub_job_id, reason, "sub job cannot be advised");
                    let mut db = db;
                    train_jobs::end_sub_job(&mut db, sub_job_id, JobStatus::Errored, Some(&reason))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Starts serving a sub job, including requests a previous advisor left unanswered.
    async fn take(&mut self, sub_job: SubJobAdvisor) -> anyhow::Result<()> {
        let id = sub_job.sub_job.id;
        let stream = self.server.stream(&advisor_target(id));
        self.server.ensure_group(&stream).await?;
        self.held.insert(id, sub_job);
        self.by_stream.insert(stream.clone(), id);
        self.metrics.sub_jobs_held.set(self.held.len() as i64);
        let orphans = self
            .server
            .reclaim(&stream, RECLAIM_IDLE, READ_BATCH)
            .await?;
        self.serve_requests(orphans).await;
        Ok(())
    }
}

impl StreamService for AdvisorService {
    fn streams(&self) -> Vec<String> {
        self.by_stream.keys().cloned().collect()
    }
    fn server(&mut self) -> &mut RpcServer {
        &mut self.server
    }
    async fn tick(&mut self) -> anyhow::Result<()> {
        self.housekeeping().await
    }
    async fn serve(&mut self, requests: Vec<Request>) {
        self.serve_requests(requests).await
    }
}
