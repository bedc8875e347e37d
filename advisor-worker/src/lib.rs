//! The advisor worker: proposes knob values for the trials of sub train jobs.
//!
//! So far the worker connects to its dependencies and serves `/health` and `/metrics`;
//! its work loop arrives with the training and inference issues.

use duma_common::Settings;
use duma_common::ops::{OpsServer, Readiness};
use duma_common::redis::Redis;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

/// Runs the worker until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let readiness = Readiness {
        postgres: Some(duma_common::db::pool(&settings.database)?),
        redis: Some(Redis::connect(&settings.redis).await?),
    };
    let worker = &settings.advisor_worker;
    let ops = OpsServer::bind(&worker.host, worker.port, Registry::new(), readiness)?;
    tracing::info!(port = ops.port(), "serving /health and /metrics");
    ops.run(shutdown).await
}
