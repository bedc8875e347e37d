//! The inference worker's loop: hold SERVE leases (one trial replica each), load their models,
//! and answer their request streams in batches — one predict call per stream per batch, one
//! pipelined write for all replies.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use duma_common::config::WorkerSettings;
use duma_common::db::workers::{self, Lease};
use duma_common::db::{PgPool, inference_jobs, models, trials};
use duma_common::ops::{Pending, Probe};
use duma_common::redis::Redis;
use duma_common::redis::events::{self, Event};
use duma_common::redis::rpc::{Reply, Request, RpcServer, ServeLoop, StreamService};
use duma_common::store::ObjectStore;
use duma_common::worker::{LeasedStreams, WorkerHost};
use duma_domain::protocol::serving_target;
use duma_domain::{InferenceJobId, JobStatus, LeaseKind, WorkerId};
use duma_runtime::python::KillSwitch;
use duma_runtime::{Model, TemplateResolver};
use prometheus::{Histogram, IntGauge, IntGaugeVec, Registry};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const TICK: Duration = Duration::from_millis(250);
const READ_BLOCK: Duration = Duration::from_millis(100);
const READ_BATCH: usize = 256;
/// Entries a dead replica read but never answered are taken over after this (a takeover does
/// not wait: see `host`). A live replica busy longer than this with an entry has it served twice
/// (the first answer wins), which costs work, never correctness.
const RECLAIM_IDLE: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct ServingMetrics {
    pub stream_depth: IntGaugeVec,
    pub stream_pending: IntGaugeVec,
    pub batch_size: Histogram,
    pub predict_seconds: Histogram,
    pub load_seconds: Histogram,
    pub models_hosted: IntGauge,
}

impl ServingMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            stream_depth: prometheus::register_int_gauge_vec_with_registry!(
                "duma_inference_stream_entries",
                "Entries in a served trial's request stream",
                &["stream"],
                registry
            )?,
            stream_pending: prometheus::register_int_gauge_vec_with_registry!(
                "duma_inference_stream_pending",
                "Entries read but not yet answered",
                &["stream"],
                registry
            )?,
            batch_size: prometheus::register_histogram_with_registry!(
                "duma_inference_batch_queries",
                "Queries per predict call",
                prometheus::exponential_buckets(1.0, 2.0, 12)?,
                registry
            )?,
            predict_seconds: prometheus::register_histogram_with_registry!(
                "duma_inference_predict_seconds",
                "Time of one predict call",
                prometheus::exponential_buckets(0.00005, 2.0, 18)?,
                registry
            )?,
            load_seconds: prometheus::register_histogram_with_registry!(
                "duma_inference_load_seconds",
                "Time to load a model",
                prometheus::exponential_buckets(0.001, 2.5, 14)?,
                registry
            )?,
            models_hosted: prometheus::register_int_gauge_with_registry!(
                "duma_inference_models",
                "Trial replicas this worker serves",
                registry
            )?,
        })
    }

    /// Removes the series of a stream no longer served, so they do not outlive the model.
    fn forget_stream(&self, stream: &str) {
        let _ = self.stream_depth.remove_label_values(&[stream]);
        let _ = self.stream_pending.remove_label_values(&[stream]);
    }
}

/// One trial replica this worker serves.
struct Hosted {
    job: InferenceJobId,
    stream: String,
    model: Arc<Mutex<Box<dyn Model>>>,
    kill: KillSwitch,
}

impl Drop for Hosted {
    fn drop(&mut self) {
        self.kill.fire();
    }
}

pub struct Serving {
    id: WorkerId,
    pool: PgPool,
    redis: Redis,
    store: ObjectStore,
    resolver: TemplateResolver,
    settings: WorkerSettings,
    metrics: ServingMetrics,
    server: RpcServer,
    hosted: LeasedStreams<Hosted>,
    /// The serving loop's; beaten while a model loads (bounded by `task_timeout_secs`).
    probe: Probe,
    /// The worker is not ready while a model it holds the lease of is loading.
    pending: Pending,
}

impl Serving {
    pub fn new(
        host: &WorkerHost,
        store: ObjectStore,
        resolver: TemplateResolver,
        server: RpcServer,
        probe: Probe,
    ) -> prometheus::Result<Self> {
        let metrics = ServingMetrics::register(&host.registry)?;
        Ok(Self {
            id: host.id,
            pool: host.pool.clone(),
            redis: host.redis.clone(),
            store,
            resolver,
            settings: host.settings.clone(),
            hosted: LeasedStreams::new(metrics.models_hosted.clone()),
            metrics,
            server,
            probe,
            pending: host.pending.clone(),
        })
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let every = ServeLoop {
            tick: TICK,
            block: READ_BLOCK,
            batch: READ_BATCH,
        };
        let probe = self.probe.clone();
        every.run(&mut self, "serving", &probe, &shutdown).await;
    }

    /// Answers a batch: per stream, all queries of all its requests in one predict call.
    async fn serve_requests(&mut self, requests: Vec<Request>) {
        if requests.is_empty() {
            return;
        }
        let mut by_stream: HashMap<String, Vec<Request>> = HashMap::new();
        for request in requests {
            by_stream
                .entry(request.stream.clone())
                .or_default()
                .push(request);
        }
        let mut replies = Vec::new();
        for (stream, requests) in by_stream {
            let model = self
                .hosted
                .by_stream_mut(&stream)
                .map(|(_, hosted)| hosted.model.clone());
            let Some(model) = model else {
                replies.extend(requests.into_iter().map(|r| {
                    (
                        r,
                        Reply::Unavailable("this replica no longer serves the trial".into()),
                    )
                }));
                continue;
            };
            replies.extend(self.predict_batch(model, requests, &stream).await);
        }
        log_replies(&replies);
        if let Err(error) = self.server.respond(replies).await {
            tracing::warn!(%error, "replying failed");
        }
    }

    async fn predict_batch(
        &self,
        model: Arc<Mutex<Box<dyn Model>>>,
        requests: Vec<Request>,
        stream: &str,
    ) -> Vec<(Request, Reply)> {
        let mut replies = Vec::with_capacity(requests.len());
        let mut batch: Vec<(Request, usize)> = Vec::new();
        let mut queries: Vec<Value> = Vec::new();
        for request in requests {
            match serde_json::from_slice::<Vec<Value>>(&request.payload) {
                Ok(mut list) => {
                    batch.push((request, list.len()));
                    queries.append(&mut list);
                }
                Err(e) => replies.push((
                    request,
                    Reply::Error(format!("the queries are not a JSON array: {e}")),
                )),
            }
        }
        if batch.is_empty() {
            return replies;
        }
        self.metrics.batch_size.observe(queries.len() as f64);
        let started = Instant::now();
        let predicted = run_predict(model.clone(), queries, stream).await;
        self.metrics
            .predict_seconds
            .observe(started.elapsed().as_secs_f64());
        match predicted {
            Ok(predictions) => {
                let mut rest = predictions.into_iter();
                for (request, count) in batch {
                    let mine: Vec<Value> = rest.by_ref().take(count).collect();
                    replies.push((
                        request,
                        Reply::Ok(Bytes::from(serde_json::to_vec(&mine).unwrap_or_default())),
                    ));
                }
            }
            Err(_) if batch.len() > 1 => {
                // One bad query failed the whole batch: answer each request on its own.
                for (request, _) in batch {
                    let queries: Vec<Value> =
                        serde_json::from_slice(&request.payload).unwrap_or_default();
                    let reply = match run_predict(model.clone(), queries, stream).await {
                        Ok(predictions) => Reply::Ok(Bytes::from(
                            serde_json::to_vec(&predictions).unwrap_or_default(),
                        )),
                        Err(error) => Reply::Error(error),
                    };
                    replies.push((request, reply));
                }
            }
            Err(error) => replies.extend(
                batch
                    .into_iter()
                    .map(|(r, _)| (r, Reply::Error(error.clone()))),
            ),
        }
        replies
    }

    async fn housekeeping(&mut self) -> anyhow::Result<()> {
        for (_, hosted) in self.hosted.reconcile(&self.pool, self.id).await? {
            tracing::info!(inference_job_id = %hosted.job, "no longer serving a trial (job stopped or lease lost)");
            self.metrics.forget_stream(&hosted.stream);
        }
        for stream in self.hosted.streams() {
            let orphans = self
                .server
                .reclaim(&stream, RECLAIM_IDLE, READ_BATCH)
                .await?;
            self.serve_requests(orphans).await;
            let (length, pending) = self.server.depth(&stream).await?;
            let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.metrics
                .stream_depth
                .with_label_values(&[&stream])
                .set(gauge(length));
            self.metrics
                .stream_pending
                .with_label_values(&[&stream])
                .set(gauge(pending));
        }
        while let Some(lease) = self
            .hosted
            .claim_next(
                &self.pool,
                LeaseKind::Serve,
                self.id,
                self.settings.capacity,
                self.settings.lease_ttl(),
            )
            .await?
        {
            self.host(lease).await?;
        }
        Ok(())
    }

    /// Loads a lease's model and starts serving it; a model that cannot load ends the
    /// inference job ERRORED with the reason.
    async fn host(&mut self, lease: Lease) -> anyhow::Result<()> {
        let (Some(job), Some(trial_id)) = (lease.inference_job_id, lease.trial_id) else {
            return Ok(());
        };
        let started = Instant::now();
        let kill = KillSwitch::new();
        let _loading = self
            .pending
            .begin(format!("trial {trial_id}: loading its model"));
        let loaded = self.probe.hold(self.load(trial_id, &kill)).await?;
        let model = match loaded {
            Ok(model) => model,
            Err(reason) => {
                tracing::warn!(inference_job_id = %job, %trial_id, reason, "a model failed to load");
                let db = self.pool.get().await?;
                let reason = format!("trial {trial_id} failed to load: {reason}");
                inference_jobs::set_status(&db, job, JobStatus::Errored, Some(&reason)).await?;
                let _ = events::publish(
                    &self.redis,
                    &Event::InferenceJobStopped {
                        inference_job_id: job,
                    },
                )
                .await;
                return Ok(());
            }
        };
        self.metrics
            .load_seconds
            .observe(started.elapsed().as_secs_f64());
        let stream = self.server.stream(&serving_target(job, trial_id));
        self.server.ensure_group(&stream).await?;
        let db = self.pool.get().await?;
        workers::set_ready(&db, lease.id, self.id, true).await?;
        if inference_jobs::mark_running_if_ready(&db, job).await? {
            tracing::info!(inference_job_id = %job, "inference job RUNNING");
            let _ = events::publish(
                &self.redis,
                &Event::InferenceJobChanged {
                    inference_job_id: job,
                },
            )
            .await;
        }
        tracing::info!(inference_job_id = %job, %trial_id, seconds = started.elapsed().as_secs_f64(), "serving a trial");
        self.hosted.insert(
            lease.id,
            stream.clone(),
            Hosted {
                job,
                stream: stream.clone(),
                model: Arc::new(Mutex::new(model)),
                kill,
            },
        );
        // One replica serves a trial, so whatever its stream holds read but unanswered was read
        // by a replica that is gone (this is a takeover): answer it now, not after it idles.
        // (More replicas per trial would have to claim only the gone replicas' entries.)
        let orphans = self
            .server
            .reclaim(&stream, Duration::ZERO, READ_BATCH)
            .await?;
        self.serve_requests(orphans).await;
        Ok(())
    }

    /// `Ok(Err(reason))` when the model cannot be loaded (the user's problem), `Err` otherwise.
    async fn load(
        &self,
        trial_id: duma_domain::TrialId,
        kill: &KillSwitch,
    ) -> anyhow::Result<Result<Box<dyn Model>, String>> {
        let db = self.pool.get().await?;
        let trial = trials::by_id(&db, trial_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("trial {trial_id} vanished"))?;
        let model_row = models::by_id(&db, trial.model_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("model vanished"))?;
        drop(db);
        let Some(params) = &trial.params else {
            return Ok(Err("the trial has no saved parameters".into()));
        };
        let template = match self.resolver.resolve(&model_row.template_source()).await? {
            Ok(template) => template,
            Err(reason) => return Ok(Err(reason)),
        };
        let bytes = self.store.get_bytes(&params.path).await?;
        let knobs = trial.proposal.knobs.clone();
        let kill = kill.clone();
        let loading = tokio::task::spawn_blocking(move || template.load(&knobs, &bytes, &kill));
        match tokio::time::timeout(self.settings.task_timeout(), loading).await {
            Ok(joined) => Ok(joined?.map_err(|e| e.to_string())),
            Err(_) => Ok(Err(format!(
                "loading took longer than {}s",
                self.settings.task_timeout_secs
            ))),
        }
    }
}

/// One predict call on a blocking thread (models are CPU-bound, Python ones wait on a pipe). A
/// failure is logged in full here; the caller gets [`duma_runtime::TemplateError::public_message`].
async fn run_predict(
    model: Arc<Mutex<Box<dyn Model>>>,
    queries: Vec<Value>,
    stream: &str,
) -> Result<Vec<Value>, String> {
    let predicted = tokio::task::spawn_blocking(move || {
        let model = model.lock();
        model.predict(&queries)
    })
    .await;
    match predicted {
        Ok(Ok(predictions)) => Ok(predictions),
        Ok(Err(error)) => {
            tracing::warn!(stream, error = %error, "a prediction failed");
            Err(error.public_message())
        }
        Err(panic) => {
            tracing::error!(stream, error = %panic, "a prediction panicked");
            Err("the model failed on this query".to_owned())
        }
    }
}

impl StreamService for Serving {
    fn streams(&self) -> Vec<String> {
        self.hosted.streams()
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

/// Each answer under the request id it was traced by (the HTTP request behind it), so one id
/// follows a query from nginx to the model: failures always, successes at debug level.
fn log_replies(replies: &[(Request, Reply)]) {
    for (request, reply) in replies {
        match reply {
            Reply::Ok(_) => tracing::debug!(request_id = request.trace, "predicted"),
            Reply::Error(error) => {
                tracing::info!(
                    request_id = request.trace,
                    error,
                    "the model refused the queries"
                )
            }
            Reply::Unavailable(reason) => {
                tracing::warn!(request_id = request.trace, reason, "cannot serve")
            }
            Reply::Expired => tracing::info!(request_id = request.trace, "expired unanswered"),
        }
    }
}
