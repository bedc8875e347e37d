//! Job lifecycle events on a Redis pub/sub channel: how workers and predictors learn of changes
//! without polling Postgres.

use futures::StreamExt;
use futures::stream::BoxStream;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::Redis;
use duma_domain::dependencies::Dependencies;
use duma_domain::{InferenceJobId, TrainJobId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    TrainJobCreated {
        train_job_id: TrainJobId,
    },
    TrainJobStopped {
        train_job_id: TrainJobId,
    },
    InferenceJobCreated {
        inference_job_id: InferenceJobId,
    },
    InferenceJobChanged {
        inference_job_id: InferenceJobId,
    },
    InferenceJobStopped {
        inference_job_id: InferenceJobId,
    },
    /// A deployment's routing changed (or it was deleted): predictors look it up again.
    DeploymentChanged {
        name: String,
    },
    /// An app's prediction keys changed: predictors look its keys up again.
    PredictionKeysChanged,
    /// A Python template was uploaded: train workers build the environment of its dependencies
    /// now, ahead of its first trial (environments are shared by every worker of a host, so
    /// serving finds it too).
    ModelUploaded {
        dependencies: Dependencies,
    },
    /// An evaluation was asked for: idle train workers look for it.
    EvaluationCreated,
    /// Never published: the local event feed sends it after re-subscribing, because events sent
    /// while the subscription was down are lost. Whoever caches from events reloads.
    Resync,
}

/// Publishes an event; returns how many subscribers received it. (A repeat after a dead
/// connection may deliver it twice; every subscriber treats events as idempotent hints.)
pub async fn publish(redis: &Redis, event: &Event) -> redis::RedisResult<usize> {
    let payload = serde_json::to_string(event).unwrap_or_default();
    let channel = redis.keys().events_channel();
    redis
        .retrying(|mut conn| {
            let (channel, payload) = (&channel, &payload);
            async move { conn.publish(channel, payload).await }
        })
        .await
}

/// Subscribes to events. The stream ends if the subscription connection drops; subscribers
/// then resubscribe and reload what they cache, since events sent meanwhile are lost.
pub async fn subscribe(redis: &Redis) -> redis::RedisResult<BoxStream<'static, Event>> {
    let mut pubsub = redis.pubsub().await?;
    pubsub.subscribe(redis.keys().events_channel()).await?;
    Ok(pubsub
        .into_on_message()
        .filter_map(|message| async move {
            let payload: String = message.get_payload().ok()?;
            match serde_json::from_str(&payload) {
                Ok(event) => Some(event),
                Err(error) => {
                    tracing::warn!(%error, payload, "ignoring an event this version does not know");
                    None
                }
            }
        })
        .boxed())
}
