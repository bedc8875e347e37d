//! [`ServeLoop`]: reads, serves and housekeeps a [`StreamService`] until shutdown, through
//! Redis restarts.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::RECONNECT_BACKOFF;
use super::server::RpcServer;
use super::wire::Request;
use crate::ops::Probe;

/// A server of request streams with housekeeping between reads (claiming and dropping work,
/// reclaiming orphaned entries): the advisors and the inference workers.
pub trait StreamService {
    /// The streams to read from now.
    fn streams(&self) -> Vec<String>;
    fn server(&mut self) -> &mut RpcServer;
    fn tick(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
    fn serve(&mut self, requests: Vec<Request>) -> impl Future<Output = ()> + Send;
}

/// How a [`StreamService`] is driven.
#[derive(Debug, Clone, Copy)]
pub struct ServeLoop {
    /// Housekeeping at most this often.
    pub tick: Duration,
    /// How long one read waits for requests.
    pub block: Duration,
    /// Requests per stream per read, at most.
    pub batch: usize,
}

impl ServeLoop {
    /// Reads, serves and ticks until `shutdown`, beating `probe` once per round. Reads are not
    /// raced against shutdown: a read dropped midway would lose the entries it took. A failed
    /// read (Redis down or restarting) is retried with a growing back-off; the server reconnects
    /// by itself.
    pub async fn run<S: StreamService>(
        self,
        service: &mut S,
        name: &str,
        probe: &Probe,
        shutdown: &CancellationToken,
    ) {
        let mut next_tick = std::time::Instant::now();
        let mut backoff = RECONNECT_BACKOFF.0;
        while !shutdown.is_cancelled() {
            probe.beat();
            if std::time::Instant::now() >= next_tick {
                if let Err(error) = service.tick().await {
                    tracing::warn!(error = format!("{error:#}"), "{name} tick failed");
                }
                next_tick = std::time::Instant::now() + self.tick;
            }
            let streams = service.streams();
            match service
                .server()
                .read(&streams, self.batch, self.block)
                .await
            {
                Ok(requests) => {
                    backoff = RECONNECT_BACKOFF.0;
                    service.serve(requests).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "{name}: reading requests failed; retrying in {backoff:?}");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(RECONNECT_BACKOFF.1);
                }
            }
        }
    }
}
