//! The inference worker's loop: hold SERVE leases (one trial replica each) and load their
//! models; each hosted model then answers its own request stream in its own loop
//! ([`crate::replica`]), in batches — one predict call per read, one pipelined write for all
//! replies — so a slow or hung model holds up only its own callers.

use std::time::{Duration, Instant};

use duma_common::config::WorkerSettings;
use duma_common::db::workers::{self, Lease};
use duma_common::db::{PgPool, inference_jobs, models, trials};
use duma_common::ops::{Pending, Probe};
use duma_common::redis::Redis;
use duma_common::redis::events::{self, Event};
use duma_common::redis::rpc::{RpcServer, SERVING_GROUP};
use duma_common::store::ObjectStore;
use duma_common::worker::gpus::{GpuGrant, Gpus};
use duma_common::worker::{LeasedStreams, WorkerHost};
use duma_domain::protocol::serving_target;
use duma_domain::{InferenceJobId, JobStatus, WorkerId};
use duma_runtime::python::KillSwitch;
use duma_runtime::sandbox::Devices;
use duma_runtime::{Model, TemplateResolver};
use prometheus::{Histogram, IntCounter, IntGauge, IntGaugeVec, Registry};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::replica::{Broken, Replica, serve_here};

/// Claims, lease checks and their housekeeping at most this often.
const TICK: Duration = Duration::from_millis(250);
/// How long the models' loops get to finish the batch in hand at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

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
    pub fn forget_stream(&self, stream: &str) {
        let _ = self.stream_depth.remove_label_values(&[stream]);
        let _ = self.stream_pending.remove_label_values(&[stream]);
    }
}

/// One trial replica this worker serves; its loop runs until this is dropped.
struct Hosted {
    job: InferenceJobId,
    stream: String,
    kill: KillSwitch,
    stop: CancellationToken,
    /// The GPUs the model was lent; given back when it stops being hosted.
    _gpus: GpuGrant,
}

impl Drop for Hosted {
    fn drop(&mut self) {
        self.stop.cancel();
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
    /// The deployment service levels it serves (`inference_worker.service_levels`).
    levels: Vec<String>,
    metrics: ServingMetrics,
    /// For the consumer groups of the streams it takes on.
    server: RpcServer,
    hosted: LeasedStreams<Hosted>,
    /// The hosted models' loops.
    replicas: JoinSet<()>,
    broken: (
        mpsc::UnboundedSender<Broken>,
        mpsc::UnboundedReceiver<Broken>,
    ),
    /// The claiming loop's; beaten while a model loads (bounded by `task_timeout_secs`).
    probe: Probe,
    /// The worker is not ready while a model it holds the lease of is loading.
    pending: Pending,
    /// The GPUs it lends to served models (`inference_worker.gpus`).
    gpus: Gpus,
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
            levels: host.settings.served_levels(),
            hosted: LeasedStreams::new(metrics.models_hosted.clone()),
            metrics,
            server,
            replicas: JoinSet::new(),
            broken: mpsc::unbounded_channel(),
            probe,
            pending: host.pending.clone(),
            gpus: host.gpus.clone(),
        })
    }

    /// Claims and hosts models, and loads again those that broke, until `shutdown`; then stops
    /// every model's loop (each finishes the batch in hand).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut next_tick = Instant::now();
        while !shutdown.is_cancelled() {
            self.probe.beat();
            if Instant::now() >= next_tick {
                if let Err(error) = self.tick().await {
                    tracing::warn!(error = format!("{error:#}"), "serving tick failed");
                }
                next_tick = Instant::now() + TICK;
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                Some(broken) = self.broken.1.recv() => self.rehost(&broken.stream, &broken.reason).await,
                // Reaps the loops that ended (a panic inside one is caught there).
                Some(_) = self.replicas.join_next() => {}
                _ = tokio::time::sleep_until(next_tick.into()) => {}
            }
        }
        for lease in self.hosted.leases() {
            self.hosted.remove(lease);
        }
        let drained = tokio::time::timeout(DRAIN, async {
            while self.replicas.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            // Each runs on its own thread: it is left to end with the process.
            tracing::warn!("a model's loop did not stop within {DRAIN:?}; leaving it");
            self.replicas.detach_all();
        }
    }

    /// Drops what this worker no longer holds, then claims and hosts what it has room for.
    async fn tick(&mut self) -> anyhow::Result<()> {
        for (_, hosted) in self.hosted.reconcile(&self.pool, self.id).await? {
            tracing::info!(inference_job_id = %hosted.job, "no longer serving a trial (job stopped or lease lost)");
            self.metrics.forget_stream(&hosted.stream);
        }
        while let Some(lease) = self
            .hosted
            .claim_next_serving(
                &self.pool,
                self.id,
                self.settings.capacity,
                self.settings.lease_ttl(),
                &self.levels,
                self.gpus.free_count(),
            )
            .await?
        {
            self.host(lease).await?;
        }
        Ok(())
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

    /// Loads a lease's model and starts its loop; a model that cannot load ends the inference
    /// job ERRORED with the reason.
    async fn host(&mut self, lease: Lease) -> anyhow::Result<()> {
        let (Some(job), Some(trial_id)) = (lease.inference_job_id, lease.trial_id) else {
            return Ok(());
        };
        let started = Instant::now();
        // Claims filter on the GPUs free here, and this loop alone takes them.
        let needed = workers::gpus_needed(&self.pool.get().await?, &lease).await?;
        let Some(gpus) = self.gpus.take(needed) else {
            let db = self.pool.get().await?;
            workers::release(&db, lease.id, self.id).await?;
            anyhow::bail!("a served model needed {needed} GPUs, more than are free here");
        };
        let devices = Devices::lent(&self.gpus, &gpus);
        let kill = KillSwitch::new();
        let _loading = self
            .pending
            .begin(format!("trial {trial_id}: loading its model"));
        let stream = self.server.stream(&serving_target(job, trial_id));
        let stop = CancellationToken::new();
        let probe = self.probe.clone();
        let loaded = probe
            .hold(self.load(trial_id, devices, &kill, &stream, &stop))
            .await?;
        let serve = match loaded {
            Ok(serve) => serve,
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
        // Its thread serves it from now on (dropped unsent on an early return: it ends then).
        let _ = serve.send(());
        self.hosted.insert(
            lease.id,
            stream.clone(),
            Hosted {
                job,
                stream,
                kill,
                stop,
                _gpus: gpus,
            },
        );
        Ok(())
    }

    /// Starts the model's own thread, which loads it and, once `Ok(serve)` is told to, serves
    /// it on `stream` until `stop`. `Ok(Err(reason))` when the model cannot be loaded (the
    /// user's problem), `Err` otherwise.
    ///
    /// One thread loads and serves: the runner of a Python model lives as long as the thread
    /// that started it (bubblewrap's `--die-with-parent` follows that thread, not the process),
    /// so it cannot be a pooled thread that ends when idle.
    async fn load(
        &mut self,
        trial_id: duma_domain::TrialId,
        devices: Devices,
        kill: &KillSwitch,
        stream: &str,
        stop: &CancellationToken,
    ) -> anyhow::Result<Result<oneshot::Sender<()>, String>> {
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
            Ok(template) => template.with_devices(devices),
            Err(reason) => return Ok(Err(reason)),
        };
        let bytes = self.store.get_bytes(&params.path).await?;
        let knobs = trial.proposal.knobs.clone();
        let (loaded, loading) = oneshot::channel();
        let (serve, go) = oneshot::channel();
        let start = ReplicaStart {
            stream: stream.to_owned(),
            redis: self.redis.clone(),
            consumer: self.id.to_string(),
            metrics: self.metrics.clone(),
            stop: stop.clone(),
            broken: self.broken.0.clone(),
        };
        let switch = kill.clone();
        self.replicas.spawn_blocking(move || {
            let model = match template.load(&knobs, &bytes, &switch) {
                Ok(model) => model,
                Err(error) => {
                    let _ = loaded.send(Err(error.to_string()));
                    return;
                }
            };
            // Nobody waiting (loading took too long), or no word to serve: the model goes.
            if loaded.send(Ok(())).is_ok() && go.blocking_recv().is_ok() {
                start.serve(model);
            }
        });
        match tokio::time::timeout(self.settings.task_timeout(), loading).await {
            Ok(Ok(loaded)) => Ok(loaded.map(|()| serve)),
            Ok(Err(_)) => Ok(Err("loading failed unexpectedly".to_owned())),
            Err(_) => {
                kill.fire();
                Ok(Err(format!(
                    "loading took longer than {}s",
                    self.settings.task_timeout_secs
                )))
            }
        }
    }
}

/// What a model's thread needs to serve it once loaded.
struct ReplicaStart {
    stream: String,
    redis: Redis,
    consumer: String,
    metrics: ServingMetrics,
    stop: CancellationToken,
    broken: mpsc::UnboundedSender<Broken>,
}

impl ReplicaStart {
    /// Serves `model` on this thread until `stop`, on a Redis connection made here (so its
    /// requests are read on this thread too); a loop that cannot start says so on `broken`.
    fn serve(self, model: Box<dyn Model>) {
        let ReplicaStart {
            stream,
            redis,
            consumer,
            metrics,
            stop,
            broken,
        } = self;
        let failed = |reason: String| {
            let _ = broken.send(Broken {
                stream: stream.clone(),
                reason,
            });
        };
        let served = serve_here(async {
            match RpcServer::new(&redis, SERVING_GROUP, &consumer).await {
                Ok(server) => {
                    let replica = Replica {
                        stream: stream.clone(),
                        model,
                        server,
                        metrics,
                    };
                    replica.run(stop, broken.clone()).await;
                }
                Err(error) => failed(format!("its loop cannot reach Redis: {error}")),
            }
        });
        if let Err(error) = served {
            failed(format!("its loop cannot start a runtime: {error}"));
        }
    }
}
