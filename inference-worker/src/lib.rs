//! The inference worker: hosts the trained models of inference jobs and answers batched queries
//! from their Redis streams. Replicas claim serving slots (inference job × served trial ×
//! replica) with leases; a model that fails to load ends its job ERRORED with the reason.

mod serving;

use duma_common::Settings;
use duma_common::domain::WorkerKind;
use duma_common::ops::{OpsServer, Readiness};
use duma_common::redis::Redis;
use duma_common::redis::rpc::RpcServer;
use duma_common::store::{ObjectCache, ObjectStore};
use duma_runtime::TemplateResolver;
use duma_runtime::python::VenvCache;
use prometheus::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Runs the worker until `shutdown` is cancelled (or a vital task fails).
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = duma_common::db::pool(&settings.database)?;
    let redis = Redis::connect(&settings.redis).await?;
    let store = ObjectStore::from_settings(&settings.object_store)?;
    let config = settings.inference_worker.clone();
    let registry = Registry::new();
    let metrics = serving::ServingMetrics::register(&registry)?;
    let readiness = Readiness {
        postgres: Some(pool.clone()),
        redis: Some(redis.clone()),
    };
    let ops = OpsServer::bind(&config.host, config.port, registry, readiness)?;
    tracing::info!(
        port = ops.port(),
        models = config.capacity,
        "inference worker serving /health and /metrics"
    );

    let stop = shutdown.child_token();
    let capabilities =
        serde_json::json!({"models": config.capacity, "templates": ["native", "python"]});
    let (id, heartbeat) = duma_common::worker::register(
        &pool,
        WorkerKind::Inference,
        &config,
        capabilities,
        stop.clone(),
    )
    .await?;
    let server = RpcServer::new(&redis, "inference", &id.to_string()).await?;
    let cache = ObjectCache::new(&config.cache_dir.join("objects"), store.clone())?;
    let resolver = TemplateResolver {
        cache,
        venvs: VenvCache::new(
            &config.cache_dir.join("venvs"),
            &settings.python.interpreter,
        ),
        sdk_path: settings.python.sdk_path.clone(),
        work_root: config.cache_dir.join("runners"),
    };
    let serving = serving::Serving::new(id, pool, redis, store, resolver, config, metrics, server);

    let mut tasks = JoinSet::new();
    tasks.spawn(async move { ops.run(shutdown).await.map_err(|e| e.context("ops server")) });
    tasks.spawn(async move { heartbeat.await.map_err(|e| e.context("heartbeat")) });
    let serving_stop = stop.clone();
    tasks.spawn(async move {
        serving
            .run(serving_stop)
            .await
            .map_err(|e| e.context("serving loop"))
    });
    duma_common::worker::supervise(tasks, stop).await
}
