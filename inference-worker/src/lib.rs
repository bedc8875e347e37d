//! The inference worker: hosts the trained models of inference jobs and answers batched queries
//! from their Redis streams. Replicas claim serving slots (inference job × served trial ×
//! replica) with leases; a model that fails to load ends its job ERRORED with the reason.

mod replica;
mod serving;

use duma_common::Settings;
use duma_common::redis::rpc::{RpcServer, SERVING_GROUP};
use duma_common::store::{ObjectCache, ObjectStore};
use duma_common::worker::WorkerHost;
use duma_domain::WorkerKind;
use duma_runtime::TemplateResolver;
use tokio_util::sync::CancellationToken;

/// Runs the worker until `shutdown` is cancelled (or a vital task fails).
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let capabilities = serde_json::json!({
        "models": settings.inference_worker.capacity,
        "templates": ["native", "python", "onnx"],
        "service_levels": settings.inference_worker.served_levels(),
    });
    let store = ObjectStore::open(&settings.object_store).await?;
    let mut host =
        WorkerHost::start(WorkerKind::Inference, &settings, capabilities, shutdown).await?;
    let server = RpcServer::new(&host.redis, SERVING_GROUP, &host.id.to_string()).await?;
    let cache_dir = &host.settings.cache_dir;
    let resolver = TemplateResolver::new(
        ObjectCache::new(&cache_dir.join("objects"), store.clone())?,
        &settings.python,
        &settings.onnx,
        cache_dir.join("runners"),
    );
    let probe = host
        .liveness
        .probe("serving loop", host.settings.stall_timeout());
    let serving = serving::Serving::new(&host, store, resolver, server, probe)?;
    let stop = host.stop_token();
    host.spawn("serving loop", async move {
        serving.run(stop).await;
        Ok(())
    });
    host.run().await
}
