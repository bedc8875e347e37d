//! The train worker: runs trials for sub train jobs — proposal → trial RUNNING → datasets from
//! the object store (cached by checksum) → train → evaluate → parameters stored → COMPLETED with
//! its score → feedback to the advisor.

mod early_stopping;
mod evaluation;
mod metrics;
mod train_and_val;
mod worker;

use std::sync::Arc;

use duma_common::Settings;
use duma_common::redis::rpc::RpcClient;
use duma_common::store::ObjectStore;
use duma_common::worker::{WorkerHost, next_event};
use duma_domain::WorkerKind;
use tokio_util::sync::CancellationToken;

pub use worker::TrainWorker;

/// Runs the worker until `shutdown` is cancelled (or a vital task fails).
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let capabilities = serde_json::json!({
        "slots": settings.train_worker.capacity,
        "templates": ["native", "python", "onnx"],
    });
    let store = ObjectStore::open(&settings.object_store).await?;
    let mut host = WorkerHost::start(WorkerKind::Train, &settings, capabilities, shutdown).await?;
    let stop = host.stop_token();
    let (rpc, rpc_tasks) = RpcClient::new(host.redis.clone(), &format!("train-{}", host.id));
    let rpc_stop = stop.clone();
    host.spawn("rpc client", rpc_tasks.run(rpc_stop));
    let worker = Arc::new(TrainWorker::new(
        &host,
        store,
        rpc,
        settings.python.clone(),
        settings.onnx.clone(),
        settings.admin.quota_concurrent_trials,
    )?);

    let mut events = host.events().subscribe();
    let listener = worker.clone();
    let events_stop = stop.clone();
    host.spawn("event listener", async move {
        loop {
            tokio::select! {
                _ = events_stop.cancelled() => return Ok(()),
                event = next_event(&mut events) => match event {
                    Some(event) => listener.on_event(&event),
                    None => return Ok(()),
                },
            }
        }
    });
    let prebuilder = worker.clone();
    let prebuild_stop = stop.clone();
    host.spawn("environment prebuilds", async move {
        prebuilder.run_prebuilds(prebuild_stop).await;
        Ok(())
    });
    let evaluator = worker.clone();
    let evaluation_stop = stop.clone();
    let evaluation_probe = host
        .liveness
        .probe("evaluations", host.settings.stall_timeout());
    host.spawn("evaluations", async move {
        evaluator
            .run_evaluations(&evaluation_probe, evaluation_stop)
            .await;
        Ok(())
    });
    for slot in 0..host.settings.capacity {
        let worker = worker.clone();
        let stop = stop.clone();
        let probe = host
            .liveness
            .probe(format!("train slot {slot}"), host.settings.stall_timeout());
        host.spawn("train slot", async move {
            worker.run_slot(&probe, stop).await;
            Ok(())
        });
    }
    host.run().await
}
