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
use duma_runtime::{Model, TemplateError, TemplateResolver};
use prometheus::{Histogram, IntCounter, IntGauge, IntGaugeVec, Registry};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const TICK: Duration = Duration::from_millis(250);
const READ_BLOCK: Duration = Duration::from_millis(100);
const READ_BATCH: usize = 256;
/// Entries a dead replica read but never answered are taken over after this (a takeover does
/// not wait: see `host`). A live replica busy longer than this with an entry has it served twice
/// (the first answer wins), which costs work, never correctness.
const RECLAIM_IDLE: Duration = Duration::from_secs(2);
/// The least a predict call gets, however close its callers' deadlines (one was reclaimed late).
const MIN_PREDICT_DEADLINE: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct ServingMetrics {
    pub stream_depth: IntGaugeVec,
    pub stream_pending: IntGaugeVec,
    pub batch_size: Histogram,
    pub predict_seconds: Histogram,
    pub load_seconds: Histogram,
    pub models_hosted: IntGauge,
    pub models_restarted: IntCounter,
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
            models_restarted: prometheus::register_int_counter_with_registry!(
                "duma_inference_models_restarted_total",
                "Models loaded again because their runner died or hung",
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

    /// The replies to a stream's requests, and why the model must be loaded again if it broke
    /// (its process died, or it did not answer before the last caller stopped waiting).
    async fn predict_batch(
        &self,
        model: Arc<Mutex<Box<dyn Model>>>,
        kill: &KillSwitch,
        requests: Vec<Request>,
        stream: &str,
    ) -> (Vec<(Request, Reply)>, Option<String>) {
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
            return (replies, None);
        }
        // Nobody waits for an answer after the last caller's deadline: a model still busy then
        // is hung (or far too slow to be of use), and is killed and loaded again.
        let deadline = batch
            .iter()
            .map(|(r, _)| r.time_left())
            .max()
            .unwrap_or_default()
            .max(MIN_PREDICT_DEADLINE);
        self.metrics.batch_size.observe(queries.len() as f64);
        let started = Instant::now();
        let predicted = run_predict(model.clone(), kill, queries, stream, deadline).await;
        self.metrics
            .predict_seconds
            .observe(started.elapsed().as_secs_f64());
        match predicted {
            Predicted::Broken(reason) => {
                let reply = Reply::Unavailable(format!(
                    "{reason}; the model is being restarted, retry shortly"
                ));
                replies.extend(batch.into_iter().map(|(r, _)| (r, reply.clone())));
                return (replies, Some(reason));
            }
            Predicted::Answered(predictions) => {
                let mut rest = predictions.into_iter();
                for (request, count) in batch {
                    let mine: Vec<Value> = rest.by_ref().take(count).collect();
                    replies.push((
                        request,
                        Reply::Ok(Bytes::from(serde_json::to_vec(&mine).unwrap_or_default())),
                    ));
                }
            }
            Predicted::Refused(_) if batch.len() > 1 => {
                // One bad query failed the whole batch: answer each request on its own.
                let mut broken = None;
                for (request, _) in batch {
                    if let Some(reason) = &broken {
                        replies.push((
                            request,
                            Reply::Unavailable(format!("{reason}; retry shortly")),
                        ));
                        continue;
                    }
                    let queries: Vec<Value> =
                        serde_json::from_slice(&request.payload).unwrap_or_default();
                    let reply =
                        match run_predict(model.clone(), kill, queries, stream, deadline).await {
                            Predicted::Answered(predictions) => Reply::Ok(Bytes::from(
                                serde_json::to_vec(&predictions).unwrap_or_default(),
                            )),
                            Predicted::Refused(error) => Reply::Error(error),
                            Predicted::Broken(reason) => {
                                let reply = Reply::Unavailable(format!("{reason}; retry shortly"));
                                broken = Some(reason);
                                reply
                            }
                        };
                    replies.push((request, reply));
                }
                return (replies, broken);
            }
            Predicted::Refused(error) => replies.extend(
                batch
                    .into_iter()
                    .map(|(r, _)| (r, Reply::Error(error.clone()))),
            ),
        }
        (replies, None)
    }

    /// Stops serving a model whose runner broke and frees its lease, so it is loaded again
    /// (here or by another worker) at the next claim instead of failing every request.
    async fn rehost(&mut self, stream: &str, reason: &str) {
        let Some((lease, _)) = self.hosted.by_stream_mut(stream) else {
            return;
        };
        if let Some(hosted) = self.hosted.remove(lease) {
            tracing::warn!(inference_job_id = %hosted.job, stream, reason, "the model broke; loading it again");
            self.metrics.models_restarted.inc();
            self.metrics.forget_stream(&hosted.stream);
            // Dropping it kills what is left of its runner.
        }
        let released = match self.pool.get().await {
            Ok(db) => workers::release(&db, lease, self.id)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e.into()),
        };
        if let Err(error) = released {
            // The lease expires by itself then, and the reconciler frees it.
            tracing::warn!(
                error = format!("{error:#}"),
                "could not release the lease of a broken model"
            );
        }
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
        self.serve(orphans).await;
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

/// How one predict call ended.
enum Predicted {
    Answered(Vec<Value>),
    /// The model refused the queries (it raised, or a query is malformed): the caller's fault,
    /// told with [`duma_runtime::TemplateError::public_message`].
    Refused(String),
    /// The model's runner died or hung: it has to be loaded again.
    Broken(String),
}

/// One predict call on a blocking thread (models are CPU-bound, Python ones wait on a pipe),
/// bounded by `deadline`: past it the runner is killed. A failure is logged in full here.
async fn run_predict(
    model: Arc<Mutex<Box<dyn Model>>>,
    kill: &KillSwitch,
    queries: Vec<Value>,
    stream: &str,
    deadline: Duration,
) -> Predicted {
    let call = tokio::task::spawn_blocking(move || {
        let model = model.lock();
        model.predict(&queries)
    });
    match tokio::time::timeout(deadline, call).await {
        Err(_) => {
            kill.fire();
            let reason = format!(
                "the model did not answer within {} ms",
                deadline.as_millis()
            );
            tracing::warn!(stream, reason, "a prediction hung; its runner is killed");
            Predicted::Broken(reason)
        }
        Ok(Ok(Ok(predictions))) => Predicted::Answered(predictions),
        Ok(Ok(Err(error @ TemplateError::Runner { .. }))) => {
            tracing::warn!(stream, error = %error, "a model's runner broke");
            Predicted::Broken("the model's process ended".to_owned())
        }
        Ok(Ok(Err(error))) => {
            tracing::warn!(stream, error = %error, "a prediction failed");
            Predicted::Refused(error.public_message())
        }
        Ok(Err(panic)) => {
            tracing::error!(stream, error = %panic, "a prediction panicked");
            Predicted::Refused("the model failed on this query".to_owned())
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
        for (_, hosted) in self.hosted.reconcile(&self.pool, self.id).await? {
            tracing::info!(inference_job_id = %hosted.job, "no longer serving a trial (job stopped or lease lost)");
            self.metrics.forget_stream(&hosted.stream);
        }
        for stream in self.hosted.streams() {
            let orphans = self
                .server
                .reclaim(&stream, RECLAIM_IDLE, READ_BATCH)
                .await?;
            self.serve(orphans).await;
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

    /// Answers a batch: per stream, all queries of all its requests in one predict call.
    async fn serve(&mut self, requests: Vec<Request>) {
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
                .map(|(_, hosted)| (hosted.model.clone(), hosted.kill.clone()));
            let Some((model, kill)) = model else {
                replies.extend(requests.into_iter().map(|r| {
                    (
                        r,
                        Reply::Unavailable("this replica no longer serves the trial".into()),
                    )
                }));
                continue;
            };
            let (answered, broken) = self.predict_batch(model, &kill, requests, &stream).await;
            replies.extend(answered);
            if let Some(reason) = broken {
                self.rehost(&stream, &reason).await;
            }
        }
        log_replies(&replies);
        if let Err(error) = self.server.respond(replies).await {
            tracing::warn!(%error, "replying failed");
        }
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
