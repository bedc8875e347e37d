//! The advisor worker: proposes knob values for the trials of sub train jobs (fixed, Bayesian
//! optimisation or random, in Rafiki's order), enforces their budgets, and ends them. Its state
//! is rebuilt from the trial rows whenever it (or another replica) takes a sub job over.

pub mod advisor;
mod service;
mod sub_job;

use duma_common::Settings;
use duma_common::domain::WorkerKind;
use duma_common::ops::{OpsServer, Readiness};
use duma_common::redis::Redis;
use duma_common::redis::rpc::RpcServer;
use prometheus::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use sub_job::MAX_CONSECUTIVE_FAILURES;

/// Runs the advisor worker until `shutdown` is cancelled (or a vital task fails).
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = duma_common::db::pool(&settings.database)?;
    let redis = Redis::connect(&settings.redis).await?;
    let config = settings.advisor_worker.clone();
    let registry = Registry::new();
    let metrics = service::AdvisorMetrics::register(&registry)?;
    let readiness = Readiness {
        postgres: Some(pool.clone()),
        redis: Some(redis.clone()),
    };
    let ops = OpsServer::bind(&config.host, config.port, registry, readiness)?;
    tracing::info!(
        port = ops.port(),
        "advisor worker serving /health and /metrics"
    );

    let stop = shutdown.child_token();
    let capabilities = serde_json::json!({"sub_jobs": config.capacity});
    let (id, heartbeat) = duma_common::worker::register(
        &pool,
        WorkerKind::Advisor,
        &config,
        capabilities,
        stop.clone(),
    )
    .await?;
    let server = RpcServer::new(&redis, "advisors", &id.to_string()).await?;
    let advisor = service::AdvisorService::new(id, pool, config, server, metrics);

    let mut tasks = JoinSet::new();
    tasks.spawn(async move { ops.run(shutdown).await.map_err(|e| e.context("ops server")) });
    tasks.spawn(async move { heartbeat.await.map_err(|e| e.context("heartbeat")) });
    let serving = stop.clone();
    tasks.spawn(async move {
        advisor
            .run(serving)
            .await
            .map_err(|e| e.context("advisor loop"))
    });
    duma_common::worker::supervise(tasks, stop).await
}
