//! The advisor worker's loop: hold ADVISE leases of sub jobs, serve their request streams in
//! batches, and end sub jobs whose budget is spent.

use std::time::{Duration, Instant};

use duma_common::config::WorkerSettings;
use duma_common::db::{PgPool, train_jobs, workers};
use duma_common::ops::Probe;
use duma_common::redis::rpc::{Reply, Request, RpcServer, ServeLoop, StreamService};
use duma_common::tasks::isolate;
use duma_common::worker::{LeasedStreams, WorkerHost};
use duma_domain::protocol::{AdvisorReply, AdvisorRequest, advisor_target};
use duma_domain::{JobStatus, LeaseId, LeaseKind, WorkerId};
use prometheus::{Histogram, IntGauge, Registry};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

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
        Ok(Self {
            suggestion_latency: prometheus::register_histogram_with_registry!(
                "duma_advisor_suggestion_seconds",
                "Time to answer a proposal request",
                prometheus::exponential_buckets(0.0001, 2.0, 16)?,
                registry
            )?,
            sub_jobs_held: prometheus::register_int_gauge_with_registry!(
                "duma_advisor_sub_jobs",
                "Sub train jobs this advisor holds",
                registry
            )?,
        })
    }
}

pub struct AdvisorService {
    id: WorkerId,
    pool: PgPool,
    settings: WorkerSettings,
    server: RpcServer,
    metrics: AdvisorMetrics,
    held: LeasedStreams<SubJobAdvisor>,
}

impl AdvisorService {
    pub fn new(host: &WorkerHost, server: RpcServer) -> prometheus::Result<Self> {
        let metrics = AdvisorMetrics::register(&host.registry)?;
        Ok(Self {
            id: host.id,
            pool: host.pool.clone(),
            settings: host.settings.clone(),
            server,
            held: LeasedStreams::new(metrics.sub_jobs_held.clone()),
            metrics,
        })
    }

    pub async fn run(mut self, probe: &Probe, shutdown: CancellationToken) {
        let every = ServeLoop {
            tick: TICK,
            block: READ_BLOCK,
            batch: READ_BATCH,
        };
        every.run(&mut self, "advisor", probe, &shutdown).await;
    }

    /// Answers one request. A panic while advising a sub job ends that sub job ERRORED with the
    /// reason; the advisor goes on serving the others.
    async fn handle(&mut self, request: &Request) -> anyhow::Result<AdvisorReply> {
        let message: AdvisorRequest = serde_json::from_slice(&request.payload)?;
        let pool = self.pool.clone();
        let Some((lease, sub_job)) = self.held.by_stream_mut(&request.stream) else {
            return Ok(AdvisorReply::Done);
        };
        let handled = isolate(async {
            match message {
                AdvisorRequest::Propose {
                    worker_id,
                    lease_id,
                } => sub_job.propose(&pool, worker_id, lease_id).await.map(Some),
                AdvisorRequest::Feedback {
                    trial_id,
                    knobs,
                    outcome,
                } => {
                    sub_job.feedback(trial_id, &knobs, &outcome);
                    // The last trial in flight may have just ended the sub job.
                    Ok(sub_job.reconcile(&pool).await?.then_some(AdvisorReply::Ack))
                }
            }
        })
        .await;
        match handled {
            Ok(Ok(Some(reply))) => Ok(reply),
            Ok(Ok(None)) => {
                self.held.remove(lease);
                Ok(AdvisorReply::Ack)
            }
            Ok(Err(error)) => Err(error),
            Err(panic) => {
                self.fail_sub_job(lease, &panic).await;
                Ok(AdvisorReply::Done)
            }
        }
    }

    /// Ends a sub job whose advising panicked, and forgets it.
    async fn fail_sub_job(&mut self, lease: LeaseId, panic: &str) {
        let Some(sub_job) = self.held.remove(lease) else {
            return;
        };
        let id = sub_job.sub_job.id;
        tracing::error!(sub_train_job_id = %id, panic, "advising the sub job panicked; ending it");
        let reason = format!("the advisor failed on this model: {panic}");
        if let Err(error) = sub_job
            .finish(&self.pool, JobStatus::Errored, Some(&reason))
            .await
        {
            tracing::warn!(error = format!("{error:#}"), sub_train_job_id = %id, "could not end the sub job");
        }
    }

    /// Starts serving a sub job, including requests a previous advisor left unanswered.
    async fn take(&mut self, sub_job: SubJobAdvisor) -> anyhow::Result<()> {
        let stream = self.server.stream(&advisor_target(sub_job.sub_job.id));
        self.server.ensure_group(&stream).await?;
        self.held.insert(sub_job.lease_id, stream.clone(), sub_job);
        let orphans = self
            .server
            .reclaim(&stream, RECLAIM_IDLE, READ_BATCH)
            .await?;
        self.serve(orphans).await;
        Ok(())
    }
}

impl StreamService for AdvisorService {
    fn streams(&self) -> Vec<String> {
        self.held.streams()
    }
    fn server(&mut self) -> &mut RpcServer {
        &mut self.server
    }
    async fn tick(&mut self) -> anyhow::Result<()> {
        // Leases we lost (expired while we stalled) belong to someone else now.
        for (_, sub_job) in self.held.reconcile(&self.pool, self.id).await? {
            tracing::warn!(sub_train_job_id = %sub_job.sub_job.id, "lost the lease of a sub job");
        }
        let pool = self.pool.clone();
        for lease in self.held.leases() {
            let Some(sub_job) = self.held.get_mut(lease) else {
                continue;
            };
            match isolate(sub_job.reconcile(&pool)).await {
                Ok(keep) => {
                    if !keep? {
                        self.held.remove(lease);
                    }
                }
                Err(panic) => self.fail_sub_job(lease, &panic).await,
            }
        }
        while let Some(lease) = self
            .held
            .claim_next(
                &self.pool,
                LeaseKind::Advise,
                self.id,
                self.settings.capacity,
                self.settings.lease_ttl(),
            )
            .await?
        {
            let Some(sub_job_id) = lease.sub_train_job_id else {
                continue;
            };
            let db = self.pool.get().await?;
            let loaded = match isolate(SubJobAdvisor::load(&db, lease.id, sub_job_id)).await {
                Ok(loaded) => loaded?,
                Err(panic) => {
                    Loaded::Unadvisable(format!("the advisor failed on this model: {panic}"))
                }
            };
            match loaded {
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

    async fn serve(&mut self, requests: Vec<Request>) {
        if requests.is_empty() {
            return;
        }
        let mut replies = Vec::with_capacity(requests.len());
        for request in requests {
            let started = Instant::now();
            // `trace` is the train worker's lease: one id through both workers' logs.
            let span = tracing::debug_span!("advisor request", lease = request.trace);
            let reply = match self.handle(&request).instrument(span).await {
                Ok(reply) => Reply::Ok(serde_json::to_vec(&reply).unwrap_or_default().into()),
                Err(error) => {
                    tracing::warn!(
                        lease = request.trace,
                        error = format!("{error:#}"),
                        "advisor request failed"
                    );
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
}
