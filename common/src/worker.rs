//! What every worker pool shares: registration with heartbeats that keep its leases alive, and a
//! feed of lifecycle events from Redis.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerSettings;
use crate::db::{PgPool, workers};
use crate::domain::{WorkerId, WorkerKind};
use crate::redis::Redis;
use crate::redis::events::{self, Event};

/// Registers the worker and returns its heartbeat, a future to run among the worker's supervised
/// tasks: it extends every lease the worker holds, and ends with an error if the worker was
/// declared dead (its row removed) — the process must stop, its leases may belong to others.
pub async fn register(
    pool: &PgPool,
    kind: WorkerKind,
    settings: &WorkerSettings,
    capabilities: serde_json::Value,
    shutdown: CancellationToken,
) -> anyhow::Result<(
    WorkerId,
    impl Future<Output = anyhow::Result<()>> + Send + 'static,
)> {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
    let db = pool.get().await?;
    let worker = workers::register(&db, kind, &host, &capabilities).await?;
    drop(db);
    tracing::info!(worker_id = %worker.id, %kind, "worker registered");
    let id = worker.id;
    let pool = pool.clone();
    let interval = settings.heartbeat_interval();
    let ttl = settings.lease_ttl();
    let heartbeat = async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let alive = match pool.get().await {
                Ok(db) => workers::heartbeat(&db, id, ttl).await,
                Err(e) => Err(e.into()),
            };
            match alive {
                Ok(true) => {}
                Ok(false) => anyhow::bail!("worker {id} was declared dead; its leases are gone"),
                // A missed beat is survivable until the leases expire.
                Err(error) => tracing::warn!(%error, "heartbeat failed"),
            }
        }
        if let Ok(db) = pool.get().await
            && let Err(error) = workers::deregister(&db, id).await
        {
            tracing::warn!(%error, "could not deregister");
        }
        Ok(())
    };
    Ok((id, heartbeat))
}

/// Forwards lifecycle events from Redis to any number of local receivers, resubscribing after
/// connection loss. Events sent meanwhile are lost, so every re-subscription is followed by
/// [`Event::Resync`].
pub fn event_feed(redis: Redis, shutdown: CancellationToken) -> broadcast::Sender<Event> {
    let (sender, _) = broadcast::channel(1024);
    let feed = sender.clone();
    tokio::spawn(async move {
        let mut subscribed_before = false;
        while !shutdown.is_cancelled() {
            match events::subscribe(&redis).await {
                Ok(mut stream) => {
                    if std::mem::replace(&mut subscribed_before, true) {
                        tracing::info!("events re-subscribed; caches reload");
                        let _ = feed.send(Event::Resync);
                    }
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            event = stream.next() => match event {
                                Some(event) => { let _ = feed.send(event); }
                                None => break,
                            },
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot subscribe to events; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
    sender
}

/// Waits for the first of `tasks` to end — shutdown, or a vital task failing — then stops the
/// others through `stop` and waits for them. Returns the first task's result, so a failure
/// exits the process non-zero with the task's reason.
pub async fn supervise(
    mut tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let first = tasks.join_next().await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    match first {
        Some(Ok(result)) => result,
        Some(Err(panic)) => Err(anyhow::anyhow!("a task panicked: {panic}")),
        None => Ok(()),
    }
}
