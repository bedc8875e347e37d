//! The train worker: runs trials for sub train jobs — proposal → trial RUNNING → datasets from
//! the object store (cached by checksum) → train → evaluate → parameters stored → COMPLETED with
//! its score → feedback to the advisor.

mod metrics;
mod worker;

use std::sync::Arc;

use duma_common::Settings;
use duma_common::domain::WorkerKind;
use duma_common::ops::{OpsServer, Readiness};
use duma_common::redis::Redis;
use duma_common::redis::rpc::RpcClient;
use duma_common::store::ObjectStore;
use prometheus::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use worker::TrainWorker;

/// Runs the worker until `shutdown` is cancelled (or a vital task fails).
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = duma_common::db::pool(&settings.database)?;
    let redis = Redis::connect(&settings.redis).await?;
    let store = ObjectStore::from_settings(&settings.object_store)?;
    let config = settings.train_worker.clone();
    let registry = Registry::new();
    let metrics = metrics::TrainMetrics::register(&registry)?;
    let readiness = Readiness {
        postgres: Some(pool.clone()),
        redis: Some(redis.clone()),
    };
    let ops = OpsServer::bind(&config.host, config.port, registry, readiness)?;
    tracing::info!(
        port = ops.port(),
        slots = config.capacity,
        "train worker serving /health and /metrics"
    );

    let stop = shutdown.child_token();
    let capabilities =
        serde_json::json!({"slots": config.capacity, "templates": ["native", "python"]});
    let (id, heartbeat) = duma_common::worker::register(
        &pool,
        WorkerKind::Train,
        &config,
        capabilities,
        stop.clone(),
    )
    .await?;
    let rpc = RpcClient::start(redis.clone(), &format!("train-{id}"), stop.clone());
    let worker = Arc::new(TrainWorker::new(
        id,
        pool,
        store,
        rpc,
        config.clone(),
        metrics,
        settings.python.clone(),
    )?);

    let mut tasks = JoinSet::new();
    tasks.spawn(async move { ops.run(shutdown).await.map_err(|e| e.context("ops server")) });
    tasks.spawn(async move { heartbeat.await.map_err(|e| e.context("heartbeat")) });
    let events = duma_common::worker::event_feed(redis, stop.clone());
    let mut receiver = events.subscribe();
    let listener = worker.clone();
    let events_stop = stop.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = events_stop.cancelled() => return Ok(()),
                event = receiver.recv() => match event {
                    Ok(event) => listener.on_event(&event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    });
    for _ in 0..config.capacity {
        let worker = worker.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            worker.run_slot(stop).await;
            Ok(())
        });
    }
    duma_common::worker::supervise(tasks, stop).await
}
