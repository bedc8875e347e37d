//! The worker host: what every worker pool gets by construction — Postgres and Redis, a metrics
//! registry, `/health` and `/metrics` on its own port, registration with a heartbeat that keeps
//! its leases alive, a watchdog over its essential loops, a feed of lifecycle events, and
//! supervision of its tasks (the first to end stops the rest and decides the exit status).
//!
//! A worker kind builds its service on a [`WorkerHost`], [`WorkerHost::spawn`]s its loops, and
//! calls [`WorkerHost::run`]. Work held under leases and served from request streams is kept in
//! a [`LeasedStreams`].

mod events;
pub mod gpus;
mod leased;

use prometheus::Registry;
use std::future::Future;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Settings;
use crate::config::WorkerSettings;
use crate::db::{PgPool, workers};
use crate::ops::{Liveness, OpsServer, Pending, Readiness};
use crate::redis::Redis;
use crate::redis::events::Event;
use crate::tasks::{supervise, watchdog};
use duma_domain::{WorkerId, WorkerKind};

pub use events::{EventFeed, event_feed, next_event};
pub use leased::LeasedStreams;

/// How often GPU utilisation and memory are read (about Prometheus's scrape interval).
const GPU_SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// One worker process: its connections, its registration and its supervised tasks.
pub struct WorkerHost {
    pub id: WorkerId,
    pub kind: WorkerKind,
    pub pool: PgPool,
    pub redis: Redis,
    /// Register the worker's metrics here; `/metrics` serves it.
    pub registry: Registry,
    pub settings: WorkerSettings,
    /// Register the worker's essential loops here; `/health` and the watchdog read it.
    pub liveness: Liveness,
    /// Work taken on but not yet doable (a model loading); `/health` is not ready meanwhile.
    pub pending: Pending,
    /// The GPUs this worker lends to trials and served models (`worker.gpus`).
    pub gpus: gpus::Gpus,
    stop: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl WorkerHost {
    /// Connects, serves `/health` and `/metrics`, registers the worker and starts its heartbeat
    /// and watchdog. `shutdown` stops everything; so does any task that ends.
    pub async fn start(
        kind: WorkerKind,
        settings: &Settings,
        capabilities: serde_json::Value,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let worker_settings = match kind {
            WorkerKind::Advisor => &settings.advisor_worker,
            WorkerKind::Train => &settings.train_worker,
            WorkerKind::Inference => &settings.inference_worker,
            WorkerKind::Predictor => anyhow::bail!("the predictor is not a worker pool"),
        }
        .clone();
        let selection = gpus::GpuSelection::parse(&worker_settings.gpus)
            .map_err(|why| anyhow::anyhow!("{kind} worker gpus: {why}"))?;
        let gpus = if matches!(kind, WorkerKind::Train | WorkerKind::Inference) {
            gpus::Gpus::discover(&selection)?
        } else {
            gpus::Gpus::from_list(Vec::new())
        };
        let pool = crate::db::pool(&settings.database)?;
        let redis = Redis::connect(&settings.redis).await?;
        let registry = Registry::new();
        let gpu_metrics = gpus.register_metrics(&registry)?;
        let liveness = Liveness::default();
        let pending = Pending::default();
        let readiness = Readiness {
            postgres: Some(pool.clone()),
            redis: Some(redis.clone()),
            liveness: liveness.clone(),
            pending: pending.clone(),
        };
        let ops = OpsServer::bind(
            &worker_settings.host,
            worker_settings.port,
            registry.clone(),
            readiness,
        )?;
        tracing::info!(
            %kind,
            port = ops.port(),
            capacity = worker_settings.capacity,
            "worker serving /health and /metrics"
        );
        let stop = shutdown.child_token();
        let mut capabilities = capabilities;
        if let Some(map) = capabilities.as_object_mut() {
            map.insert(workers::PRESENCE_CAPABILITY.into(), true.into());
            map.insert(workers::GPUS_CAPABILITY.into(), gpus.capabilities());
        }
        if gpus.count() > 0 {
            tracing::info!(gpus = ?gpus.all(), "worker schedules work on GPUs");
        }
        let db = pool.get().await?;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
        let id = workers::register(&db, kind, &host, &capabilities).await?.id;
        // Taken before any lease is claimed: from now on Postgres knows when this process dies.
        let presence = Presence::take(db, id).await?;
        tracing::info!(worker_id = %id, %kind, "worker registered");

        let mut tasks = JoinSet::new();
        // /health answers until the very end, so it stops with the process, not with `stop`.
        tasks.spawn(async move { ops.run(shutdown).await.map_err(|e| e.context("ops server")) });
        let mut this = Self {
            id,
            kind,
            pool,
            redis,
            registry,
            settings: worker_settings,
            liveness,
            pending,
            gpus,
            stop,
            tasks,
        };
        if gpu_metrics.has_driver() {
            let stop = this.stop.clone();
            this.spawn("gpu metrics", async move {
                loop {
                    gpu_metrics.sample();
                    tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        () = tokio::time::sleep(GPU_SAMPLE_INTERVAL) => {}
                    }
                }
            });
        }
        let heartbeat = heartbeat(
            this.pool.clone(),
            presence,
            id,
            &this.settings,
            this.liveness.clone(),
            this.stop.clone(),
        );
        this.spawn("heartbeat", heartbeat);
        let watchdog = watchdog(this.liveness.clone(), this.stop.clone());
        this.spawn("watchdog", watchdog);
        Ok(this)
    }

    /// Cancelled when the worker stops (shutdown, or one of its tasks ended).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Runs `task` under supervision: when it ends — with an error, a panic or even `Ok` — the
    /// worker stops, so it must run until [`Self::stop_token`] is cancelled.
    pub fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        self.tasks
            .spawn(async move { task.await.map_err(|e| e.context(name)) });
    }

    /// Subscribes to lifecycle events; the feed runs among the worker's tasks.
    pub fn events(&mut self) -> broadcast::Sender<Event> {
        let (sender, feed) = event_feed(self.redis.clone(), self.stop.clone());
        self.spawn("event feed", feed.run());
        sender
    }

    /// Supervises the tasks until the first one ends; returns its result.
    pub async fn run(self) -> anyhow::Result<()> {
        supervise(self.tasks, self.stop).await
    }
}

/// The connection that holds the worker's presence lock (see `workers::hold_presence`). Dropped,
/// it closes the connection — never returns it to the pool, where the lock would outlive it.
struct Presence(Option<deadpool_postgres::Object>);

impl Presence {
    async fn take(db: deadpool_postgres::Object, id: WorkerId) -> anyhow::Result<Self> {
        if !workers::hold_presence(&db, id).await? {
            tracing::warn!(worker_id = %id, "another session holds this worker's presence key; its death will show by lease expiry only");
        }
        Ok(Self(Some(db)))
    }

    fn client(&self) -> Option<&deadpool_postgres::Object> {
        self.0.as_ref()
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        if let Some(db) = self.0.take() {
            drop(deadpool_postgres::Object::take(db));
        }
    }
}

/// Renews the worker's leases every heartbeat interval, on the connection that holds its presence
/// lock (taken anew if that connection died); ends with an error if the worker was declared dead
/// (its row removed) — its leases may belong to others now — and deregisters the worker when it
/// stops cleanly.
fn heartbeat(
    pool: PgPool,
    presence: Presence,
    id: WorkerId,
    settings: &WorkerSettings,
    liveness: Liveness,
    stop: CancellationToken,
) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
    let interval = settings.heartbeat_interval();
    let ttl = settings.lease_ttl();
    let probe = liveness.probe("heartbeat", settings.stall_timeout());
    let mut presence = Some(presence);
    async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            // No deadline here: a heartbeat that hangs lets the leases expire (others take the
            // work over) and the watchdog ends the process once the probe goes silent.
            let held = match presence.take() {
                Some(held) => Ok(held),
                None => match pool.get().await {
                    Ok(db) => Presence::take(db, id).await,
                    Err(error) => Err(error.into()),
                },
            };
            let alive = match held {
                Ok(held) => {
                    let beat = match held.client() {
                        Some(db) => workers::heartbeat(db, id, ttl).await,
                        None => Ok(false),
                    };
                    if beat.is_ok() {
                        presence = Some(held);
                    }
                    beat.map_err(anyhow::Error::from)
                }
                Err(error) => Err(error),
            };
            match alive {
                Ok(true) => {}
                Ok(false) => anyhow::bail!("worker {id} was declared dead; its leases are gone"),
                // A missed beat is survivable until the leases expire.
                Err(error) => tracing::warn!(error = format!("{error:#}"), "heartbeat failed"),
            }
            probe.beat();
        }
        match pool.get().await {
            Ok(db) => {
                if let Err(error) = workers::deregister(&db, id).await {
                    tracing::warn!(%error, "could not deregister");
                }
            }
            Err(error) => tracing::warn!(%error, "could not deregister"),
        }
        Ok(())
    }
}
