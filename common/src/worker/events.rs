//! The local feed of lifecycle events: one Redis subscription per process, fanned out to any
//! number of receivers, resubscribed after connection loss.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::redis::Redis;
use crate::redis::events::{self, Event};

const RESUBSCRIBE_MIN: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(2);

/// The subscription loop behind an event sender; run it among the process's supervised tasks.
pub struct EventFeed {
    redis: Redis,
    sender: broadcast::Sender<Event>,
    stop: CancellationToken,
}

/// A sender to subscribe receivers to, and the feed that fills it.
pub fn event_feed(redis: Redis, stop: CancellationToken) -> (broadcast::Sender<Event>, EventFeed) {
    let (sender, _) = broadcast::channel(1024);
    let feed = EventFeed {
        redis,
        sender: sender.clone(),
        stop,
    };
    (sender, feed)
}

impl EventFeed {
    /// Forwards events until `stop`. Events sent while the subscription is down are lost, so
    /// every re-subscription is followed by [`Event::Resync`].
    pub async fn run(self) -> anyhow::Result<()> {
        let mut subscribed_before = false;
        let mut backoff = RESUBSCRIBE_MIN;
        while !self.stop.is_cancelled() {
            match events::subscribe(&self.redis).await {
                Ok(mut stream) => {
                    backoff = RESUBSCRIBE_MIN;
                    if std::mem::replace(&mut subscribed_before, true) {
                        tracing::info!("events re-subscribed; caches reload");
                        let _ = self.sender.send(Event::Resync);
                    }
                    loop {
                        tokio::select! {
                            _ = self.stop.cancelled() => return Ok(()),
                            event = stream.next() => match event {
                                Some(event) => { let _ = self.sender.send(event); }
                                None => break,
                            },
                        }
                    }
                    tracing::warn!("the event subscription dropped; resubscribing");
                }
                Err(error) => tracing::warn!(%error, "cannot subscribe to events; retrying"),
            }
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
        }
        Ok(())
    }
}

/// The next event for a receiver, with the one policy for a receiver that fell behind: events it
/// missed are unknown, so it gets [`Event::Resync`] and reloads what it caches. `None` once the
/// feed is gone.
pub async fn next_event(receiver: &mut broadcast::Receiver<Event>) -> Option<Event> {
    match receiver.recv().await {
        Ok(event) => Some(event),
        Err(RecvError::Lagged(missed)) => {
            tracing::warn!(missed, "fell behind the event feed; resyncing");
            Some(Event::Resync)
        }
        Err(RecvError::Closed) => None,
    }
}
