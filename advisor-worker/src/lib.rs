//! The advisor worker: proposes knob values for the trials of sub train jobs (fixed, Bayesian
//! optimisation or random, in Rafiki's order), enforces their budgets, and ends them. Its state
//! is rebuilt from the trial rows whenever it (or another replica) takes a sub job over.

pub mod advisor;
mod service;
mod sub_job;

use duma_common::Settings;
use duma_common::redis::rpc::RpcServer;
use duma_common::worker::WorkerHost;
use duma_domain::WorkerKind;
use tokio_util::sync::CancellationToken;

pub use sub_job::MAX_CONSECUTIVE_FAILURES;

/// Runs the advisor worker until `shutdown` is cancelled (or a vital task fails).
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let capabilities = serde_json::json!({"sub_jobs": settings.advisor_worker.capacity});
    let mut host =
        WorkerHost::start(WorkerKind::Advisor, &settings, capabilities, shutdown).await?;
    let server = RpcServer::new(&host.redis, "advisors", &host.id.to_string()).await?;
    let advisor = service::AdvisorService::new(&host, server)?;
    let probe = host
        .liveness
        .probe("advisor loop", host.settings.stall_timeout());
    let stop = host.stop_token();
    host.spawn("advisor loop", async move {
        advisor.run(&probe, stop).await;
        Ok(())
    });
    host.run().await
}
